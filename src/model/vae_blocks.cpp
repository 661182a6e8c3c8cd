#include "model/vae_blocks.h"

#include <cmath>

namespace wanrt::vae {

Tensor norm_silu(Ops& ops, const Tensor& x, const Tensor& gamma) {
  return ops.channel_rms_norm_silu(x, gamma);
}

namespace {

// A norm's gamma: stored [C, 1, 1, 1] (3-D use) or [C, 1, 1] (2-D use), used as [C].
Tensor load_gamma(WeightLoader& source, const std::string& key, int64_t channels, int64_t rank) {
  Shape shape(static_cast<size_t>(rank), 1);
  shape[0] = channels;
  return source.upload(source.host(key, shape).reshape({channels}));
}

}  // namespace

// ---- CausalConv3d ----

CausalConv3d CausalConv3d::load(WeightLoader& source, const std::string& prefix, int64_t in,
                                int64_t out, const Shape& kernel, int64_t time_context,
                                int64_t spatial_pad) {
  WANRT_ASSERT(kernel.size() == 2 || kernel.size() == 3);
  Shape weight_shape = {out, in};
  weight_shape.insert(weight_shape.end(), kernel.begin(), kernel.end());
  Tensor weight = source.host(prefix + ".weight", weight_shape);
  if (kernel.size() == 2) weight = weight.reshape({out, in, 1, kernel[0], kernel[1]});
  CausalConv3d conv;
  conv.weight = source.upload(weight);
  conv.bias = source.upload(source.host(prefix + ".bias", {out}));
  conv.time_context = time_context;
  conv.options.pad_top = conv.options.pad_bottom = spatial_pad;
  conv.options.pad_left = conv.options.pad_right = spatial_pad;
  return conv;
}

Tensor CausalConv3d::apply(Ops& ops, const Tensor& x, int64_t front_zeros) const {
  Conv3dOptions call_options = options;
  call_options.pad_t_front = front_zeros;
  call_options.pad_t_back = 0;
  return ops.conv3d(x, weight, &bias, call_options);
}

Tensor CausalConv3d::apply_after(Ops& ops, const Tensor& prefix, const Tensor& x,
                                 int64_t front_zeros) const {
  Conv3dOptions call_options = options;
  call_options.pad_t_front = front_zeros;
  call_options.pad_t_back = 0;
  return ops.conv3d_after(prefix, x, weight, &bias, call_options);
}

Tensor CausalConv3d::forward(Ops& ops, const Tensor& x) {
  if (time_context == 0) return apply(ops, x, 0);
  const int64_t frames_in = x.size(1);
  const int64_t cached = cache.defined() ? cache.size(1) : 0;
  // What the next chunk needs: the last time_context frames of the stream so far (the
  // reference's "last 2 frames, or the old slot's last frame + this one" rule).
  Tensor next_cache;
  if (frames_in >= time_context || cached == 0) {
    next_cache = ops.frames(x, std::max<int64_t>(0, frames_in - time_context), frames_in);
  } else {
    const int64_t from_cache = std::min(cached, time_context - frames_in);
    next_cache = ops.concat_frames(ops.frames(cache, cached - from_cache, cached), x);
  }
  // The frames missing before the cache (all of them at the start) are zeros; the cache goes
  // in front of x without a concatenation (conv3d_after).
  Tensor y = cached == 0 ? apply(ops, x, time_context)
                         : apply_after(ops, cache, x, time_context - cached);
  cache = std::move(next_cache);
  return y;
}

// ---- ResidualBlock ----

ResidualBlock ResidualBlock::load(WeightLoader& source, const std::string& prefix, int64_t in,
                                  int64_t out) {
  ResidualBlock block;
  block.norm_in_gamma = load_gamma(source, prefix + ".residual.0.gamma", in, 4);
  block.conv_in = CausalConv3d::load(source, prefix + ".residual.2", in, out, {3, 3, 3}, 2, 1);
  block.norm_out_gamma = load_gamma(source, prefix + ".residual.3.gamma", out, 4);
  block.conv_out = CausalConv3d::load(source, prefix + ".residual.6", out, out, {3, 3, 3}, 2, 1);
  if (in != out)
    block.shortcut = CausalConv3d::load(source, prefix + ".shortcut", in, out, {1, 1, 1}, 0, 0);
  return block;
}

Tensor ResidualBlock::forward(Ops& ops, const Tensor& x) {
  const Tensor identity = shortcut ? shortcut->forward(ops, x) : x;     // [out, t, H, W]
  Tensor r = conv_in.forward(ops, norm_silu(ops, x, norm_in_gamma));  // [out, t, H, W]
  r = conv_out.forward(ops, norm_silu(ops, r, norm_out_gamma));       // [out, t, H, W]
  return ops.add(r, identity);
}

void ResidualBlock::reset() {
  conv_in.reset();
  conv_out.reset();
}

// ---- AttentionBlock ----

AttentionBlock AttentionBlock::load(WeightLoader& source, const std::string& prefix,
                                    int64_t channels) {
  AttentionBlock block;
  block.channels = channels;
  block.norm_gamma = load_gamma(source, prefix + ".norm.gamma", channels, 3);
  const Tensor qkv_weight =
      source.host(prefix + ".to_qkv.weight", {3 * channels, channels, 1, 1})
          .reshape({3 * channels, channels});
  const Tensor qkv_bias = source.host(prefix + ".to_qkv.bias", {3 * channels});
  // Output channels [0:C] are the query, [C:2C] the key, [2C:3C] the value.
  block.query_weight = source.upload(qkv_weight.slice_rows(0, channels));
  block.key_weight = source.upload(qkv_weight.slice_rows(channels, 2 * channels));
  block.value_weight = source.upload(qkv_weight.slice_rows(2 * channels, 3 * channels));
  block.query_bias = source.upload(qkv_bias.slice_rows(0, channels));
  block.key_bias = source.upload(qkv_bias.slice_rows(channels, 2 * channels));
  block.value_bias = source.upload(qkv_bias.slice_rows(2 * channels, 3 * channels));
  const Tensor proj_weight = source.host(prefix + ".proj.weight", {channels, channels, 1, 1});
  block.proj_weight = source.upload(proj_weight.reshape({channels, channels}));
  block.proj_bias = source.upload(source.host(prefix + ".proj.bias", {channels}));
  return block;
}

Tensor AttentionBlock::forward(Ops& ops, const Tensor& x) const {
  const int64_t c = x.size(0), frames = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t pixels = h * w;
  // One token per pixel, frame-major then row-major, as the reference's per-frame reshape.
  const Tensor tokens = ops.transpose(
      ops.channel_rms_norm(x, norm_gamma).reshape({c, frames * pixels}));  // [t·H·W, C]
  const Tensor query = ops.linear(tokens, query_weight, &query_bias);     // [t·H·W, C]
  const Tensor key = ops.linear(tokens, key_weight, &key_bias);           // [t·H·W, C]
  const Tensor value = ops.linear(tokens, value_weight, &value_bias);     // [t·H·W, C]
  AttentionOptions attention_options;
  attention_options.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c)));
  Tensor attended;  // [t·H·W, C]
  for (int64_t f = 0; f < frames; ++f) {
    const int64_t begin = f * pixels, end = (f + 1) * pixels;
    const Tensor frame_out =
        ops.attention(ops.rows(query, begin, end).reshape({pixels, 1, c}),
                      ops.rows(key, begin, end).reshape({pixels, 1, c}),
                      ops.rows(value, begin, end).reshape({pixels, 1, c}), attention_options)
            .reshape({pixels, c});  // [H·W, C]
    attended = f == 0 ? frame_out : ops.concat_rows(attended, frame_out);
  }
  const Tensor projected = ops.linear(attended, proj_weight, &proj_bias);  // [t·H·W, C]
  return ops.add(x, ops.transpose(projected).reshape({c, frames, h, w}));  // [C, t, H, W]
}

