// `wanrt generate`: the official generate.py command line for image-to-video (I2V-A14B), with
// the same flag names and defaults, plus --noise_file / --save_latent for reproducible runs.
//
// Order of work: every flag, the image and the output paths are checked first (cheap), then
// the checkpoint is loaded, then the pipeline runs. A mistake therefore costs no load time.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>

#include "backends/ops.h"
#include "cli/commands.h"
#include "cli/generate_args.h"
#include "cli/generate_report.h"
#include "core/error.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "io/video_writer.h"
#include "pipeline/i2v_image.h"
#include "pipeline/i2v_pipeline.h"

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
    {"--tf32", "TF32 matrix products belong to the CUDA backend", false},
    {"--use_magcache", "MagCache step skipping is not wired into generate", false},
    {"--magcache_K", "MagCache step skipping is not wired into generate", true},
    {"--magcache_thresh", "MagCache step skipping is not wired into generate", true},
    {"--retention_ratio", "MagCache step skipping is not wired into generate", true},
    {"--compile", "compiled (CUDA graph) execution belongs to the CUDA backend", false},
    {"--compile_mode", "compiled (CUDA graph) execution belongs to the CUDA backend", true},
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
  if (!options.offload_model.empty()) parse_str2bool("--offload_model", options.offload_model);
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
  const Shape expected_noise_shape = {16, (options.frame_num - 1) / 4 + 1, out_size.lat_h,
                                      out_size.lat_w};
  Tensor noise;
  if (!options.noise_file.empty()) noise = read_noise_file(options.noise_file, expected_noise_shape);
  const uint64_t seed = choose_seed(options.base_seed);

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
  if (quantize != Quantization::None)
    std::cout << "  weights     " << quantization_name(quantize)
              << " weight-only quantization of the experts' block linear layers\n";
  std::cout << "  output      " << options.save_file << "\n";
  for (const auto& [given, flag] : {std::pair{!options.offload_model.empty(), "--offload_model"},
                                    std::pair{options.t5_cpu, "--t5_cpu"},
                                    std::pair{options.convert_model_dtype, "--convert_model_dtype"}})
    if (given)
      std::cout << "Note: " << flag
                << " changes nothing on the CPU backend (every part already runs on the CPU, "
                   "in float32).\n";
  std::cout.flush();

  std::unique_ptr<Ops> ops = make_cpu_ops();
  std::cout << "Loading the checkpoint (backend: " << ops->name() << ") ..." << std::endl;
  std::unique_ptr<I2VPipeline> pipeline;
  try {
    pipeline = I2VPipeline::load(options.ckpt_dir, *ops, {.quantize = quantize});
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

  DenoiseProgressBar bar(std::cerr, ::isatty(STDERR_FILENO) != 0);
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
  StageTimes times = result.times;
  times.load = pipeline->load_seconds();
  times.write = seconds_since(write_start);

  print_timing_summary(std::cout, times, request.steps);
  if (!written.fallback_reason.empty())
    std::cout << "Note: wrote " << written.description << " instead of MP4: "
              << written.fallback_reason << "\n";
  if (!options.save_latent.empty())
    std::cout << "Saved the final latent " << shape_str(result.latent.shape()) << " to "
              << options.save_latent << " (tensor 'latent').\n";
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
                      "True/False; accepted for compatibility: changes nothing on the CPU backend");
  command->add_flag("--t5_cpu", options->t5_cpu,
                    "accepted for compatibility: changes nothing on the CPU backend");
  command->add_flag("--convert_model_dtype", options->convert_model_dtype,
                    "accepted for compatibility: changes nothing on the CPU backend (float32)");
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
                      "channel, computed at load: False, True (= int8), int8 or fp8. A checkpoint "
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
