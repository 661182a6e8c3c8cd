// The Wan2.1 VAE against the official implementation (golden/vae/*, tiny random checkpoint):
// the normalised latent mean of encode(video) and the unclamped decode(decode_in), float32 CPU,
// each within 1e-5 relative.
// The case runner (tests/golden_cases.cpp) is shared with the GPU test (tests/gpu).
#include "backends/ops.h"
#include "golden_cases.h"
#include "test_support.h"

namespace wanrt {
namespace {

constexpr double kTolerance = 1e-5;  // golden/README.md: float32 CPU path

class VaeGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(VaeGolden, EncodeAndDecodeMatchTheReference) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  testing::expect_within(testing::run_vae_golden(*ops, golden, GetParam()), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Cases, VaeGolden, ::testing::ValuesIn(testing::kVaeGoldenCases));

}  // namespace
}  // namespace wanrt