// ---- Resample ----

Resample Resample::load(WeightLoader& source, const std::string& prefix, int64_t dim,
                        ResampleMode mode) {
  Resample block;
  block.mode = mode;
  const bool down = mode == ResampleMode::Downsample2d || mode == ResampleMode::Downsample3d;
  const int64_t spatial_out = down ? dim : dim / 2;
  block.spatial_conv = CausalConv3d::load(source, prefix + ".resample.1", dim, spatial_out, {3, 3},
                                          0, down ? 0 : 1);
  if (down) {
    // ZeroPad2d((0, 1, 0, 1)) then stride 2: H×W -> H/2×W/2 for even sizes.
    block.spatial_conv.options.pad_bottom = block.spatial_conv.options.pad_right = 1;
    block.spatial_conv.options.stride_h = block.spatial_conv.options.stride_w = 2;
  }
  if (mode == ResampleMode::Downsample3d) {
    block.time_conv = CausalConv3d::load(source, prefix + ".time_conv", dim, dim, {3, 1, 1}, 0, 0);
    block.time_conv.options.stride_t = 2;
  } else if (mode == ResampleMode::Upsample3d) {
    block.time_conv =
        CausalConv3d::load(source, prefix + ".time_conv", dim, 2 * dim, {3, 1, 1}, 2, 0);
  }
  return block;
}

