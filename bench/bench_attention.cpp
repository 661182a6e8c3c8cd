// bench_attention: TFLOP/s of CudaOps::attention at the Wan2.2-A14B shapes, bf16 q/k/v in the
// engine's [L, H, d] layout, no mask, under every compiled tiling of the Hopper kernel (on an
// sm_90 GPU, head_dim 128; its first is the one Ops::attention uses there), of the 8-bit Hopper
// kernel (cuda_attention_int8.cu; "int8 ..." with its per-call pre-pass, "int8 ... kernel" on
// operands quantized once, "int8 pre-pass" the pre-pass alone, its TFLOP/s column meaningless),
// of the portable flash kernel (its first is the one Ops::attention uses elsewhere), and through
// Ops::attention itself:
//   720p-self        40 heads × 75,600 queries × 75,600 keys × 128 (one GPU)
//   720p-ulysses8     5 heads × 75,600 × 75,600 × 128 (per GPU with 8-way sequence parallelism)
//   480p-self        40 heads × 32,760 × 32,760 × 128
//   720p-cross       40 heads × 75,600 queries × 512 text keys × 128
//   480p-self-d64    80 heads × 32,760 × 32,760 × 64 (the head_dim-64 tilings; no Wan shape)
//   umt5-bias        64 heads × 512 × 512 × 64 with the relative-position bias (generic kernel)
//   vae-mid-720p      1 head × 14,400 × 14,400 × 384 (the VAE mid-block at 720p, generic kernel)
// FLOPs counted as 4·H·Lq·Lk·d (the two GEMMs; softmax not counted), as FlashAttention and
// PyTorch do; bench/attention_reference.py prints PyTorch SDPA (flash and cuDNN backends) at
// the Wan shapes for comparison in the same session.
//
// Timing: CUDA events on the backend's stream around N back-to-back calls after one warm-up
// call; N is chosen so that a measurement lasts about --seconds (at least 3 calls). The
// candidates of a shape are measured in turn, --rounds times, and each keeps its best round:
// a GPU at its power limit drifts by several percent from one measurement to the next.
// Inputs are random normal values (a 4M-element random block repeated; values do not change
// the work).
//
//   bench_attention [--shape NAME] [--seconds S] [--rounds N] [--only LIST]
// --only: a comma-separated list of candidates to measure, each an exact candidate name
// ("sm90 c2 n128 ov pp") or a group: sm90, int8, portable, op (Ops::attention); default all.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backends/ops.h"
#include "bench_common.h"
#include "core/dtype.h"
#include "core/error.h"

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_attention_int8.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops_impl.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA

struct Shape4 {
  const char* name;
  int64_t heads, q_len, kv_len, head_dim;
  bool bias;
  double tflop() const {
    return 4.0 * static_cast<double>(heads) * static_cast<double>(q_len) *
           static_cast<double>(kv_len) * static_cast<double>(head_dim) * 1e-12;
  }
};

const Shape4 kShapes[] = {
    {"720p-self", 40, 75600, 75600, 128, false},
    {"720p-ulysses8", 5, 75600, 75600, 128, false},
    {"480p-self", 40, 32760, 32760, 128, false},
    {"720p-cross", 40, 75600, 512, 128, false},
    {"480p-self-d64", 80, 32760, 32760, 64, false},
    {"umt5-bias", 64, 512, 512, 64, true},
    {"vae-mid-720p", 1, 14400, 14400, 384, false},
};

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail("CUDA error in ", what, ": ", cudaGetErrorString(status));
}

// A bf16 device tensor of `shape` filled with N(0, 1) values: one random block, repeated.
Tensor random_bf16(CudaOps& ops, const Shape& shape, std::mt19937_64& rng) {
  Tensor out = ops.empty(DType::BF16, shape);
  const int64_t total = out.numel();
  const int64_t block = std::min<int64_t>(total, int64_t{1} << 22);
  Tensor host = Tensor::empty(DType::F32, {block});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& x : host.floats()) x = normal(rng);
  const Tensor seed_block = ops.as_dtype(ops.upload(host), DType::BF16);
  auto* dst = static_cast<char*>(out.raw_mut());
  for (int64_t at = 0; at < total; at += block) {
    const size_t bytes = static_cast<size_t>(std::min(block, total - at)) * 2;
    check_cuda(cudaMemcpyAsync(dst + at * 2, seed_block.raw(), bytes, cudaMemcpyDeviceToDevice,
                               ops.stream()),
               "cudaMemcpyAsync");
  }
  return out;
}

