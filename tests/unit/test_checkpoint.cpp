// Checkpoint folder resolution, T5/VAE config inference with key-set checks, and the demo
// checkpoint written, resolved and loaded back through every component.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "io/checkpoint.h"
#include "io/demo_checkpoint.h"
#include "io/safetensors.h"
#include "io/torch_pth.h"
#include "test_support.h"

#ifdef WANRT_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace wanrt {
namespace {

namespace fs = std::filesystem;
using testing::random_normal;

// A fresh demo checkpoint in this test's temporary folder.
std::string make_demo(uint64_t seed = 1) {
  const std::string dir = testing::temp_dir() + "/demo";
  fs::remove_all(dir);
  write_demo_checkpoint(dir, seed);
  return dir;
}

bool has_missing(const CheckpointLayout& layout, const std::string& path) {
  for (const MissingPart& part : layout.missing)
    if (part.expected_path == path && !part.hint.empty()) return true;
  return false;
}

std::string all_missing(const CheckpointLayout& layout) {
  std::string text;
  for (const MissingPart& part : layout.missing) text += part.what + ": " + part.expected_path + "\n";
  return text;
}

TensorStore random_store(const ExpectedTensors& expected, std::mt19937_64& rng,
                         const std::string& file) {
  TensorStore store;
  for (const auto& [name, shape] : expected) store.add(name, random_normal(shape, rng, 0.02f), file);
  return store;
}

using testing::error_of;

// ---- component configurations ----

TEST(T5Config, RealSizesGiveTheSpecKeySet) {
  T5CheckpointConfig config{256384, 4096, 4096, 10240, 64, 24, 32, false};
  const ExpectedTensors expected = config.expected_tensors();
  EXPECT_EQ(expected.size(), 242u);  // spec t5-vae-and-files §1.2
  EXPECT_EQ(expected_parameter_count(expected), 5'680'910'336);
}

TEST(T5Config, InfersRandomSizesBack) {
  std::mt19937_64 rng(testing::test_seed());
  auto pick = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int trial = 0; trial < 4; ++trial) {
    T5CheckpointConfig config;
    config.vocab = pick(3, 50);
    config.dim = pick(1, 12);
    config.num_heads = pick(1, 4);
    config.dim_attn = config.num_heads * pick(1, 3);
    config.dim_ffn = pick(1, 9);
    config.num_layers = pick(1, 3);
    config.num_buckets = pick(1, 8);
    config.shared_pos = trial == 3;
    const TensorStore store = random_store(config.expected_tensors(), rng, "/t5.pth");
    const T5CheckpointConfig inferred = infer_t5_config(store, "/t5.pth");
    EXPECT_EQ(inferred.vocab, config.vocab);
    EXPECT_EQ(inferred.dim, config.dim);
    EXPECT_EQ(inferred.dim_attn, config.dim_attn);
    EXPECT_EQ(inferred.dim_ffn, config.dim_ffn);
    EXPECT_EQ(inferred.num_heads, config.num_heads);
    EXPECT_EQ(inferred.num_layers, config.num_layers);
    EXPECT_EQ(inferred.num_buckets, config.num_buckets);
    EXPECT_EQ(inferred.shared_pos, config.shared_pos);
  }
}

TEST(T5Config, RejectsMissingExtraAndMisshapedKeys) {
  std::mt19937_64 rng(testing::test_seed());
  const T5CheckpointConfig config{40, 8, 8, 12, 2, 2, 4, false};
  ExpectedTensors expected = config.expected_tensors();

  ExpectedTensors without = expected;
  without.erase(without.begin() + 5);  // a block tensor, not an anchor the sizes come from
  std::string error = error_of([&] { infer_t5_config(random_store(without, rng, "/t5.pth"), "/t5.pth"); });
  EXPECT_NE(error.find("missing tensor " + expected[5].first), std::string::npos) << error;

  TensorStore extra = random_store(expected, rng, "/t5.pth");
  extra.add("blocks.1.attn.bias", random_normal({8}, rng), "/t5.pth");
  error = error_of([&] { infer_t5_config(extra, "/t5.pth"); });
  EXPECT_NE(error.find("unexpected tensor blocks.1.attn.bias"), std::string::npos) << error;

  ExpectedTensors reshaped = expected;
  for (auto& [name, shape] : reshaped)
    if (name == "blocks.1.ffn.fc2.weight") shape = {8, 13};
  error = error_of([&] { infer_t5_config(random_store(reshaped, rng, "/t5.pth"), "/t5.pth"); });
  EXPECT_NE(error.find("blocks.1.ffn.fc2.weight in /t5.pth has shape [8, 13], expected [8, 12]"),
            std::string::npos) << error;

  // A VAE given as the T5: named as not an encoder.
  error = error_of([&] {
    infer_t5_config(random_store({{"conv1.weight", {2, 2, 1, 1, 1}}}, rng, "/vae.pth"), "/vae.pth");
  });
  EXPECT_NE(error.find("/vae.pth"), std::string::npos) << error;
  EXPECT_NE(error.find("token_embedding.weight"), std::string::npos) << error;
}

TEST(VaeConfig, RealSizesGiveTheSpecKeySet) {
  const VaeCheckpointConfig config{96, 16, {1, 2, 4, 4}, 2, {false, true, true}};
  const ExpectedTensors expected = config.expected_tensors();
  EXPECT_EQ(expected.size(), 194u);  // spec t5-vae-and-files §2.5
  EXPECT_EQ(expected_parameter_count(expected), 126'892'531);
  // Spot checks against the listing in §2.5.
  const std::map<std::string, Shape> shapes(expected.begin(), expected.end());
  EXPECT_EQ(shapes.at("encoder.downsamples.5.time_conv.weight"), (Shape{192, 192, 3, 1, 1}));
  EXPECT_EQ(shapes.at("decoder.upsamples.3.time_conv.weight"), (Shape{768, 384, 3, 1, 1}));
  EXPECT_EQ(shapes.at("decoder.upsamples.4.shortcut.weight"), (Shape{384, 192, 1, 1, 1}));
  EXPECT_EQ(shapes.at("decoder.upsamples.11.resample.1.weight"), (Shape{96, 192, 3, 3}));
  EXPECT_EQ(shapes.count("decoder.upsamples.11.time_conv.weight"), 0u);
  EXPECT_EQ(shapes.at("encoder.head.2.weight"), (Shape{32, 384, 3, 3, 3}));
}

TEST(VaeConfig, InfersRandomSizesBack) {
  std::mt19937_64 rng(testing::test_seed());
  auto pick = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int trial = 0; trial < 3; ++trial) {
    VaeCheckpointConfig config;
    config.dim = 2 * pick(1, 2);
    config.z_dim = pick(1, 4);
    config.num_res_blocks = pick(1, 2);
    config.dim_mult = {1};
    const int64_t stages = pick(2, 4);
    for (int64_t s = 1; s < stages; ++s) {
      config.dim_mult.push_back(config.dim_mult.back() * pick(1, 2));
      config.temporal_downsample.push_back(pick(0, 1) == 1);
    }
    const TensorStore store = random_store(config.expected_tensors(), rng, "/vae.pth");
    const VaeCheckpointConfig inferred = infer_vae_config(store, "/vae.pth");
    EXPECT_EQ(inferred.dim, config.dim);
    EXPECT_EQ(inferred.z_dim, config.z_dim);
    EXPECT_EQ(inferred.dim_mult, config.dim_mult);
    EXPECT_EQ(inferred.num_res_blocks, config.num_res_blocks);
    EXPECT_EQ(inferred.temporal_downsample, config.temporal_downsample);
  }
}

