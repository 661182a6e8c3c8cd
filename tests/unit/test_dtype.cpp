// Exact dtype conversions: every bit pattern round-trips, and narrowing rounds to the nearest
// representable value with ties to even (checked against the neighbours, not a table).
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/tensor.h"
#include "test_support.h"

namespace wanrt {
namespace {

struct Format {
  const char* name;
  int bits;
  float (*decode)(uint32_t);
  uint32_t (*encode)(float);
};

const Format kFormats[] = {
    {"bf16", 16, [](uint32_t b) { return bf16_to_f32(static_cast<uint16_t>(b)); }, [](float v) -> uint32_t { return f32_to_bf16(v); }},
    {"f16", 16, [](uint32_t b) { return f16_to_f32(static_cast<uint16_t>(b)); }, [](float v) -> uint32_t { return f32_to_f16(v); }},
    {"f8e4m3", 8, [](uint32_t b) { return f8e4m3_to_f32(static_cast<uint8_t>(b)); }, [](float v) -> uint32_t { return f32_to_f8e4m3(v); }},
    {"f8e5m2", 8, [](uint32_t b) { return f8e5m2_to_f32(static_cast<uint8_t>(b)); }, [](float v) -> uint32_t { return f32_to_f8e5m2(v); }},
};

TEST(DType, EveryBitPatternRoundTrips) {
  for (const Format& f : kFormats) {
    for (uint32_t bits = 0; bits < (1u << f.bits); ++bits) {
      const float value = f.decode(bits);
      if (std::isnan(value)) {
        EXPECT_TRUE(std::isnan(f.decode(f.encode(value)))) << f.name << " " << bits;
      } else {
        EXPECT_EQ(f.encode(value), bits) << f.name << " pattern " << bits << " value " << value;
      }
    }
  }
}

// All finite values of a format, sorted, to find the neighbours of any float.
std::vector<double> finite_values(const Format& f) {
  std::vector<double> values;
  for (uint32_t bits = 0; bits < (1u << f.bits); ++bits) {
    const float v = f.decode(bits);
    if (std::isfinite(v)) values.push_back(v);
  }
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

TEST(DType, NarrowingRoundsToNearestEven) {
  std::mt19937_64 rng(testing::test_seed());
  for (const Format& f : kFormats) {
    const std::vector<double> values = finite_values(f);
    const double max_finite = values.back();
    std::uniform_real_distribution<double> log_magnitude(-30, std::log2(max_finite));
    for (int trial = 0; trial < 20000; ++trial) {
      float x = static_cast<float>(std::exp2(log_magnitude(rng)) * (trial % 2 ? -1 : 1));
      if (trial % 7 == 0) {  // an exact midpoint between two neighbours: must go to the even one
        const size_t i = static_cast<size_t>(rng() % (values.size() - 1));
        x = static_cast<float>((values[i] + values[i + 1]) / 2);
      }
      const double result = f.decode(f.encode(x));
      auto above = std::lower_bound(values.begin(), values.end(), static_cast<double>(x));
      if (above == values.end()) continue;  // beyond the largest finite value
      const double hi = *above, lo = above == values.begin() ? hi : *(above - 1);
      const double best = std::fabs(x - lo) < std::fabs(hi - x) ? lo : hi;
      if (std::fabs(x - lo) == std::fabs(hi - x) && lo != hi) {
        // tie: the even mantissa has its lowest bit clear
        EXPECT_EQ(f.encode(static_cast<float>(result)) & 1u, 0u) << f.name << " tie at " << x;
        EXPECT_TRUE(result == lo || result == hi) << f.name << " " << x;
      } else {
        EXPECT_EQ(result, best) << f.name << " x=" << x;
      }
    }
  }
}

TEST(DType, Fp8E4m3OverflowIsNanLikeTorch) {
  EXPECT_EQ(f8e4m3_to_f32(f32_to_f8e4m3(448.0f)), 448.0f);
  EXPECT_EQ(f8e4m3_to_f32(f32_to_f8e4m3(464.0f)), 448.0f);  // tie rounds down to the even 448
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(f32_to_f8e4m3(480.0f))));
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(f32_to_f8e4m3(INFINITY))));
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(65520.0f))));
}

TEST(DType, NamesAndTensorConversion) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::I8, DType::I64}) {
    EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
  }
  EXPECT_FALSE(dtype_from_name("F4").has_value());
  std::mt19937_64 rng(testing::test_seed());
  const Tensor x = testing::random_normal({3, 5}, rng);
  const Tensor bf = x.to(DType::BF16);
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_EQ(bf.data<uint16_t>()[i], f32_to_bf16(x.data<float>()[i]));
  EXPECT_LT(testing::relative_error(bf.to(DType::F32), x), 4e-3);
}

}  // namespace
}  // namespace wanrt
