// bench_dit: one forward of a full-size Wan2.2 I2V-A14B expert (dim 5120, 40 heads of 128,
// 40 blocks, FFN 13824, in 36 = 16 latent + 20 conditioning channels, out 16, text 512 rows)
// on the CUDA backend, at 720p (latent 21×90×160: 75,600 tokens) and 480p (21×60×104: 32,760
// tokens).
//
// What it reports, per size: the forward's wall time (warm-up runs, then N timed runs; the
// prepare / blocks / head split), FLOPs (spec §1.5's formulas, cross-checked by the profiler's
// count) and TFLOP/s against the 989 TFLOP/s bf16 dense peak of an H100 SXM and against
// measured ceilings given by flag; a ProfilingOps breakdown (GEMMs, attention, the rest) from
// one more run that syncs after every op; peak device memory; and, once, the weight upload
// rate. A summary table closes the output.
//
// --quantize int8|fp8 loads the blocks' linear weights quantized (DitLoadOptions, what
// `wanrt generate --quantize` does): the upload line then shows the weights' device memory, and
// each size says which quantized GEMM routes linear() took.
//
// --prequantized (with --quantize) quantizes the weights on the host before the load, as a
// checkpoint written by `wanrt quantize` holds them: the upload line then measures loading a
// quantized checkpoint (codes and scales moved as they are) against quantizing at load.
//
// --magcache E012K2R20,E012K2R10,E024K2R10 (names: E<threshold × 100>K<K>R<retention × 100>)
// adds, per size, the cost of a call MagCache skips (DitRunner's skip path: prepare_for_head,
// x0 + cached residual, head) and, per setting, the skip schedule of a 40-step, shift-5 I2V
// video from the real MagCachePolicy, the ratio table shipped in data/magcache and the split
// step of the real UniPC timesteps; the per-video DiT time is then
//   full forwards × the measured forward + skipped calls × the measured skipped call.
//
// Weights are RANDOM: a forward's speed does not depend on their values. To save host time
// one block's weights are generated once and uploaded for every block (each block still gets
// its own device copy, so memory and bandwidth are those of the real model).
//
// --graph on|off|both (default both): the transformer blocks as a captured CUDA graph
// (DitGraphs, model/dit_graph.h, what `wanrt generate` runs on CUDA), eagerly, or both one after
// the other at each size. With the graph the first warm-up call of a size runs eagerly and the
// second captures (its time, record + instantiate + upload, is printed); so graph mode runs at
// least 2 warm-ups and the timed runs are replays. On the CPU backend (no graphs) "on" runs
// eagerly and says so.
//
// --park (after the last size): --offload_model's expert switch, measured: park the expert in
// page-locked host memory from its checkpoint tensors, drop its device copy, bring it back with
// unparked() and run a forward at once; prints the park and copy GB/s and what the switch adds to
// that step.
//
// Timing: WanModel's phases are host functions that queue GPU work, and the forward ends in a
// download, so each phase is timed on the host clock between two device synchronisations.
// (CUDA events on the default stream would not bracket the backend's own stream.)
//
//   bench_dit [--size 480p|720p|all] [--graph on|off|both] [--warmup N] [--repeats N] [--blocks N] [--tf32]
//             [--quantize int8|fp8 [--prequantized]] [--magcache LIST] [--no-profile] [--peak-tflops X] [--gemm-ceiling X] [--attention-ceiling X]
//             [--park] [--seed N] [--cpu --tiny]
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "backends/profiling_ops.h"
#include "bench_common.h"
#include "core/quantize.h"
#include "io/random_weights.h"
#include "io/tensor_store.h"
#include "model/dit.h"
#include "model/dit_config.h"
#include "model/dit_graph.h"
#include "schedulers/flow_schedule.h"
#include "schedulers/magcache.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_graph.h"
#include "backends/cuda/cuda_linear.h"
#include "backends/cuda/cuda_ops_impl.h"
#endif

namespace wanrt::bench {
namespace {

constexpr const char* kUsage = R"(bench_dit: one forward of a Wan2.2 I2V-A14B expert (random weights).