TEST(VaeConfig, RejectsMissingAndMisshapedKeys) {
  std::mt19937_64 rng(testing::test_seed());
  const VaeCheckpointConfig config{4, 3, {1, 2, 2}, 1, {true, false}};
  ExpectedTensors expected = config.expected_tensors();
  ExpectedTensors without;
  for (const auto& entry : expected)
    if (entry.first != "decoder.middle.1.proj.bias") without.push_back(entry);
  std::string error = error_of([&] { infer_vae_config(random_store(without, rng, "/v.pth"), "/v.pth"); });
  EXPECT_NE(error.find("missing tensor decoder.middle.1.proj.bias"), std::string::npos) << error;

  for (auto& [name, shape] : expected)
    if (name == "decoder.head.2.weight") shape[0] = 4;  // four output channels instead of RGB
  error = error_of([&] { infer_vae_config(random_store(expected, rng, "/v.pth"), "/v.pth"); });
  EXPECT_NE(error.find("decoder.head.2.weight in /v.pth has shape [4,"), std::string::npos) << error;
}

// ---- layout resolution ----

TEST(CheckpointLayout, DemoCheckpointResolvesCompletely) {
  const std::string dir = make_demo();
  const CheckpointLayout layout = resolve_checkpoint(dir);
  EXPECT_TRUE(layout.random_demo);
  EXPECT_TRUE(layout.high_noise.found);
  EXPECT_TRUE(layout.low_noise.found);
  ASSERT_TRUE(layout.high_noise.weights.has_value());
  EXPECT_EQ(layout.high_noise.weights->format, WeightFormat::SafetensorsSharded);
  EXPECT_EQ(layout.high_noise.weights->files.size(), 2u);
  ASSERT_TRUE(layout.t5.has_value());
  EXPECT_EQ(layout.t5->format, WeightFormat::Pth);
  ASSERT_TRUE(layout.vae.has_value());
  EXPECT_EQ(layout.vae->format, WeightFormat::Pth);
#ifdef WANRT_HAVE_SENTENCEPIECE
  EXPECT_TRUE(layout.complete()) << all_missing(layout);
  EXPECT_NO_THROW(require_complete(layout));
#else
  EXPECT_EQ(layout.missing.size(), 1u) << all_missing(layout);  // the tokenizer
#endif
}

