// The safetensors reader on the golden files written by the Python safetensors library: every
// file opens, every tensor matches an independent reading of the raw header and bytes, and
// the tiny checkpoint's experts have the structure of a Wan2.2 DiT (checked against their own
// config.json, so any golden folder of this layout passes).
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "io/safetensors.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Reads the header with plain JSON code (not the reader under test) and checks each tensor
// the reader produced against it: dtype, shape, and the bytes at its offsets.
void expect_matches_raw_file(const fs::path& path, const TensorStore& tensors) {
  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t header_bytes = 0;
  for (size_t i = 8; i-- > 0;) header_bytes = (header_bytes << 8) | static_cast<unsigned char>(bytes[i]);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, header_bytes));
  size_t entries = 0;
  uint64_t data_bytes = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    ++entries;
    SCOPED_TRACE(name);
    ASSERT_TRUE(tensors.contains(name));
    const Tensor& tensor = tensors.get(name);
    EXPECT_EQ(dtype_name(tensor.dtype()), entry["dtype"].get<std::string>());
    EXPECT_EQ(tensor.shape(), entry["shape"].get<Shape>());
    const auto begin = entry["data_offsets"][0].get<uint64_t>();
    const auto end = entry["data_offsets"][1].get<uint64_t>();
    EXPECT_EQ(end - begin, tensor.nbytes());
    EXPECT_EQ(static_cast<size_t>(tensor.numel()) * dtype_size(tensor.dtype()), tensor.nbytes());
    data_bytes += tensor.nbytes();
    if (tensor.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(tensor.raw(), bytes.data() + 8 + header_bytes + begin, tensor.nbytes()), 0);
    }
  }
  EXPECT_EQ(entries, tensors.size()) << "names must be unique";
  EXPECT_EQ(bytes.size(), 8 + header_bytes + data_bytes) << "tensors must tile the data section";
}

// Non-finite values in a reference output or a random weight mean a broken file.
void expect_finite(const Tensor& tensor, const std::string& name) {
  if (!dtype_is_float(tensor.dtype())) return;
  const Tensor values = tensor.to(DType::F32);
  size_t non_finite = 0;
  for (float value : values.floats()) non_finite += std::isfinite(value) ? 0 : 1;
  EXPECT_EQ(non_finite, 0u) << name << " has non-finite values";
}

TEST(SafetensorsGolden, EveryCaseFileReadsAndMatchesItsRawBytes) {
  WANRT_REQUIRE_GOLDEN(golden);
  size_t files = 0;
  for (const auto& item : fs::recursive_directory_iterator(golden)) {
    if (!item.is_regular_file() || item.path().extension() != ".safetensors") continue;
    SCOPED_TRACE(item.path().string());
    ++files;
    const SafetensorsContents contents = read_safetensors(item.path().string());
    EXPECT_GT(contents.tensors.size(), 0u);
    expect_matches_raw_file(item.path(), contents.tensors);
    for (const auto& [key, value] : contents.metadata) {
      // The golden writer stores each case's settings as a JSON string under "meta".
      if (key == "meta") {
        EXPECT_TRUE(nlohmann::json::accept(value)) << value;
      }
    }
    for (const auto& name : contents.tensors.names()) expect_finite(contents.tensors.get(name), name);
  }
  EXPECT_GT(files, 0u) << "no .safetensors files under " << golden;
}

TEST(SafetensorsGolden, CaseFilesSurviveOurWriter) {
  WANRT_REQUIRE_GOLDEN(golden);
  const std::string out_dir = testing::temp_dir();
  for (const auto& item : fs::recursive_directory_iterator(golden)) {
    if (!item.is_regular_file() || item.path().extension() != ".safetensors") continue;
    SCOPED_TRACE(item.path().string());
    const SafetensorsContents original = read_safetensors(item.path().string());
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& name : original.tensors.names()) tensors.emplace_back(name, original.tensors.get(name));
    const std::string copy = (fs::path(out_dir) / item.path().filename()).string();
    write_safetensors(copy, tensors, original.metadata);
    const SafetensorsContents reread = read_safetensors(copy);
    EXPECT_EQ(reread.metadata, original.metadata);
    ASSERT_EQ(reread.tensors.names(), original.tensors.names());
    for (const auto& [name, tensor] : tensors) {
      const Tensor& again = reread.tensors.get(name);
      ASSERT_EQ(again.describe(), tensor.describe()) << name;
      if (tensor.nbytes() > 0) {
        EXPECT_EQ(std::memcmp(again.raw(), tensor.raw(), tensor.nbytes()), 0) << name;
      }
    }
  }
}

// An expert folder holds either one file or shards with an index; read whichever is there.
TensorStore read_expert(const fs::path& folder) {
  const fs::path index = folder / "diffusion_pytorch_model.safetensors.index.json";
  if (fs::exists(index)) return read_safetensors_index(index.string());
  return std::move(read_safetensors((folder / "diffusion_pytorch_model.safetensors").string()).tensors);
}

TEST(SafetensorsGolden, TinyCheckpointExpertsHaveTheDiTStructure) {
  WANRT_REQUIRE_GOLDEN(golden);
  const fs::path checkpoint = fs::path(golden) / "Wan2.2-I2V-tiny";
  std::vector<std::pair<std::string, Shape>> first_expert;
  for (const char* expert : {"high_noise_model", "low_noise_model"}) {
    SCOPED_TRACE(expert);
    const fs::path folder = checkpoint / expert;
    const nlohmann::json config = nlohmann::json::parse(read_bytes(folder / "config.json"));
    const auto dim = config.at("dim").get<int64_t>();
    const auto layers = config.at("num_layers").get<int64_t>();
    const TensorStore weights = read_expert(folder);
    ASSERT_GT(weights.size(), 0u);

    std::set<int64_t> blocks;
    std::vector<std::pair<std::string, Shape>> layout;
    for (const auto& name : weights.names()) {
      const Tensor& tensor = weights.get(name);
      EXPECT_EQ(tensor.dtype(), DType::BF16) << name;
      EXPECT_EQ(static_cast<size_t>(tensor.numel()) * 2, tensor.nbytes()) << name;
      expect_finite(tensor, name);
      if (name.rfind("blocks.", 0) == 0) blocks.insert(std::stoll(name.substr(7)));
      layout.emplace_back(name, tensor.shape());
    }
    // Shapes follow config.json (spec §4.3): the patch embedding maps in_dim channels of a
    // (1, 2, 2) patch to dim, and every block index below num_layers is present.
    EXPECT_EQ(weights.get("patch_embedding.weight").shape(),
              (Shape{dim, config.at("in_dim").get<int64_t>(), 1, 2, 2}));
    EXPECT_EQ(weights.get("blocks.0.ffn.0.weight").shape(),
              (Shape{config.at("ffn_dim").get<int64_t>(), dim}));
    EXPECT_EQ(static_cast<int64_t>(blocks.size()), layers);
    if (!blocks.empty()) {
      EXPECT_EQ(*blocks.begin(), 0);
      EXPECT_EQ(*blocks.rbegin(), layers - 1);
    }
    // Both experts share one architecture: same names, same shapes.
    if (first_expert.empty()) {
      first_expert = layout;
    } else {
      EXPECT_EQ(layout, first_expert);
    }
  }
}

}  // namespace
}  // namespace wanrt
