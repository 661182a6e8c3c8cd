// The whole image-to-video pipeline on the float32 CPU backend against the official
// WanI2V.generate() run end to end on the tiny checkpoint (shared/golden/e2e): same image,
// token ids and injected noise; settings from each case's meta. final_latent within 1e-4 and
// the (clamped) video within 1e-3 relative (golden/README.md).
#include <nlohmann/json.hpp>

#include <filesystem>

#include "io/safetensors.h"
#include "pipeline/i2v_pipeline.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;

TEST(E2EGolden, EveryCaseMatchesTheReference) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const auto pipeline = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", *ops);
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(golden) / "e2e")) {
    if (entry.path().extension() != ".safetensors") continue;
    const std::string name = entry.path().stem().string();
    SCOPED_TRACE(name);
    const auto data = read_safetensors(entry.path().string());
    const auto meta = nlohmann::json::parse(data.metadata.at("meta"));
    const Tensor noise = data.tensors.get("noise").to(DType::F32);

    I2VRequest request;
    request.image_path = (entry.path().parent_path() / (name + "_input.png")).string();
    request.prompt_ids = meta.at("prompt_ids").get<std::vector<int64_t>>();
    request.negative_prompt_ids = meta.at("n_prompt_ids").get<std::vector<int64_t>>();
    request.max_area = meta.at("max_area").get<int64_t>();
    request.frame_num = meta.at("frames").get<int64_t>();
    request.solver = meta.at("solver").get<std::string>();
    request.steps = meta.at("steps").get<int>();
    request.shift = meta.at("shift").get<double>();
    request.guide_low = meta.at("guide").at(0).get<double>();
    request.guide_high = meta.at("guide").at(1).get<double>();
    request.noise = &noise;

    const I2VResult result = pipeline->generate(request);
    const double latent_err = testing::relative_error(result.latent, data.tensors.get("final_latent"));
    const double video_err = testing::relative_error(result.video, data.tensors.get("video"));
    std::printf("  %-24s final_latent rel err %.2e, video rel err %.2e\n", name.c_str(), latent_err, video_err);
    EXPECT_LE(latent_err, 1e-4);
    EXPECT_LE(video_err, 1e-3);
    ++cases;
  }
  EXPECT_GE(cases, 1) << "no end-to-end cases under " << golden << "/e2e";
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
