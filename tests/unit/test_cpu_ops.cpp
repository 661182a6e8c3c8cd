// The CPU backend against independent float64 loops written here, on fresh random inputs.
// The CPU backend is the reference every other backend is held to, so it gets its own check.
#include <cmath>
#include <thread>

#include "backends/cpu/cpu_ops.h"
#include "test_support.h"

namespace wanrt {
namespace {

using testing::random_normal;
using testing::relative_error;

class CpuOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "reproduce with WANRT_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed_));
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<Ops> ops_ = make_cpu_ops();
};

double at(const Tensor& t, int64_t i) { return t.data<float>()[i]; }

TEST_F(CpuOpsTest, LinearWithBiasAndGelu) {
  const Tensor x = random_normal({7, 33}, rng_), w = random_normal({19, 33}, rng_), b = random_normal({19}, rng_);
  const Tensor y = ops_->linear(x, w, &b, {.activation = Activation::GeluTanh});
  Tensor expected = testing::poisoned({7, 19});
  for (int64_t n = 0; n < 7; ++n)
    for (int64_t m = 0; m < 19; ++m) {
      double acc = at(b, m);
      for (int64_t k = 0; k < 33; ++k) acc += at(x, n * 33 + k) * at(w, m * 33 + k);
      expected.data<float>()[n * 19 + m] =
          static_cast<float>(0.5 * acc * (1 + std::tanh(std::sqrt(2 / M_PI) * (acc + 0.044715 * acc * acc * acc))));
    }
  EXPECT_LT(relative_error(y, expected), 1e-6);
}

TEST_F(CpuOpsTest, NormsMatchTheirDefinitions) {
  const int64_t rows = 5, features = 301;
  const Tensor x = random_normal({rows, features}, rng_, 3.0f);
  const Tensor w = random_normal({features}, rng_), b = random_normal({features}, rng_);
  const Tensor shift = random_normal({features}, rng_), scale = random_normal({features}, rng_);
  const float eps = 1e-6f;
  Tensor ln = testing::poisoned({rows, features}), mod = ln.clone(), rms = ln.clone();
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0, sq = 0;
    for (int64_t c = 0; c < features; ++c) mean += at(x, r * features + c) / features;
    for (int64_t c = 0; c < features; ++c) {
      const double v = at(x, r * features + c);
      var += (v - mean) * (v - mean) / features;
      sq += v * v / features;
    }
    for (int64_t c = 0; c < features; ++c) {
      const double v = at(x, r * features + c), norm = (v - mean) / std::sqrt(var + eps);
      ln.data<float>()[r * features + c] = static_cast<float>(norm * at(w, c) + at(b, c));
      mod.data<float>()[r * features + c] = static_cast<float>(norm * (1 + at(scale, c)) + at(shift, c));
      rms.data<float>()[r * features + c] = static_cast<float>(v / std::sqrt(sq + eps) * at(w, c));
    }
  }
  EXPECT_LT(relative_error(ops_->layer_norm(x, eps, &w, &b), ln), 1e-6);
  EXPECT_LT(relative_error(ops_->layer_norm_modulate(x, shift, scale, eps), mod), 1e-6);
  EXPECT_LT(relative_error(ops_->rms_norm(x, w, eps), rms), 1e-6);
}

TEST_F(CpuOpsTest, GatedResidualAndBroadcastAdd) {
  Tensor x = random_normal({4, 9}, rng_);
  const Tensor before = x.clone(), y = random_normal({4, 9}, rng_), gate = random_normal({9}, rng_);
  ops_->add_gated_(x, y, &gate);
  Tensor expected = testing::poisoned({4, 9});
  for (int64_t i = 0; i < 36; ++i) expected.data<float>()[i] = static_cast<float>(at(before, i) + at(y, i) * at(gate, i % 9));
  EXPECT_LT(relative_error(x, expected), 1e-7);
  const Tensor sum = ops_->add(y, gate);
  for (int64_t i = 0; i < 36; ++i) EXPECT_FLOAT_EQ(sum.data<float>()[i], y.data<float>()[i] + gate.data<float>()[i % 9]);
}

