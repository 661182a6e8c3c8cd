// DitGraphs (model/dit_graph.h), its planning and caching, on the CPU backend with a stand-in
// for graph capture: "capturing" keeps the region and a replay runs it again, on the same
// static buffers, exactly as a CUDA graph replays its kernels on the addresses it captured.
// So a per-call input that DitGraphs failed to copy into its static buffers (a timestep, a
// context) would replay the capturing call's value and the comparison with the eager blocks
// would fail. Also: first use eager, one capture per (expert, shape) shared by every later
// call, a reloaded expert (new weights) gets a new graph and the old one is dropped, a new
// shape gets its own graph, the cache is bounded, and a failed capture runs eagerly and says
// why. The real CUDA graphs are tested in tests/gpu/test_cuda_dit_graph.cpp.
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>

#include "io/tensor_store.h"
#include "model/dit.h"
#include "model/dit_graph.h"
#include "dit_test_support.h"
#include "test_support.h"

namespace wanrt {
namespace {

DitConfig tiny_config() { return testing::tiny_i2v_dit_config(); }

TensorStore random_weights(const DitConfig& config, std::mt19937_64& rng) {
  return testing::random_dit_weights(config, rng, 0.2f);
}

using CallInputs = testing::DitCall;

CallInputs random_inputs(const DitConfig& c, std::mt19937_64& rng, double timestep,
                         int64_t frames = 2, int64_t height = 4, int64_t width = 6) {
  return testing::random_dit_call(c, rng, timestep, frames, height, width, 5);
}

// The stand-in: a "graph" is the region itself, run again at each replay.
class ReplayingCapture final : public GraphCapture {
 public:
  std::unique_ptr<OpGraph> capture(const std::function<void()>& region) override {
    ++captures;
    if (fail_next) {
      fail_next = false;
      fail("stand-in capture: this region cannot be captured");
    }
    struct Graph final : OpGraph {
      std::function<void()> region;
      void replay() override { region(); }
    };
    auto graph = std::make_unique<Graph>();
    graph->region = region;
    return graph;
  }
  void copy_(Tensor& dst, const Tensor& src) override {
    WANRT_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(), "copy_ shapes");
    std::memcpy(dst.raw_mut(), src.raw(), src.nbytes());
    ++copies;
  }
  int captures = 0, copies = 0;
  bool fail_next = false;
};

using testing::bitwise_equal;

class DitGraphTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
    weights_ = random_weights(config_, rng_);
    model_ = std::make_unique<WanModel>(WanModel::load(config_, weights_, *ops_));
  }
  // The blocks through `graphs` and eagerly, downloaded.
  std::pair<Tensor, Tensor> both(DitGraphs& graphs, const WanModel& model, const CallInputs& in) {
    const DitConditioning cond = model.prepare(*ops_, in.get());
    Tensor graphed = ops_->download(graphs.run_blocks(model, cond)).clone();
    Tensor eager = ops_->download(model.run_blocks(*ops_, cond));
    return {graphed, eager};
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  DitConfig config_ = tiny_config();
  TensorStore weights_;
  std::unique_ptr<Ops> ops_ = make_cpu_ops();
  std::unique_ptr<WanModel> model_;
  ReplayingCapture capture_;
};

TEST_F(DitGraphTest, ReplaysWithNewInputsEqualTheEagerBlocks) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  DitGraphs graphs(*ops_, capture_);
  // Every call has its own latent, timestep and context: cond/uncond pairs of three steps.
  for (int call = 0; call < 6; ++call) {
    const CallInputs in = random_inputs(config_, rng_, 999.0 - 37.0 * call);
    const auto [graphed, eager] = both(graphs, *model_, in);
    EXPECT_TRUE(bitwise_equal(graphed, eager)) << "call " << call;
  }
  EXPECT_EQ(graphs.stats().eager, 1);     // first use
  EXPECT_EQ(graphs.stats().captures, 1);  // the second call captures ...
  EXPECT_EQ(graphs.stats().replays, 5);   // ... and every call from it replays
  EXPECT_EQ(capture_.captures, 1);
  // x0, e0, context in before every replay after the capturing one; the result out at every
  // replay (the region's copy_, which this stand-in runs at each replay).
  EXPECT_EQ(capture_.copies, 3 * 4 + 5);
  EXPECT_EQ(graphs.entries(), 1u);
  EXPECT_TRUE(graphs.stats().failure.empty());
}

