#include "pipeline/dit_runner.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace wanrt {

DitRunner::DitRunner(Ops& ops, std::optional<MagCachePolicy> policy, bool calibrate)
    : ops_(&ops), policy_(std::move(policy)), calibrate_(calibrate) {
  // NCCL collectives inside a captured graph are untested here: several ranks run eagerly.
  if (GraphCapture* capture = ops.graph_capture(); capture && ops.world_size() == 1)
    graphs_ = std::make_unique<DitGraphs>(ops, *capture);
}

DitRunner::DitRunner(Ops& ops) : DitRunner(ops, std::nullopt, false) {}

DitRunner::DitRunner(Ops& ops, MagCachePolicy policy) : DitRunner(ops, std::move(policy), false) {}

DitRunner DitRunner::calibrating(Ops& ops) { return DitRunner(ops, std::nullopt, true); }

void DitRunner::begin_video() {
  if (policy_) policy_->reset();
  call_ = 0;
  last_skipped_ = false;
  stats_ = {};
  for (int parity = 0; parity < 2; ++parity) {
    residual_[parity] = Tensor();  // frees the device memory of the last video's residuals
    previous_norms_[parity].clear();
  }
  measured_.clear();
}

Tensor DitRunner::call(const WanModel& expert, const DitInputs& inputs) {
  Ops& ops = *ops_;
  const int parity = call_ % 2;  // 0: cond, 1: uncond (cond always comes first)
  if (policy_)
    WANRT_CHECK(call_ < policy_->num_calls(), "DiT call ", call_, " is past the ",
                policy_->num_calls(),
                " calls (2 x steps) of the MagCache policy; begin_video() starts the next video");
  const bool skip = policy_ && policy_->decide();
  // A skipped call needs only x0 and the time embedding: no text embedding, time projection or
  // RoPE table (the last is built on the host, 5 M sines and cosines at 720p).
  const DitConditioning cond =
      skip ? expert.prepare_for_head(ops, inputs) : expert.prepare(ops, inputs);

  Tensor x;
  if (skip) {
    const Tensor& residual = residual_[parity];
    WANRT_ASSERT(residual.defined());  // the policy skips only after a full call of this parity
    WANRT_CHECK(residual.shape() == cond.x0.shape(), "MagCache: the cached residual ",
                residual.describe(), " does not fit this call's tokens ", cond.x0.describe(),
                "; every video must start with begin_video()");
    x = ops.rows(residual, 0, residual.size(0));  // a copy: the cache keeps its value
    ops.add_gated_(x, cond.x0, nullptr);          // x0 + residual, float32
    ++stats_.skipped;
  } else {
    x = graphs_ ? graphs_->run_blocks(expert, cond) : expert.run_blocks(ops, cond);
    if (policy_ || calibrate_) {
      Tensor residual = residual_of(x, cond.x0);
      if (calibrate_) measure(residual, cond, parity);
      if (policy_) residual_[parity] = std::move(residual);
    }
    ++stats_.computed;
  }
  last_skipped_ = skip;
  ++call_;
  return expert.head(ops, x, cond);
}

// blocks_out − x0 with the ops at hand: a copy of the output, then x0 added with gate −1
// (exact in float32: multiplying by −1 only flips the sign).
Tensor DitRunner::residual_of(const Tensor& blocks_out, const Tensor& x0) {
  Ops& ops = *ops_;
  const int64_t width = x0.size(1);
  if (!minus_ones_.defined() || minus_ones_.size(0) != width) {
    Tensor host = Tensor::empty(DType::F32, {width});
    host.fill(-1.0f);
    minus_ones_ = ops.upload(host);
  }
  Tensor residual = ops.rows(blocks_out, 0, blocks_out.size(0));
  ops.add_gated_(residual, x0, &minus_ones_);
  return residual;
}

void DitRunner::measure(const Tensor& residual, const DitConditioning& cond, int parity) {
  Ops& ops = *ops_;
  const Tensor host = ops.download(residual);  // [S, D]
  const int64_t width = host.size(1);
  // Padding rows (sequence parallelism) are no tokens of the video: leave them out.
  const int64_t real_rows =
      std::clamp<int64_t>(cond.tokens - cond.local_begin, 0, cond.local_tokens);
  std::vector<double> norms(static_cast<size_t>(real_rows));
  const float* data = host.data<float>();
  for (int64_t row = 0; row < real_rows; ++row) {
    double square = 0;
    for (int64_t i = 0; i < width; ++i) {
      const double value = data[row * width + i];
      square += value * value;
    }
    norms[static_cast<size_t>(row)] = std::sqrt(square);
  }

  if (call_ >= 2) {  // calls 0 and 1 have no earlier call of their parity
    const std::vector<double>& previous = previous_norms_[parity];
    WANRT_ASSERT(previous.size() == norms.size());
    double sum = 0;
    int64_t count = 0;
    for (size_t i = 0; i < norms.size(); ++i) {
      if (previous[i] > 0) {
        sum += norms[i] / previous[i];
        ++count;
      }
    }
    double mean = count > 0 ? sum / static_cast<double>(count) : 1.0;
    if (ops.world_size() > 1) {
      // The mean over every rank's tokens: gather (local mean, local count) from each rank.
      // Every rank measures every call, so the collective is reached by all of them.
      Tensor local = Tensor::empty(DType::F32, {1, 2});
      local.data<float>()[0] = static_cast<float>(mean);
      local.data<float>()[1] = static_cast<float>(count);
      const Tensor all = ops.download(ops.all_gather_rows(ops.upload(local)));  // [ranks, 2]
      double weighted = 0, tokens = 0;
      for (int64_t rank = 0; rank < all.size(0); ++rank) {
        weighted +=
            static_cast<double>(all.data<float>()[2 * rank]) * all.data<float>()[2 * rank + 1];
        tokens += all.data<float>()[2 * rank + 1];
      }
      mean = tokens > 0 ? weighted / tokens : 1.0;
    }
    measured_.push_back(mean);
  }
  previous_norms_[parity] = std::move(norms);
}

}  // namespace wanrt