  --size S              480p, 720p or all (default all: 480p then 720p)
  --graph G             on, off or both (default both): the blocks as a captured CUDA graph
                        (what `wanrt generate` runs), eagerly, or both in turn at each size
  --warmup N            untimed forwards first (default 1; at least 2 with the graph: the
                        first call of a size runs eagerly, the second captures)
  --repeats N           timed forwards (default 3)
  --blocks N            transformer blocks (default 40; fewer for a quick look: the numbers are
                        then those of a smaller model, not scaled)
  --no-profile          skip the extra profiled forward (per-op breakdown)
  --tf32                CudaOptions::tf32 (TF32 for the float32 GEMMs: time MLP, head)
  --quantize Q          none (default), int8 or fp8: weight-only quantization of the blocks'
                        linear layers at load, as `wanrt generate --quantize`
  --prequantized        with --quantize: quantize on the host before the load, as a quantized
                        checkpoint holds the weights (measures its load against quantizing at load)
  --magcache LIST       comma-separated MagCache settings, e.g. E012K2R20,E012K2R10,E024K2R10
                        (E: threshold x 100, K, R: retention x 100): measure a skipped call and
                        give each setting's per-video DiT time (40 steps, shift 5)
  --peak-tflops X       the hardware peak for "% of peak" (default 989: H100 SXM dense bf16)
  --gemm-ceiling X      a measured GEMM ceiling in TFLOP/s (e.g. cuBLAS at these shapes)
  --attention-ceiling X a measured attention ceiling in TFLOP/s (e.g. cuDNN SDPA, L=75600)
  --park                after the last size: --offload_model's expert switch (park the expert
                        in page-locked host memory, bring it back under a forward), measured
  --seed N              seed of the random weights and inputs (default 0)
  --cpu --tiny          the CPU reference backend at a tiny size: tests this program, no GPU
  --tiny                a tiny model and latent (also on the GPU: a quick smoke test)
)";

struct BenchSize {
  std::string name;
  int64_t frames, height, width;  // the latent grid (before the 1×2×2 patch)
};

const BenchSize kSizes[] = {
    {"480p", 21, 60, 104},  // 832×480, 81 frames: 21×30×52 = 32,760 tokens
    {"720p", 21, 90, 160},  // 1280×720, 81 frames: 21×45×80 = 75,600 tokens
};
const BenchSize kTinySize = {"tiny", 3, 8, 12};  // 3×4×6 = 72 tokens

DitConfig tiny_config() {
  DitConfig config = DitConfig::i2v_a14b();
  config.dim = 256;
  config.ffn_dim = 512;
  config.num_heads = 2;  // head width 128, as in the real model
  config.num_layers = 2;
  return config;
}

// FLOPs of one forward as WanModel computes it (the time MLP once, not per token), spec §1.5.
struct DitFlops {
  double gemm = 0, attention = 0;
  double total() const { return gemm + attention; }
};
DitFlops forward_flops(const DitConfig& c, int64_t tokens) {
  const auto L = static_cast<double>(tokens), D = static_cast<double>(c.dim);
  const auto T = static_cast<double>(c.text_len), F = static_cast<double>(c.ffn_dim);
  const double patch = static_cast<double>(c.in_dim * c.patch_size[0] * c.patch_size[1] * c.patch_size[2]);
  const double out = static_cast<double>(c.out_dim * c.patch_size[0] * c.patch_size[1] * c.patch_size[2]);
  const auto blocks = static_cast<double>(c.num_layers);
  DitFlops f;
  f.gemm = 2 * L * patch * D                                             // patch embedding
           + 2 * (static_cast<double>(c.freq_dim) * D + D * D + D * 6 * D)  // time MLPs, one row
           + 2 * T * (static_cast<double>(c.text_dim) * D + D * D)          // text embedding
           + blocks * (8 * L * D * D + 4 * L * D * D + 4 * T * D * D + 4 * L * D * F)
           + 2 * L * D * out;                                            // head
  f.attention = blocks * (4 * L * L * D + 4 * L * T * D);  // self + cross, all heads
  return f;
}

// The expert's weights on the host: every non-block tensor, and block 0's tensors standing in
// for every block (blocks.i.* are views of blocks.0.*'s host memory).
struct HostWeights {
  TensorStore store;
  double generated_bytes = 0;  // what was generated (the rest are views)
  double upload_bytes = 0;     // what the model uploads: every tensor of every block
  double seconds = 0;
};
HostWeights shared_block_weights(const DitConfig& config, uint64_t seed, Quantization prequantize) {
  const auto start = Clock::now();
  HostWeights weights;
  TensorStore block0;
  const std::string prefix0 = "blocks.0.";
  for (const auto& [name, shape] : config.expected_tensors()) {
    const size_t dot = name.find('.', 7);
    const bool in_block = name.starts_with("blocks.");
    if (in_block && !name.starts_with(prefix0)) continue;  // filled below from block 0
    Tensor tensor = random_weight(name, shape, DType::BF16, weight_seed(seed, name));
    weights.generated_bytes += static_cast<double>(tensor.nbytes());
    if (prequantize != Quantization::None && dit_weight_is_quantized(name))
      tensor = quantize_rows(tensor, quantization_dtype(prequantize), name);
    if (in_block) block0.add(name.substr(dot + 1), tensor, "random (block 0)");
    else weights.store.add(name, tensor, "random");
  }
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const std::string& name : block0.names())
      weights.store.add(str_cat("blocks.", i, ".", name), block0.get(name), "random (block 0)");
  for (const std::string& name : weights.store.names())
    weights.upload_bytes += static_cast<double>(weights.store.get(name).nbytes());
  weights.seconds = seconds_since(start);
  return weights;
}

