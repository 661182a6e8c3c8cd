// bench_t5: the umT5-XXL text encoder (vocab 256384, dim 4096, 64 heads, 24 blocks, gated FFN
// 10240; 5.7 B parameters) on the CUDA backend, encoding 512 tokens (the longest prompt the
// pipeline takes; it encodes the prompt and the negative prompt, so a video costs two calls).
//
// Reported: the encode's wall time (warm-up, then N timed runs; T5Encoder::encode ends in a
// download, so the host clock after a device sync is exact), FLOPs and TFLOP/s, peak device
// memory, the weight upload rate, and from one profiled run (a sync after every op) the
// ProfilingOps breakdown.
//
// Weights are RANDOM (speed does not depend on their values), named and shaped by
// T5CheckpointConfig::expected_tensors (what a real checkpoint is checked against). To save
// host time one block's weights are generated once and uploaded for each of the 24 blocks
// (every block still gets its own device copy).
//
//   bench_t5 [--tokens N] [--warmup N] [--repeats N] [--no-profile] [--peak-tflops X]
//            [--seed N] [--cpu --tiny]
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "backends/profiling_ops.h"
#include "bench_common.h"
#include "io/demo_checkpoint.h"
#include "io/random_weights.h"
#include "text/t5.h"

namespace wanrt::bench {
namespace {

constexpr const char* kUsage = R"(bench_t5: umT5-XXL encoder on 512 tokens (random weights).

  --tokens N            tokens to encode, EOS included (default 512, the pipeline's text_len)
  --warmup N            untimed encodes first (default 1)
  --repeats N           timed encodes (default 5)
  --no-profile          skip the extra profiled encode (per-op breakdown)
  --peak-tflops X       the hardware peak for "% of peak" (default 989: H100 SXM dense bf16)
  --seed N              seed of the random weights and token ids (default 0)
  --cpu --tiny          the CPU reference backend at a tiny size: tests this program, no GPU
  --tiny                a tiny encoder (also on the GPU: a quick smoke test)
)";

// Every non-block tensor, and block 0's tensors standing in for every block.
TensorStore shared_block_weights(const T5CheckpointConfig& config, uint64_t seed,
                                 double* generated_bytes, double* upload_bytes) {
  TensorStore store, block0;
  *generated_bytes = 0;
  for (const auto& [name, shape] : config.expected_tensors()) {
    const bool in_block = name.starts_with("blocks.");
    if (in_block && !name.starts_with("blocks.0.")) continue;
    Tensor tensor = random_weight(name, shape, DType::BF16, weight_seed(seed, name));
    *generated_bytes += static_cast<double>(tensor.nbytes());
    if (in_block) block0.add(name.substr(std::string("blocks.0.").size()), tensor, "random (block 0)");
    else store.add(name, tensor, "random");
  }
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const std::string& name : block0.names())
      store.add(str_cat("blocks.", i, ".", name), block0.get(name), "random (block 0)");
  *upload_bytes = 0;
  for (const std::string& name : store.names())
    *upload_bytes += static_cast<double>(store.get(name).nbytes());
  return store;
}

// GEMM and attention FLOPs of one encode of `tokens` tokens.
double encode_flops(const T5CheckpointConfig& c, int64_t tokens) {
  const auto L = static_cast<double>(tokens), D = static_cast<double>(c.dim);
  const auto A = static_cast<double>(c.dim_attn), F = static_cast<double>(c.dim_ffn);
  const double per_block = 2 * L * D * A * 4   // q, k, v, o
                           + 2 * L * D * F * 3  // gate, fc1, fc2
                           + 4 * L * L * A;     // QKᵀ and PV over all heads
  return per_block * static_cast<double>(c.num_layers);
}

int run(int argc, char** argv) {
  Args args(argc, argv);
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  const bool cpu = args.flag("--cpu");
  const bool tiny = args.flag("--tiny");
  const int64_t tokens = args.integer("--tokens", tiny ? 16 : 512, 1);
  const int64_t warmup = args.integer("--warmup", 1, 0);
  const int64_t repeats = args.integer("--repeats", 5, 1);
  const bool profile = !args.flag("--no-profile");
  const double peak = args.number("--peak-tflops", kH100DenseBf16Tflops, 0);
  const auto seed = static_cast<uint64_t>(args.integer("--seed", 0, 0));
  args.finish();
  WANRT_CHECK(!cpu || tiny, "--cpu runs only with --tiny (umT5-XXL on the CPU reference backend "
              "takes minutes and 23 GB of memory); it exists to test this program");
  require_cuda_build(cpu);

  const T5CheckpointConfig config = tiny ? demo_t5_config() : full_size_t5_config();
  Backend backend = cpu ? make_cpu_backend() : Backend{};
#ifdef WANRT_HAVE_CUDA
  if (!cpu) backend = make_cuda_backend(CudaOptions{});
#endif
  Ops& ops = *backend.ops;
  MemoryMeter meter(backend);
  const double flops = encode_flops(config, tokens);
  std::cout << "bench_t5: umT5 encoder, vocab " << config.vocab << ", dim " << config.dim << ", "
            << config.num_heads << " heads, " << config.num_layers << " blocks, FFN "
            << config.dim_ffn << "; " << tokens << " tokens per encode"
            << fmt(" (%.2f TFLOP)", flops * 1e-12) << "\n";
  if (tiny) std::cout << "  TINY encoder: this run tests the program, its numbers mean nothing\n";
  std::cout << "  backend  " << backend.description << "\n"
            << "  runs     " << warmup << " warm-up, " << repeats << " timed"
            << (profile ? ", 1 profiled (synced after every op)" : "") << "\n"
            << "  weights  RANDOM (speed does not depend on the values): one block's weights are "
               "generated on the host once and uploaded for each of the "
            << config.num_layers << " blocks (every block has its own device copy)" << std::endl;

  auto start = Clock::now();
  double generated_bytes = 0, upload_bytes = 0;
  TensorStore weights = shared_block_weights(config, seed, &generated_bytes, &upload_bytes);
  std::cout << fmt("host weights: generated %.2f GB in %.1f s", generated_bytes / kGB, seconds_since(start))
            << std::endl;
  const double in_use_before_load = meter.in_use();
  start = Clock::now();
  const T5Encoder encoder(weights, ops);
  backend.sync();
  const double load_seconds = seconds_since(start);
  std::cout << fmt("weight upload: %.2f GB of bf16 host tensors in %.2f s = %.2f GB/s (pageable "
                   "host memory)",
                   upload_bytes / kGB, load_seconds, upload_bytes / kGB / load_seconds);
  if (backend.cuda) std::cout << fmt("; device memory +%.2f GB", (meter.in_use() - in_use_before_load) / kGB);
  std::cout << std::endl;
  weights = TensorStore{};

  std::vector<int64_t> ids(static_cast<size_t>(tokens));
  uint64_t state = seed + 31;
  for (int64_t& id : ids) {  // real ids (not pad 0 / eos 1 / unk 2), then EOS last
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    id = 3 + static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(config.vocab - 3));
  }
  ids.back() = 1;

