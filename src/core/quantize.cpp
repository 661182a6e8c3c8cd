#include "core/quantize.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace wanrt {

std::string_view quantization_name(Quantization quantization) {
  switch (quantization) {
    case Quantization::None: return "none";
    case Quantization::Int8: return "int8";
    case Quantization::Fp8: return "fp8";
  }
  return "?";
}

std::optional<Quantization> quantization_from_name(std::string_view name) {
  for (Quantization q : {Quantization::None, Quantization::Int8, Quantization::Fp8})
    if (quantization_name(q) == name) return q;
  return std::nullopt;
}

DType quantization_dtype(Quantization quantization) {
  switch (quantization) {
    case Quantization::Int8: return DType::I8;
    case Quantization::Fp8: return DType::F8_E4M3;
    case Quantization::None: break;
  }
  fail("internal error: quantization_dtype(none): unquantized weights have no code dtype");
}

std::optional<Quantization> quantization_of(DType codes) {
  if (codes == DType::I8) return Quantization::Int8;
  if (codes == DType::F8_E4M3) return Quantization::Fp8;
  return std::nullopt;
}

float quantization_code_max(DType codes) {
  if (codes == DType::I8) return 127.0f;
  if (codes == DType::F8_E4M3) return 448.0f;
  fail("quantization: codes must be I8 or F8_E4M3, got ", dtype_name(codes));
}

Tensor quantize_rows(const Tensor& weight, DType codes, std::string_view what) {
  const float code_max = quantization_code_max(codes);
  WANRT_CHECK(weight.device() == Device::Host && weight.is_contiguous() && weight.dim() >= 1,
              "quantize ", what, ": expected a contiguous host tensor of at least 1 dimension, got ",
              weight.describe());
  WANRT_CHECK(!weight.is_row_scaled(), "quantize ", what, ": ", weight.describe(),
              " is already quantized");
  WANRT_CHECK(dtype_is_float(weight.dtype()), "quantize ", what, ": expected a float tensor, got ",
              weight.describe());
  const Tensor values = weight.dtype() == DType::F32 ? weight : weight.to(DType::F32);  // exact
  const int64_t rows = weight.size(0), cols = rows == 0 ? 0 : weight.numel() / rows;
  Tensor q = Tensor::empty(codes, weight.shape());
  Tensor scale = Tensor::empty(DType::F32, {rows});
  const float* w = values.data<float>();
  float* s = scale.data<float>();
  int64_t bad_row = -1;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    float max_abs = 0.0f;
    bool finite = true;
    for (int64_t c = 0; c < cols; ++c) {
      finite = finite && std::isfinite(row[c]);
      max_abs = std::max(max_abs, std::fabs(row[c]));
    }
    if (!finite) {
#pragma omp critical
      bad_row = bad_row < 0 ? r : std::min(bad_row, r);
      continue;
    }
    const float row_scale = max_abs / code_max;
    s[r] = row_scale;
    if (codes == DType::I8) {
      int8_t* out = q.data<int8_t>() + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const double code = row_scale == 0.0f ? 0.0 : std::nearbyint(static_cast<double>(row[c]) / row_scale);
        out[c] = static_cast<int8_t>(std::clamp(code, -127.0, 127.0));
      }
    } else {
      uint8_t* out = q.data<uint8_t>() + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const double ratio = row_scale == 0.0f ? 0.0 : static_cast<double>(row[c]) / row_scale;
        out[c] = f32_to_f8e4m3(static_cast<float>(std::clamp(ratio, -448.0, 448.0)));
      }
    }
  }
  WANRT_CHECK(bad_row < 0, "quantize ", what, " ", weight.describe(), ": row ", bad_row,
              " holds a non-finite value (NaN or infinity); the checkpoint is damaged");
  return Tensor::with_row_scale(std::move(q), std::move(scale));
}

}  // namespace wanrt