// Seconds per call of `call` (queued on ops.stream()).
template <typename Call>
double time_per_call(CudaOps& ops, double target_seconds, Call&& call) {
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  auto measure = [&](int calls) {
    check_cuda(cudaEventRecord(start, ops.stream()), "cudaEventRecord");
    for (int i = 0; i < calls; ++i) call();
    check_cuda(cudaEventRecord(stop, ops.stream()), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    return static_cast<double>(ms) * 1e-3 / calls;
  };
  const double first = measure(1);  // warm-up (and the estimate of how many calls to time)
  const int calls = static_cast<int>(std::clamp(std::ceil(target_seconds / first), 3.0, 500.0));
  const double seconds = measure(calls);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return seconds;
}

std::string fmt_tflops(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", value);
  return text;
}

// Counts non-finite values among the first million outputs (a broken kernel's time is void).
int64_t non_finite_prefix(const Tensor& out_bf16) {
  const int64_t n = std::min<int64_t>(out_bf16.numel(), 1 << 20);
  std::vector<uint16_t> bits(static_cast<size_t>(n));
  check_cuda(cudaMemcpy(bits.data(), out_bf16.raw(), static_cast<size_t>(n) * 2, cudaMemcpyDeviceToHost),
             "cudaMemcpy");
  int64_t bad = 0;
  for (uint16_t b : bits) bad += std::isfinite(bf16_to_f32(b)) ? 0 : 1;
  return bad;
}

int run(int argc, char** argv) {
  std::string only, candidates_wanted;
  double seconds = 0.5;
  int rounds = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--shape" && i + 1 < argc) {
      only = argv[++i];
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::stod(argv[++i]);
    } else if (arg == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::stoi(argv[++i]));
    } else if (arg == "--only" && i + 1 < argc) {
      candidates_wanted = "," + std::string(argv[++i]) + ",";
    } else {
      std::fprintf(stderr, "usage: bench_attention [--shape NAME] [--seconds S] [--rounds N] [--only LIST]\n");
      return 2;
    }
  }
  WANRT_CHECK(cuda::device_count() > 0, "no CUDA GPU: bench_attention measures the CUDA backend");
  const cuda::DeviceInfo info = cuda::device_info(0);
  std::printf("bench_attention on %s (sm_%d%d, %d SMs); FLOPs = 4·H·Lq·Lk·d; best of %d rounds\n\n",
              info.name.c_str(), info.compute_major, info.compute_minor, info.multiprocessors, rounds);
  auto ops_owner = make_cuda_ops();
  auto& ops = dynamic_cast<CudaOps&>(*ops_owner);
  const bool sm90_available = sm90_attention_available(ops.device());
  std::mt19937_64 rng(0);

  struct Row {
    std::string shape, candidate;
    double seconds;  // best round, per call
  };
  std::vector<Row> rows;
  const std::string kOp = "Ops::attention";
  for (const Shape4& s : kShapes) {
    if (!only.empty() && only != s.name) continue;
    const Tensor q = random_bf16(ops, {s.q_len, s.heads, s.head_dim}, rng);
    const Tensor k = random_bf16(ops, {s.kv_len, s.heads, s.head_dim}, rng);
    const Tensor v = random_bf16(ops, {s.kv_len, s.heads, s.head_dim}, rng);
    Tensor bias;
    if (s.bias) bias = ops.as_dtype(random_bf16(ops, {s.heads, s.q_len, s.kv_len}, rng), DType::F32);
    AttentionOptions options{.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim))};
    if (s.bias) options.bias = &bias;
    // Candidates: the Hopper tilings (where they apply), the portable ones, Ops::attention.
    auto wanted = [&](const std::string& name, const char* group) {
      return candidates_wanted.empty() || candidates_wanted.find("," + name + ",") != std::string::npos ||
             candidates_wanted.find(std::string(",") + group + ",") != std::string::npos;
    };
    const bool hopper = sm90_available && sm90_attention_applies(q, k, v, options);
    std::vector<std::string> names;
    std::vector<std::function<Tensor()>> calls;
    if (hopper)
      for (const Sm90Tiling& t : sm90_attention_tilings())
        if (wanted(t.name(), "sm90")) {
          names.push_back(t.name());
          calls.push_back([&ops, &q, &k, &v, &options, t] { return sm90_attention(ops, q, k, v, options, t); });
        }
    // The 8-bit kernel twice: with its pre-pass (what Ops::attention pays per call) and alone
    // on operands prepared once.
    Int8Operands prepared;
    const bool int8 = hopper && int8_attention_applies(q, k, v, options);
    if (int8)
      for (const Int8Tiling& t : int8_attention_tilings()) {
        if (wanted(t.name(), "int8")) {
          names.push_back(t.name());
          calls.push_back([&ops, &q, &k, &v, &options, t] { return int8_attention(ops, q, k, v, options, t); });
        }
        if (wanted(t.name() + " kernel", "int8")) {
          if (prepared.q_len == 0) prepared = int8_attention_prepare(ops, q, k, v, options);
          names.push_back(t.name() + " kernel");
          calls.push_back([&ops, &prepared, t] { return int8_attention_run(ops, prepared, t); });
        }
      }
    if (int8 && wanted("int8 pre-pass", "int8")) {
      names.push_back("int8 pre-pass");
      calls.push_back([&ops, &q, &k, &v, &options] { return int8_attention_prepare(ops, q, k, v, options).q8; });
    }
    if (!s.bias)
      for (const FlashTiling& t : flash_attention_tilings(s.head_dim))
        if (wanted(t.name(), "portable")) {
          names.push_back(t.name());
          calls.push_back([&ops, &q, &k, &v, &options, t] { return flash_attention(ops, q, k, v, options, t); });
        }
    if (wanted(kOp, "op")) {
      names.push_back(kOp);
      calls.push_back([&ops, &q, &k, &v, &options] { return ops.attention(q, k, v, options); });
    }
    // Which candidate Ops::attention takes (marked in the table).
    const std::string used = hopper ? sm90_attention_tilings().front().name()
                             : s.bias || flash_attention_tilings(s.head_dim).empty()
                                 ? std::string()
                                 : flash_attention_tilings(s.head_dim).front().name();
    std::vector<double> best(names.size(), INFINITY);
    for (int round = 0; round < rounds; ++round)
      for (size_t c = 0; c < names.size(); ++c) {
        Tensor out;
        const double per_call = time_per_call(ops, seconds, [&] { out = calls[c](); });
        if (out.dtype() == DType::BF16) {  // the pre-pass row returns int8 q
          const int64_t bad = non_finite_prefix(out);
          WANRT_CHECK(bad == 0, s.name, " ", names[c], ": ", bad, " non-finite outputs");
        }
        best[c] = std::min(best[c], per_call);
      }
    for (size_t c = 0; c < names.size(); ++c) {
      rows.push_back({s.name, names[c], best[c]});
      std::printf("%-14s %-28s %10.3f ms %8.1f TFLOP/s%s\n", s.name, names[c].c_str(),
                  best[c] * 1e3, s.tflop() / best[c],
                  names[c] == used ? "  (used by Ops::attention)" : "");
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  std::printf("| shape | H x Lq x Lk x d | Ops::attention TFLOP/s | ms | best sm90 tiling | its TFLOP/s |"
              " best portable tiling | its TFLOP/s | int8 (Ops' tiling, with pre-pass) | its TFLOP/s |"
              " int8 kernel alone | its TFLOP/s |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  const std::string int8_default = sm90_available ? int8_attention_tilings().front().name() : std::string("-");
  for (const Shape4& s : kShapes) {
    const Row* op = nullptr;
    const Row* fastest[4] = {nullptr, nullptr, nullptr, nullptr};  // sm90, portable, int8, int8 kernel
    for (const Row& r : rows) {
      if (r.shape != s.name) continue;
      if (r.candidate == kOp) {
        op = &r;
        continue;
      }
      if (r.candidate == "int8 pre-pass") continue;
      // The int8 columns show the tiling Ops::attention uses (f0, faster, is wrong on real inputs).
      const bool is_int8 = r.candidate.rfind("int8", 0) == 0;
      if (is_int8 && r.candidate.rfind(int8_default, 0) != 0) continue;
      const bool kernel_alone = r.candidate.size() > 7 && r.candidate.substr(r.candidate.size() - 7) == " kernel";
      const int group = is_int8 ? (kernel_alone ? 3 : 2) : r.candidate.rfind("sm90", 0) == 0 ? 0 : 1;
      const Row*& best = fastest[group];
      if (!best || r.seconds < best->seconds) best = &r;
    }
    if (!op && !fastest[0] && !fastest[1] && !fastest[2]) continue;
    auto cells = [&](const Row* r) {
      return r ? str_cat(r->candidate, " | ", fmt_tflops(s.tflop() / r->seconds)) : std::string("- | -");
    };
    std::printf("| %s | %lld x %lld x %lld x %lld%s | %s | %s | %s | %s | %s | %s |\n", s.name,
                static_cast<long long>(s.heads), static_cast<long long>(s.q_len),
                static_cast<long long>(s.kv_len), static_cast<long long>(s.head_dim),
                s.bias ? " + bias" : "", op ? fmt_tflops(s.tflop() / op->seconds).c_str() : "-",
                op ? str_cat(op->seconds * 1e3).c_str() : "-", cells(fastest[0]).c_str(),
                cells(fastest[1]).c_str(), cells(fastest[2]).c_str(), cells(fastest[3]).c_str());
  }
  return 0;
}

#else

int run(int, char**) {
  std::printf("bench_attention: this build has no CUDA backend (nvcc not found); nothing to measure\n");
  return 0;
}

#endif

}  // namespace
}  // namespace wanrt

int main(int argc, char** argv) {
  return wanrt::bench::run_main("bench_attention", [&] { return wanrt::run(argc, argv); });
}
