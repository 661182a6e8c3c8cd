// Element types and exact conversions between them.
//
// Narrowing conversions (float32 -> bf16/f16/fp8) round to nearest, ties to even, as PyTorch's
// .to() does; NaN stays NaN. float8 e4m3 is the "fn" variant (no infinities, max 448): values
// that round past 448 become NaN, as torch.float8_e4m3fn does; callers that want saturation
// (quantization) clamp first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace wanrt {

enum class DType : uint8_t { F32, F16, BF16, F8_E4M3, F8_E5M2, F64, I8, U8, I16, I32, I64, BOOL };

size_t dtype_size(DType dtype);
// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType dtype);
std::optional<DType> dtype_from_name(std::string_view name);
bool dtype_is_float(DType dtype);

// Scalar conversions. Bit patterns travel as uint16_t / uint8_t.
uint16_t f32_to_bf16(float value);
float bf16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);
float f16_to_f32(uint16_t bits);
uint8_t f32_to_f8e4m3(float value);
float f8e4m3_to_f32(uint8_t bits);
uint8_t f32_to_f8e5m2(float value);
float f8e5m2_to_f32(uint8_t bits);

// Converts `count` elements from `src` (of type `from`) to `dst` (of type `to`), through
// float32 for float types (float64 goes directly). Integer <-> integer and integer <-> float
// conversions are exact where the value fits; throws for BOOL and other unsupported pairs.
void convert_elements(const void* src, DType from, void* dst, DType to, size_t count);

}  // namespace wanrt
