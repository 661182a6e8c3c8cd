// The Wan2.2 image-to-video pipeline (spec/wan22-dit-and-sampling.md §2): image and prompt in,
// latent and video out, on whatever backend `ops` is.
//
//   image → size rule → bicubic resize → VAE encode of [image, 0, 0, …] → y = [mask, latent]
//   prompt, negative prompt → tokenizer → umT5 → context, context_null
//   noise → for each timestep t: expert = high if t >= boundary·1000 else low;
//             v = v_uncond + g·(v_cond − v_uncond);  latent = scheduler.step(v, latent)
//   latent → VAE decode (clamped to [−1, 1]) → video
//
// The DiT calls go through a DitRunner (pipeline/dit_runner.h): with MagCache on, the calls
// whose output the cached residual predicts skip the transformer blocks (spec §5).
//
// Noise: by default `seeded_noise` (documented below); pass a tensor to match another
// implementation exactly (PyTorch's CUDA Philox layout is not reproduced).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/ops.h"
#include "core/quantize.h"
#include "core/tensor.h"
#include "pipeline/dit_runner.h"
#include "pipeline/i2v_image.h"
#include "schedulers/magcache.h"
#include "text/tokenizer.h"

namespace wanrt {

// The reference's sample_neg_prompt, used when the negative prompt is empty (UTF-8, verbatim).
extern const char* const kDefaultNegativePrompt;

struct I2VRequest {
  // The conditioning image: a JPEG/PNG path, or a host F32 [3, h0, w0] tensor in [−1, 1].
  std::string image_path;
  const Tensor* image = nullptr;

  std::string prompt;
  std::string negative_prompt;  // empty: kDefaultNegativePrompt
  // Token ids (EOS included, no padding) that bypass the tokenizer, e.g. to reproduce a run.
  std::optional<std::vector<int64_t>> prompt_ids, negative_prompt_ids;
  TextCleaning cleaning = TextCleaning::Reference;

  int64_t max_area = kDefaultMaxArea;  // --size W*H sets W·H; the image's aspect ratio is kept
  int64_t frame_num = 81;              // 4n + 1
  std::string solver = "unipc";        // or "dpm++"
  int steps = 40;
  double shift = 5.0;
  double guide_low = 3.5, guide_high = 3.5;  // CFG scale of the low- and high-noise experts
  double boundary = 0.900;                   // t >= boundary·1000 runs the high-noise expert
  uint64_t seed = 0;
  const Tensor* noise = nullptr;  // [16, F_l, lat_h, lat_w]; overrides the seeded noise

  // MagCache (spec §5, mode i2v): the high-noise phase and the first share `retention_ratio`
  // of the low-noise calls always run in full; later calls may reuse the cached residual.
  std::optional<MagCacheSettings> magcache;
  // The calibrated table (data/magcache layout, without the two leading 1.0 entries); empty:
  // the shipped I2V-A14B table. Resampled to `steps` as the reference does.
  std::vector<double> magcache_ratios;
  // Compute every call and measure the magnitude ratios (I2VResult::measured_mag_ratios).
  bool calibrate_magcache = false;
};

struct StageTimes {
  double load = 0, text = 0, vae_encode = 0, denoise = 0, vae_decode = 0, write = 0;  // seconds
  // Bringing offloaded weights (experts, T5) back to the device during generate(); not part
  // of the stage that needed them.
  double offload = 0;
};

struct DenoiseProgress {
  int step = 0;           // 0-based step just finished
  int steps = 0;
  int64_t timestep = 0;   // the integer timestep the experts saw
  bool high_noise = false;
  double step_seconds = 0;
  double elapsed_seconds = 0;  // denoising time so far (bringing offloaded experts in excluded)
  bool cond_skipped = false, uncond_skipped = false;  // MagCache answered the call from its cache
};
using DenoiseProgressFn = std::function<void(const DenoiseProgress&)>;

struct I2VResult {
  Tensor latent;  // [16, F_l, lat_h, lat_w] host F32, the latent handed to the VAE decoder
  Tensor video;   // [3, frame_num, 8·lat_h, 8·lat_w] host F32 in [−1, 1]
  I2vSize size;
  int64_t seq_len = 0;
  StageTimes times;
  DitCallStats dit_calls;                   // computed vs MagCache-skipped DiT calls
  std::vector<double> measured_mag_ratios;  // calibrate_magcache: ratios of calls 2 .. 2·steps−1
};

struct I2VPipelineOptions {
  // Keep on the device only the weights the current stage needs: the T5 encoder's device
  // weights are freed after encoding, and one expert at a time is resident. Where the backend
  // parks weights, a background thread parks both experts in page-locked host memory and the
  // idle one comes back from there under its first step.
  bool offload = false;
  // Offloading: a switch that comes before the background thread has parked its expert waits
  // for it (true), or loads the expert from its memory-mapped checkpoint instead (false). On
  // the H100 host with a checkpoint of 28.6 GB per expert, waiting cost the switch 12.0 s and
  // loading 17.6 s (the thread keeps reading the same files meanwhile), so waiting is the default.
  bool wait_for_parking = true;
  // The backend the T5 encoder runs on (generate.py's --t5_cpu); null: the pipeline's.
  Ops* text_ops = nullptr;
  // One-line messages about what is resident where (loads, frees, swaps).
  std::function<void(const std::string&)> log;
  // Called with the device idle (the pipeline synchronises first) at every stage boundary,
  // after each step and around every swap: where a caller samples device memory.
  std::function<void()> checkpoint;
  // --quantize: weight-only quantization of both experts' block linear layers (DitLoadOptions).
  Quantization quantize = Quantization::None;
};

class I2VPipeline {
 public:
  // Resolves and loads every part of the checkpoint folder (both experts, T5, VAE,
  // tokenizer); a missing part is an error listing everything missing and what to do.
  static std::unique_ptr<I2VPipeline> load(const std::string& checkpoint_dir, Ops& ops,
                                           I2VPipelineOptions options = {});
  ~I2VPipeline();

  // Validates the request (frame count, sizes, noise shape, prompt, MagCache settings) before
  // any heavy work. Every call is a new video: no state (MagCache counters and residuals
  // included) carries over from the previous one.
  I2VResult generate(const I2VRequest& request, const DenoiseProgressFn& progress = {});

  bool random_weights() const;      // the checkpoint is marked as random demo weights
  // The experts' block weights as loaded: None (float), or int8/fp8 (asked for, or stored so).
  Quantization quantization() const;
  double load_seconds() const;
  // The latent shape [16, F_l, lat_h, lat_w] a request produces (for checking noise files).
  Shape latent_shape(const I2VRequest& request) const;

 private:
  I2VPipeline();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Ops* ops_ = nullptr;
};

// Standard normal noise, reproducible on every platform: element i is a Box–Muller transform
// (in float64) of two uniforms from Philox4x32-10 with key = seed and counter = ⌊i/2⌋; even i
// takes the cosine branch, odd i the sine branch. Not PyTorch's generator.
Tensor seeded_noise(const Shape& shape, uint64_t seed);

}  // namespace wanrt
