// `wanrt generate`: the official generate.py command line for image-to-video (I2V-A14B), with
// the same flag names and defaults, plus --noise_file / --save_latent for reproducible runs,
// the seed write-up's recipes (--tf32, --compile, MagCache with the flags of
// MagCache4Wan2.2/magcache_generate.py) and wanrt's own --backend, --vae_dtype,
// --magcache_ratios and --magcache_calibrate.
//
// Order of work: every flag, the image and the output paths are checked first (cheap), then
// the checkpoint is loaded, then the pipeline runs. A mistake therefore costs no load time.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <random>

#include "backends/ops.h"
#include "cli/commands.h"
#include "cli/generate_args.h"
#include "cli/generate_report.h"
#include "cli/inspect_report.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "io/video_writer.h"
#include "model/dit_config.h"
#include "pipeline/i2v_image.h"
#include "pipeline/i2v_pipeline.h"
#include "schedulers/magcache.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_memory_stats.h"
#include "backends/cuda/cuda_ops.h"
#endif

namespace wanrt::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kFps = 16;  // spec §2.7: the I2V-A14B config's sample_fps
constexpr const char* kSupportedTask = "i2v-A14B";
constexpr const char* kOfficialTasks[] = {"t2v-A14B", "i2v-A14B", "ti2v-5B", "s2v-14B",
                                          "animate-14B"};

// A flag of a feature wanrt does not have yet: recognised, so that a copied official (or
// MagCache) command line fails with a clear message instead of "unknown option" or, worse,
// running without the feature.
struct LaterFeature {
  const char* flag;
  const char* what;  // why it is not available
  bool takes_value;  // false: a flag, optionally followed by True/False
};
constexpr LaterFeature kLaterFeatures[] = {
    {"--dit_fsdp", "FSDP sharding of the DiT needs the multi-GPU backend", false},
    {"--t5_fsdp", "FSDP sharding of T5 needs the multi-GPU backend", false},
    {"--use_prompt_extend", "prompt extension calls an external language model", false},
    {"--prompt_extend_method", "prompt extension calls an external language model", true},
    {"--prompt_extend_model", "prompt extension calls an external language model", true},
    {"--prompt_extend_target_lang", "prompt extension calls an external language model", true},
};

struct GenerateOptions {
  std::string task = kSupportedTask;
  std::string size = "1280*720";
  int64_t frame_num = 81;
  std::string ckpt_dir;
  std::string image;
  std::string prompt;
  std::string n_prompt;
  std::string sample_solver = "unipc";
  int64_t sample_steps = 40;
  double sample_shift = 5.0;
  std::string sample_guide_scale = "3.5";
  int64_t base_seed = -1;
  std::string save_file;
  std::string offload_model;  // str2bool text; empty when not given
  bool t5_cpu = false;
  bool convert_model_dtype = false;
  int64_t ulysses_size = 1;
  std::string noise_file;
  std::string save_noise;
  std::string save_latent;
  // Backend and its options.
  std::string backend = "auto";
  std::string tf32;          // str2bool text; "" when not given or given without a value
  std::string compile;       // likewise
  std::string compile_mode;  // accepted, any value
  std::string vae_dtype = "fp16";
  std::string attention = "auto";
  CLI::Option* tf32_option = nullptr;
  CLI::Option* compile_option = nullptr;
  CLI::Option* compile_mode_option = nullptr;
  CLI::Option* vae_dtype_option = nullptr;
  CLI::Option* attention_option = nullptr;
  // MagCache (the flags and defaults of MagCache4Wan2.2/magcache_generate.py).
  std::string use_magcache;  // str2bool text; "" when given without a value
  CLI::Option* use_magcache_option = nullptr;
  int64_t magcache_K = 2;
  double magcache_thresh = 0.04;
  double retention_ratio = 0.2;
  std::vector<CLI::Option*> magcache_setting_options;
  std::string magcache_ratios;
  std::string magcache_calibrate;
  std::string quantize = "False";
  // Values of the later-feature flags (only whether they were given matters).
  std::vector<std::string> later_values = std::vector<std::string>(std::size(kLaterFeatures));
  std::vector<CLI::Option*> later_options;
};

// ---- checks before any heavy work ----

void check_task(const std::string& task) {
  if (task == kSupportedTask) return;
  for (const char* official : kOfficialTasks)
    WANRT_CHECK(task != official, "--task ", task, ": not supported yet; wanrt runs ",
                kSupportedTask, " only for now");
  fail("--task ", task, ": unknown task; the official tasks are t2v-A14B, i2v-A14B, ti2v-5B, "
       "s2v-14B and animate-14B, of which wanrt supports ", kSupportedTask);
}

