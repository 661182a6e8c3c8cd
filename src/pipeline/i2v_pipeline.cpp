#include "pipeline/i2v_pipeline.h"

#include <chrono>
#include <cmath>
#include <future>
#include <numbers>

#include "io/checkpoint.h"
#include "io/image.h"
#include "model/dit.h"
#include "model/vae.h"
#include "schedulers/flow_schedule.h"
#include "schedulers/flow_scheduler.h"
#include "text/t5.h"

namespace wanrt {

const char* const kDefaultNegativePrompt =
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
    "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

constexpr int64_t kTextLength = 512;      // T5 / DiT text_len
constexpr int64_t kVaeTimeStride = 4;     // frames per latent frame (after the first)
constexpr int64_t kVaeSpaceStride = 8;
constexpr int64_t kMaskChannels = 4;

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011).
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * counter[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * counter[2];
    counter = {static_cast<uint32_t>(p1 >> 32) ^ counter[1] ^ key[0], static_cast<uint32_t>(p1),
               static_cast<uint32_t>(p0 >> 32) ^ counter[3] ^ key[1], static_cast<uint32_t>(p0)};
    key = {key[0] + kWeyl0, key[1] + kWeyl1};
  }
  return counter;
}

// A uniform in the open interval (0, 1) from 53 random bits.
double open_unit(uint32_t high, uint32_t low) {
  const uint64_t bits = ((static_cast<uint64_t>(high) << 32) | low) >> 11;
  return (static_cast<double>(bits) + 0.5) * 0x1.0p-53;
}

}  // namespace

Tensor seeded_noise(const Shape& shape, uint64_t seed) {
  Tensor noise = Tensor::empty(DType::F32, shape);
  float* out = noise.data<float>();
  const int64_t n = noise.numel();
  const std::array<uint32_t, 2> key = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  for (int64_t pair = 0; 2 * pair < n; ++pair) {
    const auto counter = static_cast<uint64_t>(pair);
    const auto bits = philox4x32({static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0, 0}, key);
    const double radius = std::sqrt(-2.0 * std::log(open_unit(bits[0], bits[1])));
    const double angle = 2.0 * std::numbers::pi * open_unit(bits[2], bits[3]);
    out[2 * pair] = static_cast<float>(radius * std::cos(angle));
    if (2 * pair + 1 < n) out[2 * pair + 1] = static_cast<float>(radius * std::sin(angle));
  }
  return noise;
}

struct I2VPipeline::Impl {
  CheckpointLayout layout;
  I2VPipelineOptions options;
  Quantization quantization = Quantization::None;  // of the experts' weights, as loaded
  Ops* ops = nullptr;       // DiT and VAE
  Ops* text_ops = nullptr;  // T5 (the same backend unless --t5_cpu)
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<T5Encoder> t5;  // null while offloaded
  std::unique_ptr<WanVae> vae;
  DitConfig high_config, low_config;
  std::unique_ptr<WanModel> high_noise, low_noise;  // null while offloaded
  // Offloading. Where the backend parks weights (Ops::weight_parking: CUDA), both experts wait
  // in page-locked host memory in the device's format (bf16, or int8/fp8 codes), parked from
  // the checkpoint by a background thread while the device works, and the one needed next is
  // brought in block by block under its first step. Elsewhere, or where the host could not lock
  // that much memory, an expert is loaded again from the checkpoint when needed.
  WeightParking* parking = nullptr;
  std::unique_ptr<WanModel> high_parked, low_parked;
  // The host side of what is reloaded from the checkpoint (memory-mapped, so "host memory"
  // costs page cache rather than a copy); the parking thread reads the experts' too.
  std::optional<TensorStore> t5_weights, high_weights, low_weights;
  double load_seconds = 0;
  struct ParkedExpert {
    std::unique_ptr<WanModel> model;
    double seconds = 0;  // since parking started
  };
  // Last, so that they are destroyed first: their destructors wait for the parking thread,
  // which reads the members above. One thread parks the low-noise expert (needed first, at the
  // switch), then the high-noise one (for the next video).
  std::promise<ParkedExpert> low_promise;
  std::future<ParkedExpert> low_job, high_job;

