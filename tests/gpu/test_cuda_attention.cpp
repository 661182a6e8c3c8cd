// CudaOps::attention against the float32 CPU reference on fresh random inputs: the Hopper
// kernel (sm_90 GPUs, head_dim 128, every compiled tiling), the portable flash kernel
// (head_dim 64/128, every compiled tiling), the generic kernel (other head dims, bias,
// negative scale) and the GEMM path (long sequences of other head dims: the VAE's one head of
// 384), sequence lengths off and on the tile sizes, cross-attention shapes, kv_len masking
// with hostile values in the masked keys, F32 and BF16 inputs, poisoned outputs.
// Tests whose name contains "Small" are the quick set (compute-sanitizer runs them).
// WANRT_TEST_SM90_TILING=i restricts the Hopper tests to tiling i of sm90_attention_tilings()
// (so that each tiling can run in its own process, under its own time limit).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gpu_test_support.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_gemm_attention.h"
#include "backends/cuda/cuda_ops_impl.h"
#include "backends/cuda/cuda_ops.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA

// bf16 inputs and a bf16 output against float32 math: ~3e-3 typical (the golden bf16 autocast
// case lands at 3e-3 too); 1e-2 leaves room without hiding a wrong row or a missed key.
constexpr double kTolerance = 1e-2;

enum class Path { Default, Generic, Gemm };

struct Case {
  int64_t lq, lk, heads, d;
  int64_t kv_len = -1;
  bool bias = false;
  DType input = DType::BF16;  // the dtype q/k/v have on the device
  float scale = 0.0f;         // 0: 1/sqrt(d)
  std::string describe() const {
    return str_cat("Lq ", lq, " Lk ", lk, " H ", heads, " d ", d, " kv_len ", kv_len,
                   bias ? " bias" : "", input == DType::F32 ? " f32-in" : " bf16-in", " scale ", scale);
  }
};

class CudaAttentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WANRT_REQUIRE_GPU();
    seed_ = testing::test_seed();
    rng_.seed(seed_);
    gpu_ = make_cuda_ops();
    cpu_ = make_cpu_ops();
  }
  CudaOps& cuda() { return dynamic_cast<CudaOps&>(*gpu_); }

  // A host tensor as the device sees it: bf16-rounded where the input is bf16, so that the
  // reference computes on exactly the values the kernel reads.
  Tensor as_input(const Tensor& host, DType dtype) const {
    return dtype == DType::BF16 ? host.to(DType::BF16).to(DType::F32) : host;
  }
  Tensor to_device(const Tensor& host, DType dtype) {
    return cuda().as_dtype(gpu_->upload(host), dtype);
  }

  // Leaves a NaN-filled block of the output's size free in the stream-ordered pool, so an
  // output element the kernel forgets to write shows up as NaN rather than as stale data.
  void poison_pool(const Shape& shape) {
    const Tensor poison = cuda().as_dtype(gpu_->upload(testing::poisoned(shape)), DType::BF16);
    (void)poison;
  }

  using Run = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&, const AttentionOptions&)>;
  struct NamedRun {
    std::string name;
    Run run;
  };

  // Runs one case through each of `runs` (each calls a GPU path) on the same inputs and
  // compares with one CPU reference; returns the largest relative error (NaN gives +inf).
  double check_all(const Case& c, const std::vector<NamedRun>& runs) {
    SCOPED_TRACE(str_cat(c.describe(), " (WANRT_TEST_SEED=", seed_, ")"));
    const float scale = c.scale != 0.0f ? c.scale : 1.0f / std::sqrt(static_cast<float>(c.d));
    Tensor q = as_input(testing::random_normal({c.lq, c.heads, c.d}, rng_), c.input);
    Tensor k = as_input(testing::random_normal({c.lk, c.heads, c.d}, rng_), c.input);
    Tensor v = as_input(testing::random_normal({c.lk, c.heads, c.d}, rng_), c.input);
    const int64_t kv_len = c.kv_len < 0 ? c.lk : c.kv_len;
    // Masked keys hold values that would dominate every softmax row if they were read.
    for (int64_t j = kv_len; j < c.lk; ++j)
      for (int64_t i = 0; i < c.heads * c.d; ++i) {
        k.data<float>()[j * c.heads * c.d + i] = 3.0e4f;
        v.data<float>()[j * c.heads * c.d + i] = -3.0e4f;
      }
    Tensor bias;
    if (c.bias) bias = testing::random_normal({c.heads, c.lq, c.lk}, rng_, 2.0f);
    AttentionOptions options{.scale = scale, .kv_len = c.kv_len, .bias = nullptr};
    AttentionOptions device_options = options;
    const Tensor device_bias = c.bias ? gpu_->upload(bias) : Tensor();
    if (c.bias) {
      options.bias = &bias;
      device_options.bias = &device_bias;
    }
    const Tensor expected = cpu_->attention(q, k, v, options);
    const Tensor qd = to_device(q, c.input), kd = to_device(k, c.input), vd = to_device(v, c.input);
    double worst = 0.0;
    for (const NamedRun& named : runs) {
      SCOPED_TRACE(named.name);
      poison_pool(q.shape());
      const Tensor out = named.run(qd, kd, vd, device_options);
      EXPECT_EQ(out.dtype(), DType::BF16);
      EXPECT_EQ(shape_str(out.shape()), shape_str(q.shape()));
      const Tensor actual = gpu_->download(out);
      bool finite = true;
      for (float x : actual.floats()) finite = finite && std::isfinite(x);
      const double error = finite ? testing::relative_error(actual, expected) : INFINITY;
      EXPECT_LT(error, kTolerance) << (finite ? "" : "non-finite output");
      if (!(error < kTolerance)) describe_mismatch(actual, expected, c);
      worst = std::max(worst, error);
    }
    return worst;
  }

  template <typename RunFn>
  double check(const Case& c, RunFn&& run) {
    return check_all(c, {{"", Run(std::forward<RunFn>(run))}});
  }

  // Where a failing output is wrong, in the terms of the kernels' tiles: bad elements counted
  // by query row mod 64 in groups of 8 (the wgmma accumulator's row groups) and by column in
  // groups of 8, and the first few bad elements.
  static void describe_mismatch(const Tensor& actual, const Tensor& expected, const Case& c) {
    const float* a = actual.data<float>();
    const float* e = expected.data<float>();
    int64_t bad = 0;
    std::vector<int64_t> by_row(8, 0), by_column(static_cast<size_t>((c.d + 7) / 8), 0);
    std::string first;
    for (int64_t r = 0; r < c.lq; ++r)
      for (int64_t h = 0; h < c.heads; ++h)
        for (int64_t col = 0; col < c.d; ++col) {
          const int64_t i = (r * c.heads + h) * c.d + col;
          if (std::isfinite(a[i]) && std::fabs(a[i] - e[i]) <= 0.05f + 0.05f * std::fabs(e[i])) continue;
          ++bad;
          ++by_row[static_cast<size_t>((r % 64) / 8)];
          ++by_column[static_cast<size_t>(col / 8)];
          if (bad <= 6) first += str_cat(" [row ", r, " head ", h, " col ", col, ": ", a[i], " vs ", e[i], "]");
        }
    std::string rows, columns;
    for (int64_t n : by_row) rows += str_cat(" ", n);
    for (int64_t n : by_column) columns += str_cat(" ", n);
    ADD_FAILURE() << bad << " of " << actual.numel() << " elements off; by row%64/8:" << rows
                  << "; by col/8:" << columns << ";" << first;
  }

  double check(const Case& c, Path path = Path::Default) {
    return check(c, [&](const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
      if (path == Path::Generic) return generic_attention(cuda(), q, k, v, o);
      if (path == Path::Gemm) return gemm_attention(cuda(), q, k, v, o);
      return gpu_->attention(q, k, v, o);
    });
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<Ops> gpu_, cpu_;
};

const std::vector<int64_t> kSmallLengths = {1, 7, 63, 64, 65, 129};
const std::vector<int64_t> kLargerLengths = {300, 1000};

// Every small length pair through the op, the flash head dims and the generic ones.
TEST_F(CudaAttentionTest, SmallShapesEveryLengthPair) {
  int n = 0;
  for (int64_t d : {128, 64, 24})
    for (int64_t lq : kSmallLengths)
      for (int64_t lk : kSmallLengths) check({lq, lk, 1 + (n++ % 3), d});
}

// Lengths past a few tiles, paired with the small ones and each other; head dims 128/64/40.
TEST_F(CudaAttentionTest, LargerLengths) {
  int n = 0;
  for (int64_t d : {128, 64, 40})
    for (int64_t lq : {int64_t{1}, int64_t{65}, int64_t{300}, int64_t{1000}})
      for (int64_t lk : {int64_t{7}, int64_t{129}, int64_t{300}, int64_t{1000}}) {
        if (lq < 300 && lk < 300) continue;  // covered by the small set
        check({lq, lk, 1 + (n++ % 2), d});
      }
}