void check_later_features(const GenerateOptions& options) {
  for (size_t i = 0; i < std::size(kLaterFeatures); ++i)
    WANRT_CHECK(options.later_options[i]->count() == 0, kLaterFeatures[i].flag,
                ": not available yet in wanrt (", kLaterFeatures[i].what,
                "); remove the flag to run without it");
  WANRT_CHECK(options.ulysses_size >= 1, "--ulysses_size ", options.ulysses_size,
              ": must be at least 1");
  WANRT_CHECK(options.ulysses_size == 1, "--ulysses_size ", options.ulysses_size,
              ": not available yet in wanrt (Ulysses sequence parallelism needs the multi-GPU "
              "backend); use --ulysses_size 1 or leave it out");
}

// The decoded input image, host F32 [3, h0, w0] in [−1, 1]; errors name --image.
Tensor read_input_image(const std::string& path) {
  std::error_code ec;
  WANRT_CHECK(fs::exists(path, ec), "--image ", path, ": no such file");
  try {
    return read_image(path);
  } catch (const Error& e) {
    fail("--image ", path, ": ", e.what());
  }
}

// The `noise` tensor of a --noise_file, checked against what the command line implies before
// the checkpoint loads; the exact shape is checked again against the loaded pipeline.
Tensor read_noise_file(const std::string& path, const Shape& expected) {
  std::error_code ec;
  WANRT_CHECK(fs::exists(path, ec), "--noise_file ", path, ": no such file");
  SafetensorsContents contents;
  try {
    contents = read_safetensors(path);
  } catch (const Error& e) {
    fail("--noise_file ", path, ": not a readable safetensors file: ", e.what());
  }
  if (!contents.tensors.contains("noise")) {
    std::string names;
    for (const std::string& name : contents.tensors.names()) names += (names.empty() ? "" : ", ") + name;
    fail("--noise_file ", path, ": has no tensor named 'noise' (it holds: ",
         names.empty() ? "nothing" : names, "); expected F32 noise of shape ",
         shape_str(expected));
  }
  const Tensor& noise = contents.tensors.get("noise");
  WANRT_CHECK(noise.dtype() == DType::F32, "--noise_file ", path, ": tensor 'noise' is ",
              dtype_name(noise.dtype()), ", expected F32 of shape ", shape_str(expected));
  WANRT_CHECK(noise.shape() == expected, "--noise_file ", path, ": tensor 'noise' has shape ",
              shape_str(noise.shape()), ", expected ", shape_str(expected),
              " (latent channels, (frame_num - 1) / 4 + 1 latent frames, output height / 8, "
              "output width / 8)");
  return noise.clone();  // owned: the file's mapping closes here
}

uint64_t choose_seed(int64_t base_seed) {
  if (base_seed >= 0) return static_cast<uint64_t>(base_seed);
  // The reference draws random.randint(0, sys.maxsize): 63 random bits.
  std::random_device device;
  const uint64_t high = device(), low = device();
  return ((high << 32) | low) & 0x7FFFFFFFFFFFFFFFull;
}

std::string local_timestamp_file_name(const GenerateOptions& options) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  return default_save_file(options.task, options.size, options.ulysses_size, options.prompt,
                           local);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---- backend ----

// A flag that may come bare (meaning True) or with a str2bool value.
bool flag_value(const std::string& flag, const CLI::Option* option, const std::string& text) {
  if (option == nullptr || option->count() == 0) return false;
  return text.empty() ? true : parse_str2bool(flag, text);
}

#ifdef WANRT_HAVE_CUDA
std::string gib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  return text;
}
#endif

struct BackendChoice {
  bool cuda = false;
  std::string why;  // for the header: how the choice was made
};

BackendChoice choose_backend(const std::string& backend) {
  WANRT_CHECK(backend == "auto" || backend == "cpu" || backend == "cuda", "--backend ", backend,
              ": unknown backend; choose auto, cpu or cuda");
  if (backend == "cpu") return {false, "--backend cpu"};
#ifdef WANRT_HAVE_CUDA
  const int gpus = cuda::device_count();
  if (backend == "cuda") {
    WANRT_CHECK(gpus > 0, "--backend cuda: no CUDA GPU is visible on this machine (check "
                          "nvidia-smi and CUDA_VISIBLE_DEVICES), or use --backend cpu");
    return {true, "--backend cuda"};
  }
  if (gpus > 0) return {true, "auto: this wanrt has the CUDA backend and a GPU is present"};
  return {false, "auto: this wanrt has the CUDA backend, but no GPU is visible"};
#else
  WANRT_CHECK(backend != "cuda", "--backend cuda: this wanrt was built without the CUDA backend "
                                 "(nvcc was not found at configure time, or -DWANRT_CUDA=OFF); "
                                 "rebuild with CUDA or use --backend cpu");
  return {false, "auto: this wanrt was built without the CUDA backend"};
#endif
}

