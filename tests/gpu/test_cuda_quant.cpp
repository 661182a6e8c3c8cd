// Weight-only quantization on the CUDA backend against the CPU reference, on fresh random inputs:
// quantize_weight (bit for bit the codes and scales of quantize_rows), the per-token FP8 row
// quantizer of activations (bit for bit quantize_rows(x, F8_E4M3)), and linear with int8 and
// fp8 weights on every route it can take (QuantizedLinearSettings), small odd shapes and the
// DiT's full-size GEMMs, with poisoned outputs and clear errors.
//
// References and tolerances. int8: the GPU multiplies bf16(x) by the exact codes and applies the
// scale in F32 (alpha vector), or by bf16(s·q) (scale folded); the reference is cpu.linear on
// bf16(x) with the same row-scaled weight and the bf16 bias. Per element the difference is the
// output's bf16 rounding (≤ 2^-9 of |y|), the bias's, and for the folded route one more bf16
// rounding of each weight (≤ 2^-9 of |x|·|W|ᵀ): within 2^-7 of |y| + |x|·|W|ᵀ + |b| either way
// (which route runs depends on what cuBLASLt offers). fp8: the reference is
// cpu.linear(quantize_rows(x, F8_E4M3).to(F32), W_q, b), whose products are exact in F32 on both
// sides, so only summation order and the output's rounding differ: 2^-8 for the simple kernel;
// the unit-scale route rounds the GEMM output to bf16 before scaling, and the default may be
// that route: 2^-7. Outputs of at least 1000 elements must also be within 1e-2 in relative norm
// of the brief's references (float32 x and bias).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "gpu_test_support.h"

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_linear.h"
#include "backends/cuda/cuda_ops_impl.h"
#include "backends/cuda/cuda_quant.h"
#include "core/quantize.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA
using testing::random_normal;
using testing::error_of;
using testing::relative_error;
using testing::absolute;
using testing::rounded;
using testing::scaled_max_error;

