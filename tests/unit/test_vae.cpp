// The Wan2.1 VAE on random weights: the chunked, cached encode/decode against the spec's
// whole-sequence formulation (§2.6) written here from plain ops, streaming, clamping, the
// loader's checks and the size errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "backends/ops.h"
#include "io/checkpoint.h"
#include "io/tensor_store.h"
#include "model/vae.h"
#include "test_support.h"

namespace wanrt {
namespace {

using testing::random_normal;
using testing::relative_error;

// Small but complete: three stages, both temporal halvings, a shortcut in every stage change.
VaeConfig tiny_config() {
  VaeConfig config;
  config.dim = 4;
  config.z_dim = 16;
  config.dim_mult = {1, 2, 2};
  config.num_res_blocks = 1;
  config.temporal_downsample = {true, true};
  return config;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Random weights in the checkpoint's layout, scaled so activations stay O(1).
TensorStore random_checkpoint(const VaeConfig& config, std::mt19937_64& rng) {
  TensorStore store;
  for (const auto& [key, shape] : config.checkpoint_layout()) {
    Tensor tensor;
    if (ends_with(key, ".gamma")) {
      tensor = random_normal(shape, rng, 0.1f);
      for (float& v : tensor.floats()) v += 1.0f;
    } else if (ends_with(key, ".bias")) {
      tensor = random_normal(shape, rng, 0.1f);
    } else {
      const int64_t fan_in = shape_numel(shape) / shape[0];
      tensor = random_normal(shape, rng, 1.0f / std::sqrt(static_cast<float>(fan_in)));
    }
    store.add(key, tensor, "random.safetensors");
  }
  return store;
}

// ---- the whole-sequence formulation (spec §2.6), from plain ops ----

Tensor causal_conv(Ops& ops, const vae::CausalConv3d& conv, const Tensor& x, int64_t pad) {
  Conv3dOptions options;
  options.pad_t_front = 2 * pad;
  options.pad_top = options.pad_bottom = options.pad_left = options.pad_right = pad;
  return ops.conv3d(x, conv.weight, &conv.bias, options);
}

Tensor norm_silu(Ops& ops, const Tensor& x, const Tensor& gamma) {
  return ops.activation(ops.channel_rms_norm(x, gamma), Activation::Silu);
}

Tensor whole_residual(Ops& ops, const vae::ResidualBlock& block, const Tensor& x) {
  const Tensor identity = block.shortcut ? causal_conv(ops, *block.shortcut, x, 0) : x;
  Tensor r = causal_conv(ops, block.conv_in, norm_silu(ops, x, block.norm_in_gamma), 1);
  r = causal_conv(ops, block.conv_out, norm_silu(ops, r, block.norm_out_gamma), 1);
  return ops.add(r, identity);
}

// [2C, T, H, W] -> [C, 2T, H, W]: channels [0:C] of frame k become frame 2k, [C:2C] 2k+1.
Tensor interleave_on_host(Ops& ops, const Tensor& device_u) {
  const Tensor u = ops.download(device_u);
  const int64_t c = u.size(0) / 2, frames = u.size(1), plane = u.size(2) * u.size(3);
  Tensor out = Tensor::empty(DType::F32, {c, 2 * frames, u.size(2), u.size(3)});
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t k = 0; k < frames; ++k)
      for (int64_t half = 0; half < 2; ++half)
        for (int64_t p = 0; p < plane; ++p)
          out.data<float>()[(ch * 2 * frames + 2 * k + half) * plane + p] =
              u.data<float>()[((half * c + ch) * frames + k) * plane + p];
  return ops.upload(out);
}

Tensor whole_resample(Ops& ops, const vae::Resample& block, const Tensor& x) {
  const auto& spatial = block.spatial_conv;
  Conv3dOptions down;  // zero pad right and bottom, then stride 2
  down.stride_h = down.stride_w = 2;
  down.pad_bottom = down.pad_right = 1;
  Conv3dOptions up;  // 3×3, padding 1
  up.pad_top = up.pad_bottom = up.pad_left = up.pad_right = 1;
  switch (block.mode) {
    case vae::ResampleMode::Downsample2d:
      return ops.conv3d(x, spatial.weight, &spatial.bias, down);
    case vae::ResampleMode::Upsample2d:
      return ops.conv3d(ops.upsample_nearest_2x(x), spatial.weight, &spatial.bias, up);
    case vae::ResampleMode::Downsample3d: {
      // [x0] ++ valid stride-2 conv over all frames.
      const Tensor y = ops.conv3d(x, spatial.weight, &spatial.bias, down);
      if (y.size(1) == 1) return y;
      Conv3dOptions time;
      time.stride_t = 2;
      return ops.concat_frames(ops.frames(y, 0, 1),
                               ops.conv3d(y, block.time_conv.weight, &block.time_conv.bias, time));
    }
    case vae::ResampleMode::Upsample3d: {
      // u = causal time_conv over x with frame 0 replaced by zeros; [x0] ++ interleave(u[1:]).
      const int64_t frames = x.size(1);
      Tensor doubled = ops.frames(x, 0, 1);
      if (frames > 1) {
        const Tensor zero_frame = ops.zeros({x.size(0), 1, x.size(2), x.size(3)});
        Conv3dOptions time;
        time.pad_t_front = 2;
        const Tensor u =
            ops.conv3d(ops.concat_frames(zero_frame, ops.frames(x, 1, frames)),
                       block.time_conv.weight, &block.time_conv.bias, time);  // [2C, T, H, W]
        doubled = ops.concat_frames(doubled, interleave_on_host(ops, ops.frames(u, 1, frames)));
      }
      return ops.conv3d(ops.upsample_nearest_2x(doubled), spatial.weight, &spatial.bias, up);
    }
  }
  return Tensor();
}

Tensor whole_middle(Ops& ops, const vae::MiddleBlocks& middle, const Tensor& x) {
  return whole_residual(ops, middle.second,
                        middle.attention.forward(ops, whole_residual(ops, middle.first, x)));
}

Tensor whole_encode(Ops& ops, const WanVae& vae, const Tensor& video) {
  const vae::Encoder& encoder = vae.encoder;
  Tensor x = causal_conv(ops, encoder.conv_in, ops.upload(video), 1);
  for (const auto& stage : encoder.stages) {
    for (const auto& block : stage.blocks) x = whole_residual(ops, block, x);
    if (stage.downsample) x = whole_resample(ops, *stage.downsample, x);
  }
  x = whole_middle(ops, encoder.middle, x);
  x = causal_conv(ops, encoder.head_conv, norm_silu(ops, x, encoder.head_norm_gamma), 1);
  return vae::normalize_latent(ops.download(causal_conv(ops, encoder.to_mean, x, 0)));
}

Tensor whole_decode(Ops& ops, const WanVae& vae, const Tensor& latent) {
  const vae::Decoder& decoder = vae.decoder;
  Tensor x = ops.upload(vae::denormalize_latent(latent));
  x = causal_conv(ops, decoder.conv_in, causal_conv(ops, decoder.from_latent, x, 0), 1);
  x = whole_middle(ops, decoder.middle, x);
  for (const auto& stage : decoder.stages) {
    for (const auto& block : stage.blocks) x = whole_residual(ops, block, x);
    if (stage.upsample) x = whole_resample(ops, *stage.upsample, x);
  }
  return ops.download(
      causal_conv(ops, decoder.head_conv, norm_silu(ops, x, decoder.head_norm_gamma), 1));
}

class VaeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
    vae_ = WanVae::load(*ops_, random_checkpoint(tiny_config(), rng_));
  }
  std::unique_ptr<Ops> ops_ = make_cpu_ops();
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  WanVae vae_;
};

