// Weight-only quantization (core/quantize.h), row-scaled tensors (core/tensor.h) and the CPU
// backend's quantized linear, on fresh random inputs: the rounding bounds of each format, the
// tensor semantics a quantized weight relies on, linear against an independent float64 loop,
// and the error of quantized against float layers on random activations (printed).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <tuple>

#include "backends/ops.h"
#include "core/quantize.h"
#include "test_support.h"

namespace wanrt {
namespace {

using testing::random_normal;
using testing::relative_error;

class QuantizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure())
      std::fprintf(stderr, "reproduce with WANRT_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed_));
  }
  // A weight with rows of very different magnitudes (per-row scales must follow them), one
  // all-zero row and, in a random place, an exact tie for the int8 rounding.
  Tensor awkward_weight(int64_t rows, int64_t cols) {
    Tensor w = random_normal({rows, cols}, rng_);
    float* data = w.data<float>();
    std::uniform_real_distribution<float> log_scale(-6.0f, 3.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const float magnitude = std::pow(10.0f, log_scale(rng_));
      for (int64_t c = 0; c < cols; ++c) data[r * cols + c] *= magnitude;
    }
    for (int64_t c = 0; c < cols; ++c) data[1 * cols + c] = 0.0f;
    if (cols >= 3) {  // row 2: max 127 → scale exactly 1, and 2.5 is a tie (rounds to 2)
      std::uniform_real_distribution<float> small(-1.0f, 1.0f);
      for (int64_t c = 0; c < cols; ++c) data[2 * cols + c] = small(rng_);
      data[2 * cols + 0] = 127.0f;
      data[2 * cols + 1] = 2.5f;
      data[2 * cols + 2] = -3.5f;
    }
    return w;
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

double code_value(const Tensor& q, int64_t i) {
  return q.dtype() == DType::I8 ? q.data<int8_t>()[i] : f8e4m3_to_f32(q.data<uint8_t>()[i]);
}

TEST_F(QuantizeTest, Int8CodesAreWithinHalfAStep) {
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{5, 3}, {17, 33}, {64, 257}}) {
    const Tensor w = awkward_weight(rows, cols);
    const Tensor q = quantize_rows(w, DType::I8);
    ASSERT_TRUE(q.is_row_scaled());
    ASSERT_EQ(q.dtype(), DType::I8);
    ASSERT_EQ(q.shape(), w.shape());
    const float* wd = w.data<float>();
    const float* s = q.row_scale().data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      float max_abs = 0;
      for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(wd[r * cols + c]));
      EXPECT_EQ(s[r], max_abs / 127.0f) << "row " << r;
      int max_code = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const int code = q.data<int8_t>()[r * cols + c];
        max_code = std::max(max_code, std::abs(code));
        ASSERT_LE(std::abs(code), 127);
        const double error = std::fabs(static_cast<double>(wd[r * cols + c]) - static_cast<double>(s[r]) * code);
        ASSERT_LE(error, 0.5 * s[r]) << "row " << r << " col " << c;
      }
      EXPECT_EQ(max_code, max_abs == 0 ? 0 : 127) << "the largest weight of row " << r << " uses the full range";
    }
    if (cols >= 3) {  // round half to even
      EXPECT_EQ(s[2], 1.0f);
      EXPECT_EQ(q.data<int8_t>()[2 * cols + 1], 2);
      EXPECT_EQ(q.data<int8_t>()[2 * cols + 2], -4);
    }
    EXPECT_EQ(s[1], 0.0f);  // the zero row: scale 0, codes 0, exact
    for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(q.data<int8_t>()[cols + c], 0);
  }
}

TEST_F(QuantizeTest, Fp8CodesAreWithinHalfAnUlp) {
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{5, 3}, {17, 33}, {64, 257}}) {
    const Tensor w = awkward_weight(rows, cols);
    const Tensor q = quantize_rows(w, DType::F8_E4M3);
    ASSERT_EQ(q.dtype(), DType::F8_E4M3);
    const float* wd = w.data<float>();
    const float* s = q.row_scale().data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      float max_abs = 0;
      for (int64_t c = 0; c < cols; ++c) max_abs = std::max(max_abs, std::fabs(wd[r * cols + c]));
      EXPECT_EQ(s[r], max_abs / 448.0f);
      double max_code = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double code = code_value(q, r * cols + c);
        ASSERT_FALSE(std::isnan(code)) << "row " << r << " col " << c;
        max_code = std::max(max_code, std::fabs(code));
        // e4m3 keeps 3 mantissa bits: half an ulp is at most 2^-4 of the value, and 2^-10
        // (half the subnormal step 2^-9) near zero.
        const double ratio = s[r] == 0 ? 0 : static_cast<double>(wd[r * cols + c]) / s[r];
        ASSERT_LE(std::fabs(ratio - code), std::max(std::fabs(ratio) * 0x1p-4, 0x1p-10) * (1 + 1e-12))
            << "row " << r << " col " << c << " ratio " << ratio << " code " << code;
      }
      EXPECT_EQ(max_code, max_abs == 0 ? 0 : 448);
    }
  }
}

