// bench_kernels: the CUDA backend's memory-bound DiT kernels in GB/s against the H100's HBM3
// (~3.35 TB/s), and the VAE decoder's conv3d in TFLOP/s, through the Ops interface.
//
//   ./build/bench_kernels            every row below
//   ./build/bench_kernels --no-conv  the DiT kernels only
//
// DiT rows run at 720p: 75,600 tokens × 5120 features (21 × 45 × 80 latent patches). Bytes are
// the minimum each op must move (read every input once, write every output once). Conv rows use
// the decoder's 3×3×3 layers at 720p with four new frames and two cached ones, in BF16 and F32
// (true F32 and TF32), in both layouts of cuda_video.cu (WANRT_CONV_LAYOUT=ndhwc, the
// default, and ncdhw; a layout cuDNN has no algorithm for falls back to the other). Each row: median and minimum of N timed calls (cudaEvents on the
// backend's stream) after warm-up calls (the first conv call also picks cuDNN's algorithm).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops_impl.h"
#endif

namespace {

#ifdef WANRT_HAVE_CUDA
using namespace wanrt;

constexpr double kHbmBytesPerSecond = 3.35e12;  // H100 SXM HBM3

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "bench_kernels: %s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

struct Timing {
  double median_ms = 0, min_ms = 0;
};

// Times `call` `reps` times after `warmup` untimed calls, each call between two events.
Timing time_calls(CudaOps& ops, int warmup, int reps, const std::function<void()>& call) {
  for (int i = 0; i < warmup; ++i) call();
  check(cudaStreamSynchronize(ops.stream()), "warm-up");
  std::vector<cudaEvent_t> events(static_cast<size_t>(2 * reps));
  for (auto& e : events) check(cudaEventCreate(&e), "cudaEventCreate");
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(events[static_cast<size_t>(2 * i)], ops.stream()), "record");
    call();
    check(cudaEventRecord(events[static_cast<size_t>(2 * i + 1)], ops.stream()), "record");
  }
  check(cudaStreamSynchronize(ops.stream()), "timed calls");
  std::vector<double> ms(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    float elapsed = 0;
    check(cudaEventElapsedTime(&elapsed, events[static_cast<size_t>(2 * i)], events[static_cast<size_t>(2 * i + 1)]), "elapsed");
    ms[static_cast<size_t>(i)] = elapsed;
  }
  for (auto& e : events) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

// A device matrix [rows, cols] in `dtype` whose rows repeat one random row: values do not
// change a memory-bound kernel's time, and this avoids generating gigabytes on the host.
Tensor device_matrix(CudaOps& ops, int64_t rows, int64_t cols, DType dtype, std::mt19937_64& rng, float stddev = 1.0f) {
  Tensor row = Tensor::empty(DType::F32, {cols});
  std::normal_distribution<float> dist(0.0f, stddev);
  for (float& v : row.floats()) v = dist(rng);
  return ops.as_dtype(ops.add(ops.zeros({rows, cols}), ops.upload(row)), dtype);
}

Tensor host_random(Shape shape, std::mt19937_64& rng, float stddev) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  std::normal_distribution<float> dist(0.0f, stddev);
  for (float& v : t.floats()) v = dist(rng);
  return t;
}

void print_bandwidth_row(const char* op, const char* dtypes, double bytes, const Timing& t) {
  const double gbps = bytes / (t.median_ms * 1e-3) / 1e9;
  std::printf("| %-34s | %-18s | %8.3f | %8.3f | %7.2f | %6.0f | %5.1f%% |\n", op, dtypes, t.median_ms, t.min_ms,
              bytes / 1e9, gbps, 100.0 * gbps * 1e9 / kHbmBytesPerSecond);
}

