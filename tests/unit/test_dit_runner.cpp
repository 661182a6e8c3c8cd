// DitRunner (MagCache applied to DiT calls, spec §5) through a tiny random-weight DiT on the
// CPU backend: a skipped call's output is the head applied to x0 + the cached residual of its
// own parity; computed calls equal the plain forward exactly; begin_video() forgets the
// previous video; sequence parallelism gives what one rank gives; calibration measures the
// mean per-token ratio of residual norms.
#include <cmath>
#include <thread>
#include <vector>

#include "backends/profiling_ops.h"
#include "io/tensor_store.h"
#include "model/dit.h"
#include "parallel/communicator.h"
#include "pipeline/dit_runner.h"
#include "dit_test_support.h"
#include "test_support.h"

namespace wanrt {
namespace {

using testing::relative_error;

DitConfig tiny_config() { return testing::tiny_i2v_dit_config(); }

TensorStore random_weights(const DitConfig& config, std::mt19937_64& rng) {
  return testing::random_dit_weights(config, rng, 0.2f);
}

using CallInputs = testing::DitCall;

CallInputs random_inputs(const DitConfig& c, std::mt19937_64& rng, double timestep,
                         int64_t frames = 3, int64_t height = 6, int64_t width = 8) {
  return testing::random_dit_call(c, rng, timestep, frames, height, width, 5);
}

// A policy that skips every call it may: a flat table never accumulates error, K is large,
// nothing is retained; so calls 0 and 1 are computed (no residual yet) and later ones skipped.
MagCachePolicy always_skip_policy(int steps) {
  return MagCachePolicy(std::vector<double>(static_cast<size_t>(2 * steps - 2), 1.0), steps, 0,
                        MagCacheMode::TI2V,
                        {.threshold = 1.0, .max_skipped_calls = 1000, .retention_ratio = 0.0});
}

// run_blocks(x0) − x0 on the host, and the head applied to x0' + residual, by hand.
Tensor host_residual(Ops& ops, const WanModel& model, const DitInputs& inputs) {
  const DitConditioning cond = model.prepare(ops, inputs);
  const Tensor out = ops.download(model.run_blocks(ops, cond));
  const Tensor x0 = ops.download(cond.x0);
  Tensor residual = out.clone();
  for (int64_t i = 0; i < residual.numel(); ++i)
    residual.floats()[static_cast<size_t>(i)] -= x0.floats()[static_cast<size_t>(i)];
  return residual;
}

Tensor head_of_cached(Ops& ops, const WanModel& model, const DitInputs& inputs,
                      const Tensor& residual) {
  const DitConditioning cond = model.prepare(ops, inputs);
  Tensor x = ops.download(cond.x0).clone();
  for (int64_t i = 0; i < x.numel(); ++i)
    x.floats()[static_cast<size_t>(i)] += residual.floats()[static_cast<size_t>(i)];
  return model.head(ops, ops.upload(x), cond);
}

class DitRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
    config_ = tiny_config();
    weights_ = random_weights(config_, rng_);
    ops_ = make_cpu_ops();
    model_ = std::make_unique<WanModel>(WanModel::load(config_, weights_, *ops_));
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  DitConfig config_;
  TensorStore weights_;
  std::unique_ptr<Ops> ops_;
  std::unique_ptr<WanModel> model_;
};

TEST_F(DitRunnerTest, SkippedCallIsTheHeadOfX0PlusTheCachedResidualOfItsParity) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  // Step 0 (cond, uncond) computed; step 1 (cond, uncond) skipped, at another timestep and
  // latent, each with its own parity's residual.
  const CallInputs cond0 = random_inputs(config_, rng_, 999),
                   uncond0 = random_inputs(config_, rng_, 999);
  const CallInputs cond1 = random_inputs(config_, rng_, 700),
                   uncond1 = random_inputs(config_, rng_, 700);
  DitRunner runner(*ops_, always_skip_policy(2));
  runner.begin_video();

  EXPECT_EQ(relative_error(runner.call(*model_, cond0.get()), model_->forward(*ops_, cond0.get())),
            0.0);
  EXPECT_FALSE(runner.last_call_skipped());
  EXPECT_EQ(
      relative_error(runner.call(*model_, uncond0.get()), model_->forward(*ops_, uncond0.get())),
      0.0);
  EXPECT_FALSE(runner.last_call_skipped());