TEST_F(VaeTest, ConfigIsInferredFromTheCheckpoint) {
  EXPECT_EQ(vae_.config, tiny_config()) << vae_.config.describe();
  EXPECT_EQ(vae_.config.spatial_factor(), 4);
  EXPECT_EQ(vae_.config.temporal_factor(), 4);
}

TEST(VaeLayout, ReleasedCheckpointHas194TensorsAndItsParameterCount) {
  // Spec §2.1 / §2.5: 194 tensors, 126,892,531 parameters, in this order at the ends.
  const auto layout = VaeConfig::wan21().checkpoint_layout();
  ASSERT_EQ(layout.size(), 194u);
  int64_t params = 0;
  for (const auto& entry : layout) params += shape_numel(entry.second);
  EXPECT_EQ(params, 126892531);
  EXPECT_EQ(layout.front().first, "encoder.conv1.weight");
  EXPECT_EQ(shape_str(layout.front().second), "[96, 3, 3, 3, 3]");
  EXPECT_EQ(layout.back().first, "decoder.head.2.bias");
  EXPECT_EQ(shape_str(layout.back().second), "[3]");
}

// The checkpoint inspector (io/checkpoint.h) lists the VAE's tensors on its own; the model's
// layout must be the same list, in the same order.
TEST(VaeLayout, AgreesWithTheCheckpointInspector) {
  for (const VaeConfig& config : {VaeConfig::wan21(), tiny_config()}) {
    SCOPED_TRACE(config.describe());
    VaeCheckpointConfig inspected;
    inspected.dim = config.dim;
    inspected.z_dim = config.z_dim;
    inspected.dim_mult = config.dim_mult;
    inspected.num_res_blocks = config.num_res_blocks;
    inspected.temporal_downsample = config.temporal_downsample;
    EXPECT_EQ(config.checkpoint_layout(), inspected.expected_tensors());
  }
}

