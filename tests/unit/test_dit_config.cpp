// DiT config.json parsing (defaults, types, validation) and the weight check against it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "io/tensor_store.h"
#include "model/dit_config.h"
#include "test_support.h"

namespace wanrt {
namespace {

using nlohmann::json;
using testing::random_normal;

// The real I2V-A14B config.json: no patch_size, text_dim, window_size, qk_norm, cross_attn_norm.
json real_style_config() {
  return json::parse(R"({"_class_name": "WanModel", "_diffusers_version": "0.33.0", "dim": 5120,
    "eps": 1e-06, "ffn_dim": 13824, "freq_dim": 256, "in_dim": 36, "model_type": "i2v",
    "num_heads": 40, "num_layers": 40, "out_dim": 16, "text_len": 512})");
}

// The error `parse` throws; fails the test if it throws none.
std::string parse_error(const json& config, const std::string& origin = "/ckpt/expert/config.json") {
  try {
    DitConfig::from_json_text(config.dump(), origin);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << config.dump();
  return "";
}

// A small random configuration (head width even, as RoPE needs).
DitConfig random_config(std::mt19937_64& rng) {
  auto pick = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  DitConfig config;
  config.model_type = "i2v";
  config.num_heads = pick(1, 3);
  config.dim = config.num_heads * 2 * pick(1, 4);
  config.ffn_dim = pick(1, 24);
  config.in_dim = pick(1, 9);
  config.out_dim = pick(1, 5);
  config.text_dim = pick(1, 7);
  config.freq_dim = 2 * pick(1, 4);
  config.num_layers = pick(1, 3);
  config.patch_size = {pick(1, 2), pick(1, 3), pick(1, 3)};
  config.qk_norm = pick(0, 1) == 1;
  config.cross_attn_norm = pick(0, 1) == 1;
  return config;
}

// A store holding random tensors for every expected name, spread over two files.
TensorStore random_store(const DitConfig& config, std::mt19937_64& rng) {
  TensorStore store;
  size_t i = 0;
  for (const auto& [name, shape] : config.expected_tensors())
    store.add(name, random_normal(shape, rng, 0.02f),
              i++ % 2 ? "/ckpt/shard-2.safetensors" : "/ckpt/shard-1.safetensors");
  return store;
}

std::string check_error(const DitConfig& config, const TensorStore& store) {
  try {
    config.check_weights(store, "/ckpt/high_noise_model");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "check_weights accepted a wrong store";
  return "";
}

TEST(DitConfig, RealStyleFileTakesConstructorDefaults) {
  const DitConfig config = DitConfig::from_json_text(real_style_config().dump(), "config.json");
  EXPECT_EQ(config.model_type, "i2v");
  EXPECT_EQ(config.dim, 5120);
  EXPECT_EQ(config.ffn_dim, 13824);
  EXPECT_EQ(config.num_heads, 40);
  EXPECT_EQ(config.head_dim(), 128);
  EXPECT_EQ(config.num_layers, 40);
  EXPECT_EQ(config.in_dim, 36);
  EXPECT_EQ(config.out_dim, 16);
  EXPECT_EQ(config.text_len, 512);
  EXPECT_DOUBLE_EQ(config.eps, 1e-6);
  // Never written by diffusers: the WanModel signature defaults.
  EXPECT_EQ(config.text_dim, 4096);
  EXPECT_EQ(config.patch_size, (std::array<int64_t, 3>{1, 2, 2}));
  EXPECT_EQ(config.window_size, (std::array<int64_t, 2>{-1, -1}));
  EXPECT_TRUE(config.qk_norm);
  EXPECT_TRUE(config.cross_attn_norm);
  // Spec §1.3: 1095 tensors, 14,288,901,184 parameters per expert.
  EXPECT_EQ(config.expected_tensors().size(), 1095u);
  EXPECT_EQ(config.parameter_count(), 14'288'901'184);
  EXPECT_EQ(DitConfig::i2v_a14b().parameter_count(), 14'288'901'184);
  EXPECT_EQ(DitConfig::i2v_a14b().expected_tensors(), config.expected_tensors());
}

TEST(DitConfig, GoldenStyleFileWithEveryKey) {
  std::mt19937_64 rng(testing::test_seed());
  const int64_t text_dim = std::uniform_int_distribution<int64_t>(1, 5000)(rng);
  json file = real_style_config();
  file["text_dim"] = text_dim;
  file["patch_size"] = {1, 4, 2};
  file["window_size"] = {8, 16};
  file["qk_norm"] = false;
  file["cross_attn_norm"] = false;
  file["eps"] = 1e-5;
  const DitConfig config = DitConfig::from_json_text(file.dump(), "config.json");
  EXPECT_EQ(config.text_dim, text_dim);
  EXPECT_EQ(config.patch_size, (std::array<int64_t, 3>{1, 4, 2}));
  EXPECT_EQ(config.window_size, (std::array<int64_t, 2>{8, 16}));
  EXPECT_FALSE(config.qk_norm);
  EXPECT_FALSE(config.cross_attn_norm);
  EXPECT_DOUBLE_EQ(config.eps, 1e-5);
  // Without qk_norm and cross_attn_norm a block has 27 - 4 - 2 = 21 tensors.
  EXPECT_EQ(config.expected_tensors().size(), 15u + 21u * 40u);
}

TEST(DitConfig, UnknownAndMetadataKeysAreIgnored) {
  json file = real_style_config();
  file["_name_or_path"] = "somewhere";
  file["added_by_a_newer_diffusers"] = {1, 2, 3};
  EXPECT_EQ(DitConfig::from_json_text(file.dump(), "config.json").dim, 5120);
}

TEST(DitConfig, MissingRequiredKeyNamesFileAndKey) {
  for (const char* key : {"model_type", "dim", "ffn_dim", "freq_dim", "in_dim", "out_dim",
                          "num_heads", "num_layers"}) {
    SCOPED_TRACE(key);
    json file = real_style_config();
    file.erase(key);
    const std::string error = parse_error(file);
    EXPECT_NE(error.find("/ckpt/expert/config.json"), std::string::npos) << error;
    EXPECT_NE(error.find(std::string("\"") + key + "\""), std::string::npos) << error;
  }
}

TEST(DitConfig, WrongTypesNameFileAndKey) {
  const std::vector<std::pair<const char*, json>> cases = {
      {"dim", "5120"},       {"dim", 5120.5},        {"num_layers", nullptr},
      {"qk_norm", 1},        {"eps", "1e-6"},        {"model_type", 2},
      {"patch_size", {1, 2}}, {"patch_size", {1, 2, "2"}}, {"window_size", -1},
      {"text_dim", {4096}},
  };
  for (const auto& [key, value] : cases) {
    SCOPED_TRACE(std::string(key) + " = " + value.dump());
    json file = real_style_config();
    file[key] = value;
    const std::string error = parse_error(file);
    EXPECT_NE(error.find("/ckpt/expert/config.json"), std::string::npos) << error;
    EXPECT_NE(error.find(std::string("\"") + key + "\""), std::string::npos) << error;
  }
}

TEST(DitConfig, InvalidValuesAreRejected) {
  const std::vector<std::tuple<const char*, json, const char*>> cases = {
      {"num_heads", 3, "num_heads"},          // 5120 % 3 != 0
      {"dim", 5160, "num_heads"},             // 5160 / 40 = 129: odd head width
      {"dim", -5120, "dim"},
      {"ffn_dim", int64_t{1} << 40, "ffn_dim"},
      {"num_layers", 100000, "num_layers"},
      {"num_layers", 0, "num_layers"},
      {"model_type", "s2v", "model_type"},
      {"eps", 0, "eps"},
      {"freq_dim", 255, "freq_dim"},
      {"patch_size", {1, 0, 2}, "patch_size"},
      {"window_size", {0, 4}, "window_size"},
  };
  for (const auto& [key, value, named] : cases) {
    SCOPED_TRACE(std::string(key) + " = " + value.dump());
    json file = real_style_config();
    file[key] = value;
    const std::string error = parse_error(file);
    EXPECT_NE(error.find(std::string("\"") + named + "\""), std::string::npos) << error;
  }
}

TEST(DitConfig, MalformedFilesNameTheFile) {
  EXPECT_THROW(DitConfig::from_json_text("{\"dim\": 5120,", "/x/config.json"), Error);
  EXPECT_THROW(DitConfig::from_json_text("[1, 2]", "/x/config.json"), Error);
  try {
    DitConfig::from_json_text("{\"dim\": ", "/x/config.json");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/x/config.json"), std::string::npos) << e.what();
  }
  const std::string missing = testing::temp_dir() + "/no-such/config.json";
  try {
    DitConfig::from_json_file(missing);
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

TEST(DitConfig, ReadsFromFile) {
  const std::string path = testing::temp_dir() + "/config.json";
  std::ofstream(path) << real_style_config().dump(2) << "\n";
  EXPECT_EQ(DitConfig::from_json_file(path).num_layers, 40);
}

TEST(DitCheckWeights, AcceptsExactlyTheExpectedTensors) {
  std::mt19937_64 rng(testing::test_seed());
  for (int trial = 0; trial < 5; ++trial) {
    const DitConfig config = random_config(rng);
    const TensorStore store = random_store(config, rng);
    EXPECT_NO_THROW(config.check_weights(store, "/ckpt/high_noise_model"));
    EXPECT_EQ(config.parameter_count(), store.total_params());
    const size_t per_block = 21 + (config.qk_norm ? 4 : 0) + (config.cross_attn_norm ? 2 : 0);
    EXPECT_EQ(store.size(), 15 + per_block * static_cast<size_t>(config.num_layers));
  }
}

TEST(DitCheckWeights, ReportsAMissingTensor) {
  std::mt19937_64 rng(testing::test_seed());
  const DitConfig config = random_config(rng);
  const auto expected = config.expected_tensors();
  const size_t dropped = std::uniform_int_distribution<size_t>(0, expected.size() - 1)(rng);
  TensorStore store;
  for (size_t i = 0; i < expected.size(); ++i)
    if (i != dropped)
      store.add(expected[i].first, random_normal(expected[i].second, rng), "/ckpt/a.safetensors");
  const std::string error = check_error(config, store);
  EXPECT_NE(error.find("missing tensor " + expected[dropped].first), std::string::npos) << error;
  EXPECT_NE(error.find(shape_str(expected[dropped].second)), std::string::npos) << error;
  EXPECT_NE(error.find("/ckpt/a.safetensors"), std::string::npos) << error;
}

TEST(DitCheckWeights, ReportsAnUnexpectedTensor) {
  std::mt19937_64 rng(testing::test_seed());
  const DitConfig config = random_config(rng);
  TensorStore store = random_store(config, rng);
  // Wan2.1 I2V had a CLIP branch; a Wan2.1 checkpoint given as Wan2.2 must be refused.
  store.add("img_emb.proj.0.weight", random_normal({4}, rng), "/ckpt/extra.safetensors");
  const std::string error = check_error(config, store);
  EXPECT_NE(error.find("unexpected tensor img_emb.proj.0.weight"), std::string::npos) << error;
  EXPECT_NE(error.find("/ckpt/extra.safetensors"), std::string::npos) << error;
}

TEST(DitCheckWeights, ReportsAWrongShapeWithBothShapes) {
  std::mt19937_64 rng(testing::test_seed());
  const DitConfig config = random_config(rng);
  const auto expected = config.expected_tensors();
  const size_t changed = std::uniform_int_distribution<size_t>(0, expected.size() - 1)(rng);
  Shape wrong = expected[changed].second;
  wrong[0] += 1;
  TensorStore store;
  for (size_t i = 0; i < expected.size(); ++i)
    store.add(expected[i].first, random_normal(i == changed ? wrong : expected[i].second, rng),
              i == changed ? "/ckpt/odd.safetensors" : "/ckpt/a.safetensors");
  const std::string error = check_error(config, store);
  EXPECT_NE(error.find("tensor " + expected[changed].first + " in /ckpt/odd.safetensors"),
            std::string::npos) << error;
  EXPECT_NE(error.find("has shape " + shape_str(wrong)), std::string::npos) << error;
  EXPECT_NE(error.find("expected " + shape_str(expected[changed].second)), std::string::npos)
      << error;
}

TEST(DitCheckWeights, ReportsEveryProblemAndRejectsIntegerTensors) {
  std::mt19937_64 rng(testing::test_seed());
  DitConfig config = random_config(rng);
  config.num_layers = 2;
  const auto expected = config.expected_tensors();
  TensorStore store;
  for (const auto& [name, shape] : expected) {
    if (name == "blocks.0.ffn.0.weight") continue;  // missing
    if (name == "head.head.bias") {
      store.add(name, Tensor::zeros(DType::I32, shape), "/ckpt/a.safetensors");
      continue;
    }
    store.add(name, random_normal(shape, rng), "/ckpt/a.safetensors");
  }
  store.add("blocks.2.modulation", random_normal({1, 6, config.dim}, rng), "/ckpt/a.safetensors");
  const std::string error = check_error(config, store);
  EXPECT_NE(error.find("missing tensor blocks.0.ffn.0.weight"), std::string::npos) << error;
  EXPECT_NE(error.find("unexpected tensor blocks.2.modulation"), std::string::npos) << error;
  EXPECT_NE(error.find("head.head.bias in /ckpt/a.safetensors has dtype I32"), std::string::npos)
      << error;
  EXPECT_NE(error.find("3 problems"), std::string::npos) << error;
}

}  // namespace
}  // namespace wanrt