  const Tensor cond_residual = host_residual(*ops_, *model_, cond0.get());
  const Tensor uncond_residual = host_residual(*ops_, *model_, uncond0.get());
  const Tensor skipped_cond = runner.call(*model_, cond1.get());
  EXPECT_TRUE(runner.last_call_skipped());
  const Tensor skipped_uncond = runner.call(*model_, uncond1.get());
  EXPECT_TRUE(runner.last_call_skipped());

  const Tensor expected_cond = head_of_cached(*ops_, *model_, cond1.get(), cond_residual);
  const Tensor expected_uncond = head_of_cached(*ops_, *model_, uncond1.get(), uncond_residual);
  EXPECT_LE(relative_error(skipped_cond, expected_cond), 1e-6);
  EXPECT_LE(relative_error(skipped_uncond, expected_uncond), 1e-6);
  // The other parity's residual gives something else: the caches really are per branch.
  EXPECT_GT(
      relative_error(skipped_cond, head_of_cached(*ops_, *model_, cond1.get(), uncond_residual)),
      1e-3);
  // And a skipped call is not the full forward.
  EXPECT_GT(relative_error(skipped_cond, model_->forward(*ops_, cond1.get())), 1e-3);

  EXPECT_EQ(runner.stats().computed, 2);
  EXPECT_EQ(runner.stats().skipped, 2);
  EXPECT_EQ(runner.calls(), 4);
  // Past the policy's calls without begin_video(): an error, not a silent new video.
  EXPECT_THROW(runner.call(*model_, cond0.get()), Error);
}

// What a skipped call runs, counted by a ProfilingOps decorator: the patch embedding (x0 is
// needed), the two time-embedding linears and the head; not the text embedding, the time
// projection, the RoPE table or any block. A computed call runs all of them.
TEST_F(DitRunnerTest, SkippedCallRunsOnlyThePatchAndTimeEmbeddingsAndTheHead) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  ProfilingOps counted(*ops_, [] {});
  counted.set_enabled(true);
  DitRunner runner(counted, always_skip_policy(2));
  runner.begin_video();
  const CallInputs inputs = random_inputs(config_, rng_, 999);
  const DitConfig& c = config_;
  const int64_t tokens = 3 * (6 / 2) * (8 / 2);
  const std::string text_embedding = str_cat("linear N=", c.text_len, " K=", c.text_dim, " M=", c.dim);
  const std::string time_projection = str_cat("linear N=1 K=", c.dim, " M=", 6 * c.dim, " (fp32)");
  auto linear_calls = [&] { return counted.by_op().count("linear") ? counted.by_op().at("linear").calls : 0; };
  auto shape_calls = [&](const std::string& key) {
    return counted.by_shape().count(key) ? counted.by_shape().at(key).calls : int64_t{0};
  };

  runner.call(*model_, inputs.get());  // call 0, cond: computed
  EXPECT_FALSE(runner.last_call_skipped());
  EXPECT_EQ(shape_calls(text_embedding), 1);
  EXPECT_EQ(shape_calls(time_projection), 1);
  // Per block 4 + 4 attention projections and 2 FFN linears; patch, 2 time, time projection,
  // 2 text, head.
  EXPECT_EQ(linear_calls(), c.num_layers * 10 + 7);
  runner.call(*model_, inputs.get());  // call 1, uncond: computed

  counted.reset();
  const Tensor skipped = runner.call(*model_, inputs.get());  // call 2: skipped
  ASSERT_TRUE(runner.last_call_skipped());
  EXPECT_EQ(shape_calls(text_embedding), 0);
  EXPECT_EQ(shape_calls(time_projection), 0);
  EXPECT_EQ(shape_calls(str_cat("linear N=", tokens, " K=", c.in_dim * 4, " M=", c.dim)), 1)
      << "the patch embedding (x0) is part of a skipped call";
  EXPECT_EQ(linear_calls(), 4);  // patch embedding, 2 time-embedding linears, head
  EXPECT_EQ(counted.by_op().count("attention"), 0u);
  EXPECT_EQ(counted.by_op().count("rms_norm_rope"), 0u);
  // Uploads: x, y and the sinusoid; not the text context or the RoPE table.
  EXPECT_EQ(counted.by_op().at("upload").calls, 3);
  // Still the head of x0 + the cached residual.
  const Tensor residual = host_residual(*ops_, *model_, inputs.get());
  EXPECT_LE(relative_error(skipped, head_of_cached(*ops_, *model_, inputs.get(), residual)), 1e-6);
}