// The bytes of a device tensor (codes are not floats, so download() does not apply).
std::vector<uint8_t> device_bytes(const CudaOps& ops, const Tensor& t) {
  std::vector<uint8_t> bytes(t.nbytes());
  EXPECT_EQ(cudaStreamSynchronize(ops.stream()), cudaSuccess);
  if (!bytes.empty()) {
    EXPECT_EQ(cudaMemcpy(bytes.data(), t.raw(), bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return bytes;
}

// Codes and scales of a device row-scaled tensor against a host one, bit for bit.
::testing::AssertionResult same_codes_and_scales(const CudaOps& ops, const Tensor& device, const Tensor& host) {
  if (!device.is_row_scaled() || device.device() != Device::Cuda)
    return ::testing::AssertionFailure() << device.describe() << " is not a row-scaled device tensor";
  if (device.dtype() != host.dtype() || device.shape() != host.shape())
    return ::testing::AssertionFailure() << device.describe() << " vs expected " << host.describe();
  const std::vector<uint8_t> codes = device_bytes(ops, device), scales = device_bytes(ops, device.row_scale());
  const auto* expected_codes = static_cast<const uint8_t*>(host.raw());
  const auto* expected_scales = static_cast<const uint8_t*>(host.row_scale().raw());
  const int64_t cols = host.numel() / std::max<int64_t>(host.size(0), 1);
  for (size_t i = 0; i < codes.size(); ++i)
    if (codes[i] != expected_codes[i])
      return ::testing::AssertionFailure() << "code [" << static_cast<int64_t>(i) / cols << ", "
                                           << static_cast<int64_t>(i) % cols << "]: 0x" << std::hex
                                           << int{codes[i]} << " vs expected 0x" << int{expected_codes[i]};
  if (std::memcmp(scales.data(), expected_scales, scales.size()) != 0) {
    for (int64_t r = 0; r < host.size(0); ++r) {
      float got = 0, want = 0;
      std::memcpy(&got, scales.data() + 4 * r, 4);
      std::memcpy(&want, expected_scales + 4 * r, 4);
      if (std::memcmp(&got, &want, 4) != 0)
        return ::testing::AssertionFailure() << "scale of row " << r << ": " << got << " vs expected " << want;
    }
  }
  return ::testing::AssertionSuccess();
}

// Restores the process-wide linear routes when a test ends.
class RouteGuard {
 public:
  RouteGuard() : saved_(quantized_linear_settings()) {}
  ~RouteGuard() { set_quantized_linear_settings(saved_); }
  RouteGuard(const RouteGuard&) = delete;
  RouteGuard& operator=(const RouteGuard&) = delete;

 private:
  QuantizedLinearSettings saved_;
};

std::string describe_routes(const LinearPathCounts& before, const LinearPathCounts& after) {
  return str_cat("int8 alpha-vector ", after.int8_alpha_vector - before.int8_alpha_vector, ", int8 folded-scale ",
                 after.int8_folded_scale - before.int8_folded_scale, ", fp8 outer-vector ",
                 after.fp8_outer_vector - before.fp8_outer_vector, ", fp8 unit-scale + kernel ",
                 after.fp8_unit_scale - before.fp8_unit_scale, ", fp8 simple kernel ",
                 after.fp8_simple - before.fp8_simple, " (GEMMs: fused ", after.fused - before.fused, ", split ",
                 after.split - before.split, ", simple ", after.fallback - before.fallback, ")");
}

class CudaQuant : public testing::GpuTest {
 protected:
  // Runs linear with a weight quantized to `codes` on the GPU and checks it against the CPU.
  // `bound` is the per-element scaled bound of the route (header); returns the relative error
  // against the brief's reference for the caller to print.
  double check_linear(const Shape& x_shape, int64_t m, DType codes, bool with_bias, Activation act, DType x_dtype,
                      double bound) {
    const int64_t k = x_shape.back();
    SCOPED_TRACE(str_cat(dtype_name(codes), " x ", dtype_name(x_dtype), shape_str(x_shape), " m=", m,
                         with_bias ? " bias" : "", " act=", static_cast<int>(act)));
    const Tensor x = random_normal(x_shape, rng_);
    const Tensor w = random_normal({m, k}, rng_, 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(k, 1))));
    const Tensor b = random_normal({m}, rng_, 0.5f);
    const Tensor w_q = quantize_rows(w, codes);
    const Tensor wd = gpu_->quantize_weight(w, codes), bd = gpu_->upload_weight(b), xd = device(x, x_dtype);
    Shape out_shape = x_shape;
    out_shape.back() = m;
    poison_pool(static_cast<size_t>(shape_numel(out_shape)) * 2);
    const Tensor y = gpu_->linear(xd, wd, with_bias ? &bd : nullptr, {.activation = act});
    EXPECT_EQ(y.dtype(), DType::BF16);
    EXPECT_EQ(y.shape(), out_shape);
    const Tensor got = gpu_->download(y);

    // What the GPU multiplies: bf16(x) with the int8 codes; the fp8 codes of the x it was given.
    const Tensor x_seen = x_dtype == DType::BF16 ? rounded(x, DType::BF16) : x;
    // Per token: the rows of x as a matrix [tokens, k] (quantize_rows scales along axis 0).
    const int64_t tokens = k == 0 ? 0 : shape_numel(x_shape) / k;
    const Tensor x_gemm = codes == DType::I8
                              ? rounded(x, DType::BF16)
                              : quantize_rows(x_seen.reshape({tokens, k}), codes).to(DType::F32).reshape(x_shape);
    const Tensor b_gemm = rounded(b, DType::BF16);
    const Tensor same_inputs = cpu_->linear(x_gemm, w_q, with_bias ? &b_gemm : nullptr, {.activation = act});
    const Tensor b_magnitude = with_bias ? absolute(b_gemm) : Tensor::zeros(DType::F32, {m});
    const Tensor magnitude = cpu_->linear(absolute(x_gemm), absolute(w_q.to(DType::F32)), &b_magnitude, {});
    const double scaled = scaled_max_error(got, same_inputs, magnitude);
    EXPECT_LT(scaled, bound);
    // The brief's references: float32 x and bias (fp8: x quantized per token, as the GPU must).
    const Tensor x_brief = codes == DType::I8 ? x : x_gemm;
    const Tensor brief = cpu_->linear(x_brief, w_q, with_bias ? &b : nullptr, {.activation = act});
    const double err = relative_error(got, brief);
    if (got.numel() >= 1000) {
      EXPECT_LT(err, 1e-2);
    }
    if (HasFailure()) std::printf("  scaled max error %.3g (bound %.3g); relative %.3g\n", scaled, bound, err);
    return err;
  }
};

// ---------------------------------------------------------------- quantize_weight

// Rows that probe the rounding: zeros, exact ties (int8: scale 1, codes k + 1/2; e4m3: scale 1,
// 17 and 19 between representable 16, 18, 20, and subnormal ties), and one outlier.
void add_special_rows(Tensor& w, DType codes) {
  const int64_t rows = w.size(0), cols = w.size(1);
  if (rows < 3 || cols < 8) return;
  float* p = w.data<float>();
  std::fill_n(p, cols, 0.0f);
  float* ties = p + cols;
  const std::vector<float> values = codes == DType::I8
      ? std::vector<float>{127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 126.5f, -3.5f}
      : std::vector<float>{448.0f, 17.0f, 19.0f, -17.0f, std::ldexp(1.0f, -10), std::ldexp(3.0f, -10), -std::ldexp(1.0f, -10), 0.0f};
  for (int64_t c = 0; c < cols; ++c) ties[c] = values[static_cast<size_t>(c) % values.size()];
  p[2 * cols + cols / 2] = 1000.0f;  // one outlier: the rest of its row quantizes to tiny codes
}

TEST_F(CudaQuant, QuantizeWeightMatchesQuantizeRowsBitForBit) {
  for (DType codes : {DType::I8, DType::F8_E4M3}) {
    for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
      for (const Shape& shape : {Shape{37, 129}, Shape{1, 1}, Shape{3, 8}, Shape{5, 24}, Shape{256, 5120}, Shape{2, 0}}) {
        SCOPED_TRACE(str_cat(dtype_name(codes), " from ", dtype_name(dtype), shape_str(shape)));
        Tensor w = random_normal(shape, rng_, 0.05f);
        add_special_rows(w, codes);
        const Tensor host = w.to(dtype);
        const Tensor expected = quantize_rows(host, codes);
        const Tensor got = gpu_->quantize_weight(host, codes);
        EXPECT_TRUE(same_codes_and_scales(*gpu_, got, expected));
      }
    }
  }
}

