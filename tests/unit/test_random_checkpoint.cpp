// The random weights the benchmarks and `make-demo-checkpoint --full-size` use, and the
// shared-expert checkpoint writer run at tiny sizes: the layout resolves and loads like a real
// checkpoint, the low-noise expert links to the high-noise shards (same weights, read twice),
// shards respect their size limit, README.txt says the weights are random and shared.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "io/checkpoint.h"
#include "io/demo_checkpoint.h"
#include "io/random_weights.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;
using testing::relative_error;

std::pair<double, double> mean_and_std(const Tensor& t) {
  double sum = 0, squares = 0;
  for (float v : t.floats()) sum += v;
  const double mean = sum / static_cast<double>(t.numel());
  for (float v : t.floats()) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / static_cast<double>(t.numel()))};
}

TEST(RandomWeights, ChunkedParallelValuesAreSeededScaledAndDtypeExact) {
  const uint64_t seed = testing::test_seed();
  // More than two chunks of 2^20 values, and not a multiple of the chunk.
  const Shape shape = {3, 1000, 1111};
  const Tensor f32 = random_weight("blocks.0.ffn.0.weight", shape, DType::F32, seed);
  const Tensor again = random_weight("blocks.0.ffn.0.weight", shape, DType::F32, seed);
  EXPECT_EQ(relative_error(again, f32), 0.0);
  // The bf16 weight is the float32 one rounded, chunk boundaries included.
  const Tensor bf16 = random_weight("blocks.0.ffn.0.weight", shape, DType::BF16, seed);
  ASSERT_EQ(bf16.dtype(), DType::BF16);
  EXPECT_EQ(relative_error(bf16.to(DType::F32), f32.to(DType::BF16).to(DType::F32)), 0.0);
  const Tensor other = random_weight("blocks.0.ffn.0.weight", shape, DType::F32, seed + 1);
  EXPECT_GT(relative_error(other, f32), 1.0);
  // Chunks are independent streams: no chunk repeats the first.
  const float* v = f32.data<float>();
  const int64_t chunk = int64_t{1} << 20;
  EXPECT_NE(v[0], v[chunk]);
  EXPECT_NE(v[1], v[2 * chunk + 1]);

  const auto [mean, stddev] = mean_and_std(f32);
  EXPECT_NEAR(mean, 0.0, 1e-3);
  EXPECT_NEAR(stddev, 0.02, 2e-4);
  const Tensor gain = random_weight("blocks.3.self_attn.norm_q.weight", {5120}, DType::F32, seed);
  EXPECT_NEAR(mean_and_std(gain).first, 1.0, 0.003);
  EXPECT_NE(weight_seed(seed, "a.weight"), weight_seed(seed, "b.weight"));
  EXPECT_NE(weight_seed(seed, "a.weight"), weight_seed(seed + 1, "a.weight"));

  Tensor not_float = Tensor::empty(DType::I64, {4});
  EXPECT_THROW(fill_random_weight(not_float, "x", seed), Error);
}

TEST(RandomWeights, StoreHoldsEveryExpectedTensor) {
  const ExpectedTensors expected = demo_dit_config().expected_tensors();
  const TensorStore store = random_weight_store(expected, DType::BF16, 3);
  EXPECT_TRUE(tensor_set_problems(store, expected).empty());
  EXPECT_EQ(store.total_params(), demo_dit_config().parameter_count());
}

