// WanVae: loading, and the chunked encode / decode schedules of the reference (spec §2.6).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <set>

#include "io/safetensors.h"
#include "io/tensor_store.h"
#include "io/torch_pth.h"
#include "model/vae.h"

namespace wanrt {

namespace {

// Weights from a checkpoint: every key read is remembered, so keys the model never asked
// for can be reported.
class CheckpointLoader final : public vae::WeightLoader {
 public:
  CheckpointLoader(Ops& ops, const TensorStore& weights) : ops_(ops), weights_(weights) {}
  Tensor host(const std::string& key, const Shape& shape) override {
    used_.insert(key);
    return weights_.get(key, shape);
  }
  Tensor upload(const Tensor& host) override { return ops_.upload_weight(host); }
  void check_all_used(const VaeConfig& config) const {
    for (const std::string& name : weights_.names())
      WANRT_CHECK(used_.count(name) != 0, weights_.file_of(name), ": tensor '", name,
                  "' is not part of the Wan2.1 VAE inferred from this checkpoint (",
                  config.describe(), "); is this a VAE checkpoint of another kind?");
  }

 private:
  Ops& ops_;
  const TensorStore& weights_;
  std::set<std::string> used_;
};

// Frames [begin, end) of a contiguous host F32 video [C, T, H, W], copied.
Tensor copy_host_frames(const Tensor& video, int64_t begin, int64_t end) {
  const int64_t channels = video.size(0), frames = video.size(1);
  const int64_t plane = video.size(2) * video.size(3);
  Tensor out = Tensor::empty(DType::F32, {channels, end - begin, video.size(2), video.size(3)});
  for (int64_t c = 0; c < channels; ++c)
    std::memcpy(out.data<float>() + c * (end - begin) * plane,
                video.data<float>() + (c * frames + begin) * plane,
                static_cast<size_t>((end - begin) * plane) * sizeof(float));
  return out;
}

// Writes src [C, n, H, W] into frames [first, first + n) of dst [C, T, H, W] (host F32).
void paste_host_frames(Tensor& dst, const Tensor& src, int64_t first) {
  const int64_t channels = dst.size(0), frames = dst.size(1), count = src.size(1);
  const int64_t plane = dst.size(2) * dst.size(3);
  WANRT_ASSERT(src.size(0) == channels && src.size(2) * src.size(3) == plane &&
               first + count <= frames);
  for (int64_t c = 0; c < channels; ++c)
    std::memcpy(dst.data<float>() + (c * frames + first) * plane,
                src.data<float>() + c * count * plane,
                static_cast<size_t>(count * plane) * sizeof(float));
}

// A contiguous host F32 copy or view of a host tensor the caller handed in.
Tensor host_f32(const Tensor& t, const char* what) {
  WANRT_CHECK(t.device() == Device::Host, what, " must be a host tensor, got a device tensor ",
              t.describe());
  WANRT_CHECK(dtype_is_float(t.dtype()), what, " must be a float tensor, got ", t.describe());
  return t.dtype() == DType::F32 && t.is_contiguous() ? t : t.to(DType::F32);
}

// A chunk's result must be finite: on the GPU the VAE computes in a 16-bit type by default
// (CudaOptions::conv_dtype F16), whose range ends at 65504; a larger activation becomes inf,
// then NaN. The error says so instead of letting a broken video or latent through.
void check_finite(const Tensor& host, const char* what, const Ops& ops) {
  const std::span<const float> values = host.floats();
  const auto bad = std::find_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
  WANRT_CHECK(bad == values.end(), what, ": the ", ops.name(), " backend produced a non-finite value (", *bad,
              " at element ", bad - values.begin(), " of ", host.describe(),
              "). On CUDA the VAE computes in F16 by default, whose range ends at 65504: run it in "
              "float32 (--vae_dtype fp32, CudaOptions::conv_dtype F32)");
}

// Clears every cache when a call ends, also by an exception, so the next video starts clean.
class ResetOnExit {
 public:
  explicit ResetOnExit(WanVae& vae) : vae_(vae) { vae_.reset(); }
  ~ResetOnExit() { vae_.reset(); }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  WanVae& vae_;
};

}  // namespace

WanVae WanVae::load(Ops& ops, const TensorStore& weights) {
  WanVae vae;
  vae.config = VaeConfig::from_weights(weights);
  WANRT_CHECK(vae.config.z_dim == 16, weights.sources(), ": the VAE has z_dim ", vae.config.z_dim,
              " but the latent normalisation tables (spec §2.7) are for 16 channels");
  CheckpointLoader source(ops, weights);
  vae.encoder = vae::Encoder::load(source, vae.config);
  vae.decoder = vae::Decoder::load(source, vae.config);
  source.check_all_used(vae.config);
  return vae;
}

WanVae WanVae::load_file(Ops& ops, const std::string& path) {
  const auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size() &&
           path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".safetensors")) return load(ops, read_safetensors(path).tensors);
  if (ends_with(".pth") || ends_with(".pt")) return load(ops, read_pth(path));
  fail(path, ": unknown VAE checkpoint format; expected a .pth (torch.save) or .safetensors file");
}

void WanVae::reset() {
  encoder.reset();
  decoder.reset();
}