TEST_F(QuantizeTest, BadWeightsAreRefusedClearly) {
  Tensor w = random_normal({4, 6}, rng_);
  w.data<float>()[2 * 6 + 3] = std::nanf("");
  try {
    quantize_rows(w, DType::I8, "blocks.0.ffn.0.weight");
    FAIL() << "a NaN weight was quantized";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.ffn.0.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_rows(random_normal({3, 3}, rng_), DType::F16), Error);
  EXPECT_THROW(quantize_rows(Tensor::zeros(DType::I32, {3, 3}), DType::I8), Error);
  EXPECT_THROW(quantize_rows(quantize_rows(random_normal({3, 3}, rng_), DType::I8), DType::I8), Error);
}

TEST_F(QuantizeTest, RowScaledTensorsKeepTheirScales) {
  const Tensor w = random_normal({6, 10}, rng_);
  const Tensor q = quantize_rows(w.to(DType::BF16), DType::I8);  // bf16 checkpoints quantize too
  EXPECT_NE(q.describe().find("row-scaled"), std::string::npos);

  // to(float): the dequantized values, each s·q rounded once.
  const Tensor dequantized = q.to(DType::F32);
  for (int64_t i = 0; i < 60; ++i)
    EXPECT_EQ(dequantized.data<float>()[i],
              static_cast<float>(static_cast<double>(q.row_scale().data<float>()[i / 10]) * q.data<int8_t>()[i]));
  EXPECT_LT(relative_error(dequantized, w), 2e-2);

  // clone: codes and scales copied, not shared.
  const Tensor copy = q.clone();
  ASSERT_TRUE(copy.is_row_scaled());
  EXPECT_NE(copy.raw(), q.raw());
  EXPECT_NE(copy.row_scale().raw(), q.row_scale().raw());
  EXPECT_EQ(relative_error(copy.to(DType::F32), dequantized), 0);

  // slice_rows slices the scales with the codes; reshape must keep the rows.
  const Tensor rows = q.slice_rows(2, 5);
  ASSERT_EQ(rows.row_scale().numel(), 3);
  EXPECT_EQ(rows.row_scale().data<float>()[0], q.row_scale().data<float>()[2]);
  EXPECT_EQ(relative_error(rows.to(DType::F32), dequantized.slice_rows(2, 5)), 0);
  EXPECT_TRUE(q.reshape({6, 2, 5}).is_row_scaled());
  EXPECT_THROW(q.reshape({60}), Error);
  EXPECT_THROW(q.reshape({3, 20}), Error);

  EXPECT_THROW(q.to(DType::I32), Error);
  EXPECT_THROW(w.row_scale(), Error);
  EXPECT_THROW(Tensor::with_row_scale(w, Tensor::zeros(DType::F32, {6})), Error);  // F32 codes
  EXPECT_THROW(Tensor::with_row_scale(Tensor::zeros(DType::I8, {6, 10}), Tensor::zeros(DType::F32, {5})), Error);
  EXPECT_THROW(Tensor::with_row_scale(Tensor::zeros(DType::I8, {6, 10}), Tensor::zeros(DType::F16, {6})), Error);
}

// linear with a quantized weight against a float64 loop over the dequantized weight s·q.
TEST_F(QuantizeTest, CpuLinearWithQuantizedWeightIsExact) {
  auto ops = make_cpu_ops();
  for (DType codes : {DType::I8, DType::F8_E4M3}) {
    for (const auto& [n, k, m] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 33, 19}, {64, 130, 97}}) {
      SCOPED_TRACE(str_cat(dtype_name(codes), " ", n, "x", k, "x", m));
      const Tensor x = random_normal({n, k}, rng_), b = random_normal({m}, rng_);
      const Tensor weight = ops->quantize_weight(random_normal({m, k}, rng_, 0.05f), codes);
      ASSERT_TRUE(weight.is_row_scaled());
      ASSERT_EQ(weight.dtype(), codes);
      const Tensor y = ops->linear(x, weight, &b, {.activation = Activation::GeluTanh});
      Tensor expected = testing::poisoned({n, m});
      const float* s = weight.row_scale().data<float>();
      for (int64_t row = 0; row < n; ++row)
        for (int64_t col = 0; col < m; ++col) {
          double acc = b.data<float>()[col];
          for (int64_t i = 0; i < k; ++i)
            acc += static_cast<double>(x.data<float>()[row * k + i]) * s[col] * code_value(weight, col * k + i);
          expected.data<float>()[row * m + col] = static_cast<float>(
              0.5 * acc * (1 + std::tanh(std::sqrt(2 / M_PI) * (acc + 0.044715 * acc * acc * acc))));
        }
      // float32 accumulation over K=130 against a float64 loop: a few ulps (2.4e-6 seen).
      EXPECT_LT(relative_error(y, expected), 1e-5);
      // And the same as the float linear of the weight it means (same rounding order).
      EXPECT_LT(relative_error(y, ops->linear(x, weight.to(DType::F32), &b, {.activation = Activation::GeluTanh})), 1e-7);
    }
  }
}

