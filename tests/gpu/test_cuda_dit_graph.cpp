// CUDA graphs of the DiT's transformer blocks (model/dit_graph.h, backends/cuda/cuda_graph.cpp)
// against the same blocks run eagerly on the same GPU. A replay runs the very kernels the eager
// ops launch, on other addresses, so the results must be equal bit for bit (not merely close).
//
// A small random DiT (dim 256, 2 heads of 128: the Hopper attention path on an H100; 3 blocks;
// 105 tokens, not a multiple of any tile) with fresh random weights and inputs each run:
//   - replays with NEW inputs (latent, timestep, context) equal the eager blocks on those
//     inputs, which shows nothing of the capturing call was baked into the graph; the result
//     buffer is poisoned with NaN between calls, so a replay must rewrite all of it;
//   - DitRunner's CFG pairs on two experts equal WanModel::forward, call by call;
//   - an expert loaded again (weights at new addresses) is captured again, and its graph
//     replays its new weights;
//   - int8 and fp8 weight-only quantized experts (their activation scratch inside the graph);
//   - a MagCache run with graphs equals one without (CudaOptions::graphs = false);
//   - WANRT_CUDA_GRAPH parses 0 / 1 and refuses anything else.
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dit_test_support.h"
#include "gpu_test_support.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_graph.h"
#include "io/tensor_store.h"
#include "model/dit.h"
#include "model/dit_graph.h"
#include "pipeline/dit_runner.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA
TensorStore random_weights(const DitConfig& config, std::mt19937_64& rng) {
  return testing::random_dit_weights(config, rng, 0.05f);
}

using CallInputs = testing::DitCall;

CallInputs random_inputs(const DitConfig& c, std::mt19937_64& rng, double timestep) {
  return testing::random_dit_call(c, rng, timestep, 3, 10, 14, 37);  // 3 × 5 × 7 = 105 tokens
}

using testing::bitwise_equal;

class CudaDitGraphTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) return;
    seed_ = testing::test_seed();
    rng_.seed(seed_);
    weights_ = random_weights(config_, rng_);
    ops_ = make_cuda_ops();
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  DitConfig config_ = testing::small_i2v_dit_config();
  TensorStore weights_;
  std::unique_ptr<Ops> ops_;
};

// Graphed vs eager blocks over `calls` calls with fresh inputs; the graphed result buffer is
// poisoned after each comparison.
void expect_graphed_blocks_equal_eager(Ops& ops, const WanModel& model, const DitConfig& config,
                                       std::mt19937_64& rng, int calls) {
  GraphCapture* capture = ops.graph_capture();
  ASSERT_NE(capture, nullptr) << "CudaOptions::graphs is on by default (WANRT_CUDA_GRAPH set?)";
  DitGraphs graphs(ops, *capture);
  for (int call = 0; call < calls; ++call) {
    const CallInputs in = random_inputs(config, rng, 999.0 - 61.0 * call);
    const DitConditioning cond = model.prepare(ops, in.get());
    Tensor graphed = graphs.run_blocks(model, cond);
    const Tensor graphed_host = ops.download(graphed);
    const Tensor eager_host = ops.download(model.run_blocks(ops, cond));
    EXPECT_TRUE(bitwise_equal(graphed_host, eager_host)) << "call " << call;
    // Poison what the graph wrote (after a replay: its static buffer).
    capture->copy_(graphed, ops.upload(testing::poisoned(graphed.shape())));
  }
  EXPECT_TRUE(graphs.stats().failure.empty()) << graphs.stats().failure;
  EXPECT_EQ(graphs.stats().captures, 1);
  EXPECT_EQ(graphs.stats().eager, 1);
  EXPECT_EQ(graphs.stats().replays, calls - 1);
}

TEST_F(CudaDitGraphTest, ReplaysWithNewInputsEqualTheEagerBlocksBitForBit) {
  WANRT_REQUIRE_GPU();
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  const WanModel model = WanModel::load(config_, weights_, *ops_);
  expect_graphed_blocks_equal_eager(*ops_, model, config_, rng_, 5);
}

TEST_F(CudaDitGraphTest, QuantizedExpertsReplayBitForBit) {
  WANRT_REQUIRE_GPU();
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  for (const Quantization q : {Quantization::Int8, Quantization::Fp8}) {
    SCOPED_TRACE(quantization_name(q));
    const WanModel model = WanModel::load(config_, weights_, *ops_, {.quantize = q});
    expect_graphed_blocks_equal_eager(*ops_, model, config_, rng_, 4);
  }
}