  void log(const std::string& message) const {
    if (options.log) options.log(message);
  }
  // Waits for the device (a download returns only after every queued op has run), so the
  // clock reads honest stage times, then lets the caller sample memory.
  void barrier() const {
    (void)ops->download(ops->zeros({1}));
    if (text_ops != ops) (void)text_ops->download(text_ops->zeros({1}));
    if (options.checkpoint) options.checkpoint();
  }

  std::unique_ptr<WanModel> load_expert(bool high, WeightParking* park = nullptr) const {
    const TensorStore& weights = high ? *high_weights : *low_weights;
    return std::make_unique<WanModel>(
        WanModel::load(high ? high_config : low_config, weights, *ops,
                       {.quantize = options.quantize, .park = park}));
  }
  // --offload_model at load: starts parking both experts in page-locked host memory on a
  // background thread (host work only: reading the checkpoint, converting or quantizing it
  // exactly as the device would, and locking memory, ~0.5-1 GB/s), while the high-noise expert,
  // loaded resident, starts denoising.
  void start_parking() {
    parking = ops->weight_parking();
    if (!parking) return;
    low_job = low_promise.get_future();
    high_job = std::async(std::launch::async, [this] {
      const auto start = Clock::now();
      try {
        low_promise.set_value({load_expert(false, parking), seconds_since(start)});
      } catch (...) {
        low_promise.set_exception(std::current_exception());
        throw;  // the high-noise expert is not parked either
      }
      return ParkedExpert{load_expert(true, parking), seconds_since(start)};
    });
    log("--offload_model: parking both experts in page-locked host memory on a background thread");
  }
  // The expert's parked copy, once the background thread has made it; null where parking is
  // off or failed, or has not finished this expert (options.wait_for_parking: waits for it),
  // and the expert is then loaded from the checkpoint.
  const WanModel* parked_expert(bool high) {
    std::unique_ptr<WanModel>& parked = high ? high_parked : low_parked;
    std::future<ParkedExpert>& job = high ? high_job : low_job;
    if (parking && job.valid()) {
      const char* name = high ? "high-noise expert" : "low-noise expert";
      if (!options.wait_for_parking && job.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        log(str_cat("--offload_model: the ", name, " is still being parked in page-locked host memory; "
                    "this time it is loaded from the checkpoint"));
        return nullptr;
      }
      const auto start = Clock::now();
      try {
        ParkedExpert done = job.get();
        parked = std::move(done.model);
        const double waited = seconds_since(start);
        log(str_cat("--offload_model: ", name, " parked in page-locked host memory ",
                    std::lround(done.seconds), " s after loading, on the background thread",
                    waited >= 0.001 ? str_cat(" (the switch waited ", std::lround(waited * 1000), " ms for it)") : ""));
      } catch (const Error& error) {
        parking = nullptr;
        high_parked.reset();
        low_parked.reset();
        log(str_cat("--offload_model: the ", name, " could not be parked in page-locked host memory, "
                    "so the idle expert is loaded again from the checkpoint when needed (slower): ",
                    error.what()));
      }
    }
    return parking ? parked.get() : nullptr;
  }
  // Makes the expert resident, freeing the other first when offloading; returns the host
  // seconds spent bringing weights in (0 when it already was resident). From parked weights
  // that is only the queueing of the copies: they run under the first step, whose blocks each
  // wait for their own weights.
  double ensure_expert(bool high, DitRunner& runner) {
    std::unique_ptr<WanModel>& wanted = high ? high_noise : low_noise;
    if (wanted) return 0;
    std::unique_ptr<WanModel>& other = high ? low_noise : high_noise;
    const char* name = high ? "high-noise expert" : "low-noise expert";
    const char* other_name = high ? "low-noise expert" : "high-noise expert";
    const bool freed = other != nullptr;
    other.reset();  // its device weights, and its graphs' memory, go before the next expert's arrive
    runner.drop_gone_experts();
    const auto start = Clock::now();
    const WanModel* parked = parked_expert(high);
    const std::string freed_note =
        freed ? str_cat("; the ", other_name, " was freed and waits in ", parking ? "page-locked " : "",
                        "host memory")
              : "";
    if (parked) {
      wanted = std::make_unique<WanModel>(parked->unparked(*parking));
      const double seconds = seconds_since(start);
      log(str_cat("--offload_model: ", name, " queued for the device from page-locked host memory in ",
                  static_cast<int64_t>(std::lround(seconds * 1000)), " ms; its blocks arrive during "
                  "its first step", freed_note));
      return seconds;
    }
    barrier();
    wanted = load_expert(high);
    barrier();
    const double seconds = seconds_since(start);
    log(str_cat("--offload_model: ", name, " brought to the device in ",
                static_cast<int64_t>(std::lround(seconds * 1000)), " ms", freed_note));
    return seconds;
  }
  // The T5 encoder on its backend, loaded again when offloading freed it.
  double ensure_t5() {
    if (t5) return 0;
    const auto start = Clock::now();
    t5 = std::make_unique<T5Encoder>(*t5_weights, *text_ops);
    barrier();
    const double seconds = seconds_since(start);
    log(str_cat("--offload_model: T5 encoder brought back to the device in ",
                static_cast<int64_t>(std::lround(seconds * 1000)), " ms"));
    return seconds;
  }
  std::string residency() const {
    std::vector<std::string> resident, waiting;
    if (text_ops == ops) (t5 ? resident : waiting).push_back("T5 encoder");
    resident.push_back("VAE");
    const char* parked_note = parking ? " (page-locked)" : "";
    (high_noise ? resident : waiting).push_back(str_cat("high-noise expert", high_noise ? "" : parked_note));
    (low_noise ? resident : waiting).push_back(str_cat("low-noise expert", low_noise ? "" : parked_note));
    auto join = [](const std::vector<std::string>& parts) {
      std::string text;
      for (const std::string& part : parts) text += (text.empty() ? "" : ", ") + part;
      return text;
    };
    std::string text = str_cat("weights on the ", ops->name(), " backend: ", join(resident));
    if (!waiting.empty()) text += "; in host memory until needed: " + join(waiting);
    if (text_ops != ops) text += str_cat("; T5 encoder on the ", text_ops->name(), " backend");
    return text;
  }
};