// The DiT's cross-attention: many queries against 512 text keys, many heads.
TEST_F(CudaAttentionTest, CrossAttentionTo512Keys) {
  check({1500, 512, 12, 128});
  check({777, 512, 40, 128});
  check({1000, 512, 4, 64});
}

TEST_F(CudaAttentionTest, SmallManyHeads) {
  for (int64_t heads : {5, 17, 40}) check({129, 65, heads, 128});
  check({65, 129, 40, 64});
  check({63, 64, 40, 16});
}

// Keys at and past kv_len are ignored even when they hold ±3e4: every kv_len position
// relative to the tiles, flash and generic.
TEST_F(CudaAttentionTest, SmallKeyLengthMask) {
  for (int64_t d : {128, 64, 16})
    for (const auto& [lk, kv_len] : std::vector<std::pair<int64_t, int64_t>>{
             {64, 1}, {65, 64}, {129, 65}, {129, 128}, {129, 127}, {300, 17}, {200, 199}})
      check({97, lk, 3, d, kv_len});
}

TEST_F(CudaAttentionTest, MaskedKeysMayHoldNanAndInf) {
  const int64_t lq = 70, lk = 150, heads = 2, kv_len = 100;
  for (int64_t d : {128, 40}) {
    SCOPED_TRACE(str_cat("d ", d, " (WANRT_TEST_SEED=", seed_, ")"));
    Tensor q = testing::random_normal({lq, heads, d}, rng_);
    Tensor k = testing::random_normal({lk, heads, d}, rng_);
    Tensor v = testing::random_normal({lk, heads, d}, rng_);
    for (int64_t i = kv_len * heads * d; i < lk * heads * d; ++i) {
      k.data<float>()[i] = i % 2 ? std::numeric_limits<float>::quiet_NaN() : INFINITY;
      v.data<float>()[i] = i % 3 ? std::numeric_limits<float>::quiet_NaN() : -INFINITY;
    }
    const AttentionOptions options{.scale = 0.125f, .kv_len = kv_len};
    const Tensor expected = cpu_->attention(q, k, v, options);
    const Tensor actual = gpu_->download(gpu_->attention(gpu_->upload(q), gpu_->upload(k), gpu_->upload(v), options));
    EXPECT_LT(testing::relative_error(actual, expected), kTolerance);
  }
}

// umT5's relative-position bias (with its padding mask) and other biased shapes.
TEST_F(CudaAttentionTest, SmallBias) {
  check({64, 64, 4, 64, 40, true, DType::BF16, 1.0f});
  check({129, 129, 3, 64, 129, true, DType::F32, 1.0f});
  check({7, 65, 2, 16, 33, true});
  check({65, 7, 2, 128, -1, true});
}

TEST_F(CudaAttentionTest, UmT5Shape) { check({512, 512, 8, 64, 300, true, DType::BF16, 1.0f}); }

// F32 inputs go through the same kernels (converted to bf16 for the flash kernel).
TEST_F(CudaAttentionTest, SmallFloat32Inputs) {
  check({65, 129, 2, 128, -1, false, DType::F32});
  check({129, 63, 3, 64, 50, false, DType::F32});
  check({33, 33, 2, 24, -1, false, DType::F32});
}

// Sharper and flatter softmax rows, and a negative scale (generic kernel).
TEST_F(CudaAttentionTest, SmallScales) {
  check({65, 129, 2, 128, -1, false, DType::BF16, 0.5f});
  check({65, 129, 2, 128, -1, false, DType::BF16, 1e-3f});
  check({65, 129, 2, 64, -1, false, DType::BF16, -0.125f});
}

// Head dims the flash kernel does not take, up to the generic kernel's 512 (the VAE's
// mid-block attention is one head of its channel count).
TEST_F(CudaAttentionTest, SmallGenericHeadDims) {
  for (int64_t d : {1, 8, 16, 24, 32, 40, 96, 127, 384, 512}) check({40, 70, 1 + d % 2, d});
}

// The generic kernel on the head dims the op sends to the flash kernel.
TEST_F(CudaAttentionTest, SmallGenericKernelOnFlashHeadDims) {
  check({65, 129, 3, 128, 100}, Path::Generic);
  check({129, 64, 2, 64}, Path::Generic);
}

// Every compiled tiling, not only the one the op picks.
TEST_F(CudaAttentionTest, SmallEveryFlashTiling) {
  for (int64_t d : {128, 64}) {
    const std::vector<FlashTiling> tilings = flash_attention_tilings(d);
    ASSERT_FALSE(tilings.empty());
    for (const FlashTiling& tiling : tilings) {
      SCOPED_TRACE(tiling.name());
      for (const Case& c : {Case{1, 1, 1, d}, Case{129, 300, 3, d, 257}, Case{300, 65, 2, d},
                            Case{257, 129, 2, d, -1, false, DType::F32}})
        check(c, [&](const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
          return flash_attention(cuda(), q, k, v, o, tiling);
        });
    }
  }
}

