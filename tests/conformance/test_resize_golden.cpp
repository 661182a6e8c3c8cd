// The bicubic resize against torch's interpolate (bicubic, align_corners=False, A=-0.75),
// from golden/resize/bicubic.safetensors: `image` [3,37,53] and one `bicubic_{h}x{w}` per
// target size. Target sizes come from the file, so new cases need no code change.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "io/image.h"
#include "io/safetensors.h"
#include "pipeline/i2v_image.h"
#include "test_support.h"

namespace wanrt {
namespace {

TEST(ResizeGolden, EveryBicubicCaseMatchesTorch) {
  WANRT_REQUIRE_GOLDEN(golden);
  const std::string path = (std::filesystem::path(golden) / "resize" / "bicubic.safetensors").string();
  const SafetensorsContents contents = read_safetensors(path);
  const Tensor image = contents.tensors.get("image").to(DType::F32);
  ASSERT_EQ(image.dim(), 3);

  int cases = 0;
  for (const std::string& name : contents.tensors.names()) {
    if (name.rfind("bicubic_", 0) != 0) continue;
    SCOPED_TRACE(name);
    const Tensor expected = contents.tensors.get(name).to(DType::F32);
    ASSERT_EQ(expected.dim(), 3);
    ASSERT_EQ(expected.size(0), image.size(0));
    // The name spells the size too; both must agree so a mislabelled case is caught.
    EXPECT_EQ(name, "bicubic_" + std::to_string(expected.size(1)) + "x" +
                        std::to_string(expected.size(2)));
    const Tensor actual = resize_bicubic(image, expected.size(1), expected.size(2));
    const double error = testing::relative_error(actual, expected);
    std::printf("%s: relative error %.3g\n", name.c_str(), error);
    EXPECT_LE(error, 1e-5) << image.describe() << " -> " << expected.describe();
    ++cases;
  }
  EXPECT_GE(cases, 1) << "no bicubic_* tensors in " << path;
}

// The end-to-end cases' input images: decoded at the size their meta records, and the size
// rule at their max_area gives the size of the golden video.
TEST(ResizeGolden, EndToEndInputsGiveTheGoldenVideoSize) {
  WANRT_REQUIRE_GOLDEN(golden);
  int cases = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(golden) / "e2e")) {
    if (entry.path().extension() != ".safetensors") continue;
    const std::string case_path = entry.path().string();
    SCOPED_TRACE(case_path);
    const std::string image_path =
        (entry.path().parent_path() / (entry.path().stem().string() + "_input.png")).string();
    ASSERT_TRUE(std::filesystem::exists(image_path)) << image_path;
    const SafetensorsContents contents = read_safetensors(case_path);
    const auto meta = nlohmann::json::parse(contents.metadata.at("meta"));
    const RgbImage image = decode_image_file(image_path);
    EXPECT_EQ(image.height, meta.at("img_hw").at(0).get<int64_t>());
    EXPECT_EQ(image.width, meta.at("img_hw").at(1).get<int64_t>());
    const I2vSize size = i2v_output_size(image.height, image.width, meta.at("max_area").get<int64_t>());
    const Tensor& video = contents.tensors.get("video");
    EXPECT_EQ(size.height(), video.size(2));
    EXPECT_EQ(size.width(), video.size(3));
    const Tensor resized = load_i2v_image(image_path, meta.at("max_area").get<int64_t>());
    EXPECT_EQ(shape_str(resized.shape()), shape_str({3, video.size(2), video.size(3)}));
    ++cases;
  }
  EXPECT_GE(cases, 1);
}

}  // namespace
}  // namespace wanrt
