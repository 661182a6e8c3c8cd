// The I2V size rule on the spec's worked examples and random sizes, and the bicubic resize
// against an independent double-precision evaluation of the cubic-convolution kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pipeline/i2v_image.h"
#include "test_support.h"

namespace wanrt {
namespace {

TEST(I2vSizeRule, SpecExamples) {
  // 16:9 landscape at the default 1280*720 → lat 90×160, 720×1280.
  for (const auto& [w, h] : {std::pair<int64_t, int64_t>{1920, 1080}, {1280, 720}, {3840, 2160}}) {
    const I2vSize size = i2v_output_size(h, w, kDefaultMaxArea);
    EXPECT_EQ(size.lat_h, 90) << w << "x" << h;
    EXPECT_EQ(size.lat_w, 160) << w << "x" << h;
    EXPECT_EQ(size.height(), 720);
    EXPECT_EQ(size.width(), 1280);
  }
  // examples/i2v_input.JPG is 832×1104 (W×H): lat 138×104, 1104×832.
  const I2vSize portrait = i2v_output_size(1104, 832, kDefaultMaxArea);
  EXPECT_EQ(portrait.lat_h, 138);
  EXPECT_EQ(portrait.lat_w, 104);
  EXPECT_EQ(portrait.height(), 1104);
  EXPECT_EQ(portrait.width(), 832);
  // The same image at 832*480: lat 90×68, 720×544.
  const I2vSize small = i2v_output_size(1104, 832, 832 * 480);
  EXPECT_EQ(small.lat_h, 90);
  EXPECT_EQ(small.lat_w, 68);
  EXPECT_EQ(small.height(), 720);
  EXPECT_EQ(small.width(), 544);
}

TEST(I2vSizeRule, RandomSizesFollowTheFloorRule) {
  const auto seed = testing::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> side(64, 4096);
  std::uniform_int_distribution<int64_t> area(256 * 256, 1920 * 1080);
  for (int trial = 0; trial < 2000; ++trial) {
    const int64_t h = side(rng), w = side(rng), max_area = area(rng);
    const I2vSize size = i2v_output_size(h, w, max_area);
    const double ratio = static_cast<double>(h) / static_cast<double>(w);
    const double ideal_h = std::sqrt(static_cast<double>(max_area) * ratio);
    const double ideal_w = std::sqrt(static_cast<double>(max_area) / ratio);
    ASSERT_EQ(size.lat_h % 2, 0);
    ASSERT_EQ(size.lat_w % 2, 0);
    // 16·(lat/2) is the largest multiple of 16 not above the ideal side (1e-9: rounding slack).
    ASSERT_LE(static_cast<double>(size.height()), ideal_h + 1e-9) << h << "x" << w << " @" << max_area;
    ASSERT_GT(static_cast<double>(size.height()) + 16, ideal_h - 1e-9);
    ASSERT_LE(static_cast<double>(size.width()), ideal_w + 1e-9);
    ASSERT_GT(static_cast<double>(size.width()) + 16, ideal_w - 1e-9);
    ASSERT_LE(size.height() * size.width(), max_area);
  }
}

TEST(I2vSizeRule, TooExtremeOrEmptyIsAnError) {
  EXPECT_THROW(i2v_output_size(1, 4000, kDefaultMaxArea), Error);   // lat_h would be 0
  EXPECT_THROW(i2v_output_size(4000, 1, kDefaultMaxArea), Error);
  EXPECT_THROW(i2v_output_size(100, 100, 200), Error);              // area too small for 16×16
  EXPECT_THROW(i2v_output_size(0, 100, kDefaultMaxArea), Error);
  EXPECT_THROW(i2v_output_size(100, 100, 0), Error);
  EXPECT_NO_THROW(i2v_output_size(100, 100, 256));                  // exactly one 2×2 patch
  EXPECT_EQ(i2v_output_size(100, 100, 256).lat_h, 2);
}

// Keys' cubic-convolution kernel with A = -0.75, as a function of distance.
double keys_kernel(double x) {
  constexpr double a = -0.75;
  x = std::abs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// Direct evaluation from the spec's description: source coordinate (d + 0.5)·in/out − 0.5,
// taps ⌊s⌋−1 … ⌊s⌋+2 clamped to the border, weights W(s − tap).
Tensor reference_resize(const Tensor& image, int64_t out_h, int64_t out_w) {
  const int64_t channels = image.size(0), in_h = image.size(1), in_w = image.size(2);
  Tensor out = Tensor::empty(DType::F32, {channels, out_h, out_w});
  const float* in = image.data<float>();
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t y = 0; y < out_h; ++y)
      for (int64_t x = 0; x < out_w; ++x) {
        const double sy = (static_cast<double>(y) + 0.5) * static_cast<double>(in_h) / static_cast<double>(out_h) - 0.5;
        const double sx = (static_cast<double>(x) + 0.5) * static_cast<double>(in_w) / static_cast<double>(out_w) - 0.5;
        const auto fy = static_cast<int64_t>(std::floor(sy)), fx = static_cast<int64_t>(std::floor(sx));
        double sum = 0;
        for (int64_t ty = fy - 1; ty <= fy + 2; ++ty)
          for (int64_t tx = fx - 1; tx <= fx + 2; ++tx) {
            const int64_t cy = std::clamp<int64_t>(ty, 0, in_h - 1), cx = std::clamp<int64_t>(tx, 0, in_w - 1);
            sum += keys_kernel(sy - static_cast<double>(ty)) * keys_kernel(sx - static_cast<double>(tx)) *
                   in[(c * in_h + cy) * in_w + cx];
          }
        out.data<float>()[(c * out_h + y) * out_w + x] = static_cast<float>(sum);
      }
  return out;
}

TEST(BicubicResize, MatchesDirectKernelEvaluationUpAndDown) {
  const auto seed = testing::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> side(1, 40);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t in_h = side(rng), in_w = side(rng), out_h = side(rng), out_w = side(rng);
    const Tensor image = testing::random_uniform({2, in_h, in_w}, rng, -1.0f, 1.0f);
    const Tensor actual = resize_bicubic(image, out_h, out_w);
    ASSERT_EQ(shape_str(actual.shape()), shape_str({2, out_h, out_w}));
    EXPECT_LE(testing::relative_error(actual, reference_resize(image, out_h, out_w)), 1e-5)
        << in_h << "x" << in_w << " -> " << out_h << "x" << out_w;
  }
}

TEST(BicubicResize, SameSizeIsExactIdentity) {
  const auto seed = testing::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const Tensor image = testing::random_normal({3, 17, 29}, rng);
  const Tensor same = resize_bicubic(image, 17, 29);
  for (int64_t i = 0; i < image.numel(); ++i)
    ASSERT_EQ(same.floats()[static_cast<size_t>(i)], image.floats()[static_cast<size_t>(i)]) << i;
}

TEST(BicubicResize, ConstantStaysConstantAndEdgesOvershoot) {
  const auto seed = testing::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  const float level = value(rng);
  Tensor flat = Tensor::empty(DType::F32, {1, 9, 14});
  flat.fill(level);
  const Tensor stretched = resize_bicubic(flat, 31, 5);  // named: a span must not outlive it
  for (float v : stretched.floats()) ASSERT_NEAR(v, level, 1e-6f);
  // A hard edge from -1 to 1: A = -0.75 rings, and the output is not clamped.
  Tensor edge = Tensor::empty(DType::F32, {1, 4, 8});
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 8; ++x) edge.data<float>()[y * 8 + x] = x < 4 ? -1.0f : 1.0f;
  const Tensor up = resize_bicubic(edge, 4, 32);
  float highest = -10, lowest = 10;
  for (float v : up.floats()) highest = std::max(highest, v), lowest = std::min(lowest, v);
  EXPECT_GT(highest, 1.01f);
  EXPECT_LT(lowest, -1.01f);
}

TEST(BicubicResize, RejectsBadInput) {
  EXPECT_THROW(resize_bicubic(Tensor::zeros(DType::BF16, {3, 4, 4}), 8, 8), Error);
  EXPECT_THROW(resize_bicubic(Tensor::zeros(DType::F32, {4, 4}), 8, 8), Error);
  EXPECT_THROW(resize_bicubic(Tensor::zeros(DType::F32, {3, 4, 4}), 0, 8), Error);
}

}  // namespace
}  // namespace wanrt