// softmax(scale·q·kᵀ + bias) over the first kv_len keys, in float64.
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                       int64_t kv_len, const Tensor* bias) {
  const int64_t lq = q.size(0), lk = k.size(0), heads = q.size(1), d = q.size(2);
  Tensor out = testing::poisoned(q.shape());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < lq; ++i) {
      std::vector<double> s(static_cast<size_t>(kv_len));
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < kv_len; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += at(q, (i * heads + h) * d + c) * at(k, (j * heads + h) * d + c);
        s[static_cast<size_t>(j)] = dot * scale + (bias ? at(*bias, (h * lq + i) * lk + j) : 0.0);
        mx = std::max(mx, s[static_cast<size_t>(j)]);
      }
      for (auto& e : s) sum += (e = std::exp(e - mx));
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < kv_len; ++j) acc += s[static_cast<size_t>(j)] / sum * at(v, (j * heads + h) * d + c);
        out.data<float>()[(i * heads + h) * d + c] = static_cast<float>(acc);
      }
    }
  return out;
}

TEST_F(CpuOpsTest, AttentionWithMaskAndBias) {
  for (const auto& [lq, lk, heads, d, kv_len] : std::vector<std::array<int64_t, 5>>{
           {1, 1, 1, 8, 1}, {13, 29, 3, 16, 29}, {17, 17, 2, 128, 11}, {5, 40, 4, 64, 1}}) {
    const Tensor q = random_normal({lq, heads, d}, rng_), k = random_normal({lk, heads, d}, rng_),
                 v = random_normal({lk, heads, d}, rng_), bias = random_normal({heads, lq, lk}, rng_);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    EXPECT_LT(relative_error(ops_->attention(q, k, v, {.scale = scale, .kv_len = kv_len}),
                             naive_attention(q, k, v, scale, kv_len, nullptr)), 1e-6);
    EXPECT_LT(relative_error(ops_->attention(q, k, v, {.scale = 1.0f, .kv_len = kv_len, .bias = &bias}),
                             naive_attention(q, k, v, 1.0f, kv_len, &bias)), 1e-6);
  }
}

TEST_F(CpuOpsTest, RopeRotatesAdjacentPairsOfLeadingRows) {
  const int64_t tokens = 6, heads = 3, d = 8, rotated = 4;
  Tensor x = random_normal({tokens, heads, d}, rng_);
  const Tensor before = x.clone();
  Tensor table = Tensor::empty(DType::F32, {rotated, d / 2, 2});
  std::uniform_real_distribution<double> angle(-M_PI, M_PI);
  for (int64_t i = 0; i < rotated * d / 2; ++i) {
    const double a = angle(rng_);
    table.data<float>()[2 * i] = static_cast<float>(std::cos(a));
    table.data<float>()[2 * i + 1] = static_cast<float>(std::sin(a));
  }
  ops_->rope_(x, table);
  for (int64_t n = 0; n < tokens; ++n)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t k = 0; k < d / 2; ++k) {
        const int64_t base = (n * heads + h) * d + 2 * k;
        const double a = at(before, base), b = at(before, base + 1);
        const double c = n < rotated ? at(table, (n * d / 2 + k) * 2) : 1.0;
        const double s = n < rotated ? at(table, (n * d / 2 + k) * 2 + 1) : 0.0;
        EXPECT_NEAR(at(x, base), a * c - b * s, 1e-5);
        EXPECT_NEAR(at(x, base + 1), a * s + b * c, 1e-5);
      }
}