Tensor Resample::spatial(Ops& ops, const Tensor& x) const {
  const bool up = mode == ResampleMode::Upsample2d || mode == ResampleMode::Upsample3d;
  // The nearest ×2 upsample is exact pixel duplication (nearest-exact at factor 2).
  return spatial_conv.apply(ops, up ? ops.upsample_nearest_2x(x) : x, 0);
}

Tensor interleave_channel_halves(Ops& ops, const Tensor& y) {
  const int64_t c = y.size(0) / 2, frames = y.size(1), h = y.size(2), w = y.size(3);
  // The halves are contiguous blocks of y: views, not copies (and no op that must know y's
  // dtype, which on the GPU may be F16, a video-op-only dtype).
  const Tensor flat = y.reshape({2 * c, frames * h * w});
  const Tensor even = flat.slice_rows(0, c).reshape({c, frames, h, w});      // frames 2k
  const Tensor odd = flat.slice_rows(c, 2 * c).reshape({c, frames, h, w});   // frames 2k+1
  if (frames == 1) return ops.concat_frames(even, odd);
  Tensor out;  // [C, 2t, H, W]
  for (int64_t k = 0; k < frames; ++k) {
    const Tensor pair = ops.concat_frames(ops.frames(even, k, k + 1), ops.frames(odd, k, k + 1));
    out = k == 0 ? pair : ops.concat_frames(out, pair);
  }
  return out;
}

Tensor Resample::forward(Ops& ops, const Tensor& x) {
  switch (mode) {
    case ResampleMode::Downsample2d:
    case ResampleMode::Upsample2d:
      return spatial(ops, x);
    case ResampleMode::Downsample3d: {
      // Spec §2.6 rule B, whole-sequence form: out = [y0] ++ valid stride-2 conv over the
      // stream y0, y1, ... A later chunk continues from the previous chunk's last frame.
      const Tensor y = spatial(ops, x);  // [C, t, H/2, W/2]
      const int64_t frames = y.size(1);
      Tensor out;
      if (!previous_frame.defined()) {
        out = ops.frames(y, 0, 1);  // the first frame passes through: no conv, no bias
        if (frames > 1) out = ops.concat_frames(out, time_conv.apply(ops, y, 0));
      } else {
        out = time_conv.apply_after(ops, previous_frame, y, 0);
      }
      previous_frame = ops.frames(y, frames - 1, frames);
      return out;
    }
    case ResampleMode::Upsample3d: {
      // Spec §2.6 rule C, whole-sequence form: frame 0 passes through undoubled; frames 1..
      // go through the causal time_conv (zeros before frame 1) and each becomes two frames.
      if (first_chunk_done)
        return spatial(ops, interleave_channel_halves(ops, time_conv.forward(ops, x)));
      first_chunk_done = true;
      const int64_t frames = x.size(1);
      const Tensor first = ops.frames(x, 0, 1);
      if (frames == 1) return spatial(ops, first);
      const Tensor doubled =
          interleave_channel_halves(ops, time_conv.forward(ops, ops.frames(x, 1, frames)));
      return spatial(ops, ops.concat_frames(first, doubled));
    }
  }
  fail("internal error (a wanrt bug): unknown resample mode");
}

void Resample::reset() {
  time_conv.reset();
  previous_frame = Tensor();
  first_chunk_done = false;
}

}  // namespace wanrt::vae