void bench_dit_kernels(std::mt19937_64& rng) {
  const int64_t tokens = 75600, dim = 5120, heads = 40, head_dim = 128;
  const double n = static_cast<double>(tokens * dim);
  std::unique_ptr<Ops> owner = make_cuda_ops();
  CudaOps& ops = static_cast<CudaOps&>(*owner);
  std::printf("\n## DiT elementwise kernels at 720p: %lld tokens x %lld features (HBM-bound; peak %.2f TB/s)\n\n",
              static_cast<long long>(tokens), static_cast<long long>(dim), kHbmBytesPerSecond / 1e12);
  std::printf("| %-34s | %-18s | %8s | %8s | %7s | %6s | %6s |\n", "op", "dtypes", "med ms", "min ms", "GB", "GB/s", "% peak");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(20, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(9, '-').c_str(),
              std::string(8, '-').c_str(), std::string(8, '-').c_str());
  const int warmup = 3, reps = 20;

  const Tensor x_f32 = device_matrix(ops, tokens, dim, DType::F32, rng);
  const Tensor shift = ops.upload(host_random({dim}, rng, 0.1f)), scale = ops.upload(host_random({dim}, rng, 0.1f));
  Timing t = time_calls(ops, warmup, reps, [&] { (void)ops.layer_norm_modulate(x_f32, shift, scale, 1e-6f, false); });
  print_bandwidth_row("layer_norm_modulate", "F32 -> BF16", n * (4 + 2), t);
  t = time_calls(ops, warmup, reps, [&] { (void)ops.layer_norm_modulate(x_f32, shift, scale, 1e-6f, true); });
  print_bandwidth_row("layer_norm_modulate (head)", "F32 -> F32", n * (4 + 4), t);

  const Tensor q = device_matrix(ops, tokens, dim, DType::BF16, rng);
  const Tensor gain = ops.upload(host_random({dim}, rng, 1.0f));
  Tensor table = Tensor::empty(DType::F32, {tokens, head_dim / 2, 2});
  for (int64_t i = 0; i < tokens * head_dim / 2; ++i) {
    const double angle = 0.001 * static_cast<double>(i % 100003);
    table.data<float>()[2 * i] = static_cast<float>(std::cos(angle));
    table.data<float>()[2 * i + 1] = static_cast<float>(std::sin(angle));
  }
  const Tensor table_gpu = ops.upload(table);
  const double table_bytes = static_cast<double>(tokens * head_dim) * 4;
  t = time_calls(ops, warmup, reps, [&] { (void)ops.rms_norm_rope(q, gain, 1e-6f, table_gpu, heads); });
  print_bandwidth_row("rms_norm_rope (fused)", "BF16 -> BF16", n * (2 + 2) + table_bytes, t);
  t = time_calls(ops, warmup, reps, [&] {
    Tensor y = ops.rms_norm(q, gain, 1e-6f).reshape({tokens, heads, head_dim});
    ops.rope_(y, table_gpu);
  });
  print_bandwidth_row("rms_norm + rope_ (unfused)", "BF16 -> BF16", n * (2 + 2) + table_bytes, t);
  std::printf("| %-34s | %-18s | %8s | %8s | %7.2f | %6s | %6s |\n", "  (bytes the unfused pair moves)", "", "", "",
              (n * 8 + table_bytes) / 1e9, "", "");

  Tensor residual = device_matrix(ops, tokens, dim, DType::F32, rng, 1e-3f);
  const Tensor update = device_matrix(ops, tokens, dim, DType::BF16, rng, 1e-3f);
  const Tensor gate = ops.upload(host_random({dim}, rng, 1e-3f));
  t = time_calls(ops, warmup, reps, [&] { ops.add_gated_(residual, update, &gate); });
  print_bandwidth_row("add_gated_ (x += y * gate)", "F32 += BF16 * F32", n * (4 + 2 + 4), t);
  t = time_calls(ops, warmup, reps, [&] { (void)ops.layer_norm(residual, 1e-6f, &gain, &shift); });
  print_bandwidth_row("layer_norm (norm3, affine)", "F32 -> BF16", n * (4 + 2), t);
  const Tensor hidden = device_matrix(ops, tokens, 13824 / 4, DType::BF16, rng);  // a quarter of the FFN width
  t = time_calls(ops, warmup, reps, [&] { (void)ops.activation(hidden, Activation::GeluTanh); });
  print_bandwidth_row("activation GeluTanh [L, 3456]", "BF16 -> BF16", static_cast<double>(tokens * 3456) * 4, t);
}

struct ConvShape {
  const char* name;
  int64_t cin, cout, frames_in, h, w, kt, kh, kw;
  Conv3dOptions options;
};

struct ConvMode {
  const char* name;
  DType dtype;
  bool tf32, channels_last;
};

