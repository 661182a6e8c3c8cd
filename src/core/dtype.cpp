#include "core/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace wanrt {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
  bool is_float;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4, true},        {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true},      {DType::F8_E4M3, "F8_E4M3", 1, true},
    {DType::F8_E5M2, "F8_E5M2", 1, true}, {DType::F64, "F64", 8, true},
    {DType::I8, "I8", 1, false},         {DType::U8, "U8", 1, false},
    {DType::I16, "I16", 2, false},       {DType::I32, "I32", 4, false},
    {DType::I64, "I64", 8, false},       {DType::BOOL, "BOOL", 1, false},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes)
    if (entry.dtype == dtype) return entry;
  WANRT_ASSERT(false);
}

// A small IEEE-like binary float: `exp_bits` exponent bits, `man_bits` stored mantissa bits.
// `finite_only` is the "fn" flavour (float8 e4m3fn): no infinities, and only the all-ones
// pattern is NaN, which moves the largest finite value up by one binade.
struct MiniFloat {
  int exp_bits;
  int man_bits;
  bool finite_only;

  int bias() const { return (1 << (exp_bits - 1)) - 1; }
  int min_normal_exp() const { return 1 - bias(); }
  uint32_t nan_bits() const { return finite_only ? (1u << (exp_bits + man_bits)) - 1 : ((((1u << exp_bits) - 1) << man_bits) | (1u << (man_bits - 1))); }
  uint32_t inf_bits() const { return ((1u << exp_bits) - 1) << man_bits; }
  double max_finite() const {
    if (finite_only)  // all-ones exponent is usable, except mantissa all ones (NaN)
      return std::ldexp(2.0 - std::ldexp(2.0, -man_bits), (1 << exp_bits) - 1 - bias());
    return std::ldexp(2.0 - std::ldexp(1.0, -man_bits), (1 << exp_bits) - 2 - bias());
  }

  // Round to nearest even, in double (exact: every float32 and every quantum is a double).
  uint32_t encode(float value) const {
    const uint32_t sign = std::signbit(value) ? 1u << (exp_bits + man_bits) : 0u;
    if (std::isnan(value)) return sign | nan_bits();
    double a = std::fabs(static_cast<double>(value));
    if (std::isinf(a)) return sign | (finite_only ? nan_bits() : inf_bits());
    if (a == 0.0) return sign;
    int e = std::ilogb(a);
    if (e < min_normal_exp()) e = min_normal_exp();
    const double quantum = std::ldexp(1.0, e - man_bits);
    const double rounded = std::nearbyint(a / quantum) * quantum;  // FE_TONEAREST: ties to even
    if (rounded > max_finite()) return sign | (finite_only ? nan_bits() : inf_bits());
    if (rounded < std::ldexp(1.0, min_normal_exp())) {  // subnormal (or rounded to zero)
      return sign | static_cast<uint32_t>(rounded / std::ldexp(1.0, min_normal_exp() - man_bits));
    }
    const int re = std::ilogb(rounded);
    const auto mantissa = static_cast<uint32_t>(rounded / std::ldexp(1.0, re - man_bits)) - (1u << man_bits);
    return sign | (static_cast<uint32_t>(re + bias()) << man_bits) | mantissa;
  }

  float decode(uint32_t bits) const {
    const bool negative = (bits >> (exp_bits + man_bits)) & 1u;
    const uint32_t exp_field = (bits >> man_bits) & ((1u << exp_bits) - 1);
    const uint32_t mantissa = bits & ((1u << man_bits) - 1);
    double magnitude;
    if (finite_only && exp_field == (1u << exp_bits) - 1 && mantissa == (1u << man_bits) - 1) {
      magnitude = std::numeric_limits<double>::quiet_NaN();
    } else if (!finite_only && exp_field == (1u << exp_bits) - 1) {
      magnitude = mantissa ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    } else if (exp_field == 0) {
      magnitude = std::ldexp(static_cast<double>(mantissa), min_normal_exp() - man_bits);
    } else {
      magnitude = std::ldexp(static_cast<double>(mantissa + (1u << man_bits)),
                             static_cast<int>(exp_field) - bias() - man_bits);
    }
    return static_cast<float>(negative ? -magnitude : magnitude);
  }
};

constexpr MiniFloat kF16{5, 10, false};
constexpr MiniFloat kF8E4M3{4, 3, true};
constexpr MiniFloat kF8E5M2{5, 2, false};

