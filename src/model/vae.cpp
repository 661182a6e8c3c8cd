#include "model/vae.h"

#include <algorithm>
#include <array>
#include <sstream>

#include "io/tensor_store.h"

namespace wanrt {

namespace {

std::string key_at(const std::string& list, int64_t index) {
  return str_cat(list, ".", index);
}

// Records the names and shapes the model asks for. The tensors it hands back are views of one
// shared zero buffer (as large as the largest tensor so far), so listing the full-size model's
// 127 M parameters costs one 16 MB buffer.
class LayoutRecorder final : public vae::WeightLoader {
 public:
  Tensor host(const std::string& key, const Shape& shape) override {
    layout.emplace_back(key, shape);
    const int64_t count = shape_numel(shape);
    if (count > zeros_.numel()) zeros_ = Tensor::zeros(DType::F32, {count});
    return zeros_.slice_rows(0, count).reshape(shape);
  }
  Tensor upload(const Tensor& host) override { return host; }
  std::vector<std::pair<std::string, Shape>> layout;

 private:
  Tensor zeros_ = Tensor::zeros(DType::F32, {0});
};

}  // namespace

// ---- VaeConfig ----

VaeConfig VaeConfig::wan21() { return VaeConfig{}; }

VaeConfig VaeConfig::from_weights(const TensorStore& weights) {
  VaeConfig config;
  const Tensor& conv_in = weights.get("encoder.conv1.weight");
  WANRT_CHECK(conv_in.dim() == 5 && conv_in.size(1) == 3, weights.file_of("encoder.conv1.weight"),
              ": encoder.conv1.weight is ", conv_in.describe(),
              ", expected [dim, 3, 3, 3, 3] (is this a Wan2.1 VAE checkpoint?)");
  config.dim = conv_in.size(0);
  const Tensor& post_quant = weights.get("conv2.weight");
  WANRT_CHECK(post_quant.dim() == 5 && post_quant.size(0) >= 1, weights.file_of("conv2.weight"),
              ": conv2.weight is ", post_quant.describe(), ", expected [z_dim, z_dim, 1, 1, 1]");
  config.z_dim = post_quant.size(0);

  // encoder.downsamples.* is a flat list: num_res_blocks residual blocks per stage, with a
  // Resample after every stage but the last.
  config.dim_mult.clear();
  config.temporal_downsample.clear();
  std::vector<int64_t> blocks_per_stage;
  int64_t blocks_in_stage = 0, stage_width = 0;
  for (int64_t index = 0;; ++index) {
    const std::string prefix = key_at("encoder.downsamples", index);
    if (weights.contains(prefix + ".residual.2.weight")) {
      stage_width = weights.get(prefix + ".residual.2.weight").size(0);
      ++blocks_in_stage;
      continue;
    }
    const bool resample = weights.contains(prefix + ".resample.1.weight");
    if (!resample && blocks_in_stage == 0) break;
    WANRT_CHECK(blocks_in_stage > 0 && stage_width % config.dim == 0, weights.sources(),
                ": encoder stage ", blocks_per_stage.size(), " ends at ", prefix,
                " with ", blocks_in_stage, " residual blocks of width ", stage_width,
                "; expected at least one, of a multiple of dim ", config.dim);
    config.dim_mult.push_back(stage_width / config.dim);
    blocks_per_stage.push_back(blocks_in_stage);
    blocks_in_stage = 0;
    if (!resample) break;
    config.temporal_downsample.push_back(weights.contains(prefix + ".time_conv.weight"));
  }
  WANRT_CHECK(!blocks_per_stage.empty(), weights.sources(),
              ": no encoder.downsamples.0.residual.2.weight; not a Wan2.1 VAE checkpoint");
  for (size_t i = 1; i < blocks_per_stage.size(); ++i)
    WANRT_CHECK(blocks_per_stage[i] == blocks_per_stage[0], weights.sources(), ": encoder stage ",
                i, " has ", blocks_per_stage[i], " residual blocks but stage 0 has ",
                blocks_per_stage[0], "; the VAE has the same number in every stage");
  config.num_res_blocks = blocks_per_stage[0];
  return config;
}

int64_t VaeConfig::spatial_factor() const {
  return int64_t{1} << (dim_mult.size() - 1);
}

int64_t VaeConfig::temporal_factor() const {
  return int64_t{1} << std::count(temporal_downsample.begin(), temporal_downsample.end(), true);
}

std::vector<std::pair<std::string, Shape>> VaeConfig::checkpoint_layout() const {
  LayoutRecorder recorder;
  vae::Encoder::load(recorder, *this);
  vae::Decoder::load(recorder, *this);
  return std::move(recorder.layout);
}

std::string VaeConfig::describe() const {
  std::ostringstream out;
  out << "dim " << dim << ", z_dim " << z_dim << ", dim_mult [";
  for (size_t i = 0; i < dim_mult.size(); ++i) out << (i ? ", " : "") << dim_mult[i];
  out << "], num_res_blocks " << num_res_blocks << ", temporal_downsample [";
  for (size_t i = 0; i < temporal_downsample.size(); ++i)
    out << (i ? ", " : "") << (temporal_downsample[i] ? "true" : "false");
  out << "]";
  return out.str();
}

namespace vae {

// ---- MiddleBlocks ----

MiddleBlocks MiddleBlocks::load(WeightLoader& source, const std::string& prefix,
                                int64_t channels) {
  MiddleBlocks middle;
  middle.first = ResidualBlock::load(source, prefix + ".0", channels, channels);
  middle.attention = AttentionBlock::load(source, prefix + ".1", channels);
  middle.second = ResidualBlock::load(source, prefix + ".2", channels, channels);
  return middle;
}

Tensor MiddleBlocks::forward(Ops& ops, const Tensor& x) {
  return second.forward(ops, attention.forward(ops, first.forward(ops, x)));
}

void MiddleBlocks::reset() {
  first.reset();
  second.reset();
}

// ---- Encoder ----

Encoder Encoder::load(WeightLoader& source, const VaeConfig& config) {
  WANRT_CHECK(!config.dim_mult.empty() &&
                  config.temporal_downsample.size() + 1 == config.dim_mult.size(),
              "VAE config: ", config.temporal_downsample.size(),
              " temporal flags for ", config.dim_mult.size(), " stages (", config.describe(),
              "); expected one flag per stage but the last");
  Encoder encoder;
  encoder.conv_in = CausalConv3d::load(source, "encoder.conv1", 3, config.dim, {3, 3, 3}, 2, 1);
  int64_t width = config.dim, index = 0;
  for (size_t s = 0; s < config.dim_mult.size(); ++s) {
    const int64_t stage_width = config.dim * config.dim_mult[s];
    EncoderStage stage;
    for (int64_t b = 0; b < config.num_res_blocks; ++b) {
      stage.blocks.push_back(ResidualBlock::load(
          source, key_at("encoder.downsamples", index++), width, stage_width));
      width = stage_width;
    }
    if (s + 1 < config.dim_mult.size())
      stage.downsample = Resample::load(
          source, key_at("encoder.downsamples", index++), width,
          config.temporal_downsample[s] ? ResampleMode::Downsample3d : ResampleMode::Downsample2d);
    encoder.stages.push_back(std::move(stage));
  }
  encoder.middle = MiddleBlocks::load(source, "encoder.middle", width);
  encoder.head_norm_gamma =
      source.upload(source.host("encoder.head.0.gamma", {width, 1, 1, 1}).reshape({width}));
  encoder.head_conv =
      CausalConv3d::load(source, "encoder.head.2", width, 2 * config.z_dim, {3, 3, 3}, 2, 1);
  // Top-level conv1, kept to its mean rows.
  const int64_t moments = 2 * config.z_dim;
  encoder.to_mean.weight = source.upload(
      source.host("conv1.weight", {moments, moments, 1, 1, 1}).slice_rows(0, config.z_dim));
  encoder.to_mean.bias =
      source.upload(source.host("conv1.bias", {moments}).slice_rows(0, config.z_dim));
  return encoder;
}

Tensor Encoder::forward(Ops& ops, const Tensor& video) {
  Tensor x = conv_in.forward(ops, video);  // [dim, t, H, W]
  for (EncoderStage& stage : stages) {
    for (ResidualBlock& block : stage.blocks) x = block.forward(ops, x);  // [width, t, H, W]
    if (stage.downsample) x = stage.downsample->forward(ops, x);  // [width, t or t/2, H/2, W/2]
  }
  x = middle.forward(ops, x);                                         // [top, t', h, w]
  x = head_conv.forward(ops, norm_silu(ops, x, head_norm_gamma));    // [2·z, t', h, w]
  return to_mean.forward(ops, x);                                     // [z, t', h, w]
}

void Encoder::reset() {
  conv_in.reset();
  for (EncoderStage& stage : stages) {
    for (ResidualBlock& block : stage.blocks) block.reset();
    if (stage.downsample) stage.downsample->reset();
  }
  middle.reset();
  head_conv.reset();
}

// ---- Decoder ----

Decoder Decoder::load(WeightLoader& source, const VaeConfig& config) {
  // Stage widths, top first: dim · [dim_mult.back(), reversed dim_mult...].
  std::vector<int64_t> widths = {config.dim * config.dim_mult.back()};
  for (auto m = config.dim_mult.rbegin(); m != config.dim_mult.rend(); ++m)
    widths.push_back(config.dim * *m);
  Decoder decoder;
  decoder.from_latent =
      CausalConv3d::load(source, "conv2", config.z_dim, config.z_dim, {1, 1, 1}, 0, 0);
  decoder.conv_in =
      CausalConv3d::load(source, "decoder.conv1", config.z_dim, widths[0], {3, 3, 3}, 2, 1);
  decoder.middle = MiddleBlocks::load(source, "decoder.middle", widths[0]);
  const size_t stage_count = config.dim_mult.size();
  int64_t index = 0;
  for (size_t s = 0; s < stage_count; ++s) {
    // Every upsample halves the width, so a stage after one starts at half its predecessor.
    int64_t width = s == 0 ? widths[0] : widths[s] / 2;
    const int64_t stage_width = widths[s + 1];
    DecoderStage stage;
    for (int64_t b = 0; b < config.num_res_blocks + 1; ++b) {
      stage.blocks.push_back(
          ResidualBlock::load(source, key_at("decoder.upsamples", index++), width, stage_width));
      width = stage_width;
    }
    if (s + 1 < stage_count) {
      // The decoder undoes the encoder's temporal downsampling in reverse order.
      const bool temporal = config.temporal_downsample[stage_count - 2 - s];
      stage.upsample = Resample::load(source, key_at("decoder.upsamples", index++), width,
                                      temporal ? ResampleMode::Upsample3d
                                               : ResampleMode::Upsample2d);
    }
    decoder.stages.push_back(std::move(stage));
  }
  const int64_t width = widths.back();
  decoder.head_norm_gamma =
      source.upload(source.host("decoder.head.0.gamma", {width, 1, 1, 1}).reshape({width}));
  decoder.head_conv = CausalConv3d::load(source, "decoder.head.2", width, 3, {3, 3, 3}, 2, 1);
  return decoder;
}

Tensor Decoder::forward(Ops& ops, const Tensor& latent) {
  Tensor x = conv_in.forward(ops, from_latent.forward(ops, latent));  // [top, t, h, w]
  x = middle.forward(ops, x);                                          // [top, t, h, w]
  for (DecoderStage& stage : stages) {
    for (ResidualBlock& block : stage.blocks) x = block.forward(ops, x);  // [width, t, H, W]
    if (stage.upsample) x = stage.upsample->forward(ops, x);  // [width/2, t or ~2t, 2H, 2W]
  }
  return head_conv.forward(ops, norm_silu(ops, x, head_norm_gamma));  // [3, t', 8h, 8w]
}

void Decoder::reset() {
  conv_in.reset();
  middle.reset();
  for (DecoderStage& stage : stages) {
    for (ResidualBlock& block : stage.blocks) block.reset();
    if (stage.upsample) stage.upsample->reset();
  }
  head_conv.reset();
}

// ---- latent normalisation (spec §2.7) ----

namespace {

constexpr std::array<float, 16> kLatentMean = {
    -0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
    0.4134f,  -0.0715f, 0.5517f,  -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f};
constexpr std::array<float, 16> kLatentStd = {
    2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
    3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

template <typename PerValue>
Tensor map_latent(const Tensor& latent, const char* what, PerValue per_value) {
  WANRT_CHECK(latent.device() == Device::Host && latent.dim() == 4 &&
                  latent.size(0) == static_cast<int64_t>(kLatentMean.size()),
              what, ": expected a host latent [16, T, h, w], got ", latent.describe(),
              " (the normalisation tables have 16 channels)");
  Tensor out = latent.to(DType::F32);
  const int64_t channels = out.size(0), per_channel = out.numel() / channels;
  float* values = out.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    // The reference keeps 1/std as a float32 tensor and uses that reciprocal both ways.
    const float mean = kLatentMean[static_cast<size_t>(c)];
    const float inv_std = 1.0f / kLatentStd[static_cast<size_t>(c)];
    for (int64_t i = 0; i < per_channel; ++i) {
      float& v = values[c * per_channel + i];
      v = per_value(v, mean, inv_std);
    }
  }
  return out;
}

}  // namespace

Tensor normalize_latent(const Tensor& mean_latent) {
  return map_latent(mean_latent, "normalize_latent",
                    [](float mu, float mean, float inv_std) { return (mu - mean) * inv_std; });
}

Tensor denormalize_latent(const Tensor& latent) {
  return map_latent(latent, "denormalize_latent",
                    [](float z, float mean, float inv_std) { return z / inv_std + mean; });
}

}  // namespace vae
}  // namespace wanrt