I2VPipeline::I2VPipeline() : impl_(std::make_unique<Impl>()) {}
I2VPipeline::~I2VPipeline() = default;

std::unique_ptr<I2VPipeline> I2VPipeline::load(const std::string& checkpoint_dir, Ops& ops,
                                               I2VPipelineOptions options) {
  const auto start = Clock::now();
  std::unique_ptr<I2VPipeline> pipeline(new I2VPipeline());
  pipeline->ops_ = &ops;
  Impl& m = *pipeline->impl_;
  m.options = std::move(options);
  m.ops = &ops;
  m.text_ops = m.options.text_ops ? m.options.text_ops : &ops;
  m.layout = resolve_checkpoint(checkpoint_dir);
  require_complete(m.layout);
  m.tokenizer = std::make_unique<Tokenizer>(m.layout.tokenizer_model);
  m.t5_weights.emplace(open_weights(*m.layout.t5));
  m.t5 = std::make_unique<T5Encoder>(*m.t5_weights, *m.text_ops);
  m.vae = std::make_unique<WanVae>(WanVae::load(ops, open_weights(*m.layout.vae)));
  auto expert_config = [&](const ExpertLayout& expert) {
    const DitConfig config = load_expert_config(expert);
    WANRT_CHECK(config.model_type == "i2v", expert.config_path, ": model_type is '",
                config.model_type, "', but the image-to-video pipeline needs an 'i2v' expert");
    return config;
  };
  m.high_config = expert_config(m.layout.high_noise);
  m.low_config = expert_config(m.layout.low_noise);
  // Opening checks every tensor against the config, so a broken low-noise expert fails here
  // even when offloading loads it only at the switch.
  m.high_weights.emplace(load_expert_weights(m.layout.high_noise, m.high_config));
  m.low_weights.emplace(load_expert_weights(m.layout.low_noise, m.low_config));
  m.high_noise = m.load_expert(true);  // the first expert every video needs
  m.quantization = m.high_noise->quantization();
  // One format for both experts, checked from the low-noise checkpoint's dtypes before it is
  // loaded (or parked, when offloading).
  const Quantization low_quantization =
      WanModel::loaded_quantization(m.low_config, *m.low_weights, {.quantize = m.options.quantize});
  WANRT_CHECK(low_quantization == m.quantization, "the high-noise expert's weights are ",
              quantization_name(m.quantization), " but the low-noise expert's are ",
              quantization_name(low_quantization), "; quantize both (wanrt quantize) or neither");
  if (!m.options.offload) {
    m.low_noise = m.load_expert(false);
    // Nothing is reloaded later: the host-side views may go (their mappings close).
    m.t5_weights.reset();
    m.high_weights.reset();
    m.low_weights.reset();
  } else {
    m.start_parking();
  }
  WANRT_CHECK(m.high_config.out_dim == m.vae->config.z_dim, "the DiT predicts ",
              m.high_config.out_dim, " latent channels but the VAE has ", m.vae->config.z_dim);
  WANRT_CHECK(m.high_config.text_dim == m.t5->config().dim,
              "the DiT expects text features of width ", m.high_config.text_dim,
              " but the T5 encoder produces ", m.t5->config().dim);
  m.barrier();
  m.load_seconds = seconds_since(start);
  m.log(m.residency());
  return pipeline;
}

