// Building blocks of the Wan2.1 VAE (spec §2.2): causal 3-D convolutions that carry their own
// temporal cache between chunks, residual blocks, the per-frame attention block and the
// resampling blocks. Weights are plain members, mapped from checkpoint keys once at load.
//
// Chunked execution (spec §2.6): the reference runs the encoder on 1 frame, then 4 frames at a
// time, and the decoder on one latent frame at a time. Every block here remembers what it
// needs from the previous chunk (the last input frames of a kernel-3 conv, the last frame
// before a temporal downsample, whether the temporal upsample has seen its first frame), so a
// chunk is just another forward call; reset() forgets it all before a new video.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "backends/ops.h"

namespace wanrt::vae {

// Where a block's weights come from while the VAE is built: a checkpoint (loading) or a
// recorder (listing the checkpoint's names and shapes).
class WeightLoader {
 public:
  virtual ~WeightLoader() = default;
  // The host tensor `key`; an error names the key when it is missing or not of `shape`.
  virtual Tensor host(const std::string& key, const Shape& shape) = 0;
  // A host tensor (from host(), perhaps reshaped or sliced) as a backend weight.
  virtual Tensor upload(const Tensor& host) = 0;
};

// A 3-D convolution over [C, T, H, W] whose time padding is causal: each output frame sees the
// `time_context` frames before it, taken from the previous chunk (the cache) or zeros at the
// start of the video. time_context is 2·pt for the reference's padding pt (2 for kernel-3
// convs, 0 for 1×1×1 convs and the per-frame 2-D convs stored here with kernel depth 1).
struct CausalConv3d {
  Tensor weight;  // [Cout, Cin, kt, kh, kw]
  Tensor bias;    // [Cout]
  Conv3dOptions options;  // strides and spatial padding; the time padding is set per call
  int64_t time_context = 0;
  // The last input frames of the previous chunk (at most time_context); empty at the start.
  Tensor cache;

  // `prefix.weight` [out, in, kernel...] and `prefix.bias` [out]; a 2-D kernel [kh, kw] is
  // stored with kernel depth 1. The spatial padding is `spatial_pad` on every side.
  static CausalConv3d load(WeightLoader& source, const std::string& prefix, int64_t in,
                           int64_t out, const Shape& kernel, int64_t time_context,
                           int64_t spatial_pad);

  // The next chunk x [Cin, t, H, W] -> [Cout, t', H', W'], continuing the cached frames
  // (rule A of spec §2.6: the result equals one causal conv over the whole video).
  Tensor forward(Ops& ops, const Tensor& x);
  // The conv over x with `front_zeros` zero frames in front and no cache (stateless).
  Tensor apply(Ops& ops, const Tensor& x, int64_t front_zeros) const;
  // The conv over `front_zeros` zero frames, then prefix's frames, then x's (stateless).
  Tensor apply_after(Ops& ops, const Tensor& prefix, const Tensor& x, int64_t front_zeros) const;
  void reset() { cache = Tensor(); }
  int64_t out_channels() const { return weight.size(0); }
};

// RMS_norm → SiLU → conv, twice, plus a (1×1×1 conv when the width changes) shortcut.
struct ResidualBlock {
  Tensor norm_in_gamma;   // [in]
  CausalConv3d conv_in;   // in -> out, kernel 3
  Tensor norm_out_gamma;  // [out]
  CausalConv3d conv_out;  // out -> out, kernel 3
  std::optional<CausalConv3d> shortcut;  // in -> out, 1×1×1, only when in != out

  static ResidualBlock load(WeightLoader& source, const std::string& prefix, int64_t in,
                            int64_t out);
  Tensor forward(Ops& ops, const Tensor& x);  // [in, t, H, W] -> [out, t, H, W]
  void reset();
};

// Single-head self-attention over the pixels of each frame on its own, scale 1/√C.
// to_qkv is split into its query, key and value thirds at load.
struct AttentionBlock {
  Tensor norm_gamma;  // [C]
  Tensor query_weight, key_weight, value_weight;  // [C, C] each
  Tensor query_bias, key_bias, value_bias;        // [C] each
  Tensor proj_weight;  // [C, C]
  Tensor proj_bias;    // [C]
  int64_t channels = 0;

  static AttentionBlock load(WeightLoader& source, const std::string& prefix, int64_t channels);
  Tensor forward(Ops& ops, const Tensor& x) const;  // [C, t, H, W] -> same; stateless
};

enum class ResampleMode : uint8_t { Downsample2d, Downsample3d, Upsample2d, Upsample3d };

// Spatial ×½ (encoder) or ×2 (decoder) per frame, with an optional temporal ×½ / ×2.
struct Resample {
  ResampleMode mode = ResampleMode::Downsample2d;
  // Downsample: zero pad right/bottom by 1, 3×3 stride 2, dim -> dim.
  // Upsample: nearest ×2, then 3×3 padding 1, dim -> dim/2.
  CausalConv3d spatial_conv;  // kernel depth 1
  // Downsample3d: k (3,1,1), stride (2,1,1), dim -> dim, no padding.
  // Upsample3d: k (3,1,1), 2 causal frames, dim -> 2·dim (channel halves = even/odd frames).
  CausalConv3d time_conv;
  // Downsample3d: the last spatially downsampled frame of the previous chunk.
  Tensor previous_frame;
  // Upsample3d: whether the first chunk (whose frame passes through undoubled) has gone by.
  bool first_chunk_done = false;

  static Resample load(WeightLoader& source, const std::string& prefix, int64_t dim,
                       ResampleMode mode);
  Tensor forward(Ops& ops, const Tensor& x);
  void reset();
  bool is_temporal() const {
    return mode == ResampleMode::Downsample3d || mode == ResampleMode::Upsample3d;
  }
  // The spatial part alone, every frame on its own (stateless).
  Tensor spatial(Ops& ops, const Tensor& x) const;
};

// Interleaves the two channel halves of y [2C, t, H, W] into frames: channels [0:C] of frame k
// become frame 2k and channels [C:2C] frame 2k+1 -> [C, 2t, H, W].
Tensor interleave_channel_halves(Ops& ops, const Tensor& y);

// RMS_norm (channel axis, L2 clamp) then SiLU: the pre-activation of every kernel-3 conv (one
// op, Ops::channel_rms_norm_silu).
Tensor norm_silu(Ops& ops, const Tensor& x, const Tensor& gamma);

}  // namespace wanrt::vae