  auto once = [&](Ops& with, Tensor* out) {
    backend.sync();
    const auto t0 = Clock::now();
    Tensor result = encoder.encode(with, ids, tokens);
    const double seconds = seconds_since(t0);
    if (out) *out = std::move(result);
    return seconds;
  };
  meter.start();
  Tensor output;
  for (int64_t i = 0; i < warmup; ++i)
    std::cout << fmt("  warm-up %lld/%lld: %.4f s", static_cast<long long>(i + 1),
                     static_cast<long long>(warmup), once(ops, nullptr))
              << std::endl;
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) {
    times.push_back(once(ops, &output));
    std::cout << fmt("  run %lld/%lld: %.4f s", static_cast<long long>(i + 1),
                     static_cast<long long>(repeats), times.back())
              << std::endl;
  }
  const MemoryPeak memory = meter.stop();
  const Summary summary = summarize(times);
  std::cout << "  " << finite_check(output) << "\n"
            << fmt("  encode: mean %.4f s, min %.4f s over %zu runs; %.1f TFLOP/s", summary.mean,
                   summary.min, summary.count, flops / summary.mean * 1e-12)
            << "\n  peak device memory: " << memory.describe() << std::endl;
  double gemm_tflops = 0;
  if (profile) {
    ProfilingOps profiled(ops, backend.sync);
    profiled.set_enabled(true);
    const double wall = once(profiled, nullptr);
    BreakdownOptions breakdown;
    breakdown.title = fmt("  profiled encode: %.4f s (a sync after every op, so slower than the "
                          "timed runs)", wall);
    breakdown.peak_tflops = peak;
    breakdown.wall_seconds = wall;
    profiled.print_breakdown(std::cout, breakdown);
    gemm_tflops = profiled.category(OpCategory::Gemm).tflops_per_second();
  }

  std::cout << "\nSummary (bench_t5, " << backend.description << ", random weights)\n"
            << "| tokens | encode s (mean) | min s | TFLOP | TFLOP/s | GEMM TFLOP/s | peak memory GB |\n"
            << "|---|---|---|---|---|---|---|\n"
            << fmt("| %lld | %.4f | %.4f | %.2f | %.1f | ", static_cast<long long>(tokens), summary.mean,
                   summary.min, flops * 1e-12, flops / summary.mean * 1e-12)
            << (gemm_tflops > 0 ? fmt("%.1f", gemm_tflops) : std::string("-")) << " | "
            << (memory.measured ? fmt("%.2f", memory.peak() / kGB) : std::string("n/a")) << " |\n"
            << "(GEMM TFLOP/s from the profiled run; peak memory includes the weights and the CUDA "
               "context)"
            << std::endl;
  return 0;
}

}  // namespace
}  // namespace wanrt::bench

int main(int argc, char** argv) {
  return wanrt::bench::run_main("bench_t5", [&] { return wanrt::bench::run(argc, argv); });
}