TEST_F(CudaQuant, QuantizedCheckpointTensorsMoveAsTheyAre) {
  for (DType codes : {DType::I8, DType::F8_E4M3}) {
    const Tensor stored = quantize_rows(random_normal({300, 136}, rng_), codes);
    const LoadStats before = gpu_->load_stats();
    const Tensor got = gpu_->quantize_weight(stored, codes);
    const LoadStats after = gpu_->load_stats();
    EXPECT_TRUE(same_codes_and_scales(*gpu_, got, stored));
    EXPECT_EQ(after.tensors - before.tensors, 1);
    EXPECT_EQ(after.device_bytes - before.device_bytes, uint64_t{300 * 136 + 300 * 4});
    // A float matrix moves in its own dtype and arrives as codes: 1 byte per element, not 2.
    const Tensor bf16 = random_normal({300, 136}, rng_).to(DType::BF16);
    const LoadStats before_float = gpu_->load_stats();
    (void)gpu_->quantize_weight(bf16, codes);
    EXPECT_EQ(gpu_->load_stats().device_bytes - before_float.device_bytes, uint64_t{300 * 136 + 300 * 4});
  }
}

TEST_F(CudaQuant, BadWeightsAndDtypesAreClearErrors) {
  const Tensor w = random_normal({6, 16}, rng_);
  EXPECT_ERROR_MENTIONS(gpu_->quantize_weight(w, DType::BF16), "must be I8 (int8) or F8_E4M3 (fp8)");
  EXPECT_ERROR_MENTIONS(gpu_->quantize_weight(w, DType::F8_E5M2), "F8_E5M2");
  EXPECT_ERROR_MENTIONS(gpu_->quantize_weight(quantize_rows(w, DType::I8), DType::F8_E4M3), "already quantized to I8");
  EXPECT_ERROR_MENTIONS(gpu_->quantize_weight(random_normal({16}, rng_), DType::I8), "expects a matrix [out, in]");
  EXPECT_ERROR_MENTIONS(gpu_->quantize_weight(gpu_->upload(w), DType::I8), "already on the GPU");
  EXPECT_ERROR_MENTIONS(gpu_->quantize_weight(Tensor::zeros(DType::I32, {6, 16}), DType::I8), "needs a float matrix");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    Tensor damaged = w.clone();
    damaged.data<float>()[3 * 16 + 5] = bad;
    damaged.data<float>()[5 * 16 + 1] = bad;
    for (DType codes : {DType::I8, DType::F8_E4M3}) {
      const std::string message = error_of([&] { gpu_->quantize_weight(damaged.to(DType::BF16), codes); });
      EXPECT_NE(message.find("row 3 holds a non-finite value"), std::string::npos) << message;
    }
  }
  // The backend still works after the errors.
  EXPECT_TRUE(same_codes_and_scales(*gpu_, gpu_->quantize_weight(w, DType::I8), quantize_rows(w, DType::I8)));

  const Tensor x = gpu_->upload(random_normal({4, 16}, rng_));
  EXPECT_ERROR_MENTIONS(gpu_->linear(x, quantize_rows(w, DType::I8), nullptr, {}), "quantize_weight");
  EXPECT_ERROR_MENTIONS(gpu_->linear(x, gpu_->empty(DType::I8, {6, 16}), nullptr, {}), "must be F32 or BF16");
  const Tensor wrong_k = gpu_->quantize_weight(random_normal({6, 8}, rng_), DType::F8_E4M3);
  EXPECT_ERROR_MENTIONS(gpu_->linear(x, wrong_k, nullptr, {}), "has 16 features");
  const Tensor bias = gpu_->upload_weight(random_normal({5}, rng_));
  EXPECT_ERROR_MENTIONS(gpu_->linear(x, gpu_->quantize_weight(w, DType::I8), &bias, {}), "linear bias");
}

