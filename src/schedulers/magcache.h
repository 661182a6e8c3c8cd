// MagCache (spec §5): decides, for every DiT call of a video, whether the 40 transformer blocks
// may be skipped and the cached residual of the same CFG branch reused instead.
//
// This is the decision logic only; the caller owns the residual tensors. One policy object
// serves one video at a time and both experts, indexed by a single call counter that runs
// over cond (even) and uncond (odd) calls of every step: call 2k is step k's cond call.
//
//   MagCachePolicy policy(load_mag_ratios(path), steps, 2 * high_noise_steps, MagCacheMode::I2V,
//                         {.threshold = 0.12, .max_skipped_calls = 2, .retention_ratio = 0.2});
//   for each step, for cond then uncond:  if (policy.decide()) reuse residual; else compute.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wanrt {

// Which gating rule protects early calls from caching (spec §5.3).
enum class MagCacheMode { I2V, T2V, TI2V };
MagCacheMode parse_magcache_mode(std::string_view name);  // "i2v", "t2v" or "ti2v"

struct MagCacheSettings {
  double threshold = 0.04;       // --magcache_thresh: bound on the accumulated ratio error
  int max_skipped_calls = 2;     // --magcache_K: consecutive skips allowed per branch
  double retention_ratio = 0.2;  // --retention_ratio: share of calls always computed
};

// Nearest-neighbour resampling of `source_length` entries to `target_length` as MagCache does
// it: index i → round(i·((n−1)/(m−1))), ties to even; a target of 1 takes the last entry.
std::vector<int> nearest_interp_indices(int source_length, int target_length);

// The per-call ratio table for `steps` steps: [1.0, 1.0] followed by the calibrated table,
// resampled per branch (cond / uncond separately) when it was calibrated for another count.
std::vector<double> mag_ratios_for_steps(std::span<const double> calibrated, int steps);

class MagCachePolicy {
 public:
  // `calibrated`: a table as stored in data/magcache (without the two leading 1.0 entries).
  // `split_call`: the first call of the low-noise expert, 2 × the number of high-noise steps.
  MagCachePolicy(std::span<const double> calibrated, int steps, int split_call,
                 MagCacheMode mode, MagCacheSettings settings);

  // Decides the next call and advances the counter: true means skip the blocks and add the
  // cached residual of branch next_call() % 2. After the last call of a video the state
  // resets by itself, so the next decide() is call 0 of the next video.
  bool decide();
  // Starts a new video now. Either way, a new video first computes each branch in full.
  void reset();

  int next_call() const { return call_; }
  int num_calls() const { return num_calls_; }
  std::span<const double> ratios() const { return ratios_; }  // indexed by call

 private:
  bool always_computed(int call) const;

  std::vector<double> ratios_;
  int num_calls_;
  int split_call_;
  MagCacheMode mode_;
  MagCacheSettings settings_;

  int call_ = 0;
  double accumulated_ratio_[2] = {1.0, 1.0};  // per branch: product of ratios since last compute
  double accumulated_error_[2] = {0.0, 0.0};
  int accumulated_calls_[2] = {0, 0};
  bool has_residual_[2] = {false, false};     // a full compute of this branch happened
};

// ---- the calibrated tables shipped in data/magcache ----

enum class MagRatioTable { I2V_A14B, T2V_A14B, TI2V_5B_T2V, TI2V_5B_I2V };
std::string_view mag_ratio_file_name(MagRatioTable table);  // "i2v-A14B.json", ...

// Reads a table file: JSON {"ratios": [numbers...], "calibrated_steps": N (optional)}.
// Errors name the file: missing, not JSON, no "ratios" array, a non-positive or non-number
// entry, an odd count, or a count other than 2·N − 2.
std::vector<double> load_mag_ratios(const std::string& path);

// Writes a table in the same format (what `wanrt generate --magcache_calibrate` produces):
// `ratios` are the measured ratios of calls 2 .. 2·steps − 1, so there are 2·steps − 2 of
// them; `model` and `source` are free text stored beside them. load_mag_ratios reads it back.
void save_mag_ratios(const std::string& path, const std::vector<double>& ratios,
                     const std::string& model, const std::string& source);

// The data/magcache folder: the first existing of <exe dir>/../share/wanrt/magcache (an
// install), <exe dir>/../../data/magcache (a build tree inside the source tree) and the
// source tree this library was built from. An error lists the places tried.
std::string default_magcache_dir();
// load_mag_ratios(default_magcache_dir() + "/" + mag_ratio_file_name(table)).
std::vector<double> load_default_mag_ratios(MagRatioTable table);

}  // namespace wanrt