TEST_F(VaeTest, ChunkedEncodeEqualsWholeSequence) {
  SCOPED_TRACE(seed_);
  const Tensor video = testing::random_uniform({3, 9, 8, 12}, rng_, -1.0f, 1.0f);
  const Tensor chunked = vae_.encode(*ops_, video);
  ASSERT_EQ(shape_str(chunked.shape()), "[16, 3, 2, 3]");
  const Tensor whole = whole_encode(*ops_, vae_, video);
  const double error = relative_error(chunked, whole);
  std::printf("chunked vs whole-sequence encode: relative error %.3g\n", error);
  EXPECT_LT(error, 1e-6);
  // The caches are cleared between calls: the same video gives the same latent.
  EXPECT_EQ(relative_error(vae_.encode(*ops_, video), chunked), 0.0);
}

TEST_F(VaeTest, ChunkedDecodeEqualsWholeSequence) {
  SCOPED_TRACE(seed_);
  const Tensor latent = random_normal({16, 3, 2, 3}, rng_);
  VaeDecodeOptions unclamped;
  unclamped.clamp = false;
  const Tensor chunked = vae_.decode(*ops_, latent, unclamped);
  ASSERT_EQ(shape_str(chunked.shape()), "[3, 9, 8, 12]");
  const Tensor whole = whole_decode(*ops_, vae_, latent);
  const double error = relative_error(chunked, whole);
  std::printf("chunked vs whole-sequence decode: relative error %.3g\n", error);
  EXPECT_LT(error, 1e-6);
  EXPECT_EQ(relative_error(vae_.decode(*ops_, latent, unclamped), chunked), 0.0);
}

// The blocks also keep the whole-sequence semantics for chunks longer than the reference's
// (spec §2.6 allows several latent frames per pass): the whole clip at once, or frame 0 and
// then the rest.
TEST_F(VaeTest, LongerChunksKeepTheWholeSequenceSemantics) {
  SCOPED_TRACE(seed_);
  Ops& ops = *ops_;
  const Tensor video = testing::random_uniform({3, 9, 8, 12}, rng_, -1.0f, 1.0f);
  const Tensor latent = random_normal({16, 3, 2, 3}, rng_);
  const Tensor expected_latent = whole_encode(ops, vae_, video);
  const Tensor expected_video = whole_decode(ops, vae_, latent);
  const Tensor video_in = ops.upload(video);
  const Tensor latent_in = ops.upload(vae::denormalize_latent(latent));

  vae_.reset();
  const Tensor one_pass = vae_.encoder.forward(ops, video_in);  // [16, 3, 2, 3]
  EXPECT_LT(relative_error(vae::normalize_latent(ops.download(one_pass)), expected_latent), 1e-6);
  vae_.reset();
  const Tensor first = vae_.encoder.forward(ops, ops.frames(video_in, 0, 1));
  const Tensor rest = vae_.encoder.forward(ops, ops.frames(video_in, 1, 9));
  EXPECT_LT(relative_error(vae::normalize_latent(ops.download(ops.concat_frames(first, rest))),
                           expected_latent),
            1e-6);

  vae_.reset();
  EXPECT_LT(relative_error(ops.download(vae_.decoder.forward(ops, latent_in)), expected_video),
            1e-6);
  vae_.reset();
  const Tensor first_frame = vae_.decoder.forward(ops, ops.frames(latent_in, 0, 1));
  const Tensor later_frames = vae_.decoder.forward(ops, ops.frames(latent_in, 1, 3));
  EXPECT_LT(relative_error(ops.download(ops.concat_frames(first_frame, later_frames)),
                           expected_video),
            1e-6);
  vae_.reset();
}