TEST_F(CudaDitGraphTest, RunnerCfgPairsOnTwoExpertsEqualTheForward) {
  WANRT_REQUIRE_GPU();
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  const TensorStore low_weights = random_weights(config_, rng_);
  const WanModel high = WanModel::load(config_, weights_, *ops_);
  const WanModel low = WanModel::load(config_, low_weights, *ops_);
  DitRunner runner(*ops_);
  ASSERT_NE(runner.graphs(), nullptr);
  runner.begin_video();
  // Four steps: the high-noise expert for two, then the low-noise one; per step a cond and an
  // uncond call on the same latent and timestep with different contexts.
  for (int step = 0; step < 4; ++step) {
    const WanModel& expert = step < 2 ? high : low;
    CallInputs cond = random_inputs(config_, rng_, 999.0 - 250.0 * step);
    CallInputs uncond = cond;
    uncond.context = testing::random_normal(cond.context.shape(), rng_);
    for (const CallInputs* in : {&cond, &uncond}) {
      const Tensor out = runner.call(expert, in->get());
      EXPECT_TRUE(bitwise_equal(out, expert.forward(*ops_, in->get())))
          << "step " << step << (in == &cond ? " cond" : " uncond");
    }
  }
  const DitGraphStats& stats = runner.graphs()->stats();
  EXPECT_TRUE(stats.failure.empty()) << stats.failure;
  EXPECT_EQ(stats.captures, 2);  // one per expert, shared by cond and uncond
  EXPECT_EQ(stats.eager, 2);     // each expert's first call
  EXPECT_EQ(stats.replays, 6);
  std::printf("capture of the 3-block graph: %.2f ms\n", stats.capture_seconds * 1e3);
}

TEST_F(CudaDitGraphTest, AnExpertLoadedAgainIsCapturedAgain) {
  WANRT_REQUIRE_GPU();
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  const TensorStore other_weights = random_weights(config_, rng_);
  DitGraphs graphs(*ops_, *ops_->graph_capture());
  auto expert = std::make_unique<WanModel>(WanModel::load(config_, weights_, *ops_));
  auto check = [&](const WanModel& model, int calls) {
    for (int call = 0; call < calls; ++call) {
      const CallInputs in = random_inputs(config_, rng_, 800.0 - call);
      const DitConditioning cond = model.prepare(*ops_, in.get());
      const Tensor graphed = ops_->download(graphs.run_blocks(model, cond));
      EXPECT_TRUE(bitwise_equal(graphed, ops_->download(model.run_blocks(*ops_, cond)))) << call;
    }
  };
  check(*expert, 3);
  // Offloading: the expert's weights leave the GPU; another expert's arrive (the pool may
  // hand it the same addresses), then the first comes back, wherever the pool puts it.
  expert.reset();
  auto other = std::make_unique<WanModel>(WanModel::load(config_, other_weights, *ops_));
  check(*other, 3);
  other.reset();
  expert = std::make_unique<WanModel>(WanModel::load(config_, weights_, *ops_));
  check(*expert, 3);
  EXPECT_EQ(graphs.stats().captures, 3);
  EXPECT_EQ(graphs.entries(), 1u);  // the graphs of weights that are gone were dropped
  EXPECT_TRUE(graphs.stats().failure.empty()) << graphs.stats().failure;
}

TEST_F(CudaDitGraphTest, MagCacheWithGraphsEqualsWithout) {
  WANRT_REQUIRE_GPU();
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  std::unique_ptr<Ops> eager_ops = make_cuda_ops({.graphs = false});
  EXPECT_EQ(eager_ops->graph_capture(), nullptr);
  const WanModel graphed_model = WanModel::load(config_, weights_, *ops_);
  const WanModel eager_model = WanModel::load(config_, weights_, *eager_ops);
  // Skips every call it may after the first pair (a flat ratio table, threshold 1).
  const int steps = 4;
  auto policy = [&] {
    return MagCachePolicy(std::vector<double>(2 * steps - 2, 1.0), steps, 0, MagCacheMode::TI2V,
                          {.threshold = 1.0, .max_skipped_calls = 2, .retention_ratio = 0.0});
  };
  DitRunner graphed(*ops_, policy()), eager(*eager_ops, policy());
  EXPECT_EQ(eager.graphs(), nullptr);
  graphed.begin_video();
  eager.begin_video();
  for (int call = 0; call < 2 * steps; ++call) {
    const CallInputs in = random_inputs(config_, rng_, 999.0 - 100.0 * (call / 2));
    const Tensor a = graphed.call(graphed_model, in.get());
    const Tensor b = eager.call(eager_model, in.get());
    EXPECT_EQ(graphed.last_call_skipped(), eager.last_call_skipped()) << call;
    EXPECT_TRUE(bitwise_equal(a, b)) << "call " << call;
  }
  EXPECT_GT(graphed.stats().skipped, 0);
  EXPECT_GT(graphed.graphs()->stats().replays, 0);
}

TEST(CudaGraphSwitch, EnvironmentVariableParses) {
  WANRT_REQUIRE_GPU();
  const char* saved = std::getenv("WANRT_CUDA_GRAPH");
  const std::string saved_value = saved ? saved : "";
  ::unsetenv("WANRT_CUDA_GRAPH");
  EXPECT_TRUE(cuda::graphs_enabled(true));
  EXPECT_FALSE(cuda::graphs_enabled(false));
  ::setenv("WANRT_CUDA_GRAPH", "0", 1);
  EXPECT_FALSE(cuda::graphs_enabled(true));
  EXPECT_EQ(make_cuda_ops()->graph_capture(), nullptr);
  ::setenv("WANRT_CUDA_GRAPH", "1", 1);
  EXPECT_TRUE(cuda::graphs_enabled(false));
  ::setenv("WANRT_CUDA_GRAPH", "yes", 1);
  EXPECT_THROW(cuda::graphs_enabled(true), Error);
  if (saved) ::setenv("WANRT_CUDA_GRAPH", saved_value.c_str(), 1);
  else ::unsetenv("WANRT_CUDA_GRAPH");
}
#endif

}  // namespace
}  // namespace wanrt