struct ForwardTimes {
  double prepare = 0, blocks = 0, head = 0;
  double total() const { return prepare + blocks + head; }
};

ForwardTimes timed_forward(const WanModel& model, Ops& ops, const std::function<void()>& sync,
                           const DitInputs& inputs, Tensor* output, DitGraphs* graphs) {
  ForwardTimes t;
  sync();
  auto start = Clock::now();
  const DitConditioning cond = model.prepare(ops, inputs);
  sync();
  t.prepare = seconds_since(start);
  start = Clock::now();
  const Tensor x = graphs ? graphs->run_blocks(model, cond) : model.run_blocks(ops, cond);
  sync();
  t.blocks = seconds_since(start);
  start = Clock::now();
  Tensor out = model.head(ops, x, cond);  // ends in a download: synchronous
  t.head = seconds_since(start);
  if (output) *output = std::move(out);
  return t;
}

// --park: --offload_model's expert switch at this size, measured. The expert is parked in
// page-locked host memory from its checkpoint tensors (WanModel::load with DitLoadOptions::park:
// host conversion + locking, what the pipeline's background thread does), the device copy is
// dropped, and the parked expert is brought back with unparked() and run at once, as the
// pipeline does when it switches experts. Reported: the forward right after unparked() (eager,
// as the first call of a new expert is; its blocks wait for their weights one by one) against a
// resident eager forward measured just before; the copies alone (unparked() and a wait) for
// their GB/s; and a forward on weights that had fully arrived, so that the first-use cost of new
// weight addresses is told apart from the copies. The resident model is gone afterwards.
void measure_parking(std::unique_ptr<const WanModel>& resident, const DitConfig& config,
                     const TensorStore& checkpoint, Quantization quantization, Ops& ops,
                     const Backend& backend, const DitInputs& inputs) {
  WeightParking* parking = ops.weight_parking();
  if (!parking) {
    std::cout << "  --park: this backend has no weight parking (the CPU's weights are host memory)" << std::endl;
    return;
  }
  auto timed = [&](const std::function<void()>& work) {
    backend.sync();
    const auto start = Clock::now();
    work();
    backend.sync();
    return seconds_since(start);
  };
  Tensor output;
  const double resident_forward = timed([&] { output = resident->forward(ops, inputs); });
  std::unique_ptr<const WanModel> parked;
  const double park_seconds = timed([&] {
    parked = std::make_unique<const WanModel>(
        WanModel::load(config, checkpoint, ops, {.quantize = quantization, .park = parking}));
  });
  double bytes = 0;
#ifdef WANRT_HAVE_CUDA
  if (const auto* cuda_parking = dynamic_cast<const CudaWeightParking*>(parking))
    bytes = static_cast<double>(cuda_parking->stats().parked_bytes.load());
#endif
  resident.reset();  // the device copy goes, as the pipeline frees the expert it switches from
  double queue_seconds = 0;
  const double switch_forward = timed([&] {
    const auto start = Clock::now();
    const WanModel back = parked->unparked(*parking);
    queue_seconds = seconds_since(start);
    output = back.forward(ops, inputs);
  });
  double arrived_forward = 0;
  const double copy_seconds = timed([&] {
    const WanModel back = parked->unparked(*parking);
    const uint64_t last = parking->arrival();  // an empty group after the model's last block
    parking->await(last);
    (void)ops.download(ops.zeros({1}));
    // Untimed by this lambda's clock: a forward on weights that have all arrived.
    arrived_forward = timed([&] { output = back.forward(ops, inputs); });
  }) - arrived_forward;
  std::cout << "  --park (the --offload_model expert switch):\n"
            << fmt("    park from the checkpoint: %.2f GB converted and locked in host memory in %.2f s "
                   "(%.2f GB/s; the pipeline does this on a background thread)\n",
                   bytes / kGB, park_seconds, bytes / kGB / park_seconds)
            << fmt("    bring back alone (copy engine, page-locked -> device): %.3f s = %.2f GB/s\n",
                   copy_seconds, bytes / kGB / copy_seconds)
            << fmt("    resident eager forward %.3f s; forward right after unparked() %.3f s (copies "
                   "queued in %.1f ms of host time): the switch costs the step %+.3f s; a forward on "
                   "weights that had all arrived %.3f s\n",
                   resident_forward, switch_forward, queue_seconds * 1e3, switch_forward - resident_forward,
                   arrived_forward)
            << "    " << finite_check(output) << std::endl;
}