TEST_F(DitRunnerTest, ComputedCallsEqualTheForwardWithOrWithoutMagCache) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  DitRunner plain(*ops_);
  // Threshold 0: MagCache never skips, but keeps residuals (the bookkeeping must not touch x).
  DitRunner never_skips(
      *ops_, MagCachePolicy(std::vector<double>(6, 0.99), 4, 0, MagCacheMode::TI2V,
                            {.threshold = 0.0, .max_skipped_calls = 2, .retention_ratio = 0.0}));
  plain.begin_video();
  never_skips.begin_video();
  for (int call = 0; call < 8; ++call) {
    const CallInputs inputs = random_inputs(config_, rng_, 999 - 100 * (call / 2));
    const Tensor expected = model_->forward(*ops_, inputs.get());
    EXPECT_EQ(relative_error(plain.call(*model_, inputs.get()), expected), 0.0) << call;
    EXPECT_EQ(relative_error(never_skips.call(*model_, inputs.get()), expected), 0.0) << call;
  }
  EXPECT_EQ(plain.stats().computed, 8);
  EXPECT_EQ(never_skips.stats().computed, 8);
  EXPECT_EQ(never_skips.stats().skipped, 0);
  EXPECT_FALSE(plain.uses_magcache());
  EXPECT_TRUE(never_skips.uses_magcache());
}

TEST_F(DitRunnerTest, BeginVideoForgetsThePreviousVideo) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  DitRunner runner(*ops_, always_skip_policy(3));
  runner.begin_video();
  for (int call = 0; call < 3; ++call)
    runner.call(*model_, random_inputs(config_, rng_, 900).get());
  EXPECT_EQ(runner.stats().skipped, 1);
  // A new video of another size: its first calls are computed (no residual of the old video
  // is used, and none would fit), counters and statistics start over.
  runner.begin_video();
  EXPECT_EQ(runner.calls(), 0);
  EXPECT_EQ(runner.stats().total(), 0);
  const CallInputs cond = random_inputs(config_, rng_, 999, 2, 4, 4);
  const CallInputs uncond = random_inputs(config_, rng_, 999, 2, 4, 4);
  EXPECT_EQ(relative_error(runner.call(*model_, cond.get()), model_->forward(*ops_, cond.get())),
            0.0);
  EXPECT_EQ(
      relative_error(runner.call(*model_, uncond.get()), model_->forward(*ops_, uncond.get())),
      0.0);
  EXPECT_EQ(runner.stats().computed, 2);
  EXPECT_EQ(runner.stats().skipped, 0);
  const CallInputs later = random_inputs(config_, rng_, 500, 2, 4, 4);
  const Tensor skipped = runner.call(*model_, later.get());
  EXPECT_TRUE(runner.last_call_skipped());
  EXPECT_LE(relative_error(skipped, head_of_cached(*ops_, *model_, later.get(),
                                                   host_residual(*ops_, *model_, cond.get()))),
            1e-6);
}