TEST(CheckpointLayout, NonexistentOrFileRootIsAnError) {
  const std::string missing = testing::temp_dir() + "/nowhere";
  EXPECT_NE(error_of([&] { resolve_checkpoint(missing); }).find(missing), std::string::npos);
  const std::string file = testing::temp_dir() + "/a-file";
  std::ofstream(file) << "x";
  EXPECT_NE(error_of([&] { resolve_checkpoint(file); }).find(file), std::string::npos);
}

TEST(CheckpointLayout, EmptyFolderListsEveryPart) {
  const std::string dir = testing::temp_dir() + "/empty";
  fs::create_directories(dir);
  const CheckpointLayout layout = resolve_checkpoint(dir);
  EXPECT_FALSE(layout.random_demo);
  EXPECT_TRUE(has_missing(layout, dir + "/high_noise_model")) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/low_noise_model")) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/models_t5_umt5-xxl-enc-bf16.pth")) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/Wan2.1_VAE.pth")) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/google/umt5-xxl/spiece.model")) << all_missing(layout);
  const std::string error = error_of([&] { require_complete(layout); });
  EXPECT_NE(error.find(dir + "/low_noise_model"), std::string::npos) << error;
  EXPECT_NE(error.find("huggingface-cli download"), std::string::npos) << error;
}

TEST(CheckpointLayout, MissingExpertPartsAreReportedWithPaths) {
  const std::string dir = make_demo();
  fs::remove_all(dir + "/low_noise_model");
  fs::remove(dir + "/high_noise_model/config.json");
  fs::remove(dir + "/high_noise_model/diffusion_pytorch_model-00002-of-00002.safetensors");
  const CheckpointLayout layout = resolve_checkpoint(dir);
  EXPECT_FALSE(layout.high_noise.found);
  EXPECT_FALSE(layout.low_noise.found);
  EXPECT_TRUE(has_missing(layout, dir + "/low_noise_model")) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/high_noise_model/config.json")) << all_missing(layout);
  EXPECT_TRUE(has_missing(
      layout, dir + "/high_noise_model/diffusion_pytorch_model-00002-of-00002.safetensors"))
      << all_missing(layout);
  EXPECT_NE(error_of([&] { load_expert_config(layout.high_noise); }).find("config.json"),
            std::string::npos);
}

TEST(CheckpointLayout, MissingT5VaeAndTokenizerAreReportedWithPaths) {
  const std::string dir = make_demo();
  fs::remove(dir + "/models_t5_umt5-xxl-enc-bf16.pth");
  fs::remove(dir + "/Wan2.1_VAE.pth");
  fs::remove_all(dir + "/google");
  const CheckpointLayout layout = resolve_checkpoint(dir);
  EXPECT_TRUE(layout.high_noise.found && layout.low_noise.found);
  EXPECT_EQ(layout.missing.size(), 3u) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/models_t5_umt5-xxl-enc-bf16.pth")) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/Wan2.1_VAE.pth")) << all_missing(layout);
  EXPECT_TRUE(has_missing(layout, dir + "/google/umt5-xxl/spiece.model")) << all_missing(layout);
}