// ---- the GEMM path ----

// The VAE's mid-block attention at small frame sizes: one head of 384 channels (the op picks
// the GEMM path from kGemmAttentionMinKeys keys on), off-multiple lengths, several heads.
TEST_F(CudaAttentionTest, GemmPathVaeShapes) {
  for (const Case& c : {Case{300, 300, 1, 384}, Case{1000, 700, 1, 384}, Case{257, 1001, 1, 384},
                        Case{500, 600, 3, 96}, Case{70, 259, 2, 40}}) {
    Tensor q = testing::random_normal({c.lq, c.heads, c.d}, rng_), k = testing::random_normal({c.lk, c.heads, c.d}, rng_);
    ASSERT_TRUE(gemm_attention_applies(q, k, {})) << c.describe();
    check(c);
  }
  // Below the thresholds, and with a bias, the op keeps the generic kernel.
  const Tensor q = testing::random_normal({40, 1, 384}, rng_), k = testing::random_normal({300, 1, 384}, rng_);
  EXPECT_FALSE(gemm_attention_applies(q, k, {}));
  EXPECT_FALSE(gemm_attention_applies(k, q, {}));
  const Tensor bias = testing::random_normal({1, 300, 300}, rng_);
  EXPECT_FALSE(gemm_attention_applies(k, k, {.bias = &bias}));
  EXPECT_FALSE(gemm_attention_applies(testing::random_normal({300, 1, 128}, rng_),
                                      testing::random_normal({300, 1, 128}, rng_), {}));
}

// Small shapes, forced onto the GEMM path: single rows and keys, key counts not a multiple of
// the softmax's 4-wide reads, kv_len masks, F32 inputs, sharp, flat and negative scales.
TEST_F(CudaAttentionTest, SmallGemmPathEveryShape) {
  int n = 0;
  for (int64_t d : {384, 96, 40, 1})
    for (int64_t lq : kSmallLengths)
      for (int64_t lk : kSmallLengths) check({lq, lk, 1 + (n++ % 3), d}, Path::Gemm);
  for (const auto& [lk, kv_len] : std::vector<std::pair<int64_t, int64_t>>{{64, 1}, {129, 65}, {300, 17}, {200, 199}})
    check({97, lk, 2, 384, kv_len}, Path::Gemm);
  check({65, 129, 2, 384, -1, false, DType::F32}, Path::Gemm);
  check({129, 63, 3, 96, 50, false, DType::F32}, Path::Gemm);
  for (const float scale : {0.5f, 1e-3f, -0.125f}) check({65, 129, 2, 384, -1, false, DType::BF16, scale}, Path::Gemm);
}

// Query chunks: a small scratch budget splits the queries into many chunks, the last one
// partial; the result must not depend on the split.
TEST_F(CudaAttentionTest, SmallGemmPathQueryChunks) {
  for (const int64_t scratch : {int64_t{1}, int64_t{6 * 2 * 129 * 37}, int64_t{6 * 2 * 129 * 64}})
    check({300, 129, 2, 96}, [&](const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
      return gemm_attention(cuda(), q, k, v, o, scratch);
    });
}

TEST_F(CudaAttentionTest, SmallGemmPathRefusesABias) {
  const Tensor q = gpu_->upload(testing::random_normal({8, 1, 96}, rng_));
  const Tensor bias = gpu_->upload(testing::random_normal({1, 8, 8}, rng_));
  EXPECT_THROW(gemm_attention(cuda(), q, q, q, {.bias = &bias}), Error);
  EXPECT_THROW(gemm_attention(cuda(), q, q, q, {.kv_len = 9}), Error);
  EXPECT_THROW(gemm_attention(cuda(), q, gpu_->upload(testing::random_normal({8, 2, 96}, rng_)), q, {}), Error);
}

TEST_F(CudaAttentionTest, LargeTwoHeads4096) { check({4096, 4096, 2, 128}); }

TEST_F(CudaAttentionTest, SmallEmptyQueryIsEmptyOutput) {
  const Tensor q = gpu_->upload(Tensor::zeros(DType::F32, {0, 2, 128}));
  const Tensor k = gpu_->upload(testing::random_normal({5, 2, 128}, rng_));
  const Tensor out = gpu_->attention(q, k, k, {.scale = 0.1f});
  EXPECT_EQ(shape_str(out.shape()), "[0, 2, 128]");
}