TEST_F(VaeTest, DecodeStreamsTheSameFramesAsTheWholeVideo) {
  SCOPED_TRACE(seed_);
  const Tensor latent = random_normal({16, 3, 2, 3}, rng_);
  const Tensor whole = vae_.decode(*ops_, latent);
  std::vector<std::pair<int64_t, int64_t>> chunks;  // (first frame, count)
  Tensor streamed = testing::poisoned(whole.shape());
  vae_.decode_streaming(*ops_, latent, [&](const Tensor& frames, int64_t first_frame) {
    chunks.emplace_back(first_frame, frames.size(1));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t f = 0; f < frames.size(1); ++f)
        for (int64_t p = 0; p < 8 * 12; ++p)
          streamed.data<float>()[(c * 9 + first_frame + f) * 96 + p] =
              frames.data<float>()[(c * frames.size(1) + f) * 96 + p];
  });
  const std::vector<std::pair<int64_t, int64_t>> expected = {{0, 1}, {1, 4}, {5, 4}};
  EXPECT_EQ(chunks, expected);
  EXPECT_EQ(relative_error(streamed, whole), 0.0);
}

TEST_F(VaeTest, ClampLimitsTheDecodedVideoToPlusMinusOne) {
  const Tensor latent = random_normal({16, 2, 2, 3}, rng_, 3.0f);
  VaeDecodeOptions unclamped;
  unclamped.clamp = false;
  const Tensor raw = vae_.decode(*ops_, latent, unclamped);
  Tensor expected = raw.clone();
  for (float& v : expected.floats()) v = std::clamp(v, -1.0f, 1.0f);
  EXPECT_EQ(relative_error(vae_.decode(*ops_, latent), expected), 0.0);
}

TEST(VaeOps, ChannelRmsNormOfZerosIsZeroNotNaN) {
  auto ops = make_cpu_ops();
  const Tensor gamma = Tensor::from_floats(std::vector<float>{1.0f, 2.0f, 3.0f}, {3});
  const Tensor out = ops->download(ops->channel_rms_norm(ops->zeros({3, 2, 2, 2}), gamma));
  for (float v : out.floats()) EXPECT_EQ(v, 0.0f);
}

TEST_F(VaeTest, AllZeroVideoEncodesToFiniteValues) {
  const Tensor latent = vae_.encode(*ops_, Tensor::zeros(DType::F32, {3, 5, 8, 8}));
  for (float v : latent.floats()) ASSERT_TRUE(std::isfinite(v));
}

void expect_error_mentioning(const std::function<void()>& call, const std::string& text) {
  try {
    call();
    ADD_FAILURE() << "expected an error mentioning '" << text << "'";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(text), std::string::npos) << error.what();
  }
}

TEST_F(VaeTest, BadSizesAreErrorsNamingThem) {
  Ops& ops = *ops_;
  const auto encode = [&](Shape shape) {
    return [&, shape] { vae_.encode(ops, Tensor::zeros(DType::F32, shape)); };
  };
  expect_error_mentioning(encode({3, 4, 8, 8}), "4 frames");
  expect_error_mentioning(encode({3, 6, 8, 8}), "1 + 4");
  expect_error_mentioning(encode({3, 5, 10, 8}), "height 10");
  expect_error_mentioning(encode({3, 5, 8, 6}), "width 6");
  expect_error_mentioning(encode({4, 5, 8, 8}), "[4, 5, 8, 8]");
  expect_error_mentioning(encode({3, 5, 8}), "[3, 5, 8]");
  const auto decode = [&](Shape shape) {
    return [&, shape] { vae_.decode(ops, Tensor::zeros(DType::F32, shape)); };
  };
  expect_error_mentioning(decode({8, 2, 2, 2}), "[8, 2, 2, 2]");
  expect_error_mentioning(decode({16, 0, 2, 2}), "[16, 0, 2, 2]");
}

TEST(VaeLoad, CheckpointProblemsNameTheTensor) {
  std::mt19937_64 rng(testing::test_seed());
  auto ops = make_cpu_ops();
  const VaeConfig config = tiny_config();
  const auto without = [&](const std::string& skipped, const Shape* replacement) {
    TensorStore store;
    for (const auto& [key, shape] : config.checkpoint_layout()) {
      if (key != skipped) store.add(key, random_normal(shape, rng), "ckpt.pth");
      else if (replacement) store.add(key, random_normal(*replacement, rng), "ckpt.pth");
    }
    return store;
  };
  const std::string missing = "decoder.middle.1.proj.bias";
  expect_error_mentioning([&] { WanVae::load(*ops, without(missing, nullptr)); }, missing);
  const Shape wrong = {7};
  expect_error_mentioning([&] { WanVae::load(*ops, without("encoder.head.2.bias", &wrong)); },
                          "encoder.head.2.bias");
  TensorStore extra = without("", nullptr);
  extra.add("decoder.upsamples.99.weight", random_normal({2}, rng), "ckpt.pth");
  expect_error_mentioning([&] { WanVae::load(*ops, extra); }, "decoder.upsamples.99.weight");
}

}  // namespace
}  // namespace wanrt
