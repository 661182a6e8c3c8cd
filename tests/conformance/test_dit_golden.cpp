// The DiT on the float32 CPU backend against the official implementation's outputs
// (shared/golden/dit): every case file that carries inputs is run through the tiny checkpoint's
// expert named by the file (high_* / low_*), and every output and intermediate it holds must
// match within 1e-5 relative error. Nothing here depends on the particular values in the files.
// The case runner (tests/golden_cases.cpp) is shared with the GPU test (tests/gpu).
#include "backends/ops.h"
#include "golden_cases.h"
#include "io/safetensors.h"
#include "model/dit.h"
#include "test_support.h"

namespace wanrt {
namespace {

constexpr double kTolerance = 1e-5;  // golden/README.md: float32 CPU path

class DitGolden : public ::testing::Test {};

TEST_F(DitGolden, EveryCaseAndIntermediateMatches) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  for (const testing::GoldenCase& result : testing::run_dit_golden(*ops, golden))
    testing::expect_within(result, kTolerance);
}

// The padded case must be insensitive to what sits in the padded rows of x0: keys past L are
// masked, so changing seq_len (more padding) leaves the real tokens' output unchanged.
TEST_F(DitGolden, PaddingTokensAreMaskedAsKeys) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const std::string expert_dir = golden + "/Wan2.2-I2V-tiny/low_noise_model";
  const DitConfig config = DitConfig::from_json_file(expert_dir + "/config.json");
  const auto weights = read_safetensors(expert_dir + "/diffusion_pytorch_model.safetensors");
  const WanModel model = WanModel::load(config, weights.tensors, *ops);
  std::mt19937_64 rng(testing::test_seed());
  const Tensor x = testing::random_normal({config.out_dim, 2, 4, 6}, rng);
  const Tensor y = testing::random_normal({config.in_dim - config.out_dim, 2, 4, 6}, rng);
  const Tensor context = testing::random_normal({9, config.text_dim}, rng);
  DitInputs inputs{.x = &x, .y = &y, .timestep = 500, .context = &context, .seq_len = 12};
  const Tensor unpadded = model.forward(*ops, inputs);
  inputs.seq_len = 21;
  EXPECT_LT(testing::relative_error(model.forward(*ops, inputs), unpadded), 1e-6);
}

}  // namespace
}  // namespace wanrt