TEST_F(CudaAttentionTest, SmallBadArgumentsAreClearErrors) {
  auto dev = [&](Shape shape) { return gpu_->upload(testing::random_normal(std::move(shape), rng_)); };
  const Tensor q = dev({8, 2, 64}), k = dev({9, 2, 64}), v = dev({9, 2, 64});
  auto expect_error = [&](auto&& call, const std::string& fragment) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error([&] { gpu_->attention(q, k, dev({8, 2, 64}), {}); }, "attention needs q");
  expect_error([&] { gpu_->attention(q, dev({9, 3, 64}), dev({9, 3, 64}), {}); }, "attention needs q");
  expect_error([&] { gpu_->attention(q, k, v, {.kv_len = 10}); }, "kv_len");
  expect_error([&] { gpu_->attention(q, k, v, {.kv_len = 0}); }, "kv_len");
  const Tensor bad_bias = dev({2, 8, 8});
  expect_error([&] { gpu_->attention(q, k, v, {.bias = &bad_bias}); }, "bias");
  expect_error([&] { gpu_->attention(dev({4, 1, 513}), dev({4, 1, 513}), dev({4, 1, 513}), {}); }, "head_dim");
  const Tensor host = testing::random_normal({8, 2, 64}, rng_);
  expect_error([&] { gpu_->attention(host, k, v, {}); }, "attention q");
  FlashTiling wrong = flash_attention_tilings(128).front();
  expect_error([&] { flash_attention(cuda(), q, k, v, {}, wrong); }, "no flash attention tiling");
}

// ---- the Hopper kernel ----

// Skips where the GPU is not sm_90; runs each case through every Hopper tiling (or the one
// WANRT_TEST_SM90_TILING names) and through Ops::attention, on the same inputs.
class CudaAttentionSm90Test : public CudaAttentionTest {
 protected:
  void SetUp() override {
    CudaAttentionTest::SetUp();
    if (IsSkipped()) return;
    if (!sm90_attention_available(cuda().device())) GTEST_SKIP() << "SKIPPED: the GPU is not sm_90";
    tilings_ = sm90_attention_tilings();
    if (const char* only = std::getenv("WANRT_TEST_SM90_TILING")) {
      const size_t index = std::stoul(only);
      ASSERT_LT(index, tilings_.size()) << "WANRT_TEST_SM90_TILING out of range";
      tilings_ = {tilings_[index]};
    }
  }

  std::vector<NamedRun> sm90_runs(bool with_op = true) {
    std::vector<NamedRun> runs;
    for (const Sm90Tiling& tiling : tilings_)
      runs.push_back({tiling.name(), [this, tiling](const Tensor& q, const Tensor& k, const Tensor& v,
                                                   const AttentionOptions& o) {
                        return sm90_attention(cuda(), q, k, v, o, tiling);
                      }});
    if (with_op)
      runs.push_back({"Ops::attention", [this](const Tensor& q, const Tensor& k, const Tensor& v,
                                               const AttentionOptions& o) { return gpu_->attention(q, k, v, o); }});
    return runs;
  }
  double check_sm90(const Case& c) { return check_all(c, sm90_runs()); }

  std::vector<Sm90Tiling> tilings_;
};