void bench_conv3d(std::mt19937_64& rng) {
  const Conv3dOptions same{.pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1};
  Conv3dOptions first_chunk = same;
  first_chunk.pad_t_front = 2;
  const std::vector<ConvShape> shapes = {
      {"384ch 3x3x3, 4+2 fr, 90x160", 384, 384, 6, 90, 160, 3, 3, 3, same},
      {"384ch 3x3x3, 1 fr causal, 90x160", 384, 384, 1, 90, 160, 3, 3, 3, first_chunk},
      {"384->768 time (3,1,1), 1+2 fr, 90x160", 384, 768, 3, 90, 160, 3, 1, 1, {}},
      {"192ch 3x3x3, 4+2 fr, 360x640", 192, 192, 6, 360, 640, 3, 3, 3, same},
      {"96ch 3x3x3, 4+2 fr, 720x1280", 96, 96, 6, 720, 1280, 3, 3, 3, same},
      {"96->3 head 3x3x3, 4+2 fr, 720x1280", 96, 3, 6, 720, 1280, 3, 3, 3, same},
  };
  const std::vector<ConvMode> modes = {
      {"bf16 NCDHW", DType::BF16, false, false}, {"bf16 NDHWC", DType::BF16, false, true},
      {"tf32 NCDHW", DType::F32, true, false},   {"tf32 NDHWC", DType::F32, true, true},
      {"fp32 NCDHW", DType::F32, false, false},
  };
  std::printf("\n## conv3d at the VAE decoder's 720p shapes (cuDNN; H100 dense peak BF16 989 TFLOP/s, TF32 495, FP32 67)\n\n");
  std::printf("| %-38s | %-10s | %9s | %9s | %8s | %8s |\n", "shape (x: Cin, T, H, W)", "mode", "med ms", "min ms",
              "GFLOP", "TFLOP/s");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(40, '-').c_str(), std::string(12, '-').c_str(),
              std::string(11, '-').c_str(), std::string(11, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str());
  for (const ConvMode& mode : modes) {
    CudaOptions options;
    options.conv_dtype = mode.dtype;
    options.tf32_convolutions = mode.tf32;
    std::unique_ptr<Ops> owner = make_cuda_ops(options);
    CudaOps& ops = static_cast<CudaOps&>(*owner);
    setenv("WANRT_CONV_LAYOUT", mode.channels_last ? "ndhwc" : "ncdhw", 1);
    for (const ConvShape& s : shapes) {
      const Conv3dOptions& o = s.options;
      const int64_t t_out = (s.frames_in + o.pad_t_front + o.pad_t_back - s.kt) / o.stride_t + 1;
      const int64_t h_out = (s.h + o.pad_top + o.pad_bottom - s.kh) / o.stride_h + 1;
      const int64_t w_out = (s.w + o.pad_left + o.pad_right - s.kw) / o.stride_w + 1;
      const double flops = 2.0 * static_cast<double>(s.cout * s.cin * s.kt * s.kh * s.kw) *
                           static_cast<double>(t_out * h_out * w_out);
      // The input in the compute dtype, as the previous layer leaves it.
      const Tensor x = device_matrix(ops, s.cin * s.frames_in * s.h, s.w, mode.dtype, rng)
                           .reshape({s.cin, s.frames_in, s.h, s.w});
      const Tensor host_weight = host_random({s.cout, s.cin, s.kt, s.kh, s.kw}, rng, 0.05f);
      const Tensor weight = mode.dtype == DType::BF16 ? ops.upload_weight(host_weight) : ops.upload(host_weight);
      const Tensor bias = ops.upload(host_random({s.cout}, rng, 0.1f));
      const bool slow = mode.dtype == DType::F32 && !mode.tf32;
      Timing t;
      try {
        t = time_calls(ops, 2, slow ? 3 : 5, [&] { (void)ops.conv3d(x, weight, &bias, o); });
      } catch (const std::exception& e) {
        std::printf("| %-38s | %-10s | failed: %s |\n", s.name, mode.name, e.what());
        continue;
      }
      std::printf("| %-38s | %-10s | %9.3f | %9.3f | %8.1f | %8.1f |\n", s.name, mode.name, t.median_ms, t.min_ms,
                  flops / 1e9, flops / (t.median_ms * 1e-3) / 1e12);
      std::fflush(stdout);
    }
  }
  unsetenv("WANRT_CONV_LAYOUT");
}

void bench_video_ops(std::mt19937_64& rng) {
  std::unique_ptr<Ops> owner = make_cuda_ops();
  CudaOps& ops = static_cast<CudaOps&>(*owner);
  std::printf("\n## VAE elementwise ops at 720p (HBM-bound)\n\n");
  std::printf("| %-34s | %-18s | %8s | %8s | %7s | %6s | %6s |\n", "op", "dtypes", "med ms", "min ms", "GB", "GB/s", "% peak");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(20, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(), std::string(9, '-').c_str(),
              std::string(8, '-').c_str(), std::string(8, '-').c_str());
  const int64_t c = 96, frames = 4, h = 720, w = 1280;
  const Tensor x = device_matrix(ops, c * frames * h, w, DType::BF16, rng).reshape({c, frames, h, w});
  const Tensor gamma = ops.upload(host_random({c}, rng, 1.0f));
  const double n = static_cast<double>(c * frames * h * w);
  Timing t = time_calls(ops, 3, 20, [&] { (void)ops.channel_rms_norm(x, gamma); });
  print_bandwidth_row("channel_rms_norm 96ch 4x720x1280", "BF16 -> BF16", n * 4, t);
  const Tensor small = device_matrix(ops, 192 * frames * 360, 640, DType::BF16, rng).reshape({192, frames, 360, 640});
  t = time_calls(ops, 3, 20, [&] { (void)ops.upsample_nearest_2x(small); });
  print_bandwidth_row("upsample_nearest_2x 192ch 360x640", "BF16 -> BF16", static_cast<double>(small.numel()) * 2 * 5, t);
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifndef WANRT_HAVE_CUDA
  (void)argc, (void)argv;
  std::printf("bench_kernels: wanrt was built without CUDA; nothing to measure\n");
  return 0;
#else
  if (wanrt::cuda::device_count() == 0) {
    std::printf("bench_kernels: no CUDA GPU on this machine\n");
    return 0;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // rows appear as they are measured, even in a log file
  const bool conv = !(argc > 1 && std::strcmp(argv[1], "--no-conv") == 0);
  const wanrt::cuda::DeviceInfo info = wanrt::cuda::device_info(0);
  std::printf("# bench_kernels on %s (sm_%d%d, %d SMs)\n", info.name.c_str(), info.compute_major,
              info.compute_minor, info.multiprocessors);
  std::mt19937_64 rng(42);
  try {
    bench_dit_kernels(rng);
    bench_video_ops(rng);
    if (conv) bench_conv3d(rng);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