#ifdef WANRT_HAVE_CUDA
// Device bytes of the weights: both experts from their configs (bf16, or with --quantize the
// blocks' linear layers at 1 byte per element plus a 4-byte scale per row: the rule `wanrt
// inspect` states), T5 and VAE from their files (T5 is stored in bf16; the VAE is small either
// way). Used to choose --offload_model.
uint64_t device_weight_bytes(const std::string& ckpt_dir, bool t5_on_device, bool quantized) {
  const CheckpointLayout layout = resolve_checkpoint(ckpt_dir);
  uint64_t bytes = 0;
  for (const ExpertLayout* expert : {&layout.high_noise, &layout.low_noise}) {
    const DitConfig config = load_expert_config(*expert);
    bytes += quantized ? weight_memory(config.expected_tensors(), dit_weight_is_quantized).int8
                       : 2 * static_cast<uint64_t>(config.parameter_count());
  }
  for (const auto& source : {t5_on_device ? layout.t5 : std::nullopt, layout.vae})
    if (source)
      for (const std::string& file : source->files) {
        std::error_code ec;
        const uintmax_t file_bytes = fs::file_size(file, ec);
        if (!ec) bytes += file_bytes;
      }
  return bytes;
}
#endif

// ---- the run ----

int run_generate(GenerateOptions options) {
  check_later_features(options);
  check_task(options.task);
  std::error_code ec;
  WANRT_CHECK(fs::is_directory(options.ckpt_dir, ec), "--ckpt_dir ", options.ckpt_dir,
              ": no such folder");
  const SizeArg size = parse_size(options.size);
  if (!size.trained)
    std::cerr << "wanrt: warning: --size " << options.size
              << " is not one of the sizes I2V-A14B was trained at (720*1280, 1280*720, "
                 "480*832, 832*480); expect lower quality\n";
  check_frame_num(options.frame_num);
  const std::string prompt = trim(options.prompt);
  WANRT_CHECK(!prompt.empty(), "--prompt: the prompt is empty; describe the video to generate");
  WANRT_CHECK(options.sample_solver == "unipc" || options.sample_solver == "dpm++",
              "--sample_solver ", options.sample_solver, ": unknown solver; choose unipc or dpm++");
  WANRT_CHECK(options.sample_steps >= 1 && options.sample_steps <= 1000, "--sample_steps ",
              options.sample_steps, ": must be between 1 and 1000");
  WANRT_CHECK(std::isfinite(options.sample_shift) && options.sample_shift > 0, "--sample_shift ",
              options.sample_shift, ": must be a positive number");
  const GuideScale guide = parse_guide_scale(options.sample_guide_scale);
  const bool offload_given = !options.offload_model.empty();
  [[maybe_unused]] const bool offload_flag =
      offload_given && parse_str2bool("--offload_model", options.offload_model);

  // Backend options.
  [[maybe_unused]] const bool tf32 = flag_value("--tf32", options.tf32_option, options.tf32);
  [[maybe_unused]] const bool compile =
      flag_value("--compile", options.compile_option, options.compile);
  WANRT_CHECK(options.vae_dtype == "fp16" || options.vae_dtype == "bf16" ||
                  options.vae_dtype == "fp32",
              "--vae_dtype ", options.vae_dtype, ": choose fp16, bf16 or fp32");
  WANRT_CHECK(options.attention == "auto" || options.attention == "bf16" ||
                  options.attention == "int8" || options.attention == "portable",
              "--attention ", options.attention, ": choose auto, bf16, int8 or portable");

  // MagCache.
  const bool use_magcache =
      flag_value("--use_magcache", options.use_magcache_option, options.use_magcache);
  const bool calibrate = !options.magcache_calibrate.empty();
  WANRT_CHECK(options.magcache_K >= 0, "--magcache_K ", options.magcache_K,
              ": the number of consecutive cached calls per branch must be 0 or more");
  WANRT_CHECK(std::isfinite(options.magcache_thresh) && options.magcache_thresh >= 0,
              "--magcache_thresh ", options.magcache_thresh, ": must be a number >= 0");
  WANRT_CHECK(options.retention_ratio >= 0 && options.retention_ratio <= 1, "--retention_ratio ",
              options.retention_ratio, ": must lie between 0 and 1");
  WANRT_CHECK(!(use_magcache && calibrate), "--magcache_calibrate computes every DiT call to "
              "measure the ratios; it cannot run together with --use_magcache");
  WANRT_CHECK(!calibrate || options.sample_steps >= 2, "--magcache_calibrate needs "
              "--sample_steps 2 or more (a ratio compares a call with the same branch one step "
              "earlier)");
  std::vector<double> magcache_ratios;
  if (!options.magcache_ratios.empty()) {
    try {
      magcache_ratios = load_mag_ratios(options.magcache_ratios);
    } catch (const Error& e) {
      fail("--magcache_ratios ", e.what());
    }
  }
  const bool magcache_settings_given =
      !options.magcache_ratios.empty() ||
      std::any_of(options.magcache_setting_options.begin(), options.magcache_setting_options.end(),
                  [](const CLI::Option* option) { return option->count() > 0; });
  const Quantization quantize = parse_quantize("--quantize", options.quantize);

  const Tensor image = read_input_image(options.image);
  const int64_t max_area = size.width * size.height;
  I2vSize out_size;
  try {
    out_size = i2v_output_size(image.size(1), image.size(2), max_area);
  } catch (const Error& e) {
    fail("--image ", options.image, " with --size ", options.size, ": ", e.what());
  }
  if (options.save_file.empty()) options.save_file = local_timestamp_file_name(options);
  check_output_path("--save_file", options.save_file);
  if (!options.save_latent.empty()) check_output_path("--save_latent", options.save_latent);
  if (!options.save_noise.empty()) check_output_path("--save_noise", options.save_noise);
  if (calibrate) check_output_path("--magcache_calibrate", options.magcache_calibrate);
  const Shape expected_noise_shape = {16, (options.frame_num - 1) / 4 + 1, out_size.lat_h,
                                      out_size.lat_w};
  Tensor noise;
  if (!options.noise_file.empty()) noise = read_noise_file(options.noise_file, expected_noise_shape);
  const uint64_t seed = choose_seed(options.base_seed);
  const BackendChoice backend = choose_backend(options.backend);

  std::cout << "wanrt generate: " << options.task << "\n"
            << "  checkpoint  " << options.ckpt_dir << "\n"
            << "  image       " << options.image << " (" << image.size(2) << "x" << image.size(1)
            << ") -> video " << out_size.width() << "x" << out_size.height() << ", "
            << options.frame_num << " frames at " << kFps << " fps (--size " << options.size
            << ": area " << max_area << ", the image's aspect ratio)\n"
            << "  prompt      " << prompt << "\n"
            << "  negative    "
            << (options.n_prompt.empty() ? "(the default negative prompt)" : options.n_prompt)
            << "\n"
            << "  sampling    " << options.sample_solver << ", " << options.sample_steps
            << " steps, shift " << options.sample_shift << ", guide scale " << guide.low_noise
            << " (low-noise expert) / " << guide.high_noise << " (high-noise expert)\n";
  if (!options.noise_file.empty())
    std::cout << "  noise       from " << options.noise_file << " (--base_seed unused)\n";
  else
    std::cout << "  seed        " << seed
              << (options.base_seed < 0 ? " (random; pass --base_seed " + std::to_string(seed) +
                                              " to repeat this video)"
                                        : std::string())
              << "\n";
  if (use_magcache)
    std::cout << "  MagCache    thresh " << options.magcache_thresh << ", K " << options.magcache_K
              << ", retention " << options.retention_ratio << ", ratios "
              << (options.magcache_ratios.empty() ? "of I2V-A14B (shipped)"
                                                  : options.magcache_ratios)
              << "\n";
  if (calibrate)
    std::cout << "  MagCache    calibrating: every DiT call computed, ratios to "
              << options.magcache_calibrate << "\n";
  if (quantize != Quantization::None)
    std::cout << "  weights     " << quantization_name(quantize)
              << (quantize == Quantization::Fp8
                      ? " quantization of the experts' block linear layers (weights per output "
                        "channel; on CUDA the activations too, per token, for the FP8 GEMMs)\n"
                      : " weight-only quantization of the experts' block linear layers\n");
  std::cout << "  output      " << options.save_file << "\n";
  if (magcache_settings_given && !use_magcache)
    std::cout << "Note: the MagCache settings change nothing without --use_magcache.\n";

  // The backend, and what each backend-specific flag means on it.
  std::unique_ptr<Ops> ops, text_ops;
  bool offload = false;
  std::function<void()> sample_memory;
  std::function<std::string()> memory_line;
  if (!backend.cuda) {
    std::cout << "  backend     cpu, float32 (" << backend.why << ")\n";
    const std::pair<bool, const char*> no_effect[] = {
        {offload_given, "--offload_model"},
        {options.t5_cpu, "--t5_cpu"},
        {options.convert_model_dtype, "--convert_model_dtype"},
        {options.tf32_option->count() > 0, "--tf32"},
        {options.vae_dtype_option->count() > 0, "--vae_dtype"},
        {options.attention_option->count() > 0, "--attention"}};
    for (const auto& [given, flag] : no_effect)
      if (given)
        std::cout << "Note: " << flag
                  << " changes nothing on the CPU backend (every part already runs on the CPU, "
                     "in true float32).\n";
    if (options.compile_option->count() > 0 || options.compile_mode_option->count() > 0)
      std::cout << "Note: --compile changes nothing on the CPU backend (it has one path); on CUDA "
                   "wanrt always runs its fastest path.\n";
    ops = make_cpu_ops();
  } else {
#ifdef WANRT_HAVE_CUDA
    CudaOptions cuda_options;
    cuda_options.device = 0;
    cuda_options.tf32 = tf32;
    // TF32 convolutions are PyTorch's default (cudnn.allow_tf32); --tf32 given sets both.
    if (options.tf32_option->count() > 0) cuda_options.tf32_convolutions = tf32;
    cuda_options.conv_dtype = options.vae_dtype == "fp32"   ? DType::F32
                              : options.vae_dtype == "bf16" ? DType::BF16
                                                            : DType::F16;
    cuda_options.attention = options.attention == "int8"       ? AttentionKernel::Int8
                             : options.attention == "portable" ? AttentionKernel::Portable
                                                               : AttentionKernel::Auto;
    const cuda::DeviceInfo gpu = cuda::device_info(cuda_options.device);
    std::cout << "  backend     cuda on GPU " << gpu.index << ": " << gpu.name << ", "
              << gib(gpu.free_memory) << " free of " << gib(gpu.total_memory) << " ("
              << backend.why << ")\n"
              << "  precision   bf16 GEMMs, "
              << (options.attention == "int8" ? "8-bit attention (--attention int8)"
                  : options.attention == "portable" ? "bf16 attention (portable kernel)"
                                                    : "bf16 attention")
              << ", float32 residual stream; float32 GEMMs "
              << (tf32 ? "with TF32 (--tf32)" : "in true float32") << "; VAE in "
              << options.vae_dtype
              << (options.vae_dtype == "fp32"
                      ? (cuda_options.tf32_convolutions ? " (TF32 convolutions)" : " (true float32)")
                      : "")
              << "\n";
    if (compile)
      std::cout << "Note: --compile"
                << (options.compile_mode.empty() ? "" : " --compile_mode " + options.compile_mode)
                << ": wanrt's CUDA backend always runs its fastest path (fused kernels, cached "
                   "GEMM algorithms, the transformer blocks captured once as a CUDA graph and "
                   "replayed every step); the flag is accepted for compatibility.\n";
    if (options.convert_model_dtype)
      std::cout << "Note: --convert_model_dtype changes nothing: the CUDA backend always keeps "
                   "matrix weights in bf16.\n";
    if (options.t5_cpu) {
      text_ops = make_cpu_ops();
      std::cout << "Note: --t5_cpu: the umT5 encoder runs on the CPU backend in float32.\n";
    }
    if (offload_given) {
      offload = offload_flag;
    } else {
      // generate.py offloads by default on one GPU; wanrt keeps both experts resident where
      // they fit with room for activations.
      try {
        const bool quantized = quantize != Quantization::None;
        const uint64_t need = device_weight_bytes(options.ckpt_dir, !options.t5_cpu, quantized);
        offload = need > gpu.free_memory / 4 * 3;
        std::cout << "Note: --offload_model not given: " << (offload ? "True" : "False")
                  << " (the weights take " << gib(need) << " on the GPU"
                  << (quantized ? str_cat(" with ", quantization_name(quantize), " experts")
                                : std::string(" in bf16"))
                  << ", "
                  << (offload ? "more" : "less") << " than 3/4 of the " << gib(gpu.free_memory)
                  << " free).\n";
      } catch (const Error&) {
        offload = false;  // an incomplete checkpoint: loading says what is wrong
      }
    }
    ops = make_cuda_ops(cuda_options);
    auto tracker = std::make_shared<cuda::DeviceMemoryTracker>(cuda_options.device);
    sample_memory = [tracker] { tracker->sample(); };
    memory_line = [tracker] {
      return str_cat("peak GPU memory ", gib(tracker->peak()), " of ", gib(tracker->total()),
                     " (", gib(tracker->baseline()), " of it in use before loading: CUDA "
                     "context, other processes; activation pool high-water ",
                     gib(tracker->pool_high()), ")");
    };
#else
    WANRT_ASSERT(false);  // choose_backend never picks CUDA in a build without it
#endif
  }
  std::cout.flush();

  // Messages from the pipeline (what is resident, swaps) end an open progress line first.
  DenoiseProgressBar bar(std::cerr, ::isatty(STDERR_FILENO) != 0);
  I2VPipelineOptions pipeline_options;
  pipeline_options.offload = offload;
  pipeline_options.text_ops = text_ops.get();
  pipeline_options.log = [&bar](const std::string& message) {
    bar.finish();
    std::cout << message << std::endl;
  };
  pipeline_options.checkpoint = sample_memory;
  pipeline_options.quantize = quantize;

  std::cout << "Loading the checkpoint (backend: " << ops->name() << ") ..." << std::endl;
  std::unique_ptr<I2VPipeline> pipeline;
  try {
    pipeline = I2VPipeline::load(options.ckpt_dir, *ops, pipeline_options);
  } catch (const Error& e) {
    fail("--ckpt_dir ", options.ckpt_dir, ": ", e.what());
  }
  std::cout << "Loaded in " << format_duration(pipeline->load_seconds()) << ".\n";
  if (pipeline->quantization() != quantize)
    std::cout << "Note: " << options.ckpt_dir << " holds " << quantization_name(pipeline->quantization())
              << "-quantized experts (written by wanrt quantize); they run as stored.\n";
  if (pipeline->quantization() != Quantization::None && ops->name() == "cpu")
    std::cout << "Note: the CPU backend multiplies the quantized weights exactly (dequantized to "
                 "float32): the numbers a quantized GPU run approximates, without its speed.\n";
  if (pipeline->random_weights())
    std::cout << "Note: " << options.ckpt_dir
              << " holds RANDOM demo weights: the video will be noise by design (this run tests "
                 "the engine, not the model).\n";
  std::cout.flush();

  I2VRequest request;
  request.image_path = options.image;
  request.image = &image;
  request.prompt = prompt;
  request.negative_prompt = options.n_prompt;
  request.max_area = max_area;
  request.frame_num = options.frame_num;
  request.solver = options.sample_solver;
  request.steps = static_cast<int>(options.sample_steps);
  request.shift = options.sample_shift;
  request.guide_low = guide.low_noise;
  request.guide_high = guide.high_noise;
  request.seed = seed;
  if (use_magcache) {
    request.magcache = MagCacheSettings{.threshold = options.magcache_thresh,
                                        .max_skipped_calls = static_cast<int>(options.magcache_K),
                                        .retention_ratio = options.retention_ratio};
    request.magcache_ratios = magcache_ratios;
  }
  request.calibrate_magcache = calibrate;
  if (!options.noise_file.empty()) {
    const Shape model_shape = pipeline->latent_shape(request);
    WANRT_CHECK(noise.shape() == model_shape, "--noise_file ", options.noise_file,
                ": tensor 'noise' has shape ", shape_str(noise.shape()), ", but this checkpoint's "
                "latent for this request has shape ", shape_str(model_shape));
  } else if (!options.save_noise.empty()) {
    // What the pipeline would draw itself (its documented default), made explicit so the saved
    // file is by construction the noise this run used.
    noise = seeded_noise(pipeline->latent_shape(request), seed);
  }
  if (!options.noise_file.empty() || !options.save_noise.empty()) request.noise = &noise;
  if (!options.save_noise.empty()) {
    write_safetensors(options.save_noise, {{"noise", noise}},
                      {{"seed", std::to_string(seed)}, {"noise_file", options.noise_file}});
    std::cout << "Saved the initial noise " << shape_str(noise.shape()) << " to "
              << options.save_noise << " (tensor 'noise'; feed it back with --noise_file).\n";
  }

  I2VResult result = pipeline->generate(request, [&](const DenoiseProgress& progress) {
    bar.update(progress);
  });
  bar.finish();

  const auto write_start = std::chrono::steady_clock::now();
  VideoWriteOptions write_options;
  write_options.log = false;  // said below, with the summary
  const VideoWriteResult written = write_video(options.save_file, result.video, kFps, write_options);
  if (!options.save_latent.empty())
    write_safetensors(options.save_latent, {{"latent", result.latent}},
                      {{"seed", std::to_string(seed)},
                       {"noise_file", options.noise_file},
                       {"solver", options.sample_solver},
                       {"steps", std::to_string(options.sample_steps)},
                       {"frame_num", std::to_string(options.frame_num)},
                       {"size", options.size}});
  if (calibrate)
    save_mag_ratios(options.magcache_calibrate, result.measured_mag_ratios,
                    str_cat("Wan2.2 I2V-A14B, checkpoint ", options.ckpt_dir),
                    str_cat("wanrt generate --magcache_calibrate on the ", ops->name(),
                            " backend: --size ", options.size, " --frame_num ", options.frame_num,
                            " --sample_solver ", options.sample_solver, " --sample_steps ",
                            options.sample_steps, " --sample_shift ", options.sample_shift,
                            " --base_seed ", seed));
  StageTimes times = result.times;
  times.load = pipeline->load_seconds();
  times.write = seconds_since(write_start);

  if (sample_memory) sample_memory();
  print_timing_summary(std::cout, times,
                       {.steps = request.steps,
                        .dit_calls = result.dit_calls,
                        .magcache = use_magcache,
                        .memory = memory_line ? memory_line() : std::string()});
  if (!written.fallback_reason.empty())
    std::cout << "Note: wrote " << written.description << " instead of MP4: "
              << written.fallback_reason << "\n";
  if (!options.save_latent.empty())
    std::cout << "Saved the final latent " << shape_str(result.latent.shape()) << " to "
              << options.save_latent << " (tensor 'latent').\n";
  if (calibrate)
    std::cout << "Saved the MagCache ratio table (" << result.measured_mag_ratios.size()
              << " ratios for " << options.sample_steps << " steps) to "
              << options.magcache_calibrate
              << "; use it with --use_magcache --magcache_ratios " << options.magcache_calibrate
              << "\n";
  if (pipeline->random_weights())
    std::cout << "Reminder: random demo weights, so the video is noise by design.\n";
  std::cout << "Saved " << written.path << ": " << written.frames << " frames, " << written.width
            << "x" << written.height << ", " << written.fps << " fps, " << written.description
            << "\n";
  return 0;
}

}  // namespace

