// Dense ops of the float32 reference: linear (BLAS sgemm), norms, elementwise.
// Norm statistics accumulate in double so the reference is not the source of error.
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/cpu_ops.h"

namespace wanrt {
namespace {

// Rows × features view of the last axis.
struct RowView {
  int64_t rows;
  int64_t features;
};

RowView as_rows(const Tensor& x) {
  WANRT_CHECK(x.dim() >= 1, "cpu backend: expected at least 1-D, got ", x.describe());
  const int64_t features = x.size(-1);
  return {features == 0 ? 0 : x.numel() / features, features};
}

void check_vector(const Tensor& v, int64_t features, const char* what) {
  expect_f32(v, what);
  WANRT_CHECK(v.numel() == features, "cpu backend: ", what, " has ", v.numel(),
              " elements, expected ", features);
}

float apply_activation(float x, Activation act) {
  switch (act) {
    case Activation::None: return x;
    case Activation::Silu: return x / (1.0f + std::exp(-x));
    case Activation::GeluTanh: {
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
    }
  }
  return x;
}

// y = (x − mean) / sqrt(var + eps) per row, with var biased.
template <typename Finish>
Tensor normalise_rows(const Tensor& x, float eps, bool subtract_mean, Finish finish) {
  expect_f32(x, "x");
  // Plain variables, not a structured binding: clang 14 cannot name bindings inside OpenMP
  // regions (a C++20 feature it lacks).
  const RowView view = as_rows(x);
  const int64_t rows = view.rows, features = view.features;
  Tensor out = Tensor::empty(DType::F32, x.shape());
  const float* in = x.data<float>();
  float* o = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * features;
    double mean = 0;
    if (subtract_mean) {
      for (int64_t c = 0; c < features; ++c) mean += row[c];
      mean /= static_cast<double>(features);
    }
    double sq = 0;
    for (int64_t c = 0; c < features; ++c) {
      const double d = row[c] - mean;
      sq += d * d;
    }
    const double inv = 1.0 / std::sqrt(sq / static_cast<double>(features) + eps);
    for (int64_t c = 0; c < features; ++c)
      o[r * features + c] = finish(static_cast<float>((row[c] - mean) * inv), c);
  }
  return out;
}

}  // namespace

// A quantized weight is dequantized on the fly to the float32 matrix s ⊙ W_q it means (each
// element one rounding of an exact product), then multiplied like any other: the reference for
// the GPU's int8/fp8 kernels, which differ from it only by their GEMM input rounding.
Tensor CpuOps::linear(const Tensor& x, const Tensor& weight_in, const Tensor* bias,
                      const LinearOptions& options) {
  expect_f32(x, "linear input");
  WANRT_CHECK(!weight_in.is_row_scaled() || weight_in.device() == Device::Host,
              "cpu backend: linear weight ", weight_in.describe(), " is not in host memory");
  const Tensor weight = weight_in.is_row_scaled() ? weight_in.to(DType::F32) : weight_in;
  expect_f32(weight, "linear weight");
  WANRT_CHECK(weight.dim() == 2, "cpu backend: linear weight must be 2-D, got ", weight.describe());
  const RowView view = as_rows(x);  // no structured binding: see normalise_rows
  const int64_t n = view.rows, k = view.features;
  const int64_t m = weight.size(0);
  WANRT_CHECK(weight.size(1) == k, "cpu backend: linear input ", x.describe(),
              " does not match weight ", weight.describe());
  Shape out_shape = x.shape();
  out_shape.back() = m;
  Tensor out = Tensor::empty(DType::F32, out_shape);
  if (k == 0) {
    // An empty sum: BLAS implementations differ on whether they write C when K is 0.
    std::fill_n(out.data<float>(), n * m, 0.0f);
  } else if (n > 0 && m > 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(m),
                static_cast<int>(k), 1.0f, x.data<float>(), static_cast<int>(k),
                weight.data<float>(), static_cast<int>(k), 0.0f, out.data<float>(),
                static_cast<int>(m));
  }
  const float* b = nullptr;
  if (bias) {
    check_vector(*bias, m, "linear bias");
    b = bias->data<float>();
  }
  if (b || options.activation != Activation::None) {
    float* o = out.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < m; ++c)
        o[r * m + c] = apply_activation(o[r * m + c] + (b ? b[c] : 0.0f), options.activation);
  }
  return out;
}

Tensor CpuOps::layer_norm(const Tensor& x, float eps, const Tensor* weight, const Tensor* bias) {
  const int64_t features = as_rows(x).features;
  const float* w = weight ? (check_vector(*weight, features, "layer_norm weight"), weight->data<float>()) : nullptr;
  const float* b = bias ? (check_vector(*bias, features, "layer_norm bias"), bias->data<float>()) : nullptr;
  return normalise_rows(x, eps, true, [&](float v, int64_t c) {
    return v * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
  });
}

Tensor CpuOps::layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                   float eps, bool /*full_precision: always float32 here*/) {
  const int64_t features = as_rows(x).features;
  check_vector(shift, features, "modulation shift");
  check_vector(scale, features, "modulation scale");
  const float* sh = shift.data<float>();
  const float* sc = scale.data<float>();
  return normalise_rows(x, eps, true, [&](float v, int64_t c) { return v * (1.0f + sc[c]) + sh[c]; });
}

Tensor CpuOps::rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  const int64_t features = as_rows(x).features;
  check_vector(weight, features, "rms_norm weight");
  const float* w = weight.data<float>();
  return normalise_rows(x, eps, false, [&](float v, int64_t c) { return v * w[c]; });
}

Tensor CpuOps::activation(const Tensor& x, Activation act) {
  expect_f32(x, "activation input");
  Tensor out = Tensor::empty(DType::F32, x.shape());
  const float* in = x.data<float>();
  float* o = out.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = apply_activation(in[i], act);
  return out;
}

Tensor CpuOps::add(const Tensor& a, const Tensor& b) {
  expect_f32(a, "add lhs");
  expect_f32(b, "add rhs");
  const bool broadcast = b.shape() != a.shape();
  const int64_t features = a.dim() ? a.size(-1) : 1;
  WANRT_CHECK(!broadcast || b.numel() == features, "cpu backend: add of ", a.describe(), " and ",
              b.describe(), ": shapes must match or the rhs be one row");
  Tensor out = Tensor::empty(DType::F32, a.shape());
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  float* o = out.data<float>();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] + y[broadcast ? i % features : i];
  return out;
}

Tensor CpuOps::mul(const Tensor& a, const Tensor& b) {
  expect_f32(a, "mul lhs");
  expect_f32(b, "mul rhs");
  WANRT_CHECK(a.shape() == b.shape(), "cpu backend: mul of ", a.describe(), " and ", b.describe());
  Tensor out = Tensor::empty(DType::F32, a.shape());
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) o[i] = x[i] * y[i];
  return out;
}

void CpuOps::add_gated_(Tensor& x, const Tensor& y, const Tensor* gate) {
  expect_f32(x, "residual");
  expect_f32(y, "residual update");
  WANRT_CHECK(x.shape() == y.shape(), "cpu backend: residual ", x.describe(), " and update ",
              y.describe(), " differ in shape");
  const int64_t features = x.size(-1);
  const float* g = gate ? (check_vector(*gate, features, "residual gate"), gate->data<float>()) : nullptr;
  float* o = x.data<float>();
  const float* u = y.data<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) o[i] += g ? u[i] * g[i % features] : u[i];
}

}  // namespace wanrt