Tensor random_input(Shape shape, uint64_t seed, float scale) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  FastNormal normal(seed);
  for (float& v : t.floats()) v = scale * normal.next();
  return t;
}

// ---- MagCache ----

struct MagCacheSetting {
  std::string name;  // "E012K2R20"
  MagCacheSettings settings;
};

// "E012K2R20" -> threshold 0.12, K 2, retention 0.20 (the seed's naming).
MagCacheSetting parse_magcache_setting(const std::string& name) {
  unsigned threshold = 0, k = 0, retention = 0;
  char tail = 0;
  WANRT_CHECK(std::sscanf(name.c_str(), "E%3uK%uR%u%c", &threshold, &k, &retention, &tail) == 3 &&
                  retention <= 100,
              "--magcache ", name, ": expected E<threshold x 100>K<K>R<retention x 100>, e.g. E012K2R20");
  return {name, {.threshold = threshold / 100.0, .max_skipped_calls = static_cast<int>(k),
                 .retention_ratio = retention / 100.0}};
}

std::vector<MagCacheSetting> parse_magcache_list(const std::string& list) {
  std::vector<MagCacheSetting> settings;
  size_t begin = 0;
  while (begin <= list.size()) {
    const size_t comma = std::min(list.find(',', begin), list.size());
    if (comma > begin) settings.push_back(parse_magcache_setting(list.substr(begin, comma - begin)));
    begin = comma + 1;
  }
  return settings;
}

// How many of a 40-step, shift-5 I2V video's 80 calls MagCache computes in full, from the
// policy the pipeline uses (i2v_pipeline.cpp): the I2V-A14B table, the split at the real
// UniPC timesteps' expert switch (boundary 0.9).
int full_forwards_per_video(const MagCacheSettings& settings, int steps) {
  const int split_call = 2 * high_noise_step_count(unipc_schedule(steps, 5.0).timesteps, 0.9);
  MagCachePolicy policy(load_default_mag_ratios(MagRatioTable::I2V_A14B), steps, split_call,
                        MagCacheMode::I2V, settings);
  int full = 0;
  for (int call = 0; call < 2 * steps; ++call) full += policy.decide() ? 0 : 1;
  return full;
}

// One call MagCache skips, as DitRunner::call runs it: prepare_for_head (patch and time
// embeddings), a copy of the cached residual plus x0, the head (ending in the download).
double timed_skipped_call(const WanModel& model, Ops& ops, const std::function<void()>& sync,
                          const DitInputs& inputs, const Tensor& cached_residual) {
  sync();
  const auto start = Clock::now();
  const DitConditioning cond = model.prepare_for_head(ops, inputs);
  Tensor x = ops.rows(cached_residual, 0, cached_residual.size(0));
  ops.add_gated_(x, cond.x0, nullptr);
  const Tensor out = model.head(ops, x, cond);
  return seconds_since(start);
}

struct SizeResult {
  std::string name;
  std::string mode;  // "eager" or "graph"
  double capture_seconds = 0;
  int64_t tokens = 0;
  Summary forward;
  double per_block = 0;
  DitFlops flops;
  double gemm_tflops = 0, attention_tflops = 0;  // from the profiled run; 0 without one
  double peak_bytes = 0;
  bool memory_measured = false;
  Summary skipped_call;  // --magcache: a call MagCache skips
  double residual_bytes = 0;  // one cached residual [S, D] float32
};