TEST_F(QuantizeTest, CpuQuantizeWeightKeepsStoredCodesAndRefusesMisuse) {
  auto ops = make_cpu_ops();
  const Tensor stored = quantize_rows(random_normal({8, 12}, rng_), DType::F8_E4M3);
  const Tensor loaded = ops->quantize_weight(stored, DType::F8_E4M3);  // no re-quantization
  ASSERT_TRUE(loaded.is_row_scaled());
  EXPECT_EQ(std::memcmp(loaded.raw(), stored.raw(), stored.nbytes()), 0);
  EXPECT_EQ(std::memcmp(loaded.row_scale().raw(), stored.row_scale().raw(), 8 * sizeof(float)), 0);
  EXPECT_THROW(ops->quantize_weight(stored, DType::I8), Error);         // fp8 codes -> int8
  EXPECT_THROW(ops->quantize_weight(random_normal({8}, rng_), DType::I8), Error);  // not a matrix
  EXPECT_THROW(ops->quantize_weight(random_normal({8, 12}, rng_), DType::BF16), Error);
  // upload_weight of quantized codes gives the float weight they mean.
  EXPECT_EQ(relative_error(ops->upload_weight(stored), stored.to(DType::F32)), 0);
  // Ops other than linear refuse a quantized tensor instead of reading codes as floats.
  const Tensor x = random_normal({8, 12}, rng_);
  EXPECT_THROW(ops->add(x, loaded), Error);
  EXPECT_THROW(ops->rms_norm(loaded, random_normal({12}, rng_), 1e-6f), Error);
  EXPECT_THROW(ops->linear(loaded, random_normal({3, 12}, rng_), nullptr), Error);
}

// Per-layer error of weight-only quantization on random activations, at the A14B layers' input
// widths (dim 5120, ffn 13824; 512 of the output rows, which the error per row does not depend
// on) with Gaussian weights, printed as a table. The bounds are ~1.5x the expected values
// (int8: a step of max|w|/127 ≈ 3.9σ/127, error σ_q = step/√12 ≈ 0.9% of σ; e4m3: 3 mantissa
// bits, ≈ 3%).
TEST_F(QuantizeTest, LayerErrorOnRandomActivations) {
  auto ops = make_cpu_ops();
  struct Layer {
    const char* name;
    int64_t out, in;
  };
  const Layer layers[] = {{"attn q/k/v/o, ffn.0 (in 5120)", 512, 5120},
                          {"ffn.2 (in 13824)", 512, 13824}};
  const int64_t tokens = 16;
  std::printf("  %-30s %12s %12s\n", "layer (Gaussian weights)", "int8 rel err", "fp8 rel err");
  for (const Layer& layer : layers) {
    const float stddev = 1.0f / std::sqrt(static_cast<float>(layer.in));
    const Tensor w = random_normal({layer.out, layer.in}, rng_, stddev);
    const Tensor x = random_normal({tokens, layer.in}, rng_);
    const Tensor exact = ops->linear(x, w, nullptr);
    const double int8 = relative_error(ops->linear(x, ops->quantize_weight(w, DType::I8), nullptr), exact);
    const double fp8 = relative_error(ops->linear(x, ops->quantize_weight(w, DType::F8_E4M3), nullptr), exact);
    std::printf("  %-30s %12.2e %12.2e\n", layer.name, int8, fp8);
    EXPECT_LT(int8, 1.5e-2) << layer.name;
    EXPECT_LT(fp8, 4.5e-2) << layer.name;
    EXPECT_GT(int8, 1e-4) << layer.name << ": quantization that changes nothing is not quantizing";
  }
}

}  // namespace
}  // namespace wanrt