// Inputs that isolate the two GEMMs, so that a failure says which operand layout is wrong:
// q = 0 makes every softmax row uniform, so O is the mean of V over the keys (only the P·V
// path, V's descriptor, matters); V = the one-hot rows e_key makes O[r][c] = P[r][key c] for
// the first 128 keys (the Q·Kᵀ path and the softmax, with P·V reduced to a copy).
TEST_F(CudaAttentionSm90Test, SmallDiagnosticsEachGemmAlone) {
  for (const int64_t lk : {int64_t{64}, int64_t{128}, int64_t{177}}) {
    const int64_t lq = 130, heads = 2, d = 128;
    SCOPED_TRACE(str_cat("Lk ", lk, " (WANRT_TEST_SEED=", seed_, ")"));
    const Tensor zeros = Tensor::zeros(DType::F32, {lq, heads, d});
    const Tensor k = as_input(testing::random_normal({lk, heads, d}, rng_), DType::BF16);
    const Tensor v = as_input(testing::random_normal({lk, heads, d}, rng_), DType::BF16);
    Tensor one_hot = Tensor::zeros(DType::F32, {lk, heads, d});
    for (int64_t j = 0; j < std::min(lk, d); ++j)
      for (int64_t h = 0; h < heads; ++h) one_hot.data<float>()[(j * heads + h) * d + j] = 1.0f;
    const Tensor q = as_input(testing::random_normal({lq, heads, d}, rng_, 0.3f), DType::BF16);
    const AttentionOptions options{.scale = 1.0f / std::sqrt(128.0f)};
    const Case c{lq, lk, heads, d};
    for (const auto& [what, qh, vh] : {std::tuple{"q = 0 (P·V alone)", zeros, v},
                                       std::tuple{"v one-hot (Q·Kᵀ alone)", q, one_hot}}) {
      SCOPED_TRACE(what);
      const Tensor expected = cpu_->attention(qh, k, vh, options);
      for (const NamedRun& named : sm90_runs(false)) {
        SCOPED_TRACE(named.name);
        const Tensor out = gpu_->download(named.run(to_device(qh, DType::BF16), to_device(k, DType::BF16),
                                                    to_device(vh, DType::BF16), options));
        const double error = testing::relative_error(out, expected);
        std::printf("  %-22s %-24s Lk %3lld: relative error %.2e\n", named.name.c_str(), what,
                    static_cast<long long>(lk), error);
        EXPECT_LT(error, kTolerance);
        if (!(error < kTolerance)) describe_mismatch(out, expected, c);
      }
    }
  }
}

// Every length pair around the tile sizes (64-row query tiles per consumer, 128- and 176-key
// tiles), 1–3 heads.
TEST_F(CudaAttentionSm90Test, SmallLengthPairs) {
  const std::vector<int64_t> lengths = {1, 7, 63, 64, 65, 127, 128, 129, 176, 177, 353};
  int n = 0;
  for (int64_t lq : lengths)
    for (int64_t lk : lengths) check_sm90({lq, lk, 1 + (n++ % 3), 128});
}

// kv_len at, before and after the tile edges; the masked keys hold ±3e4.
TEST_F(CudaAttentionSm90Test, SmallKeyLengthMask) {
  for (const auto& [lk, kv_len] : std::vector<std::pair<int64_t, int64_t>>{
           {300, 1}, {300, 127}, {300, 128}, {300, 129}, {400, 175}, {400, 176}, {400, 177},
           {400, 352}, {400, 353}, {1000, 999}, {129, 65}})
    check_sm90({97, lk, 3, 128, kv_len});
  check_sm90({200, 600, 2, 128, 450});
}

TEST_F(CudaAttentionSm90Test, SmallMaskedKeysMayHoldNanAndInf) {
  const int64_t lq = 70, lk = 400, heads = 2, d = 128, kv_len = 200;
  SCOPED_TRACE(str_cat("(WANRT_TEST_SEED=", seed_, ")"));
  Tensor q = testing::random_normal({lq, heads, d}, rng_);
  Tensor k = testing::random_normal({lk, heads, d}, rng_);
  Tensor v = testing::random_normal({lk, heads, d}, rng_);
  for (int64_t i = kv_len * heads * d; i < lk * heads * d; ++i) {
    k.data<float>()[i] = i % 2 ? std::numeric_limits<float>::quiet_NaN() : INFINITY;
    v.data<float>()[i] = i % 3 ? std::numeric_limits<float>::quiet_NaN() : -INFINITY;
  }
  const AttentionOptions options{.scale = 0.125f, .kv_len = kv_len};
  const Tensor expected = cpu_->attention(q, k, v, options);
  for (const NamedRun& named : sm90_runs()) {
    SCOPED_TRACE(named.name);
    const Tensor actual = gpu_->download(named.run(to_device(q, DType::BF16), to_device(k, DType::BF16),
                                                   to_device(v, DType::BF16), options));
    EXPECT_LT(testing::relative_error(actual, expected), kTolerance);
  }
}

TEST_F(CudaAttentionSm90Test, SmallManyHeads) {
  for (int64_t heads : {5, 17, 40}) check_sm90({300, 257, heads, 128});
  check_sm90({129, 65, 40, 128, 60});
}

TEST_F(CudaAttentionSm90Test, CrossAttentionTo512Keys) {
  check_sm90({1500, 512, 12, 128});
  check_sm90({777, 512, 40, 128});
}

// More query tiles than SMs: every CTA of the persistent grid runs several tiles, so the K/V
// ring, the Q hand-over and the consumers' turns carry across tiles.
TEST_F(CudaAttentionSm90Test, PersistentTilesCarryAcrossTiles) {
  check_sm90({2000, 700, 40, 128, 650});
  check_sm90({1100, 177, 33, 128});
}

