// The whole image-to-video pipeline on the float32 CPU backend against the official
// WanI2V.generate() run end to end on the tiny checkpoint (shared/golden/e2e): same image,
// token ids and injected noise; settings from each case's meta. final_latent within 1e-4 and
// the (clamped) video within 1e-3 relative (golden/README.md).
// The case runner (tests/golden_cases.cpp) is shared with the GPU test (tests/gpu).
#include "backends/ops.h"
#include "golden_cases.h"
#include "pipeline/i2v_pipeline.h"
#include "test_support.h"

namespace wanrt {
namespace {

constexpr double kLatentTolerance = 1e-4;  // golden/README.md: end to end, float32 CPU path
constexpr double kVideoTolerance = 1e-3;

TEST(E2EGolden, EveryCaseMatchesTheReference) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  for (const testing::GoldenCase& result : testing::run_e2e_golden(*ops, golden)) {
    testing::expect_within(result, "final_latent", kLatentTolerance);
    testing::expect_within(result, "video", kVideoTolerance);
  }
}

TEST(SeededNoise, IsStandardNormalAndReproducible) {
  const Tensor a = seeded_noise({16, 3, 20, 30}, 42), b = seeded_noise({16, 3, 20, 30}, 42);
  const Tensor c = seeded_noise({16, 3, 20, 30}, 43);
  EXPECT_EQ(testing::relative_error(a, b), 0.0);
  EXPECT_GT(testing::relative_error(c, a), 1.0);
  double mean = 0, square = 0;
  for (float v : a.floats()) {
    mean += v;
    square += static_cast<double>(v) * v;
  }
  const auto n = static_cast<double>(a.numel());
  EXPECT_NEAR(mean / n, 0.0, 0.03);
  EXPECT_NEAR(square / n, 1.0, 0.03);
}

}  // namespace
}  // namespace wanrt
