// Weight-only quantization: symmetric, one scale per output channel (row), computed from the
// float weight itself (no calibration data).
//
//   int8       s_r = max_k |w_rk| / 127,   q_rk = clamp(round_half_even(w_rk / s_r), ±127)
//   fp8 e4m3   s_r = max_k |w_rk| / 448,   q_rk = e4m3fn(clamp(w_rk / s_r, ±448))  (nearest even)
//   meaning    w_rk ≈ s_r · q_rk, so linear computes y = x · (s ⊙ W_q)ᵀ + b
//
// The scale is the float32 quotient (IEEE division, so a GPU kernel computing fl(max / 127)
// gets the same bits); w / s is evaluated in double, where the product and quotient of two
// floats cannot land on the wrong side of a rounding boundary, so every code is the correctly
// rounded one and |w − s·q| <= s/2 holds exactly for int8. A zero row gets s = 0 and zero codes
// (exact). Non-finite weights are an error: a NaN would poison its whole row's scale.
//
// Per-row (per-token) quantization of an activation matrix is the same function, which is how a
// test reproduces on the CPU what an FP8 GEMM with per-token activation scales computes.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/tensor.h"

namespace wanrt {

enum class Quantization : uint8_t {
  None,  // weights stay in the backend's float format
  Int8,  // I8 codes
  Fp8,   // F8_E4M3 ("fn": finite, max 448) codes
};

// "none", "int8", "fp8": the spelling in checkpoint metadata and messages.
std::string_view quantization_name(Quantization quantization);
std::optional<Quantization> quantization_from_name(std::string_view name);
// The codes' dtype (I8 or F8_E4M3); None has none and is an error.
DType quantization_dtype(Quantization quantization);
// The inverse: Int8 for I8, Fp8 for F8_E4M3, nullopt otherwise.
std::optional<Quantization> quantization_of(DType codes);
// The largest code magnitude: 127 (I8) or 448 (F8_E4M3).
float quantization_code_max(DType codes);

// `weight` (host, any float dtype, contiguous, >= 1-D; rows = size(0)) as a row-scaled host
// tensor of `codes` (I8 or F8_E4M3) with its F32 [rows] scale attached (Tensor::with_row_scale).
// `what` names the tensor in errors.
Tensor quantize_rows(const Tensor& weight, DType codes, std::string_view what = "weight");

}  // namespace wanrt
