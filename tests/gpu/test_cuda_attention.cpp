// CudaOps::attention against the float32 CPU reference on fresh random inputs: the flash
// kernel (head_dim 64/128, every compiled tiling), the generic kernel (other head dims, bias,
// negative scale) and the GEMM path (long sequences of other head dims: the VAE's one head of
// 384), sequence lengths off and on the tile sizes, cross-attention shapes,
// kv_len masking with hostile values in the masked keys, F32 and BF16 inputs, poisoned
// outputs. Tests whose name contains "Small" are the quick set (compute-sanitizer runs them).
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gpu_test_support.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_gemm_attention.h"
#include "backends/cuda/cuda_ops_impl.h"
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

  // Runs one case through `run` (which calls the GPU op) and through the CPU reference;
  // returns the relative error (NaN anywhere gives +inf).
  template <typename Run>
  double check(const Case& c, Run&& run) {
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
    poison_pool(q.shape());
    const Tensor out = run(qd, kd, vd, device_options);
    EXPECT_EQ(out.dtype(), DType::BF16);
    EXPECT_EQ(shape_str(out.shape()), shape_str(q.shape()));
    const Tensor actual = gpu_->download(out);
    for (float x : actual.floats()) {
      if (std::isnan(x) || std::isinf(x)) {
        ADD_FAILURE() << "non-finite output";
        return INFINITY;
      }
    }
    const double error = testing::relative_error(actual, expected);
    EXPECT_LT(error, kTolerance);
    return error;
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

#else
TEST(CudaAttention, NotBuilt) { GTEST_SKIP() << "SKIPPED: wanrt was built without CUDA (nvcc not found)"; }
#endif

}  // namespace
}  // namespace wanrt