// The DiT's q/k path: RMSNorm over the whole row (all heads), then RoPE per head on the rows the
// table covers; checked against float64 loops written here.
TEST_F(CpuOpsTest, RmsNormRopeNormalisesWholeRowsThenRotatesEachHead) {
  for (const auto& [tokens, heads, d, rotated] : std::vector<std::array<int64_t, 4>>{
           {6, 3, 8, 4}, {5, 1, 2, 5}, {9, 4, 6, 0}, {3, 2, 128, 3}}) {
    const int64_t features = heads * d;
    const Tensor x = random_normal({tokens, features}, rng_, 2.0f), weight = random_normal({features}, rng_);
    Tensor table = Tensor::empty(DType::F32, {rotated, d / 2, 2});
    std::uniform_real_distribution<double> angle(-M_PI, M_PI);
    for (int64_t i = 0; i < rotated * d / 2; ++i) {
      const double a = angle(rng_);
      table.data<float>()[2 * i] = static_cast<float>(std::cos(a));
      table.data<float>()[2 * i + 1] = static_cast<float>(std::sin(a));
    }
    const float eps = 1e-6f;
    Tensor expected = testing::poisoned({tokens, heads, d});
    for (int64_t n = 0; n < tokens; ++n) {
      double sq = 0;
      for (int64_t f = 0; f < features; ++f) sq += at(x, n * features + f) * at(x, n * features + f);
      const double inv = 1 / std::sqrt(sq / static_cast<double>(features) + eps);
      for (int64_t f = 0; f < features; f += 2) {
        const double a = at(x, n * features + f) * inv * at(weight, f);
        const double b = at(x, n * features + f + 1) * inv * at(weight, f + 1);
        const int64_t k = (f % d) / 2;
        const double c = n < rotated ? at(table, (n * d / 2 + k) * 2) : 1.0;
        const double s = n < rotated ? at(table, (n * d / 2 + k) * 2 + 1) : 0.0;
        expected.data<float>()[n * features + f] = static_cast<float>(a * c - b * s);
        expected.data<float>()[n * features + f + 1] = static_cast<float>(a * s + b * c);
      }
    }
    const Tensor y = ops_->rms_norm_rope(x, weight, eps, table, heads);
    ASSERT_EQ(y.shape(), Shape({tokens, heads, d}));
    EXPECT_LT(relative_error(y, expected), 1e-6) << tokens << "x" << heads << "x" << d;
  }
  // The features must split into heads of even size, and the table must fit.
  const Tensor x = random_normal({4, 12}, rng_), w = random_normal({12}, rng_);
  EXPECT_THROW(ops_->rms_norm_rope(x, w, 1e-6f, Tensor::zeros(DType::F32, {4, 3, 2}), 5), Error);
  EXPECT_THROW(ops_->rms_norm_rope(x, w, 1e-6f, Tensor::zeros(DType::F32, {5, 3, 2}), 2), Error);
}

TEST_F(CpuOpsTest, PatchifyMatchesConvFlattenOrderAndUnpatchifyInverts) {
  const int64_t channels = 5, frames = 3, h = 4, w = 6;
  const Tensor video = random_normal({channels, frames, h, w}, rng_);
  const Tensor tokens = ops_->patchify(video, 2, 2);
  ASSERT_EQ(tokens.shape(), Shape({frames * 2 * 3, channels * 4}));
  // feature c·4 + dh·2 + dw of token (f, i, j) is video[c, f, 2i+dh, 2j+dw] (the Conv3d flatten order)
  EXPECT_EQ(at(tokens, (1 * 6 + 1 * 3 + 2) * 20 + 3 * 4 + 1 * 2 + 0), at(video, ((3 * frames + 1) * h + 3) * w + 4));
  // unpatchify uses the head's channel-minor order, so build a channel-minor token matrix.
  Tensor head_tokens = testing::poisoned({frames * 6 + 2, channels * 4});  // two padding rows
  for (int64_t n = 0; n < frames * 6; ++n)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t p = 0; p < 4; ++p)
        head_tokens.data<float>()[n * 20 + p * channels + c] = tokens.data<float>()[n * 20 + c * 4 + p];
  EXPECT_EQ(relative_error(ops_->unpatchify(head_tokens, channels, frames, 2, 3, 2, 2), video), 0.0);
}

TEST_F(CpuOpsTest, Conv3dMatchesDirectSum) {
  const int64_t cin = 3, cout = 4, t = 5, h = 7, w = 6;
  const Tensor x = random_normal({cin, t, h, w}, rng_), weight = random_normal({cout, cin, 3, 3, 2}, rng_),
               bias = random_normal({cout}, rng_);
  const Conv3dOptions o{.stride_t = 2, .stride_h = 1, .stride_w = 2, .pad_t_front = 2, .pad_t_back = 0,
                        .pad_top = 1, .pad_bottom = 1, .pad_left = 0, .pad_right = 1};
  const Tensor y = ops_->conv3d(x, weight, &bias, o);
  const int64_t to = (t + 2 - 3) / 2 + 1, ho = (h + 2 - 3) / 1 + 1, wo = (w + 1 - 2) / 2 + 1;
  ASSERT_EQ(y.shape(), Shape({cout, to, ho, wo}));
  Tensor expected = testing::poisoned(y.shape());
  for (int64_t co = 0; co < cout; ++co)
    for (int64_t a = 0; a < to; ++a)
      for (int64_t i = 0; i < ho; ++i)
        for (int64_t j = 0; j < wo; ++j) {
          double acc = at(bias, co);
          for (int64_t ci = 0; ci < cin; ++ci)
            for (int64_t dt = 0; dt < 3; ++dt)
              for (int64_t dh = 0; dh < 3; ++dh)
                for (int64_t dw = 0; dw < 2; ++dw) {
                  const int64_t ti = a * 2 + dt - 2, hi = i + dh - 1, wi = j * 2 + dw;
                  if (ti < 0 || ti >= t || hi < 0 || hi >= h || wi >= w) continue;
                  acc += at(x, ((ci * t + ti) * h + hi) * w + wi) * at(weight, (((co * cin + ci) * 3 + dt) * 3 + dh) * 2 + dw);
                }
          expected.data<float>()[((co * to + a) * ho + i) * wo + j] = static_cast<float>(acc);
        }
  EXPECT_LT(relative_error(y, expected), 1e-6);
}