Shape WanVae::latent_shape_for(const Shape& video_shape) const {
  WANRT_CHECK(video_shape.size() == 4 && video_shape[0] == 3,
              "VAE encode: the video must be [3, frames, height, width], got ",
              shape_str(video_shape));
  const int64_t time_factor = config.temporal_factor(), space_factor = config.spatial_factor();
  const int64_t frames = video_shape[1], height = video_shape[2], width = video_shape[3];
  WANRT_CHECK(frames >= 1 && (frames - 1) % time_factor == 0, "VAE encode: ", frames,
              " frames; the VAE takes 1 + ", time_factor, "k frames (1, ", 1 + time_factor,
              ", ", 1 + 2 * time_factor, ", ...)");
  WANRT_CHECK(height >= space_factor && height % space_factor == 0, "VAE encode: height ", height,
              " is not a positive multiple of ", space_factor);
  WANRT_CHECK(width >= space_factor && width % space_factor == 0, "VAE encode: width ", width,
              " is not a positive multiple of ", space_factor);
  return {config.z_dim, 1 + (frames - 1) / time_factor, height / space_factor,
          width / space_factor};
}

Shape WanVae::video_shape_for(const Shape& latent_shape) const {
  WANRT_CHECK(latent_shape.size() == 4 && latent_shape[0] == config.z_dim && latent_shape[1] >= 1 &&
                  latent_shape[2] >= 1 && latent_shape[3] >= 1,
              "VAE decode: the latent must be [", config.z_dim,
              ", frames, height, width] with every size at least 1, got ",
              shape_str(latent_shape));
  const int64_t space_factor = config.spatial_factor();
  return {3, 1 + config.temporal_factor() * (latent_shape[1] - 1), space_factor * latent_shape[2],
          space_factor * latent_shape[3]};
}

Tensor WanVae::encode(Ops& ops, const Tensor& video) {
  const Shape latent_shape = latent_shape_for(video.shape());
  const Tensor frames = host_f32(video, "VAE encode: the video");
  const int64_t time_factor = config.temporal_factor(), chunks = latent_shape[1];
  Tensor mean_latent = Tensor::empty(DType::F32, latent_shape);  // [z, T, h, w]
  const ResetOnExit reset_caches(*this);
  // Chunk 0 is frame 0 alone, chunk j >= 1 frames [1 + 4(j − 1), 1 + 4j): one latent each.
  const auto chunk_input = [&](int64_t chunk) {
    const int64_t begin = chunk == 0 ? 0 : 1 + time_factor * (chunk - 1);
    const int64_t end = 1 + time_factor * chunk;
    return ops.upload(copy_host_frames(frames, begin, end));
  };
  // The next chunk's frames are cut out and uploaded before this chunk's result is waited
  // for, so that host work overlaps the device's (a no-op reordering on the CPU backend).
  Tensor pending = encoder.forward(ops, chunk_input(0));
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const Tensor next_input = chunk + 1 < chunks ? chunk_input(chunk + 1) : Tensor();
    const Tensor mean = ops.download(pending);  // [z, 1, h, w]
    pending = chunk + 1 < chunks ? encoder.forward(ops, next_input) : Tensor();
    WANRT_ASSERT(mean.shape() == Shape({latent_shape[0], 1, latent_shape[2], latent_shape[3]}));
    check_finite(mean, "VAE encode", ops);
    paste_host_frames(mean_latent, mean, chunk);
  }
  return vae::normalize_latent(mean_latent);
}

void WanVae::decode_streaming(Ops& ops, const Tensor& latent, const VaeFrameSink& sink,
                              const VaeDecodeOptions& options) {
  const Shape video_shape = video_shape_for(latent.shape());
  const Tensor denormalized =
      ops.upload(vae::denormalize_latent(host_f32(latent, "VAE decode: the latent")));
  const ResetOnExit reset_caches(*this);
  const int64_t chunks = latent.size(1);
  // The next chunk is queued before this chunk's frames are checked, clamped and handed to the
  // sink, so that host work (tens of ms per chunk at 720p: page faults of fresh buffers, the
  // sink's copies or video encoding) overlaps the device's on the next chunk instead of
  // leaving it idle. On the CPU backend, where ops run as they are called, only the order
  // changes.
  Tensor pending = decoder.forward(ops, ops.frames(denormalized, 0, 1));
  int64_t next_frame = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    Tensor frames = ops.download(pending);
    pending = chunk + 1 < chunks ? decoder.forward(ops, ops.frames(denormalized, chunk + 1, chunk + 2))
                                 : Tensor();
    WANRT_ASSERT(frames.size(0) == 3 && frames.size(2) == video_shape[2] &&
                 frames.size(3) == video_shape[3] &&
                 next_frame + frames.size(1) <= video_shape[1]);
    check_finite(frames, "VAE decode", ops);
    if (options.clamp)
      for (float& v : frames.floats()) v = std::clamp(v, -1.0f, 1.0f);
    sink(frames, next_frame);
    next_frame += frames.size(1);
  }
  WANRT_ASSERT(next_frame == video_shape[1]);
}

Tensor WanVae::decode(Ops& ops, const Tensor& latent, const VaeDecodeOptions& options) {
  Tensor video = Tensor::empty(DType::F32, video_shape_for(latent.shape()));
  decode_streaming(
      ops, latent,
      [&](const Tensor& frames, int64_t first_frame) {
        paste_host_frames(video, frames, first_frame);
      },
      options);
  return video;
}

}  // namespace wanrt
