// The Wan2.1 VAE (spec §2): encoder, decoder and latent normalisation, with the reference's
// chunked schedule and causal temporal caches, so memory stays flat in the video's length.
//
//   WanVae vae = WanVae::load(ops, read_pth(".../Wan2.1_VAE.pth"));
//   Tensor latent = vae.encode(ops, video);         // [3, 1+4k, H, W] -> [16, 1+k, H/8, W/8]
//   Tensor video = vae.decode(ops, latent);         // [16, T, h, w] -> [3, 1+4(T-1), 8h, 8w]
//
// The configuration is inferred from the checkpoint's tensor shapes; every tensor is mapped to
// a struct member once at load, its shape checked (the error names the key), and a tensor the
// model does not use is an error, as the reference loads strictly.
//
// The blocks hold the temporal caches of the video in progress, so one WanVae runs one encode
// or decode at a time; both start and end with reset().
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/vae_blocks.h"

namespace wanrt {

class TensorStore;

struct VaeConfig {
  int64_t dim = 96;   // base width; stage widths are dim · dim_mult[i]
  int64_t z_dim = 16;  // latent channels (the encoder emits 2·z_dim: mean and log-variance)
  std::vector<int64_t> dim_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;  // per encoder stage; the decoder has one more per stage
  // One flag per downsampling stage transition (dim_mult.size() − 1 of them): whether it
  // also halves time. The decoder upsamples in the reverse order.
  std::vector<bool> temporal_downsample = {false, true, true};

  // The released Wan2.1_VAE.pth (spec §2.1).
  static VaeConfig wan21();
  // Read from the checkpoint's tensor names and shapes: dim from encoder.conv1, z_dim from
  // conv2, stages and widths from encoder.downsamples.*, temporal flags from which Resample
  // has a time_conv. The full shape check happens when the model is built.
  static VaeConfig from_weights(const TensorStore& weights);

  int64_t spatial_factor() const;   // 2^(stages − 1): 8
  int64_t temporal_factor() const;  // 2^(temporal flags set): 4
  // Every checkpoint tensor with its shape, in the reference's file order.
  std::vector<std::pair<std::string, Shape>> checkpoint_layout() const;
  std::string describe() const;
  bool operator==(const VaeConfig&) const = default;
};

namespace vae {

// A ResidualBlock, an AttentionBlock and a ResidualBlock at the top width.
struct MiddleBlocks {
  ResidualBlock first;
  AttentionBlock attention;
  ResidualBlock second;

  static MiddleBlocks load(WeightLoader& source, const std::string& prefix, int64_t channels);
  Tensor forward(Ops& ops, const Tensor& x);
  void reset();
};

struct EncoderStage {
  std::vector<ResidualBlock> blocks;
  std::optional<Resample> downsample;  // every stage but the last
};

struct Encoder {
  CausalConv3d conv_in;  // encoder.conv1: 3 -> dim, kernel 3
  std::vector<EncoderStage> stages;
  MiddleBlocks middle;
  Tensor head_norm_gamma;  // encoder.head.0
  CausalConv3d head_conv;  // encoder.head.2: top width -> 2·z_dim, kernel 3
  // The top-level conv1 (2·z_dim -> 2·z_dim, 1×1×1) restricted to its mean half, rows
  // [0:z_dim]: the log-variance is never used.
  CausalConv3d to_mean;

  static Encoder load(WeightLoader& source, const VaeConfig& config);
  // The next chunk of video [3, t, H, W] -> the latent mean [z_dim, t', H/8, W/8]
  // (before normalisation), continuing the caches of the previous chunks.
  Tensor forward(Ops& ops, const Tensor& video);
  void reset();
};

struct DecoderStage {
  std::vector<ResidualBlock> blocks;
  std::optional<Resample> upsample;  // every stage but the last
};

struct Decoder {
  CausalConv3d from_latent;  // top-level conv2: z_dim -> z_dim, 1×1×1
  CausalConv3d conv_in;      // decoder.conv1: z_dim -> top width, kernel 3
  MiddleBlocks middle;
  std::vector<DecoderStage> stages;
  Tensor head_norm_gamma;  // decoder.head.0
  CausalConv3d head_conv;  // decoder.head.2: dim -> 3, kernel 3

  static Decoder load(WeightLoader& source, const VaeConfig& config);
  // The next chunk of de-normalised latent [z_dim, t, h, w] -> video frames [3, t', 8h, 8w],
  // continuing the caches of the previous chunks.
  Tensor forward(Ops& ops, const Tensor& latent);
  void reset();
};

// The reference's per-channel latent statistics (spec §2.7), z_dim = 16 only.
// normalize: (mu − mean) · (1/std); denormalize: z / (1/std) + mean, the reciprocal in
// float32 as the reference keeps it. Host F32 [16, T, h, w] in and out.
Tensor normalize_latent(const Tensor& mean_latent);
Tensor denormalize_latent(const Tensor& latent);

}  // namespace vae

struct VaeDecodeOptions {
  bool clamp = true;  // the pipeline clamps to [−1, 1]; the golden decode_out is unclamped
};

// Receives decoded frames as they are produced: `frames` host F32 [3, n, H, W] are output
// frames [first_frame, first_frame + n) (1 frame for the first latent frame, then 4 each).
using VaeFrameSink = std::function<void(const Tensor& frames, int64_t first_frame)>;

struct WanVae {
  VaeConfig config;
  vae::Encoder encoder;
  vae::Decoder decoder;

  static WanVae load(Ops& ops, const TensorStore& weights);
  // A .pth (torch.save) or .safetensors file.
  static WanVae load_file(Ops& ops, const std::string& path);

  // video host [3, F, H, W] in [−1, 1], F = 1 + 4k, H and W multiples of 8 -> the normalised
  // latent mean, host F32 [z_dim, 1 + k, H/8, W/8]. Chunks: frame 0, then 4 frames at a time.
  Tensor encode(Ops& ops, const Tensor& video);
  // latent host [z_dim, T, h, w] -> host F32 video [3, 1 + 4(T − 1), 8h, 8w], one latent
  // frame at a time.
  Tensor decode(Ops& ops, const Tensor& latent, const VaeDecodeOptions& options = {});
  // As decode(), handing each chunk's frames to `sink` instead of keeping the whole video.
  void decode_streaming(Ops& ops, const Tensor& latent, const VaeFrameSink& sink,
                        const VaeDecodeOptions& options = {});
  // Forgets every cached frame (encode and decode do this before and after each video).
  void reset();

  // The shapes encode/decode produce; a shape they do not accept is an error naming it.
  Shape latent_shape_for(const Shape& video_shape) const;
  Shape video_shape_for(const Shape& latent_shape) const;
};

}  // namespace wanrt