TEST_F(DitGraphTest, TwoExpertsAndAReloadedExpertGetTheirOwnGraphs) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  DitGraphs graphs(*ops_, capture_);
  const TensorStore other_weights = random_weights(config_, rng_);
  auto other = std::make_unique<WanModel>(WanModel::load(config_, other_weights, *ops_));
  for (int call = 0; call < 4; ++call) {
    const CallInputs in = random_inputs(config_, rng_, 900.0 - call);
    const auto [high, high_eager] = both(graphs, *model_, in);
    const auto [low, low_eager] = both(graphs, *other, in);
    EXPECT_TRUE(bitwise_equal(high, high_eager)) << call;
    EXPECT_TRUE(bitwise_equal(low, low_eager)) << call;
    EXPECT_FALSE(bitwise_equal(high, low));  // the experts really differ
  }
  EXPECT_EQ(graphs.stats().captures, 2);
  EXPECT_EQ(graphs.entries(), 2u);

  // Offloading: the second expert goes and comes back (new weights, new identity). Its old
  // graph is dropped; the new load is captured afresh and replays its own weights.
  other.reset();
  other = std::make_unique<WanModel>(WanModel::load(config_, other_weights, *ops_));
  for (int call = 0; call < 3; ++call) {
    const CallInputs in = random_inputs(config_, rng_, 500.0 - call);
    const auto [low, low_eager] = both(graphs, *other, in);
    EXPECT_TRUE(bitwise_equal(low, low_eager)) << call;
  }
  EXPECT_EQ(graphs.entries(), 2u);  // the first expert's and the reloaded one's
  EXPECT_EQ(graphs.stats().captures, 3);
  // A copy of a model shares its weights and therefore its graph.
  const WanModel copy = *model_;
  const CallInputs in = random_inputs(config_, rng_, 100.0);
  const auto [graphed, eager] = both(graphs, copy, in);
  EXPECT_TRUE(bitwise_equal(graphed, eager));
  EXPECT_EQ(graphs.stats().captures, 3);
}

TEST_F(DitGraphTest, EachShapeHasItsGraphAndTheCacheIsBounded) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  DitGraphs graphs(*ops_, capture_);
  // Latent sizes (frames, height, width), each used three times, then the first one again.
  const int64_t sizes[][3] = {{2, 4, 6}, {1, 4, 4}, {2, 2, 6}, {3, 4, 2}, {1, 2, 2}, {2, 4, 6}};
  for (const auto& size : sizes) {
    for (int call = 0; call < 3; ++call) {
      const CallInputs in = random_inputs(config_, rng_, 800.0 - call, size[0], size[1], size[2]);
      const auto [graphed, eager] = both(graphs, *model_, in);
      EXPECT_TRUE(bitwise_equal(graphed, eager)) << size[0] << "x" << size[1] << "x" << size[2];
    }
    EXPECT_LE(graphs.entries(), DitGraphs::kMaxEntries);
  }
  // Six uses of five shapes: the first shape was evicted by the fifth, so it is captured again.
  EXPECT_EQ(graphs.stats().captures, 6);
  EXPECT_EQ(graphs.stats().eager, 6);
  EXPECT_EQ(graphs.entries(), DitGraphs::kMaxEntries);
  graphs.clear();
  EXPECT_EQ(graphs.entries(), 0u);
}

TEST_F(DitGraphTest, AFailedCaptureRunsEagerlyAndSaysWhy) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  DitGraphs graphs(*ops_, capture_);
  capture_.fail_next = true;
  for (int call = 0; call < 4; ++call) {
    const CallInputs in = random_inputs(config_, rng_, 999.0 - call);
    const auto [graphed, eager] = both(graphs, *model_, in);
    EXPECT_TRUE(bitwise_equal(graphed, eager)) << call;
  }
  EXPECT_EQ(capture_.captures, 1);  // tried once, not at every call
  EXPECT_EQ(graphs.stats().captures, 0);
  EXPECT_EQ(graphs.stats().eager, 4);
  EXPECT_NE(graphs.stats().failure.find("cannot be captured"), std::string::npos);
}

TEST(DitGraphShape, NamesEverythingTheBlocksReadBesidesValues) {
  DitConditioning a;
  a.frames = 2, a.height = 4, a.width = 6, a.tokens = 48, a.seq_len = 48, a.local_tokens = 48;
  a.x0 = Tensor::empty(DType::F32, {48, 8});
  a.e0 = Tensor::empty(DType::F32, {6, 8});
  a.context = Tensor::empty(DType::F32, {16, 8});
  a.rope = Tensor::empty(DType::F32, {48, 2, 2});
  DitConditioning b = a;
  EXPECT_EQ(DitGraphShape::of(a), DitGraphShape::of(b));
  b.height = 6, b.width = 4;  // the same token count, another grid: another RoPE table
  EXPECT_FALSE(DitGraphShape::of(a) == DitGraphShape::of(b));
  b = a;
  b.context = Tensor::empty(DType::BF16, {16, 8});
  EXPECT_FALSE(DitGraphShape::of(a) == DitGraphShape::of(b));
  b = a;
  b.local_begin = 48;
  EXPECT_FALSE(DitGraphShape::of(a) == DitGraphShape::of(b));
}

}  // namespace
}  // namespace wanrt