// Sharp, flat and degenerate softmax rows (scale 0: every row is the plain mean of V).
TEST_F(CudaAttentionSm90Test, SmallScales) {
  for (float scale : {0.5f, 1e-3f, 1e-30f}) check_sm90({65, 300, 2, 128, 290, false, DType::BF16, scale});
  const Tensor q = gpu_->upload(testing::random_normal({65, 2, 128}, rng_));
  const Tensor kv = gpu_->upload(testing::random_normal({300, 2, 128}, rng_));
  const AttentionOptions zero{.scale = 0.0f, .kv_len = 150};
  const Tensor expected = cpu_->attention(gpu_->download(q), gpu_->download(kv), gpu_->download(kv), zero);
  for (const NamedRun& named : sm90_runs()) {
    SCOPED_TRACE(named.name + " scale 0");
    EXPECT_LT(testing::relative_error(gpu_->download(named.run(q, kv, kv, zero)), expected), kTolerance);
  }
}

TEST_F(CudaAttentionSm90Test, SmallFloat32Inputs) {
  check_sm90({65, 129, 2, 128, -1, false, DType::F32});
  check_sm90({257, 300, 3, 128, 200, false, DType::F32});
}

// The tilings with optional features (Sm90Tiling::features) against the CPU reference, next
// to the plain tiling on the same inputs: each may be at most 10% + 2e-4 worse than the plain
// tiling's error (bf16 rounding of P and O, ~2e-3, dominates both; the features change the
// summation order at most). Cases: random rows, sharp rows (scale 0.5), and keys whose scores
// grow along the sequence (k_j scaled by 1 + 3j/Lk), so that the running max moves by small
// and large steps across many key tiles. (Run 1 of 2026-11-25 used this test to bound two
// approximations that were then dropped: a lazy rescale raised the error 1.72e-3 → 2.11e-3
// on sharp rows, a polynomial exp2 added < 1e-6 where its range held.)
TEST_F(CudaAttentionSm90Test, SmallFeatureTilingsMatchThePlainTiling) {
  const Sm90Tiling plain{2, 128, true, true, 0};
  for (const auto& [lq, lk, scale, ramp] : {std::tuple{int64_t{200}, int64_t{1500}, 0.0f, false},
                                            std::tuple{int64_t{130}, int64_t{700}, 0.5f, false},
                                            std::tuple{int64_t{257}, int64_t{2000}, 0.0f, true},
                                            std::tuple{int64_t{64}, int64_t{999}, 0.3f, true}}) {
    const int64_t heads = 3, d = 128;
    SCOPED_TRACE(str_cat("Lq ", lq, " Lk ", lk, " scale ", scale, ramp ? " ramp" : "", " (WANRT_TEST_SEED=", seed_, ")"));
    const Tensor q = as_input(testing::random_normal({lq, heads, d}, rng_), DType::BF16);
    Tensor k = testing::random_normal({lk, heads, d}, rng_);
    if (ramp)
      for (int64_t j = 0; j < lk; ++j)
        for (int64_t i = 0; i < heads * d; ++i)
          k.data<float>()[j * heads * d + i] *= 1.0f + 3.0f * static_cast<float>(j) / static_cast<float>(lk);
    k = as_input(k, DType::BF16);
    const Tensor v = as_input(testing::random_normal({lk, heads, d}, rng_), DType::BF16);
    const AttentionOptions options{.scale = scale != 0.0f ? scale : 1.0f / std::sqrt(128.0f)};
    const Tensor expected = cpu_->attention(q, k, v, options);
    const Tensor qd = to_device(q, DType::BF16), kd = to_device(k, DType::BF16), vd = to_device(v, DType::BF16);
    auto error_of = [&](const Sm90Tiling& tiling) {
      return testing::relative_error(gpu_->download(sm90_attention(cuda(), qd, kd, vd, options, tiling)), expected);
    };
    const double plain_error = error_of(plain);
    EXPECT_LT(plain_error, kTolerance);
    for (const Sm90Tiling& tiling : tilings_) {
      if (tiling.features == 0) continue;
      const double error = error_of(tiling);
      std::printf("  %-40s relative error %.3e (plain %.3e)\n", tiling.name().c_str(), error, plain_error);
      EXPECT_LT(error, 1.1 * plain_error + 2e-4) << tiling.name();
    }
  }
}

