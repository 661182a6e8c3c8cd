// The golden tiny checkpoint (written by the official Python code, laid out as the real
// Wan-AI/Wan2.2-I2V-A14B) goes through the same resolution and checks as a real download.
// Sizes are read from the files, never assumed, so any golden folder of this layout works.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "io/checkpoint.h"
#include "test_support.h"

#ifdef WANRT_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace wanrt {
namespace {

namespace fs = std::filesystem;

std::set<std::string> names_of(const ExpectedTensors& expected) {
  std::set<std::string> names;
  for (const auto& entry : expected) names.insert(entry.first);
  return names;
}

std::set<std::string> names_of(const TensorStore& store) {
  const std::vector<std::string> names = store.names();
  return {names.begin(), names.end()};
}

std::set<DType> dtypes_of(const TensorStore& store) {
  std::set<DType> dtypes;
  for (const std::string& name : store.names()) dtypes.insert(store.get(name).dtype());
  return dtypes;
}

TEST(GoldenCheckpoint, ResolvesAndEveryComponentPassesItsChecks) {
  WANRT_REQUIRE_GOLDEN(golden);
  const std::string root = (fs::path(golden) / "Wan2.2-I2V-tiny").string();
  ASSERT_TRUE(fs::is_directory(root)) << root;
  const CheckpointLayout layout = resolve_checkpoint(root);
  std::string missing;
  for (const MissingPart& part : layout.missing) missing += part.expected_path + "\n";
  ASSERT_TRUE(layout.complete()) << missing;
  EXPECT_FALSE(layout.random_demo);  // the golden folder carries no demo README marker

  std::vector<DitConfig> experts;
  for (const ExpertLayout* expert : {&layout.high_noise, &layout.low_noise}) {
    SCOPED_TRACE(expert->name);
    ASSERT_TRUE(expert->found);
    const DitConfig config = load_expert_config(*expert);
    const TensorStore weights = load_expert_weights(*expert, config);  // runs check_weights
    EXPECT_NO_THROW(config.check_weights(weights, expert->folder));
    EXPECT_EQ(weights.size(), config.expected_tensors().size());
    EXPECT_EQ(weights.total_params(), config.parameter_count());
    EXPECT_EQ(config.model_type, "i2v");
    EXPECT_EQ(dtypes_of(weights).size(), 1u);  // one storage dtype per expert (F32 or BF16)
    experts.push_back(config);
  }
  // Both experts of I2V-A14B share one architecture (spec §1.1).
  EXPECT_EQ(experts[0].expected_tensors(), experts[1].expected_tensors());

  ASSERT_TRUE(layout.t5.has_value());
  const TensorStore t5_weights = open_weights(*layout.t5);
  const T5CheckpointConfig t5 = infer_t5_config(t5_weights, layout.t5->path);
  EXPECT_EQ(names_of(t5.expected_tensors()), names_of(t5_weights));
  EXPECT_EQ(t5_weights.size(), 2 + 10 * static_cast<size_t>(t5.num_layers));  // spec §4.6
  EXPECT_EQ(t5_weights.total_params(), expected_parameter_count(t5.expected_tensors()));
  EXPECT_FALSE(t5.shared_pos);
  EXPECT_EQ(dtypes_of(t5_weights), std::set<DType>{DType::BF16});  // spec §4.6: all BF16

  ASSERT_TRUE(layout.vae.has_value());
  const TensorStore vae_weights = open_weights(*layout.vae);
  const VaeCheckpointConfig vae = infer_vae_config(vae_weights, layout.vae->path);
  EXPECT_EQ(names_of(vae.expected_tensors()), names_of(vae_weights));
  EXPECT_EQ(vae_weights.size(), 194u);  // the Wan2.1 VAE structure has 194 tensors at any width
  EXPECT_EQ(vae.dim_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(vae.temporal_downsample, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(dtypes_of(vae_weights), std::set<DType>{DType::F32});  // spec §4.6: all F32

  // The components must fit each other as the pipeline chains them.
  for (const DitConfig& dit : experts) {
    EXPECT_EQ(dit.text_dim, t5.dim);
    EXPECT_EQ(dit.out_dim, vae.z_dim);
    EXPECT_EQ(dit.in_dim, 2 * vae.z_dim + 4);  // noisy latent + mask + image latent
  }
  EXPECT_TRUE(fs::is_regular_file(layout.tokenizer_model));
#ifdef WANRT_HAVE_SENTENCEPIECE
  sentencepiece::SentencePieceProcessor tokenizer;
  ASSERT_TRUE(tokenizer.Load(layout.tokenizer_model).ok()) << layout.tokenizer_model;
  EXPECT_LE(tokenizer.GetPieceSize(), t5.vocab);  // every id must index the embedding
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.eos_id(), 1);
  EXPECT_EQ(tokenizer.unk_id(), 2);
#endif
}

}  // namespace
}  // namespace wanrt