// ---------------------------------------------------------------- activation quantizer

TEST_F(CudaQuant, TokenQuantizerMatchesQuantizeRowsBitForBit) {
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (const Shape& shape : {Shape{300, 5120}, Shape{7, 37}, Shape{1, 16}, Shape{33, 8}, Shape{4, 13824}}) {
      SCOPED_TRACE(str_cat(dtype_name(dtype), shape_str(shape)));
      Tensor x = random_normal(shape, rng_, 3.0f);
      add_special_rows(x, DType::F8_E4M3);
      const Tensor x_seen = rounded(x, dtype);
      const Tensor expected = quantize_rows(x_seen, DType::F8_E4M3);
      const Tensor xd = device(x, dtype);
      Tensor codes = gpu_->empty(DType::F8_E4M3, shape), scale = gpu_->empty(DType::F32, {shape[0]});
      launch_quantize_rows(xd.raw(), dtype, shape[0], shape[1], DType::F8_E4M3, codes.raw_mut(),
                           static_cast<float*>(scale.raw_mut()), nullptr, gpu_->stream());
      EXPECT_TRUE(same_codes_and_scales(*gpu_, Tensor::with_row_scale(codes, scale), expected));
    }
  }
}

// ---------------------------------------------------------------- linear

const std::vector<std::pair<Shape, int64_t>> kSmallCases = {
    {{36, 144}, 256}, {{512, 64}, 256}, {{7, 256}, 384}, {{1, 256}, 1536}, {{300, 256}, 64}, {{11, 64}, 160},
    {{13, 37}, 19},   {{1, 3}, 1},      {{5, 8}, 8},     {{2, 3, 48}, 24}, {{1, 16}, 8},     {{33, 32}, 40}};

