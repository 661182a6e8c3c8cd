// The bicubic resize against torch's interpolate (bicubic, align_corners=False, A=-0.75),
// from golden/resize/bicubic.safetensors: `image` [3,37,53] and one `bicubic_{h}x{w}` per
// target size. Target sizes come from the file, so new cases need no code change.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

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

}  // namespace
}  // namespace wanrt
