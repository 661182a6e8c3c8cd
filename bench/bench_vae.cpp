// bench_vae: the Wan2.1 VAE at full size (base width 96, random weights) on the CUDA backend,
// as the I2V pipeline uses it:
//   encode  the conditioning video at 720p: 1 image frame + 80 zero frames, [3, 81, 720, 1280]
//           -> latent [16, 21, 90, 160]
//   decode  a latent [16, 21, 90, 160] -> [3, 81, 720, 1280]
// once per conv dtype (CudaOptions::conv_dtype: fp16, the default, bf16 and fp32; --tf32 lets
// the fp32 convs use TF32 tensor cores, as PyTorch's cuDNN does by default for the reference VAE).
//
// Reported per (dtype, phase): wall time of WanVae::encode/decode (host calls that end in
// downloads, so the host clock after a device sync is exact), peak device memory, and from one
// profiled run (a sync after every op) the ProfilingOps breakdown with conv3d TFLOP/s. The
// weight upload rate is printed once per dtype. A summary table closes the output.
//
// Weights are RANDOM (speed does not depend on their values); they come from the same
// name/shape list a checkpoint is checked against (VaeCheckpointConfig::expected_tensors).
//
//   bench_vae [--phase encode|decode|both] [--conv-dtype fp16|bf16|fp32|all|LIST] [--tf32]
//             [--size 720p|480p] [--warmup N] [--repeats N] [--no-profile]
//             [--peak-tflops X] [--conv-ceiling X] [--seed N] [--cpu --tiny]
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "backends/profiling_ops.h"
#include "bench_common.h"
#include "io/demo_checkpoint.h"
#include "io/random_weights.h"
#include "model/vae.h"

namespace wanrt::bench {
namespace {

constexpr const char* kUsage = R"(bench_vae: Wan2.1 VAE encode and decode at full size (random weights).