TEST_F(DitRunnerTest, CalibrationMeasuresTheMeanRatioOfResidualNorms) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  constexpr int kSteps = 3;
  std::vector<CallInputs> calls;
  for (int call = 0; call < 2 * kSteps; ++call)
    calls.push_back(random_inputs(config_, rng_, 999 - 300 * (call / 2)));
  DitRunner runner = DitRunner::calibrating(*ops_);
  runner.begin_video();
  for (const CallInputs& inputs : calls)
    EXPECT_EQ(
        relative_error(runner.call(*model_, inputs.get()), model_->forward(*ops_, inputs.get())),
        0.0);
  EXPECT_EQ(runner.stats().computed, 2 * kSteps);
  const std::vector<double>& measured = runner.measured_ratios();
  ASSERT_EQ(measured.size(), static_cast<size_t>(2 * kSteps - 2));

  const int64_t width = config_.dim;
  for (size_t j = 0; j < measured.size(); ++j) {
    const Tensor now = host_residual(*ops_, *model_, calls[j + 2].get());
    const Tensor before = host_residual(*ops_, *model_, calls[j].get());
    double sum = 0;
    const int64_t tokens = now.size(0);
    for (int64_t token = 0; token < tokens; ++token) {
      double a = 0, b = 0;
      for (int64_t i = 0; i < width; ++i) {
        a += std::pow(now.data<float>()[token * width + i], 2);
        b += std::pow(before.data<float>()[token * width + i], 2);
      }
      sum += std::sqrt(a) / std::sqrt(b);
    }
    const double expected = sum / static_cast<double>(tokens);
    EXPECT_NEAR(measured[j], expected, 1e-9 * expected) << "ratio " << j;
    EXPECT_NE(measured[j], 1.0) << "ratio " << j;
  }
  runner.begin_video();
  EXPECT_TRUE(runner.measured_ratios().empty());
}

// Each rank keeps the residual of its own tokens: two ranks (27 tokens, padded to 28) give
// what one rank gives, for computed and skipped calls, and measure the same ratios.
TEST_F(DitRunnerTest, SequenceParallelRanksAgreeWithOneRank) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  constexpr int kSteps = 3, kWorld = 2;
  std::vector<CallInputs> calls;
  for (int call = 0; call < 2 * kSteps; ++call)
    calls.push_back(random_inputs(config_, rng_, 999 - 250 * (call / 2), 3, 6, 6));  // 3·3·3 tokens

  auto run_all = [&](Ops& ops, const WanModel& model, bool calibrate, std::vector<double>* ratios) {
    DitRunner runner =
        calibrate ? DitRunner::calibrating(ops) : DitRunner(ops, always_skip_policy(kSteps));
    runner.begin_video();
    std::vector<Tensor> outputs;
    for (const CallInputs& inputs : calls) outputs.push_back(runner.call(model, inputs.get()));
    if (ratios) *ratios = runner.measured_ratios();
    EXPECT_EQ(runner.stats().skipped, calibrate ? 0 : 2 * kSteps - 2);
    return outputs;
  };
  for (bool calibrate : {false, true}) {
    SCOPED_TRACE(calibrate ? "calibrating" : "MagCache");
    std::vector<double> single_ratios;
    const std::vector<Tensor> single = run_all(*ops_, *model_, calibrate, &single_ratios);

    auto group = make_thread_group(kWorld);
    std::vector<std::vector<Tensor>> rank_outputs(kWorld);
    std::vector<std::vector<double>> rank_ratios(kWorld);
    std::vector<std::thread> threads;
    for (int r = 0; r < kWorld; ++r)
      threads.emplace_back([&, r] {
        auto rank_ops = make_cpu_ops(group[static_cast<size_t>(r)]);
        const WanModel model = WanModel::load(config_, weights_, *rank_ops);
        rank_outputs[static_cast<size_t>(r)] =
            run_all(*rank_ops, model, calibrate, &rank_ratios[static_cast<size_t>(r)]);
      });
    for (auto& thread : threads) thread.join();
    for (int r = 0; r < kWorld; ++r) {
      ASSERT_EQ(rank_outputs[static_cast<size_t>(r)].size(), single.size());
      for (size_t call = 0; call < single.size(); ++call)
        EXPECT_LE(relative_error(rank_outputs[static_cast<size_t>(r)][call], single[call]), 1e-5)
            << "rank " << r << ", call " << call;
      ASSERT_EQ(rank_ratios[static_cast<size_t>(r)].size(), single_ratios.size());
      for (size_t j = 0; j < single_ratios.size(); ++j)
        EXPECT_NEAR(rank_ratios[static_cast<size_t>(r)][j], single_ratios[j], 1e-5)
            << "rank " << r << ", ratio " << j;
    }
  }
}

}  // namespace
}  // namespace wanrt
