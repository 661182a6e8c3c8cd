#include "pipeline/i2v_pipeline.h"

#include <chrono>
#include <cmath>
#include <numbers>

#include "io/checkpoint.h"
#include "io/image.h"
#include "model/dit.h"
#include "model/vae.h"
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
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<T5Encoder> t5;
  std::unique_ptr<WanVae> vae;
  std::unique_ptr<WanModel> high_noise, low_noise;
  double load_seconds = 0;
};

I2VPipeline::I2VPipeline() : impl_(std::make_unique<Impl>()) {}
I2VPipeline::~I2VPipeline() = default;

std::unique_ptr<I2VPipeline> I2VPipeline::load(const std::string& checkpoint_dir, Ops& ops,
                                               const I2VLoadOptions& options) {
  const auto start = Clock::now();
  std::unique_ptr<I2VPipeline> pipeline(new I2VPipeline());
  pipeline->ops_ = &ops;
  Impl& m = *pipeline->impl_;
  m.layout = resolve_checkpoint(checkpoint_dir);
  require_complete(m.layout);
  m.tokenizer = std::make_unique<Tokenizer>(m.layout.tokenizer_model);
  m.t5 = std::make_unique<T5Encoder>(open_weights(*m.layout.t5), ops);
  m.vae = std::make_unique<WanVae>(WanVae::load(ops, open_weights(*m.layout.vae)));
  auto load_expert = [&](const ExpertLayout& expert) {
    const DitConfig config = load_expert_config(expert);
    WANRT_CHECK(config.model_type == "i2v", expert.config_path, ": model_type is '",
                config.model_type, "', but the image-to-video pipeline needs an 'i2v' expert");
    return std::make_unique<WanModel>(WanModel::load(config, load_expert_weights(expert, config), ops,
                                                     {.quantize = options.quantize}));
  };
  m.high_noise = load_expert(m.layout.high_noise);
  m.low_noise = load_expert(m.layout.low_noise);
  WANRT_CHECK(m.high_noise->quantization() == m.low_noise->quantization(), "the high-noise expert's weights are ",
              quantization_name(m.high_noise->quantization()), " but the low-noise expert's are ",
              quantization_name(m.low_noise->quantization()), "; quantize both (wanrt quantize) or neither");
  WANRT_CHECK(m.high_noise->config().out_dim == m.vae->config.z_dim, "the DiT predicts ",
              m.high_noise->config().out_dim, " latent channels but the VAE has ", m.vae->config.z_dim);
  WANRT_CHECK(m.high_noise->config().text_dim == m.t5->config().dim, "the DiT expects text features of width ",
              m.high_noise->config().text_dim, " but the T5 encoder produces ", m.t5->config().dim);
  m.load_seconds = seconds_since(start);
  return pipeline;
}

bool I2VPipeline::random_weights() const { return impl_->layout.random_demo; }
Quantization I2VPipeline::quantization() const { return impl_->high_noise->quantization(); }
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
  auto start = Clock::now();
  auto encode_text = [&](const std::optional<std::vector<int64_t>>& ids, const std::string& text) {
    if (ids) {
      WANRT_CHECK(!ids->empty() && static_cast<int64_t>(ids->size()) <= kTextLength,
                  "token ids must number 1 to ", kTextLength, ", got ", ids->size());
      return m.t5->encode(ops, *ids, static_cast<int64_t>(ids->size()));
    }
    const TokenizedText tokens = m.tokenizer->encode(text, kTextLength, request.cleaning);
    return m.t5->encode(ops, tokens.ids, tokens.length);  // [L, text_dim]
  };
  const Tensor context = encode_text(request.prompt_ids, request.prompt);
  const Tensor context_null = encode_text(
      request.negative_prompt_ids,
      request.negative_prompt.empty() ? std::string(kDefaultNegativePrompt) : request.negative_prompt);
  result.times.text = seconds_since(start);

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
  result.times.vae_encode = seconds_since(start);

  // Denoising (spec §2.6): cond then uncond call per step, CFG in float32, scheduler step.
  start = Clock::now();
  const auto scheduler = make_scheduler(request.solver, request.steps, request.shift);
  Tensor latent = request.noise ? request.noise->to(DType::F32) : seeded_noise(latent_shape, request.seed);
  Tensor velocity = Tensor::empty(DType::F32, latent_shape);
  for (int k = 0; k < scheduler->num_steps(); ++k) {
    const auto step_start = Clock::now();
    const int64_t t = scheduler->current_timestep();
    const bool high = static_cast<double>(t) >= request.boundary * 1000.0;
    const WanModel& expert = high ? *m.high_noise : *m.low_noise;
    const double guide = high ? request.guide_high : request.guide_low;
    DitInputs inputs{.x = &latent, .y = &y, .timestep = static_cast<double>(t), .context = &context};
    const Tensor v_cond = expert.forward(ops, inputs);
    inputs.context = &context_null;
    const Tensor v_uncond = expert.forward(ops, inputs);
    const float* vc = v_cond.data<float>();
    const float* vu = v_uncond.data<float>();
    float* v = velocity.data<float>();
    for (int64_t i = 0; i < velocity.numel(); ++i) v[i] = vu[i] + static_cast<float>(guide) * (vc[i] - vu[i]);
    scheduler->step(velocity, latent);
    if (progress)
      progress({.step = k, .steps = scheduler->num_steps(), .timestep = t, .high_noise = high,
                .step_seconds = seconds_since(step_start), .elapsed_seconds = seconds_since(start)});
  }
  result.times.denoise = seconds_since(start);
  result.seq_len = latent_frames * lat_h * lat_w / 4;

  start = Clock::now();
  result.video = m.vae->decode(ops, latent, {.clamp = true});  // [3, frame_num, h, w]
  result.times.vae_decode = seconds_since(start);
  result.latent = std::move(latent);
  return result;
}

}  // namespace wanrt