  --phase P             encode, decode or both (default both)
  --conv-dtype D        fp16 (default, CudaOptions' default), bf16, fp32, all, or a
                        comma-separated list: CudaOptions::conv_dtype
  --tf32                TF32 tensor cores for the fp32 convolutions (CudaOptions::tf32)
  --size S              720p (default: 1280x720) or 480p (832x480); 81 frames
  --frames N            video frames, 4k+1 (default 81)
  --warmup N            untimed runs first (default 1)
  --repeats N           timed runs (default 1)
  --no-profile          skip the extra profiled run (per-op breakdown)
  --peak-tflops X       the hardware peak for "% of peak" (default 989: H100 SXM dense bf16)
  --conv-ceiling X      a measured conv3d ceiling in TFLOP/s (e.g. cuDNN at these shapes)
  --seed N              seed of the random weights and inputs (default 0)
  --cpu --tiny          the CPU reference backend at a tiny size: tests this program, no GPU
  --tiny                a tiny VAE and video (also on the GPU: a quick smoke test)
)";

struct Result {
  std::string dtype, phase, shapes;
  Summary seconds;
  double conv_tflops = 0;  // from the profiled run; 0 without one
  bool memory_measured = false;
  double peak_bytes = 0;
};

Tensor conditioning_video(int64_t frames, int64_t height, int64_t width, uint64_t seed) {
  // Frame 0 is the image (values in [−1, 1]); the other frames are zeros, as the pipeline
  // builds the I2V conditioning video.
  Tensor video = Tensor::zeros(DType::F32, {3, frames, height, width});
  FastNormal normal(seed);
  float* data = video.data<float>();
  const int64_t plane = height * width;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < plane; ++i)
      data[c * frames * plane + i] = std::clamp(0.5f * normal.next(), -1.0f, 1.0f);
  return video;
}

int run(int argc, char** argv) {
  Args args(argc, argv);
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  const bool cpu = args.flag("--cpu");
  const bool tiny = args.flag("--tiny");
  const std::string phase_flag = args.value("--phase").value_or("both");
  const std::string dtype_flag = args.value("--conv-dtype").value_or("fp16");
  const bool tf32 = args.flag("--tf32");
  const std::string size_flag = args.value("--size").value_or("720p");
  const int64_t frames = args.integer("--frames", tiny ? 5 : 81, 1);
  const int64_t warmup = args.integer("--warmup", 1, 0);
  const int64_t repeats = args.integer("--repeats", 1, 1);
  const bool profile = !args.flag("--no-profile");
  const double peak = args.number("--peak-tflops", kH100DenseBf16Tflops, 0);
  const double conv_ceiling = args.number("--conv-ceiling", 0, 0);
  const auto seed = static_cast<uint64_t>(args.integer("--seed", 0, 0));
  args.finish();
  WANRT_CHECK(!cpu || tiny, "--cpu runs only with --tiny (a full-size VAE on the CPU reference "
              "backend would take hours); it exists to test this program");
  require_cuda_build(cpu);
  WANRT_CHECK(phase_flag == "encode" || phase_flag == "decode" || phase_flag == "both",
              "--phase ", phase_flag, ": choose encode, decode or both");
  std::vector<std::string> dtypes;
  {
    const std::string list = dtype_flag == "all" ? "fp16,bf16,fp32" : dtype_flag;
    size_t begin = 0;
    while (begin <= list.size()) {
      const size_t end = std::min(list.find(',', begin), list.size());
      const std::string item = list.substr(begin, end - begin);
      WANRT_CHECK(item == "fp16" || item == "bf16" || item == "fp32", "--conv-dtype ", dtype_flag,
                  ": choose fp16, bf16, fp32, all, or a comma-separated list of them");
      dtypes.push_back(item);
      begin = end + 1;
    }
  }
  WANRT_CHECK((frames - 1) % 4 == 0, "--frames ", frames, ": must be 4k+1 (1, 5, ..., 81)");
  int64_t height = 720, width = 1280;
  if (tiny) {
    height = 16, width = 24;
  } else if (size_flag == "480p") {
    height = 480, width = 832;
  } else {
    WANRT_CHECK(size_flag == "720p", "--size ", size_flag, ": choose 720p or 480p");
  }
  if (cpu) dtypes = {"fp32"};  // the CPU reference computes in float32 only
  const bool do_encode = phase_flag != "decode", do_decode = phase_flag != "encode";

  const VaeCheckpointConfig vae_config = tiny ? demo_vae_config() : full_size_vae_config();
  const int64_t latent_frames = (frames - 1) / 4 + 1, latent_h = height / 8, latent_w = width / 8;
  std::cout << "bench_vae: Wan2.1 VAE, base width " << vae_config.dim << ", z " << vae_config.z_dim
            << "\n  encode   video 3x" << frames << "x" << height << "x" << width
            << " (frame 0 an image, the rest zeros, as the I2V conditioning) -> latent 16x"
            << latent_frames << "x" << latent_h << "x" << latent_w << "\n  decode   latent 16x"
            << latent_frames << "x" << latent_h << "x" << latent_w << " -> video 3x" << frames
            << "x" << height << "x" << width << "\n";
  if (tiny) std::cout << "  TINY VAE and video: this run tests the program, its numbers mean nothing\n";
  std::cout << "  runs     " << warmup << " warm-up, " << repeats << " timed"
            << (profile ? ", 1 profiled (synced after every op)" : "") << " per phase\n"
            << "  weights  RANDOM (speed does not depend on the values), float32 on the host "
               "as in Wan2.1_VAE.pth"
            << std::endl;

  auto start = Clock::now();
  const TensorStore weights = random_weight_store(vae_config.expected_tensors(), DType::F32, seed);
  double weight_bytes = 0;
  for (const std::string& name : weights.names()) weight_bytes += static_cast<double>(weights.get(name).nbytes());
  std::cout << fmt("host weights: generated %.3f GB in %.1f s", weight_bytes / kGB, seconds_since(start))
            << std::endl;
  const Tensor video = conditioning_video(frames, height, width, seed + 21);
  Tensor latent = Tensor::empty(DType::F32, {vae_config.z_dim, latent_frames, latent_h, latent_w});
  FastNormal normal(seed + 22);
  for (float& v : latent.floats()) v = normal.next();

  std::vector<Result> results;
  for (const std::string& dtype : dtypes) {
    Backend backend = cpu ? make_cpu_backend() : Backend{};
#ifdef WANRT_HAVE_CUDA
    if (!cpu) {
      CudaOptions options;
      options.tf32_convolutions = tf32;
      options.conv_dtype = dtype == "fp16" ? DType::F16 : dtype == "bf16" ? DType::BF16 : DType::F32;
      backend = make_cuda_backend(options);
    }
#endif
    Ops& ops = *backend.ops;
    MemoryMeter meter(backend);
    const std::string label = dtype + (dtype == "fp32" && tf32 ? " (TF32)" : "");
    std::cout << "\n[conv dtype " << label << "] backend " << backend.description << std::endl;
    start = Clock::now();
    WanVae vae = WanVae::load(ops, weights);
    backend.sync();
    const double load_seconds = seconds_since(start);
    std::cout << fmt("  weight upload: %.3f GB in %.3f s = %.2f GB/s", weight_bytes / kGB, load_seconds,
                     weight_bytes / kGB / load_seconds)
              << std::endl;

    for (const bool encode : {true, false}) {
      if ((encode && !do_encode) || (!encode && !do_decode)) continue;
      Result result;
      result.dtype = label;
      result.phase = encode ? "encode" : "decode";
      result.shapes = encode ? fmt("3x%lldx%lldx%lld -> 16x%lldx%lldx%lld", static_cast<long long>(frames),
                                   static_cast<long long>(height), static_cast<long long>(width),
                                   static_cast<long long>(latent_frames), static_cast<long long>(latent_h),
                                   static_cast<long long>(latent_w))
                             : fmt("16x%lldx%lldx%lld -> 3x%lldx%lldx%lld", static_cast<long long>(latent_frames),
                                   static_cast<long long>(latent_h), static_cast<long long>(latent_w),
                                   static_cast<long long>(frames), static_cast<long long>(height),
                                   static_cast<long long>(width));
      auto once = [&](Ops& with) {
        backend.sync();
        const auto t0 = Clock::now();
        Tensor out = encode ? vae.encode(with, video) : vae.decode(with, latent);
        backend.sync();
        return std::pair<double, Tensor>(seconds_since(t0), std::move(out));
      };
      meter.start();
      Tensor output;
      for (int64_t i = 0; i < warmup; ++i) {
        auto [seconds, out] = once(ops);
        std::cout << fmt("  %s warm-up %lld/%lld: %.3f s", result.phase.c_str(),
                         static_cast<long long>(i + 1), static_cast<long long>(warmup), seconds)
                  << std::endl;
      }
      std::vector<double> times;
      for (int64_t i = 0; i < repeats; ++i) {
        auto [seconds, out] = once(ops);
        times.push_back(seconds);
        output = std::move(out);
        std::cout << fmt("  %s run %lld/%lld: %.3f s", result.phase.c_str(),
                         static_cast<long long>(i + 1), static_cast<long long>(repeats), seconds)
                  << std::endl;
      }
      const MemoryPeak memory = meter.stop();
      result.seconds = summarize(times);
      result.memory_measured = memory.measured;
      result.peak_bytes = memory.peak();
      std::cout << "  " << finite_check(output) << "\n  peak device memory: " << memory.describe()
                << std::endl;
      if (profile) {
        ProfilingOps profiled(ops, backend.sync);
        profiled.set_enabled(true);
        const auto [wall, out] = once(profiled);
        BreakdownOptions breakdown;
        breakdown.title = fmt("  profiled %s: %.3f s (a sync after every op, so slower than the "
                              "timed runs)", result.phase.c_str(), wall);
        breakdown.peak_tflops = peak;
        breakdown.ceiling_tflops[static_cast<size_t>(OpCategory::Video)] = conv_ceiling;
        breakdown.wall_seconds = wall;
        profiled.print_breakdown(std::cout, breakdown);
        result.conv_tflops = profiled.by_op().count("conv3d")
                                 ? profiled.by_op().at("conv3d").tflops_per_second()
                                 : 0.0;
      }
      results.push_back(result);
    }
  }

  std::cout << "\nSummary (bench_vae, base width " << vae_config.dim << ", random weights)\n"
            << "| conv dtype | phase | shapes | time s (mean) | min s | conv3d TFLOP/s | peak memory GB |\n"
            << "|---|---|---|---|---|---|---|\n";
  for (const Result& r : results)
    std::cout << "| " << r.dtype << " | " << r.phase << " | " << r.shapes << " | "
              << fmt("%.3f | %.3f | ", r.seconds.mean, r.seconds.min)
              << (r.conv_tflops > 0 ? fmt("%.1f", r.conv_tflops) : std::string("-")) << " | "
              << (r.memory_measured ? fmt("%.2f", r.peak_bytes / kGB) : std::string("n/a")) << " |\n";
  std::cout << "(conv3d TFLOP/s from the profiled run; peak memory includes the weights and the "
               "CUDA context)"
            << std::endl;
  return 0;
}

}  // namespace
}  // namespace wanrt::bench

int main(int argc, char** argv) {
  return wanrt::bench::run_main("bench_vae", [&] { return wanrt::bench::run(argc, argv); });
}