TEST_F(CpuOpsTest, ChannelRmsNormClampsZeroVectors) {
  Tensor x = random_normal({6, 2, 3, 4}, rng_);
  for (int64_t c = 0; c < 6; ++c) x.data<float>()[c * 24 + 5] = 0.0f;  // one all-zero position
  const Tensor gamma = random_normal({6}, rng_);
  const Tensor y = ops_->channel_rms_norm(x, gamma);
  for (int64_t p = 0; p < 24; ++p) {
    double sq = 0;
    for (int64_t c = 0; c < 6; ++c) sq += at(x, c * 24 + p) * at(x, c * 24 + p);
    for (int64_t c = 0; c < 6; ++c) {
      const double expected = at(x, c * 24 + p) / std::max(std::sqrt(sq), 1e-12) * std::sqrt(6.0) * at(gamma, c);
      EXPECT_NEAR(at(y, c * 24 + p), expected, 1e-5);
    }
  }
}

TEST_F(CpuOpsTest, BadShapesAreErrors) {
  const Tensor x = random_normal({3, 4}, rng_), w = random_normal({5, 6}, rng_);
  EXPECT_THROW(ops_->linear(x, w, nullptr), Error);
  EXPECT_THROW(ops_->attention(random_normal({2, 2, 8}, rng_), random_normal({3, 2, 4}, rng_),
                               random_normal({3, 2, 4}, rng_), {}), Error);
  Tensor ids = Tensor::empty(DType::I64, {2});
  ids.data<int64_t>()[0] = 1;
  ids.data<int64_t>()[1] = 3;  // out of a 3-row vocabulary
  EXPECT_THROW(ops_->embedding(x, ids), Error);
}

// Ulysses on thread ranks: scattering heads, attending over the full sequence and gathering
// back equals attention on one rank.
TEST_F(CpuOpsTest, UlyssesAllToAllsPreserveAttention) {
  for (int world : {2, 4}) {
    const int64_t per_rank = 5, tokens = per_rank * world, heads = 8, d = 16, kv_len = tokens - 3;
    const Tensor q = random_normal({tokens, heads, d}, rng_), k = random_normal({tokens, heads, d}, rng_),
                 v = random_normal({tokens, heads, d}, rng_);
    const AttentionOptions options{.scale = 0.25f, .kv_len = kv_len};
    const Tensor expected = ops_->attention(q, k, v, options);
    auto group = make_thread_group(world);
    std::vector<Tensor> outputs(static_cast<size_t>(world));
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r)
      threads.emplace_back([&, r] {
        auto rank_ops = make_cpu_ops(group[static_cast<size_t>(r)]);
        auto local = [&](const Tensor& t) { return t.slice_rows(r * per_rank, (r + 1) * per_rank).clone(); };
        const Tensor o = rank_ops->heads_to_sequence(rank_ops->attention(
            rank_ops->sequence_to_heads(local(q)), rank_ops->sequence_to_heads(local(k)),
            rank_ops->sequence_to_heads(local(v)), options));
        outputs[static_cast<size_t>(r)] = rank_ops->all_gather_rows(o);
      });
    for (auto& t : threads) t.join();
    for (const Tensor& gathered : outputs) EXPECT_LT(relative_error(gathered, expected), 1e-6) << world << " ranks";
  }
}

}  // namespace
}  // namespace wanrt
