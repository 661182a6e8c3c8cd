// Finding and opening the parts of a Wan2.2 I2V-A14B checkpoint folder.
//
// The layout is the Hugging Face repository Wan-AI/Wan2.2-I2V-A14B (spec t5-vae-and-files §4.1):
//   high_noise_model/, low_noise_model/   config.json + diffusion_pytorch_model.safetensors.index.json
//                                         and its shards, or one *.safetensors file
//   models_t5_umt5-xxl-enc-bf16.pth       umT5 encoder (or the same name with .safetensors)
//   Wan2.1_VAE.pth                        VAE (or Wan2.1_VAE.safetensors)
//   google/umt5-xxl/spiece.model          SentencePiece tokenizer
// Resolution never throws for a missing part: it records what is missing with the expected
// path and what to do, so `wanrt inspect` can show the whole picture; loading functions then
// fail on the first part they need that is absent. Model sizes are not assumed anywhere: the
// DiT size comes from config.json, the T5 and VAE sizes are inferred from tensor shapes and
// then checked against the complete key set those sizes imply (the reference loads strictly).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/expected_tensors.h"
#include "io/tensor_store.h"
#include "model/dit_config.h"

namespace wanrt {

// Folder names and file names of the official layout.
inline constexpr const char* kHighNoiseFolder = "high_noise_model";
inline constexpr const char* kLowNoiseFolder = "low_noise_model";
inline constexpr const char* kT5Stem = "models_t5_umt5-xxl-enc-bf16";
inline constexpr const char* kVaeStem = "Wan2.1_VAE";
inline constexpr const char* kTokenizerModel = "google/umt5-xxl/spiece.model";
inline constexpr const char* kDitIndexName = "diffusion_pytorch_model.safetensors.index.json";
inline constexpr const char* kDitSingleName = "diffusion_pytorch_model.safetensors";
// A README.txt at the root containing this marks random (demo) weights.
inline constexpr const char* kRandomWeightsMarker = "RANDOM WEIGHTS";

enum class WeightFormat { Safetensors, SafetensorsSharded, Pth };
const char* weight_format_name(WeightFormat format);

// A weight file (or sharded set) that was found.
struct WeightSource {
  std::string path;  // the .pth, the .safetensors, or the .safetensors.index.json
  WeightFormat format = WeightFormat::Safetensors;
  std::vector<std::string> files;  // every file holding bytes (the shards for an index)
};

struct ExpertLayout {
  std::string name;    // "high_noise_model"
  std::string folder;  // root/name
  bool found = false;  // config.json and weights both present
  std::string config_path;            // empty when missing
  std::optional<WeightSource> weights;  // absent when missing
};

struct MissingPart {
  std::string what;           // "high-noise expert config"
  std::string expected_path;  // where it was looked for
  std::string hint;           // what to do about it
};

struct CheckpointLayout {
  std::string root;
  ExpertLayout high_noise;
  ExpertLayout low_noise;
  std::optional<WeightSource> t5;   // absent when missing
  std::optional<WeightSource> vae;  // absent when missing
  std::string tokenizer_model;    // spiece.model path, empty when missing
  std::vector<MissingPart> missing;
  std::vector<std::string> notes;  // choices made ("both .pth and .safetensors: using .pth")
  bool random_demo = false;        // README.txt carries the demo checkpoint's marker

  bool complete() const { return missing.empty(); }
};

// Looks at `root`; throws only if `root` is not a readable folder.
CheckpointLayout resolve_checkpoint(const std::string& root);
// Throws listing every missing part (with hints) unless the layout is complete.
void require_complete(const CheckpointLayout& layout);

// Opens a weight source with the reader its format needs.
TensorStore open_weights(const WeightSource& source);
// The expert's config.json; throws if the expert was not found.
DitConfig load_expert_config(const ExpertLayout& expert);
// The expert's weights as stored, with the per-row scales of a quantized expert joined onto
// their codes (io/quantized_checkpoint.h); not yet checked against a config.
TensorStore open_expert_weights(const ExpertLayout& expert);
// The expert's weights (as open_expert_weights), checked against its config (throws naming
// every mismatch).
TensorStore load_expert_weights(const ExpertLayout& expert, const DitConfig& config);

// umT5 encoder sizes, read off the tensor shapes (spec t5-vae-and-files §1.1).
struct T5CheckpointConfig {
  int64_t vocab = 0;
  int64_t dim = 0;
  int64_t dim_attn = 0;
  int64_t dim_ffn = 0;
  int64_t num_heads = 0;  // columns of the relative-position bias table [num_buckets, heads]
  int64_t num_layers = 0;
  int64_t num_buckets = 0;
  bool shared_pos = false;  // one top-level bias table instead of one per block

  int64_t head_dim() const { return dim_attn / num_heads; }
  ExpectedTensors expected_tensors() const;
};
// Infers the sizes and checks the file holds exactly the implied keys and shapes; `where`
// names the file in errors.
T5CheckpointConfig infer_t5_config(const TensorStore& weights, const std::string& where);

// Wan2.1 VAE sizes, read off the tensor shapes (spec t5-vae-and-files §2.1, §2.5).
struct VaeCheckpointConfig {
  int64_t dim = 0;    // base width (96 in the real VAE)
  int64_t z_dim = 0;  // latent channels (16)
  std::vector<int64_t> dim_mult;             // [1, 2, 4, 4]
  int64_t num_res_blocks = 0;                // per encoder stage; the decoder has one more
  std::vector<bool> temporal_downsample;     // per stage but the last: [false, true, true]

  ExpectedTensors expected_tensors() const;
};
VaeCheckpointConfig infer_vae_config(const TensorStore& weights, const std::string& where);

}  // namespace wanrt