// At a size the CPU reference cannot afford: every tiling against the portable kernel (both
// are a few 1e-3 from the exact result, so they agree to well within 1e-2).
TEST_F(CudaAttentionSm90Test, LargeMatchesPortableKernel) {
  for (const Case& c : {Case{8192, 8192, 16, 128}, Case{5000, 7000, 8, 128, 6999}}) {
    SCOPED_TRACE(str_cat(c.describe(), " (WANRT_TEST_SEED=", seed_, ")"));
    const Tensor q = cuda().as_dtype(gpu_->upload(testing::random_normal({c.lq, c.heads, c.d}, rng_)), DType::BF16);
    const Tensor k = cuda().as_dtype(gpu_->upload(testing::random_normal({c.lk, c.heads, c.d}, rng_)), DType::BF16);
    const Tensor v = cuda().as_dtype(gpu_->upload(testing::random_normal({c.lk, c.heads, c.d}, rng_)), DType::BF16);
    const AttentionOptions options{.scale = 1.0f / std::sqrt(128.0f), .kv_len = c.kv_len};
    const Tensor reference =
        gpu_->download(flash_attention(cuda(), q, k, v, options, flash_attention_tilings(128).front()));
    for (const NamedRun& named : sm90_runs()) {
      SCOPED_TRACE(named.name);
      const double error = testing::relative_error(gpu_->download(named.run(q, k, v, options)), reference);
      std::printf("  %-22s vs portable: relative difference %.2e\n", named.name.c_str(), error);
      EXPECT_LT(error, kTolerance);
    }
  }
}

// The dispatch: Auto takes the Hopper kernel's first tiling on sm_90, Portable the flash
// kernel's first tiling (bit for bit the same outputs as calling them directly).
TEST_F(CudaAttentionSm90Test, SmallDispatchFollowsCudaOptions) {
  const Tensor q = cuda().as_dtype(gpu_->upload(testing::random_normal({300, 4, 128}, rng_)), DType::BF16);
  const Tensor k = cuda().as_dtype(gpu_->upload(testing::random_normal({200, 4, 128}, rng_)), DType::BF16);
  const AttentionOptions options{.scale = 0.1f};
  const Tensor hopper = gpu_->download(sm90_attention(cuda(), q, k, k, options, sm90_attention_tilings().front()));
  const Tensor portable =
      gpu_->download(flash_attention(cuda(), q, k, k, options, flash_attention_tilings(128).front()));
  for (const auto& [choice, expected, name] :
       {std::tuple{AttentionKernel::Sm90, hopper, "sm90"}, std::tuple{AttentionKernel::Portable, portable, "portable"}}) {
    SCOPED_TRACE(name);
    CudaOptions cuda_options;
    cuda_options.attention = choice;
    const auto ops = make_cuda_ops(cuda_options);
    const Tensor qh = gpu_->download(q), kh = gpu_->download(k);
    const Tensor got = ops->download(ops->attention(ops->upload(qh), ops->upload(kh), ops->upload(kh), options));
    EXPECT_EQ(testing::relative_error(got, expected), 0.0);
  }
  if (std::getenv("WANRT_ATTENTION") == nullptr) {
    EXPECT_EQ(testing::relative_error(gpu_->download(gpu_->attention(q, k, k, options)), hopper), 0.0)
        << "Auto must take the Hopper kernel";
  }
}

TEST_F(CudaAttentionSm90Test, SmallBadArgumentsAreClearErrors) {
  auto dev = [&](Shape shape) { return gpu_->upload(testing::random_normal(std::move(shape), rng_)); };
  auto expect_error = [&](auto&& call, const std::string& fragment) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  const Sm90Tiling tiling = sm90_attention_tilings().front();
  const Tensor q64 = dev({8, 2, 64}), k64 = dev({9, 2, 64});
  expect_error([&] { sm90_attention(cuda(), q64, k64, k64, {}, tiling); }, "head_dim 128");
  const Tensor q = dev({8, 2, 128}), k = dev({9, 2, 128}), bias = dev({2, 8, 9});
  expect_error([&] { sm90_attention(cuda(), q, k, k, {.bias = &bias}, tiling); }, "bias");
  expect_error([&] { sm90_attention(cuda(), q, k, k, {.scale = -1.0f}, tiling); }, "scale");
  expect_error([&] { sm90_attention(cuda(), q, k, k, {.kv_len = 10}, tiling); }, "kv_len");
  Sm90Tiling wrong = tiling;
  wrong.block_n = 96;
  expect_error([&] { sm90_attention(cuda(), q, k, k, {}, wrong); }, "no sm90 attention tiling");
}

#else
TEST(CudaAttention, NotBuilt) { GTEST_SKIP() << "SKIPPED: wanrt was built without CUDA (nvcc not found)"; }
#endif

}  // namespace
}  // namespace wanrt