TEST_F(CudaQuant, Int8LinearMatchesTheCpuOnBothRoutes) {
  RouteGuard guard;
  for (bool alpha_vector : {true, false}) {
    QuantizedLinearSettings route;
    route.int8_alpha_vector = alpha_vector;
    set_quantized_linear_settings(route);
    const LinearPathCounts before = linear_path_counts();
    for (const auto& [x_shape, m] : kSmallCases)
      for (Activation act : {Activation::None, Activation::GeluTanh, Activation::Silu})
        for (bool with_bias : {true, false})
          for (DType x_dtype : {DType::F32, DType::BF16})
            check_linear(x_shape, m, DType::I8, with_bias, act, x_dtype, 1.0 / 128);
    const LinearPathCounts after = linear_path_counts();
    std::printf("int8, alpha vector %s: %s\n", alpha_vector ? "allowed" : "off",
                describe_routes(before, after).c_str());
    if (!alpha_vector) {
      EXPECT_EQ(after.int8_alpha_vector, before.int8_alpha_vector);
    }
    EXPECT_EQ(after.int8_alpha_vector + after.int8_folded_scale - before.int8_alpha_vector - before.int8_folded_scale,
              static_cast<int64_t>(kSmallCases.size()) * 12);
  }
}

TEST_F(CudaQuant, Fp8LinearMatchesTheCpuOnEveryRoute) {
  RouteGuard guard;
  struct Route {
    const char* name;
    QuantizedLinearSettings settings;
    double bound;
  };
  const Route routes[] = {
      {"default (outer-vector scales where offered)", {}, 1.0 / 128},
      {"unit scales + scaling kernel", {.fp8_outer_vector = false}, 1.0 / 128},
      {"simple kernel", {.fp8_cublaslt = false}, 1.0 / 256},
  };
  for (const Route& route : routes) {
    set_quantized_linear_settings(route.settings);
    const LinearPathCounts before = linear_path_counts();
    for (const auto& [x_shape, m] : kSmallCases)
      for (Activation act : {Activation::None, Activation::GeluTanh, Activation::Silu})
        for (bool with_bias : {true, false})
          for (DType x_dtype : {DType::F32, DType::BF16})
            check_linear(x_shape, m, DType::F8_E4M3, with_bias, act, x_dtype, route.bound);
    const LinearPathCounts after = linear_path_counts();
    std::printf("fp8, %s: %s\n", route.name, describe_routes(before, after).c_str());
    const int64_t calls = static_cast<int64_t>(kSmallCases.size()) * 12;
    EXPECT_EQ(after.fp8_outer_vector + after.fp8_unit_scale + after.fp8_simple - before.fp8_outer_vector -
                  before.fp8_unit_scale - before.fp8_simple,
              calls);
    if (!route.settings.fp8_cublaslt) {
      EXPECT_EQ(after.fp8_simple - before.fp8_simple, calls);
    }
    if (!route.settings.fp8_outer_vector) {
      EXPECT_EQ(after.fp8_outer_vector, before.fp8_outer_vector);
    }
    // K = 37, 3 and 8 have no FP8 GEMM (K % 16 != 0): those always take the simple kernel.
    EXPECT_GE(after.fp8_simple - before.fp8_simple, 3 * 12);
  }
}

