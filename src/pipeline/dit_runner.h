// DitRunner: runs the DiT calls of a video, one after another, and applies MagCache to them
// (spec/wan22-dit-and-sampling.md §5).
//
// One runner serves one video at a time and both experts, with a single call counter over
// cond (even) and uncond (odd) calls of every step, as the reference shares its state across
// the two experts. Per parity (cond / uncond) it keeps the residual of the last full call,
//   residual[p] = run_blocks(x0) − x0           (float32, this rank's S rows, padding included)
// and a call MagCache skips costs the head and what it reads only (prepare_for_head: the
// patch embedding x0 and the time embedding; no text embedding, time projection or RoPE):
//   out = head(x0 + residual[p])
// Under sequence parallelism each rank keeps the residual of its own tokens; the decision
// comes from the ratio table and the counters alone, so the ranks agree without talking.
//
// In calibration mode every call is computed and the runner measures the magnitude ratio of
// each call against the previous call of the same parity: the mean over the real tokens of
// ‖residual_now‖ / ‖residual_before‖ (L2 over features), which is what a ratio table holds.
//
//   DitRunner runner(ops, MagCachePolicy(...));   // or DitRunner(ops), DitRunner::calibrating(ops)
//   runner.begin_video();
//   for each step: v_cond = runner.call(expert, cond_inputs); v_uncond = runner.call(expert, ...)
//
// On a backend with graph capture (CUDA, unless CudaOptions::graphs or WANRT_CUDA_GRAPH=0 says
// otherwise) the transformer blocks of computed calls run as a captured graph (DitGraphs,
// model/dit_graph.h), one per expert and shape, shared by cond and uncond calls; prepare() and
// the head, which skipped calls run alone, stay eager. Graphs last as long as the runner (one
// request). Under sequence parallelism (more than one rank) the blocks run eagerly.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "backends/ops.h"
#include "model/dit.h"
#include "model/dit_graph.h"
#include "schedulers/magcache.h"

namespace wanrt {

struct DitCallStats {
  int computed = 0;  // calls that ran all transformer blocks
  int skipped = 0;   // calls MagCache answered from the cached residual
  int total() const { return computed + skipped; }
};

class DitRunner {
 public:
  // Computes every call in full (no MagCache).
  explicit DitRunner(Ops& ops);
  // Skips the calls `policy` allows. The policy's step count fixes the calls per video.
  DitRunner(Ops& ops, MagCachePolicy policy);
  // Computes every call and measures the magnitude ratios (measured_ratios()).
  static DitRunner calibrating(Ops& ops);

  // Starts a video: call counter, MagCache accumulators, residuals, statistics and
  // measurements all start over, so nothing of an earlier video can leak into this one.
  void begin_video();

  // The next call: the DiT output [out_dim, F, H, W] host F32, as WanModel::forward returns.
  Tensor call(const WanModel& expert, const DitInputs& inputs);
  // Whether the last call() was answered from the cache.
  bool last_call_skipped() const { return last_skipped_; }

  int calls() const { return call_; }  // call() invocations since begin_video()
  const DitCallStats& stats() const { return stats_; }
  bool uses_magcache() const { return policy_.has_value(); }
  // The captured graphs of the blocks; null where the backend has none (or several ranks).
  const DitGraphs* graphs() const { return graphs_.get(); }
  // Frees the graphs (and their activation memory) of experts that are gone; the pipeline calls
  // it when --offload_model drops an expert, before the next one arrives.
  void drop_gone_experts() {
    if (graphs_) graphs_->drop_gone_experts();
  }

  // Calibration: the ratio of every call from 2 on (entry j belongs to call j + 2), the
  // layout of a ratio table (save_mag_ratios). Empty when not calibrating.
  const std::vector<double>& measured_ratios() const { return measured_; }

 private:
  DitRunner(Ops& ops, std::optional<MagCachePolicy> policy, bool calibrate);
  Tensor residual_of(const Tensor& blocks_out, const Tensor& x0);
  void measure(const Tensor& residual, const DitConditioning& cond, int parity);

  Ops* ops_;
  std::unique_ptr<DitGraphs> graphs_;
  std::optional<MagCachePolicy> policy_;
  bool calibrate_ = false;

  int call_ = 0;
  bool last_skipped_ = false;
  DitCallStats stats_;
  Tensor residual_[2];  // per parity: the last full call's blocks output − input, [S, D]
  Tensor minus_ones_;   // [D] float32 −1: the gate that turns add_gated_ into a subtraction
  // Calibration: per parity, the per-token residual norms of the previous call (this rank's
  // real tokens), and the ratios measured so far.
  std::vector<double> previous_norms_[2];
  std::vector<double> measured_;
};

}  // namespace wanrt