template <typename T>
T load(const void* base, size_t i) {
  T value;
  std::memcpy(&value, static_cast<const char*>(base) + i * sizeof(T), sizeof(T));
  return value;
}
template <typename T>
void store(void* base, size_t i, T value) {
  std::memcpy(static_cast<char*>(base) + i * sizeof(T), &value, sizeof(T));
}

double load_as_double(const void* src, DType from, size_t i) {
  switch (from) {
    case DType::F32: return load<float>(src, i);
    case DType::F64: return load<double>(src, i);
    case DType::F16: return f16_to_f32(load<uint16_t>(src, i));
    case DType::BF16: return bf16_to_f32(load<uint16_t>(src, i));
    case DType::F8_E4M3: return f8e4m3_to_f32(load<uint8_t>(src, i));
    case DType::F8_E5M2: return f8e5m2_to_f32(load<uint8_t>(src, i));
    case DType::I8: return load<int8_t>(src, i);
    case DType::U8: return load<uint8_t>(src, i);
    case DType::I16: return load<int16_t>(src, i);
    case DType::I32: return load<int32_t>(src, i);
    case DType::I64: return static_cast<double>(load<int64_t>(src, i));
    case DType::BOOL: return load<uint8_t>(src, i) ? 1.0 : 0.0;
  }
  WANRT_ASSERT(false);
}

void store_from_double(void* dst, DType to, size_t i, double value) {
  switch (to) {
    case DType::F32: store<float>(dst, i, static_cast<float>(value)); return;
    case DType::F64: store<double>(dst, i, value); return;
    case DType::F16: store<uint16_t>(dst, i, f32_to_f16(static_cast<float>(value))); return;
    case DType::BF16: store<uint16_t>(dst, i, f32_to_bf16(static_cast<float>(value))); return;
    case DType::F8_E4M3: store<uint8_t>(dst, i, f32_to_f8e4m3(static_cast<float>(value))); return;
    case DType::F8_E5M2: store<uint8_t>(dst, i, f32_to_f8e5m2(static_cast<float>(value))); return;
    case DType::I8: store<int8_t>(dst, i, static_cast<int8_t>(value)); return;
    case DType::U8: store<uint8_t>(dst, i, static_cast<uint8_t>(value)); return;
    case DType::I16: store<int16_t>(dst, i, static_cast<int16_t>(value)); return;
    case DType::I32: store<int32_t>(dst, i, static_cast<int32_t>(value)); return;
    case DType::I64: store<int64_t>(dst, i, static_cast<int64_t>(value)); return;
    case DType::BOOL: store<uint8_t>(dst, i, value != 0.0 ? 1 : 0); return;
  }
  WANRT_ASSERT(false);
}

}  // namespace

size_t dtype_size(DType dtype) { return info(dtype).size; }
std::string_view dtype_name(DType dtype) { return info(dtype).name; }
bool dtype_is_float(DType dtype) { return info(dtype).is_float; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& entry : kDTypes)
    if (entry.name == name) return entry.dtype;
  return std::nullopt;
}

uint16_t f32_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // keep sign, quiet
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float bf16_to_f32(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}

uint16_t f32_to_f16(float value) { return static_cast<uint16_t>(kF16.encode(value)); }
float f16_to_f32(uint16_t bits) { return kF16.decode(bits); }
uint8_t f32_to_f8e4m3(float value) { return static_cast<uint8_t>(kF8E4M3.encode(value)); }
float f8e4m3_to_f32(uint8_t bits) { return kF8E4M3.decode(bits); }
uint8_t f32_to_f8e5m2(float value) { return static_cast<uint8_t>(kF8E5M2.encode(value)); }
float f8e5m2_to_f32(uint8_t bits) { return kF8E5M2.decode(bits); }

void convert_elements(const void* src, DType from, void* dst, DType to, size_t count) {
  if (from == to) {
    std::memcpy(dst, src, count * dtype_size(from));
    return;
  }
  // Fast paths for the conversions that move checkpoint weights.
  if (from == DType::BF16 && to == DType::F32) {
    for (size_t i = 0; i < count; ++i) store<float>(dst, i, bf16_to_f32(load<uint16_t>(src, i)));
    return;
  }
  if (from == DType::F32 && to == DType::BF16) {
    for (size_t i = 0; i < count; ++i) store<uint16_t>(dst, i, f32_to_bf16(load<float>(src, i)));
    return;
  }
  // Going through double is exact for every float source type and for integers up to 2^53;
  // narrowing float targets round once (double -> float is exact for values that came from
  // float32 or narrower types).
  for (size_t i = 0; i < count; ++i) store_from_double(dst, to, i, load_as_double(src, from, i));
}

}  // namespace wanrt