bool I2VPipeline::random_weights() const { return impl_->layout.random_demo; }
Quantization I2VPipeline::quantization() const { return impl_->quantization; }
double I2VPipeline::load_seconds() const { return impl_->load_seconds; }

namespace {

void validate(const I2VRequest& r) {
  WANRT_CHECK(r.frame_num >= 1 && (r.frame_num - 1) % kVaeTimeStride == 0, "--frame_num ",
              r.frame_num, " is not 4n+1 (the VAE compresses time by 4): use e.g. 81, 49, 17 or 5");
  WANRT_CHECK(r.steps >= 1, "--sample_steps must be at least 1, got ", r.steps);
  WANRT_CHECK(r.max_area > 0, "--size must give a positive area");
  WANRT_CHECK(std::isfinite(r.guide_low) && std::isfinite(r.guide_high),
              "--sample_guide_scale must be finite numbers");
  WANRT_CHECK(std::isfinite(r.shift) && r.shift > 0, "--sample_shift must be positive, got ", r.shift);
  WANRT_CHECK(r.prompt_ids || r.prompt.find_first_not_of(" \t\r\n") != std::string::npos,
              "--prompt is empty: describe the video to generate");
  WANRT_CHECK(r.image || !r.image_path.empty(), "--image is required for image-to-video");
  WANRT_CHECK(!(r.magcache && r.calibrate_magcache),
              "MagCache calibration computes every DiT call: it cannot run with MagCache on");
  WANRT_CHECK(!r.calibrate_magcache || r.steps >= 2,
              "MagCache calibration needs at least 2 sampling steps (a ratio compares a call with "
              "the same branch one step earlier), got ", r.steps);
}

// The DiT runner of one request: MagCache in i2v mode with the split at the real schedule's
// first low-noise step (spec §5.2: 2 x the high-noise steps), calibration, or plain.
DitRunner make_runner(Ops& ops, const I2VRequest& r, const FlowScheduler& scheduler) {
  if (r.calibrate_magcache) return DitRunner::calibrating(ops);
  if (!r.magcache) return DitRunner(ops);
  const int split_call = 2 * high_noise_step_count(scheduler.timesteps(), r.boundary);
  const std::vector<double> table = r.magcache_ratios.empty()
                                        ? load_default_mag_ratios(MagRatioTable::I2V_A14B)
                                        : r.magcache_ratios;
  return DitRunner(ops, MagCachePolicy(table, scheduler.num_steps(), split_call, MagCacheMode::I2V,
                                       *r.magcache));
}

Tensor input_image(const I2VRequest& r) {
  if (r.image) {
    WANRT_CHECK(r.image->dim() == 3 && r.image->size(0) == 3, "the input image must be [3, H, W], got ",
                r.image->describe());
    return r.image->to(DType::F32);
  }
  return read_image(r.image_path);  // [3, h0, w0] in [−1, 1]
}

}  // namespace