TEST(SharedExpertCheckpoint, ResolvesLinksTheExpertsAndLoads) {
  RandomCheckpointSpec spec;
  spec.dit = demo_dit_config();
  spec.t5 = demo_t5_config();
  spec.vae = demo_vae_config();
  spec.shard_bytes = 1 << 20;  // 1 MiB: several shards for the ~6.6 MB demo expert
  const std::string dir = testing::temp_dir() + "/shared";
  fs::remove_all(dir);
  std::vector<std::string> log;
  write_shared_expert_checkpoint(dir, testing::test_seed(), spec,
                                 [&](const std::string& line) { log.push_back(line); });

  const CheckpointLayout layout = resolve_checkpoint(dir);
  EXPECT_TRUE(layout.random_demo);
#ifdef WANRT_HAVE_SENTENCEPIECE
  EXPECT_TRUE(layout.complete());
#endif
  ASSERT_TRUE(layout.high_noise.found && layout.low_noise.found);
  const WeightSource& high = *layout.high_noise.weights;
  const WeightSource& low = *layout.low_noise.weights;
  EXPECT_EQ(high.format, WeightFormat::SafetensorsSharded);
  EXPECT_GT(high.files.size(), 3u);
  ASSERT_EQ(low.files.size(), high.files.size());
  for (const std::string& file : low.files) {
    EXPECT_TRUE(fs::is_symlink(file)) << file;
    EXPECT_EQ(fs::canonical(file).parent_path(), fs::canonical(dir + "/high_noise_model"));
  }
  for (const std::string& file : high.files) {
    EXPECT_FALSE(fs::is_symlink(file)) << file;
    // A shard is over the limit only when it holds one tensor larger than the limit.
    const auto bytes = fs::file_size(file);
    if (bytes > spec.shard_bytes + 65536) {
      std::ifstream index(dir + "/high_noise_model/" + kDitIndexName);
      const auto map = nlohmann::json::parse(index)["weight_map"];
      int tensors = 0;
      for (const auto& item : map.items()) tensors += fs::path(file).filename() == item.value().get<std::string>();
      EXPECT_EQ(tensors, 1) << file;
    }
  }

  const DitConfig high_config = load_expert_config(layout.high_noise);
  const DitConfig low_config = load_expert_config(layout.low_noise);
  EXPECT_EQ(high_config.dim, spec.dit.dim);
  EXPECT_EQ(low_config.num_layers, spec.dit.num_layers);
  const TensorStore high_weights = load_expert_weights(layout.high_noise, high_config);
  const TensorStore low_weights = load_expert_weights(layout.low_noise, low_config);
  for (const char* name : {"blocks.1.ffn.2.weight", "head.head.bias", "patch_embedding.weight"})
    EXPECT_EQ(relative_error(low_weights.get(name).to(DType::F32), high_weights.get(name).to(DType::F32)), 0.0);
  const auto [mean, stddev] = mean_and_std(high_weights.get("blocks.0.ffn.0.weight").to(DType::F32));
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(stddev, 0.02, 0.002);

  const T5CheckpointConfig t5 = infer_t5_config(open_weights(*layout.t5), layout.t5->path);
  EXPECT_EQ(t5.num_layers, spec.t5.num_layers);
  EXPECT_EQ(open_weights(*layout.t5).get("token_embedding.weight").dtype(), DType::BF16);
  const VaeCheckpointConfig vae = infer_vae_config(open_weights(*layout.vae), layout.vae->path);
  EXPECT_EQ(vae.dim, spec.vae.dim);

  std::ifstream readme(dir + "/README.txt");
  const std::string text((std::istreambuf_iterator<char>(readme)), {});
  EXPECT_EQ(text.rfind("RANDOM WEIGHTS", 0), 0u);
  EXPECT_NE(text.find("SAME random weights"), std::string::npos);
  EXPECT_NE(text.find(std::to_string(spec.dit.parameter_count())), std::string::npos);

  // Progress: one line per expert shard, T5 and VAE, ending at 100 %.
  ASSERT_GE(log.size(), high.files.size() + 3);
  EXPECT_NE(log.back().find("100.0 %"), std::string::npos) << log.back();
  EXPECT_NE(log.back().find("Wan2.1_VAE.pth"), std::string::npos) << log.back();
}

TEST(SharedExpertCheckpoint, FullSizeSpecHasTheRealSizes) {
  const RandomCheckpointSpec spec = full_size_spec();
  EXPECT_EQ(spec.dit.parameter_count(), 14'288'901'184);  // spec §1.3
  EXPECT_EQ(expected_parameter_count(spec.t5.expected_tensors()), 5'680'910'336);
  EXPECT_EQ(expected_parameter_count(spec.vae.expected_tensors()), 126'892'531);
  // One bf16 expert + bf16 umT5 + fp32 VAE: what the 64 GB disk of the GPU machine must hold.
  EXPECT_EQ(spec.bytes(), 2 * 14'288'901'184ull + 2 * 5'680'910'336ull + 4 * 126'892'531ull);
  EXPECT_LT(static_cast<double>(spec.bytes()), 41e9);
}

}  // namespace
}  // namespace wanrt
