// Quantized checkpoints (io/quantized_checkpoint.h) on a freshly written demo checkpoint: the
// files `wanrt quantize` writes, loading them back without re-quantization (the model runs the
// very codes load-time quantization produces), and every malformed variant failing clearly.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "backends/ops.h"
#include "io/demo_checkpoint.h"
#include "io/quantized_checkpoint.h"
#include "io/safetensors.h"
#include "model/dit.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;
using testing::random_normal;
using testing::relative_error;

class QuantizedCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
  }
  void TearDown() override {
    if (HasFailure())
      std::fprintf(stderr, "reproduce with WANRT_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed_));
  }
  // A demo checkpoint (float experts, sharded) under a fresh folder.
  std::string demo(const std::string& name) {
    const std::string dir = (fs::path(testing::temp_dir()) / name).string();
    write_demo_checkpoint(dir, seed_);
    return dir;
  }
  Tensor forward(const WanModel& model, Ops& ops) {
    std::mt19937_64 rng(seed_ + 1);  // the same inputs for every model
    const DitConfig& c = model.config();
    const Tensor x = random_normal({c.out_dim, 2, 4, 6}, rng);
    const Tensor y = random_normal({c.in_dim - c.out_dim, 2, 4, 6}, rng);
    const Tensor context = random_normal({7, c.text_dim}, rng);
    return model.forward(ops, {.x = &x, .y = &y, .timestep = 700, .context = &context});
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST_F(QuantizedCheckpointTest, WrittenFilesLoadAsTheCodesLoadTimeQuantizationMakes) {
  const std::string source = demo("source");
  auto ops = make_cpu_ops();
  for (Quantization quantization : {Quantization::Int8, Quantization::Fp8}) {
    const std::string name(quantization_name(quantization));
    SCOPED_TRACE(name);
    const std::string out = (fs::path(testing::temp_dir()) / ("quantized_" + name)).string();
    const auto summaries = write_quantized_checkpoint(source, out, quantization);
    ASSERT_EQ(summaries.size(), 2u);

    const CheckpointLayout src_layout = resolve_checkpoint(source);
    const CheckpointLayout layout = resolve_checkpoint(out);
    EXPECT_EQ(layout.complete(), src_layout.complete()) << "the links make the same layout";
    EXPECT_EQ(layout.random_demo, src_layout.random_demo);
    for (const auto& [expert, src_expert] : {std::pair{&layout.high_noise, &src_layout.high_noise},
                                             std::pair{&layout.low_noise, &src_layout.low_noise}}) {
      ASSERT_TRUE(expert->found);
      ASSERT_EQ(expert->weights->format, WeightFormat::Safetensors);
      const auto file = read_safetensors(expert->weights->path);
      EXPECT_EQ(file.metadata.at(kQuantizationMetadataKey), name);
      EXPECT_NE(file.metadata.at(kQuantizationSchemeKey).find("per output channel"), std::string::npos);

      const DitConfig config = load_expert_config(*expert);
      const TensorStore loaded = load_expert_weights(*expert, config);
      const TensorStore original = load_expert_weights(*src_expert, config);
      int64_t quantized = 0;
      for (const auto& [tensor_name, shape] : config.expected_tensors()) {
        const Tensor& t = loaded.get(tensor_name);
        const Tensor& o = original.get(tensor_name);
        if (dit_weight_is_quantized(tensor_name)) {
          ++quantized;
          ASSERT_TRUE(t.is_row_scaled()) << tensor_name;
          const Tensor expected = quantize_rows(o, quantization_dtype(quantization));
          EXPECT_TRUE(same_bytes(t, expected)) << tensor_name;
          EXPECT_TRUE(same_bytes(t.row_scale(), expected.row_scale())) << tensor_name;
        } else {
          EXPECT_FALSE(t.is_row_scaled()) << tensor_name;
          EXPECT_TRUE(same_bytes(t, o)) << tensor_name << " is stored as in the source";
        }
      }
      EXPECT_EQ(quantized, config.num_layers * 10);
      if (expert != &layout.high_noise) continue;  // the forwards once per scheme are enough

      // Loading the quantized file (as stored) and quantizing the float one at load run the
      // same codes: identical outputs. Both differ from the float model by the quantization.
      const WanModel stored = WanModel::load(config, loaded, *ops);
      const WanModel at_load = WanModel::load(config, original, *ops, {.quantize = quantization});
      const WanModel float_model = WanModel::load(config, original, *ops);
      EXPECT_EQ(stored.quantization(), quantization);
      EXPECT_EQ(float_model.quantization(), Quantization::None);
      const Tensor out_stored = forward(stored, *ops);
      EXPECT_EQ(relative_error(out_stored, forward(at_load, *ops)), 0.0);
      const double err = relative_error(out_stored, forward(float_model, *ops));
      EXPECT_GT(err, 0.0);
      EXPECT_LT(err, 0.1);
      // The same scheme again is accepted; the other one is refused.
      EXPECT_EQ(WanModel::load(config, loaded, *ops, {.quantize = quantization}).quantization(), quantization);
      const Quantization other = quantization == Quantization::Int8 ? Quantization::Fp8 : Quantization::Int8;
      EXPECT_THROW(WanModel::load(config, loaded, *ops, {.quantize = other}), Error);
    }
  }
}

TEST_F(QuantizedCheckpointTest, OutputFolderMustBeNewAndSourceFloat) {
  const std::string source = demo("source2");
  const std::string busy = (fs::path(testing::temp_dir()) / "busy").string();
  fs::create_directories(busy);
  { std::ofstream(fs::path(busy) / "keep.txt") << "x"; }
  EXPECT_THROW(write_quantized_checkpoint(source, busy, Quantization::Int8), Error);
  EXPECT_TRUE(fs::exists(fs::path(busy) / "keep.txt"));
  const std::string once = (fs::path(testing::temp_dir()) / "once").string();
  write_quantized_checkpoint(source, once, Quantization::Int8);
  const std::string twice = (fs::path(testing::temp_dir()) / "twice").string();
  try {
    write_quantized_checkpoint(once, twice, Quantization::Fp8);
    FAIL() << "a quantized checkpoint was quantized again";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(twice)) << "a failed run leaves no folder behind";
}

// A quantized expert file with one scale removed: loading names the tensor and what is missing.
TEST_F(QuantizedCheckpointTest, MissingScaleInFileIsAClearError) {
  const std::string source = demo("source3");
  const std::string out = (fs::path(testing::temp_dir()) / "dropped").string();
  write_quantized_checkpoint(source, out, Quantization::Int8);
  const CheckpointLayout layout = resolve_checkpoint(out);
  const std::string path = layout.low_noise.weights->path;
  std::vector<std::pair<std::string, Tensor>> kept;
  std::map<std::string, std::string> metadata;
  {
    const auto file = read_safetensors(path);
    metadata = file.metadata;
    for (const std::string& name : file.tensors.names())
      if (name != "blocks.1.ffn.2.weight.scale") kept.emplace_back(name, file.tensors.get(name).clone());
  }
  write_safetensors(path, kept, metadata);
  try {
    load_expert_weights(layout.low_noise, load_expert_config(layout.low_noise));
    FAIL() << "a quantized file without a scale loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("blocks.1.ffn.2.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("missing"), std::string::npos) << message;
  }
}

// join_row_scales on hand-made stores: each malformed case and the plain-fp8 case.
TEST_F(QuantizedCheckpointTest, JoinRowScalesRules) {
  const Tensor q8 = quantize_rows(random_normal({4, 6}, rng_), DType::I8);
  const Tensor f8 = quantize_rows(random_normal({4, 6}, rng_), DType::F8_E4M3);
  auto plain = [](const Tensor& t) {  // the codes without their scale
    return Tensor::view(std::make_shared<const Tensor>(t), t.raw(), t.dtype(), t.shape());
  };
  auto store = [](std::vector<std::pair<std::string, Tensor>> tensors) {
    TensorStore s;
    for (auto& [name, t] : tensors) s.add(name, t, "test.safetensors");
    return s;
  };
  auto expect_error = [](const std::function<void()>& run, const std::string& needle) {
    try {
      run();
      ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::map<std::string, std::string> int8_meta = {{kQuantizationMetadataKey, "int8"}};
  const Tensor bias = random_normal({4}, rng_);

  // Good: joined, scale attached, other tensors untouched.
  const TensorStore good = join_row_scales(
      store({{"w", plain(q8)}, {"w.scale", q8.row_scale()}, {"b", bias}}), int8_meta, "f");
  EXPECT_EQ(good.size(), 2u);
  ASSERT_TRUE(good.get("w").is_row_scaled());
  EXPECT_EQ(relative_error(good.get("w").to(DType::F32), q8.to(DType::F32)), 0);
  EXPECT_FALSE(good.get("b").is_row_scaled());

  // fp8 tensors in a file with no scales and no metadata are plain float weights.
  const TensorStore plain_fp8 = join_row_scales(store({{"w", plain(f8)}}), {}, "f");
  EXPECT_FALSE(plain_fp8.get("w").is_row_scaled());

  expect_error([&] { join_row_scales(store({{"w", plain(q8)}}), {}, "f"); }, "w.scale");
  expect_error([&] { join_row_scales(store({{"w", plain(f8)}}), {{kQuantizationMetadataKey, "fp8"}}, "f"); }, "missing");
  expect_error([&] {
    join_row_scales(store({{"v", plain(f8)}, {"v.scale", f8.row_scale()}, {"w", plain(f8)}}), {}, "f");
  }, "w.scale");
  expect_error([&] { join_row_scales(store({{"w.scale", q8.row_scale()}}), {}, "f"); }, "missing");
  expect_error([&] { join_row_scales(store({{"w", bias}, {"w.scale", q8.row_scale()}}), {}, "f"); }, "not I8");
  expect_error([&] {
    join_row_scales(store({{"w", plain(q8)}, {"w.scale", q8.row_scale().slice_rows(0, 3)}}), {}, "f");
  }, "one scale per row");
  Tensor negative = q8.row_scale().clone();
  negative.data<float>()[1] = -1.0f;
  expect_error([&] { join_row_scales(store({{"w", plain(q8)}, {"w.scale", negative}}), {}, "f"); }, "row 1");
  expect_error([&] {
    join_row_scales(store({{"w", plain(q8)}, {"w.scale", q8.row_scale().to(DType::BF16)}}), {}, "f");
  }, "F32");
  expect_error([&] {
    join_row_scales(store({{"w", plain(q8)}, {"w.scale", q8.row_scale()}}), {{kQuantizationMetadataKey, "int4"}}, "f");
  }, "int4");
  expect_error([&] {
    join_row_scales(store({{"w", plain(f8)}, {"w.scale", f8.row_scale()}}), int8_meta, "f");
  }, "F8_E4M3");
  expect_error([&] { join_row_scales(store({{"b", bias}}), int8_meta, "f"); }, "no tensor has per-row scales");
}

}  // namespace
}  // namespace wanrt
