// ProfilingOps on the CPU backend: it forwards every op unchanged (results equal the inner
// backend's on fresh random inputs), counts calls, FLOPs and bytes by the documented formulas,
// syncs around every timed op, records nothing while disabled, and prints its tables. A tiny
// DiT forward through it equals the plain forward, and its counted FLOPs equal spec §1.5's
// per-forward formulas, which is what bench_dit reports.
#include <sstream>
#include <thread>

#include "backends/profiling_ops.h"
#include "io/random_weights.h"
#include "model/dit.h"
#include "test_support.h"

namespace wanrt {
namespace {

using testing::random_normal;
using testing::relative_error;

class ProfilingOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure())
      std::fprintf(stderr, "reproduce with WANRT_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed_));
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<Ops> cpu_ = make_cpu_ops();
  int syncs_ = 0;
  ProfilingOps profiled_{*cpu_, [this] { ++syncs_; }};
};

double bytes(const Tensor& t) { return static_cast<double>(t.nbytes()); }

TEST_F(ProfilingOpsTest, ForwardsEveryOpUnchanged) {
  profiled_.set_enabled(true);
  Ops& p = profiled_;
  Ops& c = *cpu_;
  const Tensor x = random_normal({7, 33}, rng_), w = random_normal({19, 33}, rng_), b = random_normal({19}, rng_);
  const Tensor g = random_normal({33}, rng_), s = random_normal({33}, rng_);
  auto same = [](const Tensor& a, const Tensor& e) { EXPECT_EQ(relative_error(a, e), 0.0); };
  same(p.linear(x, w, &b, {.activation = Activation::GeluTanh}),
       c.linear(x, w, &b, {.activation = Activation::GeluTanh}));
  same(p.layer_norm(x, 1e-6f, &g, &s), c.layer_norm(x, 1e-6f, &g, &s));
  same(p.layer_norm_modulate(x, g, s, 1e-6f), c.layer_norm_modulate(x, g, s, 1e-6f));
  same(p.rms_norm(x, g, 1e-6f), c.rms_norm(x, g, 1e-6f));
  same(p.activation(x, Activation::Silu), c.activation(x, Activation::Silu));
  same(p.add(x, g), c.add(x, g));
  same(p.mul(x, x), c.mul(x, x));
  Tensor xp = x.clone(), xc = x.clone();
  p.add_gated_(xp, x, &g);
  c.add_gated_(xc, x, &g);
  same(xp, xc);

  const Tensor q = random_normal({9, 3, 8}, rng_), k = random_normal({11, 3, 8}, rng_), v = random_normal({11, 3, 8}, rng_);
  const AttentionOptions options{.scale = 0.3f, .kv_len = 6};
  same(p.attention(q, k, v, options), c.attention(q, k, v, options));
  Tensor table = random_normal({5, 4, 2}, rng_);
  Tensor qp = q.clone(), qc = q.clone();
  p.rope_(qp, table);
  c.rope_(qc, table);
  same(qp, qc);

  const Tensor video = random_normal({3, 2, 6, 10}, rng_), kernel = random_normal({5, 3, 3, 3, 3}, rng_);
  const Tensor kernel_bias = random_normal({5}, rng_);
  Conv3dOptions conv{.stride_h = 2, .pad_t_front = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 0};
  same(p.conv3d(video, kernel, &kernel_bias, conv), c.conv3d(video, kernel, &kernel_bias, conv));
  const Tensor gamma = random_normal({3}, rng_);
  same(p.channel_rms_norm(video, gamma), c.channel_rms_norm(video, gamma));
  same(p.upsample_nearest_2x(video), c.upsample_nearest_2x(video));
  same(p.frames(video, 1, 2), c.frames(video, 1, 2));
  same(p.concat_frames(video, video), c.concat_frames(video, video));
  same(p.transpose(x), c.transpose(x));
  same(p.patchify(video, 2, 2), c.patchify(video, 2, 2));
  const Tensor tokens = random_normal({13, 12}, rng_);
  same(p.unpatchify(tokens, 3, 1, 3, 4, 2, 2), c.unpatchify(tokens, 3, 1, 3, 4, 2, 2));
  same(p.pad_rows(x, 10), c.pad_rows(x, 10));
  same(p.concat_rows(x, x), c.concat_rows(x, x));
  same(p.rows(x, 2, 5), c.rows(x, 2, 5));
  same(p.sequence_to_heads(q), c.sequence_to_heads(q));
  same(p.heads_to_sequence(q), c.heads_to_sequence(q));
  same(p.all_gather_rows(x), c.all_gather_rows(x));
  same(p.download(p.upload(x)), x);
  same(p.upload_weight(w), c.upload_weight(w));
  same(p.zeros({4, 5}), c.zeros({4, 5}));
  Tensor ids = Tensor::empty(DType::I64, {3});
  ids.data<int64_t>()[0] = 4, ids.data<int64_t>()[1] = 0, ids.data<int64_t>()[2] = 6;
  same(p.embedding(x, ids), c.embedding(x, ids));
  EXPECT_EQ(p.rank(), c.rank());
  EXPECT_EQ(p.world_size(), c.world_size());
  EXPECT_EQ(p.name(), c.name());
}

TEST_F(ProfilingOpsTest, CountsFlopsBytesAndCallsByTheFormulas) {
  profiled_.set_enabled(true);
  // Odd sizes, so a swapped dimension changes the count.
  const int64_t n = 7, k = 33, m = 19;
  const Tensor x = random_normal({n, k}, rng_), w = random_normal({m, k}, rng_), b = random_normal({m}, rng_);
  const Tensor y = profiled_.linear(x, w, &b, {});
  profiled_.linear(x, w, nullptr, {});
  const OpStats gemm = profiled_.category(OpCategory::Gemm);
  EXPECT_EQ(gemm.calls, 2);
  EXPECT_EQ(gemm.flops, 2 * 2.0 * n * m * k);
  EXPECT_EQ(gemm.bytes, 2 * (bytes(x) + bytes(w) + bytes(y)) + bytes(b));
  ASSERT_EQ(profiled_.by_shape().count("linear N=7 K=33 M=19"), 1u);
  EXPECT_EQ(profiled_.by_shape().at("linear N=7 K=33 M=19").calls, 2);

  // Attention: masked keys are not work; 4·H·Lq·Lk·d.
  const int64_t lq = 9, lk = 11, heads = 3, d = 8, kv_len = 6;
  const Tensor q = random_normal({lq, heads, d}, rng_), kk = random_normal({lk, heads, d}, rng_);
  profiled_.attention(q, kk, kk, {.scale = 0.5f, .kv_len = kv_len});
  profiled_.attention(q, kk, kk, {.scale = 0.5f});
  const OpStats attention = profiled_.category(OpCategory::Attention);
  EXPECT_EQ(attention.calls, 2);
  EXPECT_EQ(attention.flops, 4.0 * heads * lq * d * (kv_len + lk));

  // conv3d: 2·Cout·Cin·kt·kh·kw per output voxel, with stride and asymmetric padding.
  const Tensor video = random_normal({3, 4, 7, 9}, rng_), kernel = random_normal({5, 3, 3, 3, 3}, rng_);
  Conv3dOptions conv{.stride_h = 2, .stride_w = 2, .pad_t_front = 2, .pad_bottom = 1, .pad_right = 1};
  const Tensor out = profiled_.conv3d(video, kernel, nullptr, conv);
  const int64_t voxels = out.numel() / out.size(0);
  EXPECT_EQ(out.size(0), 5);
  const OpStats video_stats = profiled_.category(OpCategory::Video);
  EXPECT_EQ(video_stats.calls, 1);
  EXPECT_EQ(video_stats.flops, 2.0 * 5 * 3 * 27 * static_cast<double>(voxels));
  EXPECT_EQ(video_stats.bytes, bytes(video) + bytes(kernel) + bytes(out));

  // Memory-bound ops: bytes only, in the right category.
  Tensor r = x.clone();
  profiled_.add_gated_(r, x, nullptr);
  profiled_.layer_norm(x, 1e-6f, nullptr, nullptr);
  Tensor rotated = random_normal({4, 2, 4}, rng_);
  profiled_.rope_(rotated, random_normal({4, 2, 2}, rng_));
  profiled_.pad_rows(x, 10);
  const Tensor uploaded = profiled_.upload(x);
  profiled_.download(uploaded);
  profiled_.sequence_to_heads(q);
  EXPECT_EQ(profiled_.category(OpCategory::Elementwise).bytes, 3 * bytes(x));
  EXPECT_EQ(profiled_.category(OpCategory::Elementwise).flops, 0);
  EXPECT_EQ(profiled_.category(OpCategory::Norm).calls, 1);
  EXPECT_EQ(profiled_.category(OpCategory::Rope).calls, 1);
  EXPECT_EQ(profiled_.category(OpCategory::Layout).bytes, bytes(x) + 10.0 * k * 4);
  EXPECT_EQ(profiled_.category(OpCategory::Memory).calls, 2);
  EXPECT_EQ(profiled_.category(OpCategory::Memory).bytes, 2 * bytes(x));
  EXPECT_EQ(profiled_.category(OpCategory::Collective).calls, 1);
  EXPECT_EQ(profiled_.category_of("rope_"), OpCategory::Rope);

  // The whole is the sum of its categories.
  OpStats sum;
  for (int c = 0; c < kOpCategoryCount; ++c) sum += profiled_.category(static_cast<OpCategory>(c));
  const OpStats total = profiled_.total();
  EXPECT_EQ(sum.calls, total.calls);
  EXPECT_EQ(sum.flops, total.flops);
  EXPECT_DOUBLE_EQ(sum.seconds, total.seconds);
  EXPECT_EQ(total.calls, 2 + 2 + 1 + 1 + 1 + 1 + 1 + 2 + 1);

  profiled_.reset();
  EXPECT_EQ(profiled_.total().calls, 0);
}

TEST_F(ProfilingOpsTest, SyncsAroundEveryTimedOpAndCountsTheWait) {
  // A sync that takes 3 ms stands for a GPU still busy when the op returns: the time recorded
  // must include the wait after the op (the op is not done before that).
  int slow_syncs = 0;
  ProfilingOps slow(*cpu_, [&] {
    ++slow_syncs;
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  });
  slow.set_enabled(true);
  const Tensor x = random_normal({4, 8}, rng_);
  slow.add(x, x);
  slow.activation(x, Activation::Silu);
  EXPECT_EQ(slow_syncs, 4);
  EXPECT_GE(slow.by_op().at("add").seconds, 0.003);
  EXPECT_GE(slow.by_op().at("activation").seconds, 0.003);
  EXPECT_LT(slow.total().seconds, 0.5);
}

TEST_F(ProfilingOpsTest, DisabledRecordsNothingAndNeverSyncs) {
  const Tensor x = random_normal({4, 8}, rng_), w = random_normal({3, 8}, rng_);
  const Tensor y = profiled_.linear(x, w, nullptr, {});
  EXPECT_EQ(relative_error(y, cpu_->linear(x, w, nullptr, {})), 0.0);
  EXPECT_EQ(syncs_, 0);
  EXPECT_EQ(profiled_.total().calls, 0);
  EXPECT_FALSE(profiled_.enabled());
  std::ostringstream out;
  profiled_.print_breakdown(out);
  EXPECT_NE(out.str().find("no ops were recorded"), std::string::npos);
}

TEST_F(ProfilingOpsTest, PrintsCategoriesPercentagesAndCeilings) {
  profiled_.set_enabled(true);
  const Tensor x = random_normal({64, 128}, rng_), w = random_normal({96, 128}, rng_);
  profiled_.linear(x, w, nullptr, {});
  profiled_.add(x, x);
  const Tensor q = random_normal({16, 2, 8}, rng_);
  profiled_.attention(q, q, q, {.scale = 0.3f});
  BreakdownOptions options;
  options.title = "TITLE";
  options.peak_tflops = 989;
  options.ceiling_tflops[static_cast<size_t>(OpCategory::Gemm)] = 700;
  options.wall_seconds = profiled_.total().seconds * 2;
  std::ostringstream out;
  profiled_.print_breakdown(out, options);
  const std::string text = out.str();
  for (const char* expected : {"TITLE", "By category:", "gemm", "attention", "elementwise",
                               "outside ops", "total", "% peak", "% ceil.", "By op:",
                               "linear [gemm]", "By shape", "linear N=64 K=128 M=96",
                               "attention Lq=16 Lk=16 H=2 d=8", "50.0 %"})
    EXPECT_NE(text.find(expected), std::string::npos) << "missing '" << expected << "' in\n" << text;
  // Without a peak or ceilings, no such columns.
  std::ostringstream plain;
  profiled_.print_breakdown(plain, {});
  EXPECT_EQ(plain.str().find("% peak"), std::string::npos);
  EXPECT_EQ(plain.str().find("% ceil."), std::string::npos);
  // Long tables keep their slowest rows and fold the rest into one line.
  std::ostringstream folded;
  BreakdownOptions short_tables;
  short_tables.max_rows = 1;
  profiled_.print_breakdown(folded, short_tables);
  EXPECT_NE(folded.str().find("(2 more)"), std::string::npos) << folded.str();  // of 3 ops
  EXPECT_NE(folded.str().find("(1 more)"), std::string::npos) << folded.str();  // of 2 shapes
}

TEST_F(ProfilingOpsTest, TinyDitForwardIsUnchangedAndItsFlopsMatchTheSpecFormulas) {
  DitConfig config = DitConfig::i2v_a14b();
  config.dim = 256;
  config.ffn_dim = 384;
  config.num_heads = 2;
  config.num_layers = 2;
  config.text_len = 24;  // keeps the CPU run short; the formula takes it as T
  const TensorStore weights = random_weight_store(config.expected_tensors(), DType::F32, seed_);
  const WanModel model = WanModel::load(config, weights, *cpu_);
  const int64_t frames = 2, height = 6, width = 10;  // 2·3·5 = 30 tokens
  const Tensor x = random_normal({16, frames, height, width}, rng_);
  const Tensor y = random_normal({20, frames, height, width}, rng_);
  const Tensor context = random_normal({9, 4096}, rng_, 0.1f);
  DitInputs inputs{.x = &x, .y = &y, .timestep = 917, .context = &context};

  const Tensor expected = model.forward(*cpu_, inputs);
  profiled_.set_enabled(true);
  const Tensor actual = model.forward(profiled_, inputs);
  EXPECT_EQ(relative_error(actual, expected), 0.0);

  const double L = 30, D = 256, T = 24, F = 384, blocks = 2;
  const double gemm = 2 * L * 144 * D + 2 * (256 * D + D * D + D * 6 * D) + 2 * T * (4096 * D + D * D) +
                      blocks * (8 * L * D * D + 4 * L * D * D + 4 * T * D * D + 4 * L * D * F) +
                      2 * L * D * 64;
  const double attention = blocks * (4 * L * L * D + 4 * L * T * D);
  EXPECT_EQ(profiled_.category(OpCategory::Gemm).flops, gemm);
  EXPECT_EQ(profiled_.category(OpCategory::Attention).flops, attention);
  EXPECT_EQ(profiled_.category(OpCategory::Gemm).calls, 1 + 3 + 2 + blocks * 10 + 1);
  EXPECT_EQ(profiled_.category(OpCategory::Attention).calls, 2 * blocks);
  // Self-attention's q and k: one fused RMSNorm + RoPE each (rms_norm_rope).
  EXPECT_EQ(profiled_.category(OpCategory::Rope).calls, 2 * blocks);
}

}  // namespace
}  // namespace wanrt