TEST(CheckpointLayout, SafetensorsComponentsAndPthPreference) {
  const std::string dir = make_demo();
  const std::string t5_pth = dir + "/models_t5_umt5-xxl-enc-bf16.pth";
  const std::string t5_st = dir + "/models_t5_umt5-xxl-enc-bf16.safetensors";
  const TensorStore t5 = read_pth(t5_pth);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : t5.names()) tensors.emplace_back(name, t5.get(name));
  write_safetensors(t5_st, tensors);

  CheckpointLayout layout = resolve_checkpoint(dir);
  ASSERT_TRUE(layout.t5.has_value());
  EXPECT_EQ(layout.t5->path, t5_pth);  // both present: the official .pth wins
  ASSERT_EQ(layout.notes.size(), 1u);
  EXPECT_NE(layout.notes[0].find("using the .pth"), std::string::npos) << layout.notes[0];

  fs::remove(t5_pth);
  layout = resolve_checkpoint(dir);
  ASSERT_TRUE(layout.t5.has_value());
  EXPECT_EQ(layout.t5->path, t5_st);
  EXPECT_EQ(layout.t5->format, WeightFormat::Safetensors);
  const TensorStore reopened = open_weights(*layout.t5);
  EXPECT_EQ(infer_t5_config(reopened, t5_st).dim, demo_t5_config().dim);
}

TEST(CheckpointLayout, SingleFileExpertAndAmbiguousShards) {
  const std::string dir = make_demo();
  const std::string folder = dir + "/high_noise_model";
  const TensorStore weights = read_safetensors_index(folder + "/" + kDitIndexName);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : weights.names()) tensors.emplace_back(name, weights.get(name));
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.path().filename() != "config.json") fs::remove(entry.path());
  write_safetensors(folder + "/" + kDitSingleName, tensors);

  CheckpointLayout layout = resolve_checkpoint(dir);
  ASSERT_TRUE(layout.high_noise.found);
  EXPECT_EQ(layout.high_noise.weights->format, WeightFormat::Safetensors);
  const DitConfig config = load_expert_config(layout.high_noise);
  EXPECT_NO_THROW(load_expert_weights(layout.high_noise, config));

  // Two unindexed files: which tensor is where is unknown, so this is reported, not guessed.
  fs::rename(folder + "/" + kDitSingleName, folder + "/part-a.safetensors");
  write_safetensors(folder + "/part-b.safetensors", {tensors[0]});
  layout = resolve_checkpoint(dir);
  EXPECT_FALSE(layout.high_noise.found);
  EXPECT_TRUE(has_missing(layout, folder + "/" + kDitIndexName)) << all_missing(layout);
}

TEST(CheckpointLayout, WrongExpertWeightsFailTheLoad) {
  const std::string dir = make_demo();
  const CheckpointLayout layout = resolve_checkpoint(dir);
  DitConfig config = load_expert_config(layout.low_noise);
  config.ffn_dim += 2;  // a config.json that does not fit its weights
  const std::string error = error_of([&] { load_expert_weights(layout.low_noise, config); });
  EXPECT_NE(error.find("blocks.0.ffn.0.weight"), std::string::npos) << error;
  EXPECT_NE(error.find("diffusion_pytorch_model-0000"), std::string::npos) << error;
}

// ---- the demo checkpoint, end to end ----