TEST_F(CudaQuant, FullPrecisionWithAQuantizedWeightIsFloat32) {
  for (DType codes : {DType::I8, DType::F8_E4M3}) {
    const Tensor x = random_normal({9, 48}, rng_), w = random_normal({40, 48}, rng_, 0.2f), b = random_normal({40}, rng_);
    const Tensor w_q = quantize_rows(w, codes);
    const Tensor bd = gpu_->upload(b);
    poison_pool(9 * 40 * 4);
    const Tensor y = gpu_->linear(gpu_->upload(x), gpu_->quantize_weight(w, codes), &bd,
                                  {.activation = Activation::GeluTanh, .full_precision = true});
    EXPECT_EQ(y.dtype(), DType::F32);
    EXPECT_LT(relative_error(gpu_->download(y), cpu_->linear(x, w_q, &b, {.activation = Activation::GeluTanh})), 1e-5)
        << dtype_name(codes);
  }
}

// The DiT's GEMMs at a few hundred tokens: q/k/v/o (5120 → 5120), FFN up (5120 → 13824 + GELU)
// and down (13824 → 5120), all with bias. Also prints each format's error against the float
// weight (what quantization itself costs per layer) and, for fp8, with fast accumulation.
TEST_F(CudaQuant, FullSizeDitShapes) {
  RouteGuard guard;
  const int64_t n = 300;
  for (DType codes : {DType::I8, DType::F8_E4M3}) {
    for (auto [k, m, act] : {std::tuple{int64_t{5120}, int64_t{5120}, Activation::None},
                             std::tuple{int64_t{5120}, int64_t{13824}, Activation::GeluTanh},
                             std::tuple{int64_t{13824}, int64_t{5120}, Activation::None}}) {
      SCOPED_TRACE(str_cat(dtype_name(codes), " ", n, "x", k, "x", m));
      set_quantized_linear_settings({});
      const LinearPathCounts before = linear_path_counts();
      const double err = check_linear({n, k}, m, codes, true, act, DType::BF16, 1.0 / 128);
      const LinearPathCounts after = linear_path_counts();
      // Quantization's own cost: the same layer with the float weight, x in bf16.
      const Tensor x = rounded(random_normal({n, k}, rng_), DType::BF16);
      const Tensor w = random_normal({m, k}, rng_, 1.0f / std::sqrt(static_cast<float>(k)));
      const Tensor b = rounded(random_normal({m}, rng_, 0.5f), DType::BF16);
      const Tensor xd = device(x, DType::BF16), bd = gpu_->upload_weight(b);
      const Tensor wd = gpu_->quantize_weight(w, codes);
      const Tensor y = gpu_->download(gpu_->linear(xd, wd, &bd, {.activation = act}));
      const Tensor exact = cpu_->linear(x, w, &b, {.activation = act});
      const double vs_float = relative_error(y, exact);
      EXPECT_LT(vs_float, 0.1) << "quantization error out of all proportion";
      std::string fast = "";
      if (codes == DType::F8_E4M3) {
        set_quantized_linear_settings({.fp8_fast_accumulation = true});
        const Tensor y_fast = gpu_->download(gpu_->linear(xd, wd, &bd, {.activation = act}));
        const Tensor x_q = quantize_rows(x, codes).to(DType::F32);
        const double fast_err = relative_error(y_fast, cpu_->linear(x_q, quantize_rows(w, codes), &b, {.activation = act}));
        EXPECT_LT(fast_err, 5e-2);
        fast = str_cat("; with fast accumulation ", fast_err);
      }
      std::printf("%s %lldx%lldx%lld%s: relative error %.3g vs the CPU on the same quantized weight, %.3g vs the "
                  "float weight (quantization itself)%s; route: %s\n",
                  std::string(dtype_name(codes)).c_str(), static_cast<long long>(n), static_cast<long long>(k),
                  static_cast<long long>(m), act == Activation::GeluTanh ? " GELU" : "", err, vs_float, fast.c_str(),
                  describe_routes(before, after).c_str());
    }
  }
}
#endif

}  // namespace
}  // namespace wanrt
