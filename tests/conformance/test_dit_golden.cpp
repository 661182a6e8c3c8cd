// The DiT on the float32 CPU backend against the official implementation's outputs
// (shared/golden/dit): every case file that carries inputs is run through the tiny checkpoint's
// expert named by the file (high_* / low_*), and every output and intermediate it holds must
// match within 1e-5 relative error. Nothing here depends on the particular values in the files.
#include <nlohmann/json.hpp>

#include <filesystem>

#include "backends/ops.h"
#include "io/safetensors.h"
#include "model/dit.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;
constexpr double kTolerance = 1e-5;  // golden/README.md: float32 CPU path

struct DitCase {
  std::string name;
  std::string path;
};

std::vector<DitCase> input_cases(const std::string& golden) {
  std::vector<DitCase> cases;
  for (const auto& entry : fs::directory_iterator(fs::path(golden) / "dit")) {
    if (entry.path().extension() != ".safetensors") continue;
    const auto contents = read_safetensors(entry.path().string());
    if (contents.tensors.contains("x")) cases.push_back({entry.path().stem().string(), entry.path().string()});
  }
  std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return cases;
}

class DitGolden : public ::testing::Test {};

TEST_F(DitGolden, EveryCaseAndIntermediateMatches) {
  WANRT_REQUIRE_GOLDEN(golden);
  const auto cases = input_cases(golden);
  ASSERT_FALSE(cases.empty()) << "no DiT cases with inputs under " << golden << "/dit";
  auto ops = make_cpu_ops();
  for (const DitCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string expert = c.name.rfind("high", 0) == 0 ? "high_noise_model" : "low_noise_model";
    const std::string expert_dir = golden + "/Wan2.2-I2V-tiny/" + expert;
    const DitConfig config = DitConfig::from_json_file(expert_dir + "/config.json");
    const auto weights = read_safetensors(expert_dir + "/diffusion_pytorch_model.safetensors");
    const WanModel model = WanModel::load(config, weights.tensors, *ops);

    const auto golden_case = read_safetensors(c.path);
    const TensorStore& data = golden_case.tensors;
    const auto meta = nlohmann::json::parse(golden_case.metadata.at("meta"));
    const Tensor x = data.get("x").to(DType::F32), y = data.get("y").to(DType::F32);
    const Tensor context = data.get("context").to(DType::F32);
    const double t = data.get("t").to(DType::F32).data<float>()[0];

    std::map<std::string, Tensor> traced;
    const DitTrace trace = [&](const std::string& name, const Tensor& value) { traced[name] = value.clone(); };
    const DitInputs inputs{.x = &x, .y = &y, .timestep = t, .context = &context,
                           .seq_len = meta.at("seq_len").get<int64_t>()};
    traced["out"] = model.forward(*ops, inputs, &trace);

    int compared = 0;
    for (const std::string& name : data.names()) {
      if (name == "x" || name == "y" || name == "t" || name == "context") continue;
      ASSERT_TRUE(traced.count(name)) << "the engine produced no tensor named " << name;
      const Tensor expected = data.get(name).to(DType::F32);
      const Tensor actual = traced.at(name).reshape(expected.shape());
      const double err = testing::relative_error(actual, expected);
      EXPECT_LE(err, kTolerance) << name;
      std::printf("  %-24s %-22s rel err %.2e\n", c.name.c_str(), name.c_str(), err);
      ++compared;
    }
    EXPECT_GE(compared, 1);
  }
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
