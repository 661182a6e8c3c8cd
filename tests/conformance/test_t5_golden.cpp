// The umT5 encoder on the tiny checkpoint against the official T5Encoder's float32 outputs
// (golden/t5/*.safetensors): ids [1, L], mask [1, L] in; `out` [L, dim] for every position.
// The config in the case's meta JSON is only used to cross-check the inferred configuration.
// The case runner (tests/golden_cases.cpp) is shared with the GPU test (tests/gpu).
#include "backends/ops.h"
#include "golden_cases.h"
#include "test_support.h"

namespace wanrt {
namespace {

constexpr double kTolerance = 1e-5;  // golden/README.md: float32 CPU path

class T5Golden : public ::testing::TestWithParam<const char*> {};

TEST_P(T5Golden, MatchesReference) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  testing::expect_within(testing::run_t5_golden(*ops, golden, GetParam()), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Cases, T5Golden, ::testing::ValuesIn(testing::kT5GoldenCases));

}  // namespace
}  // namespace wanrt