TEST(DemoCheckpoint, EveryComponentLoadsAndFitsTheNext) {
  const std::string dir = make_demo(testing::test_seed());
  const CheckpointLayout layout = resolve_checkpoint(dir);
  std::vector<DitConfig> experts;
  for (const ExpertLayout* expert : {&layout.high_noise, &layout.low_noise}) {
    const DitConfig config = load_expert_config(*expert);
    const TensorStore weights = load_expert_weights(*expert, config);
    EXPECT_EQ(weights.total_params(), config.parameter_count());
    EXPECT_EQ(weights.get("blocks.0.ffn.0.weight").dtype(), DType::BF16);
    experts.push_back(config);
  }
  const T5CheckpointConfig t5 = infer_t5_config(open_weights(*layout.t5), layout.t5->path);
  const VaeCheckpointConfig vae = infer_vae_config(open_weights(*layout.vae), layout.vae->path);
  EXPECT_EQ(t5.dim, demo_t5_config().dim);
  EXPECT_EQ(t5.num_heads, demo_t5_config().num_heads);
  EXPECT_EQ(vae.dim_mult, demo_vae_config().dim_mult);
  EXPECT_EQ(vae.temporal_downsample, demo_vae_config().temporal_downsample);
  for (const DitConfig& dit : experts) {
    EXPECT_EQ(dit.text_dim, t5.dim);
    EXPECT_EQ(dit.out_dim, vae.z_dim);
    EXPECT_EQ(dit.in_dim, 2 * vae.z_dim + 4);
  }
#ifdef WANRT_HAVE_SENTENCEPIECE
  sentencepiece::SentencePieceProcessor tokenizer;
  ASSERT_TRUE(tokenizer.Load(layout.tokenizer_model).ok());
  EXPECT_LE(tokenizer.GetPieceSize(), t5.vocab);
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.eos_id(), 1);
  EXPECT_EQ(tokenizer.unk_id(), 2);
  EXPECT_EQ(tokenizer.bos_id(), -1);
  EXPECT_FALSE(tokenizer.EncodeAsIds("a cat walks in the rain").empty());
#endif
}

TEST(DemoCheckpoint, ConfigHasOnlyTheRealKeys) {
  const std::string dir = make_demo();
  std::ifstream file(dir + "/low_noise_model/config.json");
  const auto config = nlohmann::json::parse(file);
  std::vector<std::string> keys;
  for (const auto& item : config.items()) keys.push_back(item.key());
  const std::vector<std::string> real = {"_class_name", "_diffusers_version", "dim",      "eps",
                                         "ffn_dim",     "freq_dim",           "in_dim",   "model_type",
                                         "num_heads",   "num_layers",         "out_dim",  "text_len"};
  EXPECT_EQ(keys, real);
  std::ifstream readme(dir + "/README.txt");
  const std::string text((std::istreambuf_iterator<char>(readme)), {});
  EXPECT_NE(text.find("RANDOM WEIGHTS"), std::string::npos);
}

TEST(DemoCheckpoint, WeightsAreSeededAndSensiblyScaled) {
  const std::string dir = make_demo(5);
  const std::string index = dir + "/high_noise_model/" + kDitIndexName;
  const Tensor first = read_safetensors_index(index).get("blocks.1.ffn.0.weight").to(DType::F32);
  const Tensor gains = read_safetensors_index(index).get("blocks.0.norm3.weight").to(DType::F32);
  const Tensor vae_gamma = read_pth(dir + "/Wan2.1_VAE.pth").get("encoder.head.0.gamma");
  write_demo_checkpoint(dir, 5);  // same seed: same weights
  const Tensor again = read_safetensors_index(index).get("blocks.1.ffn.0.weight").to(DType::F32);
  EXPECT_EQ(testing::relative_error(again, first), 0.0);
  write_demo_checkpoint(dir, 6);
  const Tensor other = read_safetensors_index(index).get("blocks.1.ffn.0.weight").to(DType::F32);
  EXPECT_GT(testing::relative_error(other, first), 0.5);

  auto mean_and_std = [](const Tensor& t) {
    double sum = 0, squares = 0;
    for (float v : t.floats()) sum += v;
    const double mean = sum / static_cast<double>(t.numel());
    for (float v : t.floats()) squares += (v - mean) * (v - mean);
    return std::pair(mean, std::sqrt(squares / static_cast<double>(t.numel())));
  };
  const auto [weight_mean, weight_std] = mean_and_std(first);
  EXPECT_NEAR(weight_mean, 0.0, 0.005);
  EXPECT_NEAR(weight_std, 0.02, 0.003);
  EXPECT_NEAR(mean_and_std(gains).first, 1.0, 0.01);
  EXPECT_NEAR(mean_and_std(vae_gamma).first, 1.0, 0.02);
}

}  // namespace
}  // namespace wanrt