Subcommand add_generate_command(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* command = app.add_subcommand(
      "generate",
      "Generate a video from an image and a prompt (Wan2.2 I2V-A14B), with the flags of the "
      "official generate.py");
  // As argparse does: a flag given twice keeps its last value.
  command->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  command->add_option("--task", options->task, "the task to run; only i2v-A14B for now")
      ->capture_default_str();
  command
      ->add_option("--size", options->size,
                   "WIDTH*HEIGHT; for I2V only its area W*H counts (max_area) and the video keeps "
                   "the image's aspect ratio. Official: 720*1280, 1280*720, 480*832, 832*480; "
                   "other sizes need sides that are multiples of 16 (with a warning)")
      ->capture_default_str();
  command->add_option("--frame_num", options->frame_num, "frames to generate, 4n+1")
      ->capture_default_str();
  command->add_option("--ckpt_dir", options->ckpt_dir,
                      "checkpoint folder in the Wan-AI/Wan2.2-I2V-A14B layout")
      ->required();
  command->add_option("--image", options->image, "the input image (JPEG or PNG)")->required();
  command->add_option("--prompt", options->prompt, "what the video should show")->required();
  command->add_option("--n_prompt", options->n_prompt,
                      "negative prompt; empty: the official default negative prompt");
  command->add_option("--sample_solver", options->sample_solver, "unipc or dpm++")
      ->capture_default_str();
  command->add_option("--sample_steps", options->sample_steps, "denoising steps")
      ->capture_default_str();
  command->add_option("--sample_shift", options->sample_shift, "flow-matching timestep shift")
      ->capture_default_str();
  command
      ->add_option("--sample_guide_scale", options->sample_guide_scale,
                   "classifier-free guidance scale: one value for both experts, or LOW,HIGH "
                   "(low-noise expert, then high-noise expert)")
      ->capture_default_str();
  command->add_option("--base_seed", options->base_seed,
                      "seed of the initial noise; negative: a random seed, printed")
      ->capture_default_str();
  command->add_option("--save_file", options->save_file,
                      "output video (.mp4; AVI where MP4 cannot be written, said when it "
                      "happens). Default, as generate.py: "
                      "{task}_{size}_{ulysses_size}_{prompt}_{YYYYmmdd_HHMMSS}.mp4");
  command->add_option("--offload_model", options->offload_model,
                      "True/False. On CUDA: True keeps one expert on the GPU at a time (the idle "
                      "one waits in host memory and is brought in before its first step) and "
                      "frees the T5 encoder after encoding; not given: True where the weights "
                      "would take more than 3/4 of the free GPU memory. Changes nothing on the CPU "
                      "backend");
  command->add_flag("--t5_cpu", options->t5_cpu,
                    "run the umT5 encoder on the CPU backend (float32) when the rest runs on "
                    "CUDA; changes nothing on the CPU backend");
  command->add_flag("--convert_model_dtype", options->convert_model_dtype,
                    "accepted for compatibility: the CUDA backend always keeps matrix weights in "
                    "bf16; changes nothing on the CPU backend (float32)");
  command
      ->add_option("--backend", options->backend,
                   "auto, cpu or cuda. auto: CUDA when this wanrt was built with it and a GPU is "
                   "present, else the float32 CPU reference (the header says which and why)")
      ->capture_default_str();
  options->tf32_option =
      command
          ->add_option("--tf32", options->tf32,
                       "True/False: TF32 tensor cores for float32 GEMMs and convolutions on CUDA. "
                       "Not given: PyTorch's defaults (GEMMs true float32, the float32 VAE's "
                       "convolutions TF32). The time MLP and head always stay true float32 as in "
                       "the reference; changes nothing on the CPU backend")
          ->expected(0, 1)
          ->type_name("[True|False]");
  options->compile_option =
      command
          ->add_option("--compile", options->compile,
                       "accepted for compatibility with the seed's command line: "
                       "wanrt always runs its fastest path (on CUDA: fused kernels, cached GEMM "
                       "algorithms, a stream-ordered memory pool, the DiT's transformer blocks "
                       "captured as a CUDA graph and replayed every step; WANRT_CUDA_GRAPH=0 turns "
                       "the graph off), so it selects nothing more")
          ->expected(0, 1)
          ->type_name("[True|False]");
  options->compile_mode_option = command->add_option(
      "--compile_mode", options->compile_mode,
      "accepted with --compile (any torch.compile mode); selects nothing more");
  options->vae_dtype_option =
      command
          ->add_option("--vae_dtype", options->vae_dtype,
                       "fp16, bf16 or fp32: the dtype the VAE computes in on CUDA (fp16: within "
                       "3.2e-3 of the reference and fastest; fp32: TF32 convolutions, 1.6x slower; "
                       "bf16: as fast as fp16 but about 2.5e-2 off on decode); changes nothing on "
                       "the CPU backend")
          ->capture_default_str();
  options->attention_option =
      command
          ->add_option("--attention", options->attention,
                       "auto, bf16, int8 or portable: the attention kernel on CUDA. auto and bf16: "
                       "the fastest exact bf16 kernel for the GPU (the Hopper kernel on sm_90, "
                       "else the portable one); int8: the 8-bit Hopper kernel (INT8 Q.K^T with "
                       "per-block scales, FP8 P.V; ~13% faster at 720p, about 4e-3 off on the DiT); portable: the "
                       "mma.sync kernel any GPU from sm_80 runs; changes nothing on the CPU "
                       "backend")
          ->capture_default_str();
  // MagCache skips the DiT blocks of calls the cached residual predicts (spec section 5), with
  // the flags and defaults of MagCache4Wan2.2/magcache_generate.py.
  constexpr const char* kMagCacheGroup =
      "MagCache (skips the DiT blocks of calls the cached residual predicts; the seed's "
      "E012K2R20 is --use_magcache --magcache_thresh 0.12 --magcache_K 2 --retention_ratio 0.2)";
  options->use_magcache_option =
      command
          ->add_option("--use_magcache", options->use_magcache,
                       "turn MagCache on; the summary counts computed and skipped "
                       "DiT calls")
          ->expected(0, 1)
          ->type_name("[True|False]")
          ->group(kMagCacheGroup);
  options->magcache_setting_options = {
      command
          ->add_option("--magcache_thresh", options->magcache_thresh,
                       "bound on the accumulated ratio error of consecutive skips")
          ->capture_default_str()
          ->group(kMagCacheGroup),
      command
          ->add_option("--magcache_K", options->magcache_K,
                       "most consecutive skipped calls per branch (cond, uncond)")
          ->capture_default_str()
          ->group(kMagCacheGroup),
      command
          ->add_option("--retention_ratio", options->retention_ratio,
                       "share of the low-noise calls always computed after the (always computed) "
                       "high-noise phase")
          ->capture_default_str()
          ->group(kMagCacheGroup)};
  command->add_option("--magcache_ratios", options->magcache_ratios,
                       "a ratio table (JSON, as --magcache_calibrate writes) instead of the "
                       "shipped I2V-A14B one; resampled to --sample_steps")
      ->group(kMagCacheGroup);
  command->add_option("--magcache_calibrate", options->magcache_calibrate,
                       "compute every DiT call of this run and write the measured magnitude "
                       "ratios to this JSON file (the data/magcache format)")
      ->group(kMagCacheGroup);
  command->add_option("--ulysses_size", options->ulysses_size,
                      "sequence-parallel degree; only 1 for now")
      ->capture_default_str();
  command->add_option("--noise_file", options->noise_file,
                      "safetensors file whose tensor 'noise' (F32 [16, (frame_num-1)/4+1, H/8, "
                      "W/8]) replaces the seeded initial noise");
  command->add_option("--save_noise", options->save_noise,
                      "also write the initial noise as safetensors tensor 'noise' (input for "
                      "--noise_file)");
  command->add_option("--quantize", options->quantize,
                      "weight-only quantization of both experts' block linear layers, per output "
                      "channel, computed at load: False, True (= int8), int8 or fp8 (on CUDA fp8 "
                      "also rounds each activation row to E4M3 for the FP8 GEMMs). A checkpoint "
                      "written by `wanrt quantize` runs quantized as stored")
      ->capture_default_str();
  command->add_option("--save_latent", options->save_latent,
                      "also write the final latent (before VAE decoding) as safetensors tensor "
                      "'latent'");
  for (size_t i = 0; i < std::size(kLaterFeatures); ++i) {
    const LaterFeature& feature = kLaterFeatures[i];
    CLI::Option* option = command->add_option(feature.flag, options->later_values[i],
                                              str_cat(feature.what, "; refused with an error"));
    if (feature.takes_value) {
      option->type_name("VALUE");
    } else {
      option->expected(0, 1);
      option->type_name("[True|False]");
    }
    option->group("Not available yet");
    options->later_options.push_back(option);
  }
  return {command, [options] { return run_generate(*options); }};
}

}  // namespace wanrt::cli