Shape I2VPipeline::latent_shape(const I2VRequest& request) const {
  validate(request);
  const Tensor image = input_image(request);
  const I2vSize size = i2v_output_size(image.size(1), image.size(2), request.max_area);
  return {impl_->vae->config.z_dim, (request.frame_num - 1) / kVaeTimeStride + 1, size.lat_h, size.lat_w};
}

I2VResult I2VPipeline::generate(const I2VRequest& request, const DenoiseProgressFn& progress) {
  Ops& ops = *ops_;
  Impl& m = *impl_;
  validate(request);
  I2VResult result;
  result.times.load = m.load_seconds;

  // The schedule and the DiT runner first: a bad MagCache setting costs no work.
  const auto scheduler = make_scheduler(request.solver, request.steps, request.shift);
  DitRunner runner = make_runner(ops, request, *scheduler);
  runner.begin_video();

  // Image → output size → bicubic resize (spec §2.2).
  const Tensor image = input_image(request);
  result.size = i2v_output_size(image.size(1), image.size(2), request.max_area);
  const int64_t lat_h = result.size.lat_h, lat_w = result.size.lat_w;
  const int64_t latent_frames = (request.frame_num - 1) / kVaeTimeStride + 1;
  const int64_t z_dim = m.vae->config.z_dim;
  const Shape latent_shape = {z_dim, latent_frames, lat_h, lat_w};
  if (request.noise)
    WANRT_CHECK(request.noise->shape() == latent_shape, "the noise tensor is ", request.noise->describe(),
                " but this request needs ", shape_str(latent_shape),
                " (16 channels, (frame_num − 1)/4 + 1 frames, height/8, width/8)");
  const Tensor resized = resize_bicubic(image, result.size.height(), result.size.width());  // [3, h, w]

  // Text (spec §2.3): prompt and negative prompt encoded separately, trimmed to their length.
  result.times.offload += m.ensure_t5();
  auto start = Clock::now();
  auto encode_text = [&](const std::optional<std::vector<int64_t>>& ids, const std::string& text) {
    if (ids) {
      WANRT_CHECK(!ids->empty() && static_cast<int64_t>(ids->size()) <= kTextLength,
                  "token ids must number 1 to ", kTextLength, ", got ", ids->size());
      return m.t5->encode(*m.text_ops, *ids, static_cast<int64_t>(ids->size()));
    }
    const TokenizedText tokens = m.tokenizer->encode(text, kTextLength, request.cleaning);
    return m.t5->encode(*m.text_ops, tokens.ids, tokens.length);  // [L, text_dim]
  };
  const Tensor context = encode_text(request.prompt_ids, request.prompt);
  const Tensor context_null = encode_text(
      request.negative_prompt_ids,
      request.negative_prompt.empty() ? std::string(kDefaultNegativePrompt) : request.negative_prompt);
  m.barrier();
  result.times.text = seconds_since(start);
  if (m.options.offload && m.text_ops == m.ops) {
    m.t5.reset();  // its device weights are not needed again in this video
    m.barrier();
    m.log("--offload_model: T5 encoder freed from the device after encoding");
  }

  // Conditioning (spec §2.4): y = [mask (4 channels, 1 on latent frame 0), VAE latent of the
  // image followed by frame_num − 1 zero (mid-grey) frames].
  start = Clock::now();
  Tensor video_in = Tensor::zeros(DType::F32, {3, request.frame_num, result.size.height(), result.size.width()});
  const int64_t plane = result.size.height() * result.size.width();
  for (int64_t c = 0; c < 3; ++c)
    std::copy_n(resized.data<float>() + c * plane, plane, video_in.data<float>() + c * request.frame_num * plane);
  const Tensor image_latent = m.vae->encode(ops, video_in);  // [16, F_l, lat_h, lat_w]
  Tensor y = Tensor::zeros(DType::F32, {kMaskChannels + z_dim, latent_frames, lat_h, lat_w});
  const int64_t latent_plane = lat_h * lat_w;
  for (int64_t c = 0; c < kMaskChannels; ++c)
    std::fill_n(y.data<float>() + c * latent_frames * latent_plane, latent_plane, 1.0f);
  std::copy_n(image_latent.data<float>(), image_latent.numel(), y.data<float>() + kMaskChannels * latent_frames * latent_plane);
  m.barrier();
  result.times.vae_encode = seconds_since(start);

  // Denoising (spec §2.6): cond then uncond call per step, CFG in float32, scheduler step.
  // Time spent bringing an offloaded expert in is kept out of the denoise time.
  Tensor latent = request.noise ? request.noise->to(DType::F32) : seeded_noise(latent_shape, request.seed);
  Tensor velocity = Tensor::empty(DType::F32, latent_shape);
  double denoise_seconds = 0;
  for (int k = 0; k < scheduler->num_steps(); ++k) {
    const int64_t t = scheduler->current_timestep();
    const bool high = static_cast<double>(t) >= request.boundary * 1000.0;
    result.times.offload += m.ensure_expert(high, runner);
    const auto step_start = Clock::now();
    const WanModel& expert = high ? *m.high_noise : *m.low_noise;
    const double guide = high ? request.guide_high : request.guide_low;
    DitInputs inputs{.x = &latent, .y = &y, .timestep = static_cast<double>(t), .context = &context};
    const Tensor v_cond = runner.call(expert, inputs);
    const bool cond_skipped = runner.last_call_skipped();
    inputs.context = &context_null;
    const Tensor v_uncond = runner.call(expert, inputs);
    const bool uncond_skipped = runner.last_call_skipped();
    const float* vc = v_cond.data<float>();
    const float* vu = v_uncond.data<float>();
    float* v = velocity.data<float>();
    for (int64_t i = 0; i < velocity.numel(); ++i) v[i] = vu[i] + static_cast<float>(guide) * (vc[i] - vu[i]);
    scheduler->step(velocity, latent);
    m.barrier();
    const double step_seconds = seconds_since(step_start);
    denoise_seconds += step_seconds;
    if (progress)
      progress({.step = k, .steps = scheduler->num_steps(), .timestep = t, .high_noise = high,
                .step_seconds = step_seconds, .elapsed_seconds = denoise_seconds,
                .cond_skipped = cond_skipped, .uncond_skipped = uncond_skipped});
  }
  result.times.denoise = denoise_seconds;
  result.seq_len = latent_frames * lat_h * lat_w / 4;
  result.dit_calls = runner.stats();
  result.measured_mag_ratios = runner.measured_ratios();
  if (const DitGraphs* graphs = runner.graphs()) {
    const DitGraphStats& g = graphs->stats();
    m.log(str_cat("DiT blocks as CUDA graphs: ", g.captures, " captured (the last in ",
                  g.capture_seconds, " s), ", g.replays, " calls replayed, ", g.eager, " eager",
                  g.failure.empty() ? std::string() : str_cat("; a capture failed, that expert ran "
                                                              "eagerly: ", g.failure)));
  }

  start = Clock::now();
  result.video = m.vae->decode(ops, latent, {.clamp = true});  // [3, frame_num, h, w]
  m.barrier();
  result.times.vae_decode = seconds_since(start);
  result.latent = std::move(latent);
  return result;
}

}  // namespace wanrt