int run(int argc, char** argv) {
  Args args(argc, argv);
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  const bool cpu = args.flag("--cpu");
  const bool tiny = args.flag("--tiny");
  const std::string size_flag = args.value("--size").value_or("all");
  const int64_t warmup = args.integer("--warmup", 1, 0);
  const int64_t repeats = args.integer("--repeats", 3, 1);
  const int64_t blocks_flag = args.integer("--blocks", 0, 1);
  const bool profile = !args.flag("--no-profile");
  const bool tf32 = args.flag("--tf32");
  const std::string quantize_flag = args.value("--quantize").value_or("none");
  const bool prequantized = args.flag("--prequantized");
  const std::vector<MagCacheSetting> magcache = parse_magcache_list(args.value("--magcache").value_or(""));
  const double peak = args.number("--peak-tflops", kH100DenseBf16Tflops, 0);
  const double gemm_ceiling = args.number("--gemm-ceiling", 0, 0);
  const double attention_ceiling = args.number("--attention-ceiling", 0, 0);
  const auto seed = static_cast<uint64_t>(args.integer("--seed", 0, 0));
  const std::string graph_flag = args.value("--graph").value_or("both");
  const bool park = args.flag("--park");
  args.finish();
  WANRT_CHECK(graph_flag == "on" || graph_flag == "off" || graph_flag == "both", "--graph ",
              graph_flag, ": choose on, off or both");
  std::vector<bool> graph_modes;  // per size, in this order
  if (graph_flag != "on") graph_modes.push_back(false);
  if (graph_flag != "off") graph_modes.push_back(true);
  WANRT_CHECK(!cpu || tiny, "--cpu runs only with --tiny (a full-size forward on the CPU "
              "reference backend would take hours); it exists to test this program");
  require_cuda_build(cpu);
  const std::optional<Quantization> quantization = quantization_from_name(quantize_flag);
  WANRT_CHECK(quantization.has_value(), "--quantize ", quantize_flag, ": choose none, int8 or fp8");
  WANRT_CHECK(!prequantized || *quantization != Quantization::None,
              "--prequantized needs --quantize int8 or fp8 (the scheme to store the weights in)");

  std::vector<BenchSize> sizes;
  if (tiny) {
    sizes.push_back(kTinySize);
  } else {
    for (const BenchSize& size : kSizes)
      if (size_flag == "all" || size_flag == size.name) sizes.push_back(size);
    WANRT_CHECK(!sizes.empty(), "--size ", size_flag, ": unknown size; choose 480p, 720p or all");
  }
  DitConfig config = tiny ? tiny_config() : DitConfig::i2v_a14b();
  if (blocks_flag > 0) config.num_layers = blocks_flag;

  Backend backend = cpu ? make_cpu_backend() : Backend{};
#ifdef WANRT_HAVE_CUDA
  if (!cpu) {
    CudaOptions options;
    options.tf32 = tf32;
    backend = make_cuda_backend(options);
  }
#endif
  Ops& ops = *backend.ops;
  MemoryMeter meter(backend);

  std::cout << "bench_dit: Wan2.2 I2V-A14B expert, one forward per call\n"
            << "  model    dim " << config.dim << ", " << config.num_heads << " heads of "
            << config.head_dim() << ", " << config.num_layers << " blocks, FFN " << config.ffn_dim
            << ", in " << config.in_dim << " (16 latent + " << config.in_dim - config.out_dim
            << " conditioning), out " << config.out_dim << ", text " << config.text_len
            << " rows of " << config.text_dim << ", freq " << config.freq_dim << ", "
            << config.parameter_count() << " parameters\n";
  if (tiny) std::cout << "  TINY model and latent: this run tests the program, its numbers mean nothing\n";
  if (!tiny && config.num_layers != 40)
    std::cout << "  NOTE: " << config.num_layers << " blocks instead of 40 (--blocks): times are "
              << "those of this smaller model, not scaled to 40\n";
  std::cout << "  backend  " << backend.description << (tf32 ? ", TF32 on" : "") << "\n"
            << "  linears  "
            << (*quantization == Quantization::None
                    ? std::string("bf16 weights")
                    : str_cat(quantization_name(*quantization), " weight-only quantization of the blocks' "
                              "linear layers (per output channel, computed at load)"))
            << "\n"
            << "  runs     " << warmup << " warm-up, " << repeats << " timed"
            << (profile ? ", 1 profiled (synced after every op)" : "") << " per size\n"
            << "  weights  RANDOM (speed does not depend on the values): one block's weights are "
               "generated on the host once and uploaded for each of the "
            << config.num_layers << " blocks (every block has its own device copy)\n"
            << std::flush;

  HostWeights host = shared_block_weights(config, seed, prequantized ? *quantization : Quantization::None);
  std::cout << fmt("host weights: generated %.2f GB in %.1f s", host.generated_bytes / kGB, host.seconds)
            << std::endl;
  const double in_use_before_load = meter.in_use();
  auto start = Clock::now();
  // Owned through a pointer so that --park can drop the device copy at the end.
  auto resident = std::make_unique<const WanModel>(WanModel::load(config, host.store, ops, {.quantize = *quantization}));
  const WanModel& model = *resident;
  backend.sync();
  const double load_seconds = seconds_since(start);
  std::cout << fmt("weight upload: %.2f GB of %s host tensors in %.2f s = %.2f GB/s (pageable "
                   "host memory; WanModel::load with its shape checks%s)",
                   host.upload_bytes / kGB, prequantized ? "pre-quantized" : "bf16", load_seconds,
                   host.upload_bytes / kGB / load_seconds,
                   *quantization == Quantization::None
                       ? ""
                       : (prequantized ? ", codes and scales moved as a quantized checkpoint's"
                                       : ", quantized on the device"));
  if (backend.cuda)
    std::cout << fmt("; device memory +%.2f GB", (meter.in_use() - in_use_before_load) / kGB);
  std::cout << std::endl;
  if (!park) host = HostWeights{};  // the device copies are all the forwards need (--park parks from these)

  std::vector<SizeResult> results;
  for (const BenchSize& size : sizes) {
    SizeResult base;
    base.name = size.name;
    const int64_t ph = config.patch_size[1], pw = config.patch_size[2];
    base.tokens = size.frames * (size.height / ph) * (size.width / pw);
    base.flops = forward_flops(config, base.tokens);
    const Tensor x = random_input({config.out_dim, size.frames, size.height, size.width}, seed + 11, 1.0f);
    const Tensor y = random_input({config.in_dim - config.out_dim, size.frames, size.height, size.width},
                                  seed + 12, 1.0f);
    const Tensor context = random_input({config.text_len, config.text_dim}, seed + 13, 0.1f);
    DitInputs inputs;
    inputs.x = &x;
    inputs.y = &y;
    inputs.context = &context;
    inputs.timestep = 999;  // the first step's timestep; the speed does not depend on it
    std::cout << "\n[" << size.name << "] latent " << config.out_dim << "x" << size.frames << "x"
              << size.height << "x" << size.width << " + conditioning "
              << config.in_dim - config.out_dim << "x" << size.frames << "x" << size.height << "x"
              << size.width << " -> " << base.tokens << " tokens; context " << config.text_len
              << "x" << config.text_dim
              << fmt("; %.1f TFLOP per forward (GEMM %.1f, attention %.1f)", base.flops.total() * 1e-12,
                     base.flops.gemm * 1e-12, base.flops.attention * 1e-12)
              << std::endl;

    for (const bool graphed : graph_modes) {
      if (graphed && !ops.graph_capture() && graph_modes.size() > 1) continue;  // eager already
      SizeResult result = base;
      result.mode = graphed ? "graph" : "eager";
      // A graph per size and mode: its first call runs eagerly, the second captures.
      std::unique_ptr<DitGraphs> graphs;
      if (graphed && ops.graph_capture()) graphs = std::make_unique<DitGraphs>(ops, *ops.graph_capture());
      if (graphed && !graphs) result.mode = "eager (no graphs on this backend)";
      const int64_t warmups = graphs ? std::max<int64_t>(warmup, 2) : warmup;
      std::cout << "  -- blocks " << result.mode << (graphs ? ", captured once, then replayed" : "")
                << " --" << std::endl;
      meter.start();  // from the first forward at this size: its allocations set the peak
#ifdef WANRT_HAVE_CUDA
      const LinearPathCounts paths_before = linear_path_counts();
#endif
      Tensor output;
      for (int64_t i = 0; i < warmups; ++i) {
        const int captures_before = graphs ? graphs->stats().captures : 0;
        const ForwardTimes t = timed_forward(model, ops, backend.sync, inputs, &output, graphs.get());
        std::cout << fmt("  warm-up %lld/%lld: %.3f s", static_cast<long long>(i + 1),
                         static_cast<long long>(warmups), t.total());
        if (graphs && graphs->stats().captures > captures_before) {
          result.capture_seconds = graphs->stats().capture_seconds;
          std::cout << fmt(" (captured the blocks' graph in %.3f s, then replayed it: blocks %.3f s)",
                           result.capture_seconds, t.blocks);
        } else if (graphs && i == 0) {
          std::cout << " (first call of this size: eager)";
        }
        std::cout << std::endl;
      }
      if (graphs && !graphs->stats().failure.empty())
        std::cout << "  GRAPH CAPTURE FAILED, the blocks ran eagerly: " << graphs->stats().failure << std::endl;
      std::vector<double> totals;
      double blocks_seconds = 0;
      for (int64_t i = 0; i < repeats; ++i) {
        const ForwardTimes t = timed_forward(model, ops, backend.sync, inputs, &output, graphs.get());
        totals.push_back(t.total());
        blocks_seconds += t.blocks;
        std::cout << fmt("  run %lld/%lld: %.3f s (prepare %.3f s, %lld blocks %.3f s = %.4f s/block, "
                         "head %.3f s)",
                         static_cast<long long>(i + 1), static_cast<long long>(repeats), t.total(),
                         t.prepare, static_cast<long long>(config.num_layers), t.blocks,
                         t.blocks / static_cast<double>(config.num_layers), t.head)
                  << std::endl;
      }
      const MemoryPeak memory = meter.stop();
#ifdef WANRT_HAVE_CUDA
      if (backend.cuda && *quantization != Quantization::None) {
        const LinearPathCounts p = linear_path_counts();
        std::cout << fmt("  quantized linear routes over these forwards: int8 alpha-vector %lld, int8 "
                         "folded-scale %lld, fp8 outer-vector %lld, fp8 unit-scale + kernel %lld, fp8 "
                         "simple kernel %lld",
                         static_cast<long long>(p.int8_alpha_vector - paths_before.int8_alpha_vector),
                         static_cast<long long>(p.int8_folded_scale - paths_before.int8_folded_scale),
                         static_cast<long long>(p.fp8_outer_vector - paths_before.fp8_outer_vector),
                         static_cast<long long>(p.fp8_unit_scale - paths_before.fp8_unit_scale),
                         static_cast<long long>(p.fp8_simple - paths_before.fp8_simple))
                  << std::endl;
      }
#endif
      result.forward = summarize(totals);
      result.per_block = blocks_seconds / static_cast<double>(repeats) / static_cast<double>(config.num_layers);
      result.memory_measured = memory.measured;
      result.peak_bytes = memory.peak();
      std::cout << "  " << finite_check(output) << "\n"
                << fmt("  forward: mean %.3f s, min %.3f s, max %.3f s over %zu runs; %.1f TFLOP/s "
                       "(%.1f %% of %.0f)",
                       result.forward.mean, result.forward.min, result.forward.max, result.forward.count,
                       result.flops.total() / result.forward.mean * 1e-12,
                       peak > 0 ? 100.0 * result.flops.total() / result.forward.mean * 1e-12 / peak : 0.0, peak)
                << "\n  peak device memory: " << memory.describe();
#ifdef WANRT_HAVE_CUDA
      if (graphs && backend.cuda) {
        const cuda::GraphMemory graph_memory = cuda::graph_memory(0);
        std::cout << fmt("; graph memory pool: %.2f GB reserved (high-water %.2f GB)",
                         static_cast<double>(graph_memory.reserved) / kGB,
                         static_cast<double>(graph_memory.reserved_high) / kGB);
      }
#endif
      std::cout << std::endl;
      graphs.reset();  // frees the graph and its memory before the next mode or size

      if (!magcache.empty() && graphed == graph_modes.front()) {  // once per size
        // The cached residual: a float32 [S, D] tensor, as DitRunner keeps (run_blocks' float32
        // stream minus x0); its values do not change the speed.
        const DitConditioning cond = model.prepare_for_head(ops, inputs);
        const Tensor residual = ops.zeros({cond.x0.size(0), cond.x0.size(1)});
        result.residual_bytes = static_cast<double>(residual.nbytes());
        std::vector<double> skipped;
        for (int i = 0; i < 6; ++i) {
          const double t = timed_skipped_call(model, ops, backend.sync, inputs, residual);
          if (i > 0) skipped.push_back(t);  // the first one warms up
        }
        result.skipped_call = summarize(skipped);
        std::cout << fmt("  MagCache skipped call (prepare_for_head + x0 + residual + head): mean %.4f s, "
                         "min %.4f s over %zu runs (a full call's prepare alone: see the runs above)",
                         result.skipped_call.mean, result.skipped_call.min, result.skipped_call.count)
                  << std::endl;
      }

      if (profile && graphed == graph_modes.front()) {  // eager ops, once per size
        ProfilingOps profiled(ops, backend.sync);
        profiled.set_enabled(true);
        backend.sync();
        start = Clock::now();
        output = model.forward(profiled, inputs);
        const double wall = seconds_since(start);
        BreakdownOptions breakdown;
        breakdown.title = fmt("  profiled forward: %.3f s (a sync after every op, so slower than the "
                              "timed runs)", wall);
        breakdown.peak_tflops = peak;
        breakdown.ceiling_tflops[static_cast<size_t>(OpCategory::Gemm)] = gemm_ceiling;
        breakdown.ceiling_tflops[static_cast<size_t>(OpCategory::Attention)] = attention_ceiling;
        breakdown.wall_seconds = wall;
        profiled.print_breakdown(std::cout, breakdown);
        const OpStats gemm = profiled.category(OpCategory::Gemm);
        const OpStats attention = profiled.category(OpCategory::Attention);
        result.gemm_tflops = gemm.tflops_per_second();
        result.attention_tflops = attention.tflops_per_second();
        const double rest = wall - gemm.seconds - attention.seconds;
        std::cout << fmt("  GEMMs %.3f s (%.1f TFLOP/s), attention %.3f s (%.1f TFLOP/s), the rest "
                         "%.3f s (%.1f %%)",
                         gemm.seconds, result.gemm_tflops, attention.seconds, result.attention_tflops,
                         rest, 100.0 * rest / wall)
                  << "\n"
                  << fmt("  FLOP check: the profiler counted %.4g GEMM + %.4g attention FLOP; the "
                         "formula gives %.4g + %.4g",
                         gemm.flops, attention.flops, result.flops.gemm, result.flops.attention)
                  << std::endl;
      }
      results.push_back(result);
    }
    if (park && &size == &sizes.back())
      measure_parking(resident, config, host.store, *quantization, ops, backend, inputs);
  }

  std::cout << "\nSummary (bench_dit, " << backend.description << ", " << config.num_layers
            << " blocks, random weights, "
            << (*quantization == Quantization::None ? std::string("bf16")
                                                     : std::string(quantization_name(*quantization)))
            << " linears";
  if (gemm_ceiling > 0 || attention_ceiling > 0)
    std::cout << fmt("; ceilings: GEMM %.0f, attention %.0f TFLOP/s", gemm_ceiling, attention_ceiling);
  std::cout << ")\n"
            << "| size | blocks | tokens | forward s (mean) | min s | s/block | TFLOP | TFLOP/s | % of peak "
               "| GEMM TFLOP/s | attention TFLOP/s | peak memory GB | capture s |\n"
            << "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const SizeResult& r : results) {
    const double achieved = r.flops.total() / r.forward.mean * 1e-12;
    std::cout << fmt("| %s | %s | %lld | %.3f | %.3f | %.4f | %.1f | %.1f | %.1f %% | ", r.name.c_str(),
                     r.mode.c_str(), static_cast<long long>(r.tokens), r.forward.mean, r.forward.min, r.per_block,
                     r.flops.total() * 1e-12, achieved, peak > 0 ? 100.0 * achieved / peak : 0.0)
              << (r.gemm_tflops > 0 ? fmt("%.1f", r.gemm_tflops) : std::string("-")) << " | "
              << (r.attention_tflops > 0 ? fmt("%.1f", r.attention_tflops) : std::string("-")) << " | "
              << (r.memory_measured ? fmt("%.2f", r.peak_bytes / kGB) : std::string("n/a")) << " | "
              << (r.capture_seconds > 0 ? fmt("%.3f", r.capture_seconds) : std::string("-")) << " |\n";
  }
  std::cout << "(% of peak: of " << peak << " TFLOP/s; GEMM and attention rates from the profiled "
               "run; peak memory includes the weights and the CUDA context, not the graph memory pool; "
               "capture s: recording, instantiating and uploading the blocks' graph, once per size)"
            << std::endl;
  // Per 40-step video: 80 DiT calls (cond + uncond per step), every one a forward of this
  // expert (both experts cost the same). With MagCache, the skipped calls cost the measured
  // skipped call, and the two cached residuals (one per CFG branch) add to the peak.
  constexpr int kSteps = 40;
  std::cout << "\nPer 40-step video (80 DiT calls; COMPUTED from the measured forward and "
               "skipped call; MagCache peak = the measured forward peak + 2 cached residuals)\n"
            << "| size | recipe | full forwards | skipped | forward s | skipped call s | DiT s per video | peak memory GB |\n"
            << "|---|---|---|---|---|---|---|---|\n";
  const std::string linears =
      *quantization == Quantization::None ? std::string("bf16") : std::string(quantization_name(*quantization));
  for (const SizeResult& r : results) {
    const std::string peak_text = r.memory_measured ? fmt("%.2f", r.peak_bytes / kGB) : std::string("n/a");
    if (r.skipped_call.count == 0 && !magcache.empty()) continue;  // the graph rows: see eager
    const std::string recipe = linears + (r.mode == "graph" ? " (graph)" : "");
    std::cout << fmt("| %s | %s | %d | 0 | %.3f | - | %.1f | %s |\n", r.name.c_str(), recipe.c_str(),
                     2 * kSteps, r.forward.mean, 2 * kSteps * r.forward.mean, peak_text.c_str());
    for (const MagCacheSetting& m : magcache) {
      const int full = full_forwards_per_video(m.settings, kSteps), skipped = 2 * kSteps - full;
      const std::string magcache_peak =
          r.memory_measured ? fmt("%.2f", (r.peak_bytes + 2 * r.residual_bytes) / kGB) : std::string("n/a");
      std::cout << fmt("| %s | %s + MagCache %s | %d | %d | %.3f | %.4f | %.1f | %s |\n", r.name.c_str(),
                       recipe.c_str(), m.name.c_str(), full, skipped, r.forward.mean, r.skipped_call.mean,
                       full * r.forward.mean + skipped * r.skipped_call.mean, magcache_peak.c_str());
    }
  }
  std::cout << std::flush;
  return 0;
}

}  // namespace
}  // namespace wanrt::bench

int main(int argc, char** argv) {
  return wanrt::bench::run_main("bench_dit", [&] { return wanrt::bench::run(argc, argv); });
}
