#include "io/demo_checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/torch_pth.h"

#ifdef WANRT_HAVE_SENTENCEPIECE
#include <sentencepiece_trainer.h>
#endif

namespace wanrt {
namespace {

namespace fs = std::filesystem;

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Normal deviates by Box-Muller in float over splitmix64: several times faster than
// std::normal_distribution over mt19937_64, which matters for the ~15 M values a demo holds.
// Statistical quality far beyond what random test weights need.
class FastNormal {
 public:
  explicit FastNormal(uint64_t seed) : state_(seed) {}
  float next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const uint64_t bits = next_bits();
    constexpr float kTwoPi = 6.2831853f;
    const float u1 = (static_cast<float>(bits >> 40) + 1.0f) * 0x1.0p-24f;  // (0, 1]
    const float u2 = static_cast<float>((bits >> 8) & 0xFFFFFF) * 0x1.0p-24f;  // [0, 1)
    const float radius = std::sqrt(-2.0f * std::log(u1));
    spare_ = radius * std::sin(kTwoPi * u2);
    has_spare_ = true;
    return radius * std::cos(kTwoPi * u2);
  }

 private:
  uint64_t next_bits() {  // splitmix64
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
  float spare_ = 0;
  bool has_spare_ = false;
};

// Norm gains start near 1 (as trained models keep them); everything else small, so that
// activations stay finite through every layer of the pipeline.
bool is_norm_gain(const std::string& name, const Shape& shape) {
  if (name.ends_with(".gamma")) return true;
  return shape.size() == 1 && name.ends_with(".weight") && name.find("norm") != std::string::npos;
}

NamedTensors random_tensors(const ExpectedTensors& expected, DType dtype, FastNormal& normal) {
  NamedTensors out;
  out.reserve(expected.size());
  for (const auto& [name, shape] : expected) {
    Tensor values = Tensor::empty(DType::F32, shape);
    const float offset = is_norm_gain(name, shape) ? 1.0f : 0.0f;
    for (float& v : values.floats()) v = offset + 0.02f * normal.next();
    out.emplace_back(name, dtype == DType::F32 ? std::move(values) : values.to(dtype));
  }
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  WANRT_CHECK(file, path.string(), ": cannot create the file (is the folder writable?)");
  file << text;
  file.close();
  WANRT_CHECK(file, path.string(), ": write failed (disk full?)");
}

// diffusers writes sorted keys, two-space indent and a trailing newline; only the keys the
// real I2V-A14B file has, so readers must supply patch_size, text_dim, ... from defaults.
std::string diffusers_config_json(const DitConfig& config) {
  nlohmann::json json;  // std::map-backed object: keys come out sorted
  json["_class_name"] = "WanModel";
  json["_diffusers_version"] = "0.33.0";
  json["dim"] = config.dim;
  json["eps"] = config.eps;
  json["ffn_dim"] = config.ffn_dim;
  json["freq_dim"] = config.freq_dim;
  json["in_dim"] = config.in_dim;
  json["model_type"] = config.model_type;
  json["num_heads"] = config.num_heads;
  json["num_layers"] = config.num_layers;
  json["out_dim"] = config.out_dim;
  json["text_len"] = config.text_len;
  return json.dump(2) + "\n";
}

void write_expert(const fs::path& folder, const DitConfig& config, FastNormal& normal) {
  fs::create_directories(folder);
  write_text(folder / "config.json", diffusers_config_json(config));
  NamedTensors tensors = random_tensors(config.expected_tensors(), DType::BF16, normal);
  // Two shards, as the real expert has six: the split point is arbitrary, the index decides.
  const size_t split = tensors.size() / 2;
  const std::string shard_names[2] = {"diffusion_pytorch_model-00001-of-00002.safetensors",
                                      "diffusion_pytorch_model-00002-of-00002.safetensors"};
  nlohmann::json weight_map = nlohmann::json::object();
  size_t total_bytes = 0;
  for (int shard = 0; shard < 2; ++shard) {
    const size_t begin = shard == 0 ? 0 : split;
    const size_t end = shard == 0 ? split : tensors.size();
    NamedTensors part(std::make_move_iterator(tensors.begin() + static_cast<ptrdiff_t>(begin)),
                      std::make_move_iterator(tensors.begin() + static_cast<ptrdiff_t>(end)));
    for (const auto& [name, tensor] : part) {
      weight_map[name] = shard_names[shard];
      total_bytes += tensor.nbytes();
    }
    write_safetensors((folder / shard_names[shard]).string(), part, {{"format", "pt"}});
  }
  nlohmann::json index;
  index["metadata"] = {{"total_size", total_bytes}};
  index["weight_map"] = std::move(weight_map);
  write_text(folder / kDitIndexName, index.dump(2) + "\n");
}

constexpr const char* kReadme =
    "RANDOM WEIGHTS - this is a wanrt demo checkpoint, NOT a trained model.\n"
    "\n"
    "It was written by `wanrt make-demo-checkpoint` for testing the engine: every weight is\n"
    "random, so any video generated from it is noise by design. It has the layout of\n"
    "Wan-AI/Wan2.2-I2V-A14B (high_noise_model/, low_noise_model/, the umT5 and VAE .pth files,\n"
    "google/umt5-xxl/spiece.model) with tiny sizes. For real videos, download the real\n"
    "checkpoint: huggingface-cli download Wan-AI/Wan2.2-I2V-A14B --local-dir DIR\n";

#ifdef WANRT_HAVE_SENTENCEPIECE
// A little English, enough for a unigram model of a few hundred pieces.
constexpr const char* kTokenizerText[] = {
    "A cat sits on a sunny windowsill and watches the birds outside.",
    "The camera slowly pans across a quiet mountain lake at sunrise.",
    "A young woman walks through a busy city street in the rain, holding a red umbrella.",
    "Waves crash against the rocks while seagulls fly over the bright blue ocean.",
    "An old man plays the violin in a small park surrounded by autumn leaves.",
    "A dog runs across the green field, chasing a yellow ball thrown by a child.",
    "Snow falls gently on a wooden cabin in the middle of a dark pine forest.",
    "The astronaut floats inside the space station and looks down at the Earth.",
    "Colorful fish swim between the corals of a tropical reef in clear water.",
    "A chef chops fresh vegetables on a wooden board in a warm, bright kitchen.",
    "Two horses gallop along the beach as the sun sets behind the hills.",
    "A train moves through the countryside, passing farms, rivers and small villages.",
    "Close-up of a flower opening its petals in the early morning light.",
    "The little girl laughs and spins around in her white summer dress.",
    "Fireworks explode in the night sky above the old castle and the river.",
    "A robot walks slowly down an empty corridor lit by flickering lights.",
    "Steam rises from a cup of coffee on a table next to an open book.",
    "The wind moves through tall grass while clouds drift across the sky.",
    "A boy rides his bicycle down a hill, his jacket flapping behind him.",
    "Rain drops run down the window of a car driving at night through the city.",
};

class TextIterator : public sentencepiece::SentenceIterator {
 public:
  bool done() const override { return index_ >= std::size(kTokenizerText); }
  void Next() override {
    ++index_;
    if (!done()) current_ = kTokenizerText[index_];
  }
  const std::string& value() const override { return current_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  size_t index_ = 0;
  std::string current_ = kTokenizerText[0];
};

void write_tokenizer(const fs::path& path, int64_t max_vocab) {
  fs::create_directories(path.parent_path());
  // The T5 layout: pad 0, eos 1, unk 2, no bos; the vocabulary must fit the embedding table.
  const std::unordered_map<std::string, std::string> options = {
      {"model_type", "unigram"},      {"vocab_size", std::to_string(std::min<int64_t>(max_vocab, 256))},
      {"hard_vocab_limit", "false"},  {"pad_id", "0"},
      {"eos_id", "1"},                {"unk_id", "2"},
      {"bos_id", "-1"},               {"character_coverage", "1.0"},
      {"minloglevel", "2"},           {"num_threads", "1"}};
  TextIterator text;
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(options, &text, &model);
  WANRT_CHECK(status.ok(), path.string(), ": training the demo tokenizer failed: ",
              status.ToString());
  write_text(path, model);
}
#endif

}  // namespace

DitConfig demo_dit_config() {
  DitConfig config;  // constructor defaults for what diffusers never writes (text_dim 4096, ...)
  config.model_type = "i2v";
  config.in_dim = 36;  // 16 noisy latent + 4 mask + 16 image latent channels, as in I2V-A14B
  config.dim = 256;
  config.ffn_dim = 512;
  config.num_heads = 2;  // head width 128, as in the real model (kernels may rely on it)
  config.num_layers = 2;
  config.out_dim = 16;
  return config;
}

T5CheckpointConfig demo_t5_config() {
  T5CheckpointConfig config;
  config.vocab = 1000;
  config.dim = 4096;  // must equal the DiT's text_dim, which the real config leaves at 4096
  config.dim_attn = 64;
  config.dim_ffn = 128;
  config.num_heads = 4;
  config.num_layers = 2;
  config.num_buckets = 32;
  return config;
}

VaeCheckpointConfig demo_vae_config() {
  VaeCheckpointConfig config;
  config.dim = 8;  // the real VAE has 96; the structure is otherwise the same
  config.z_dim = 16;
  config.dim_mult = {1, 2, 4, 4};
  config.num_res_blocks = 2;
  config.temporal_downsample = {false, true, true};
  return config;
}

void write_demo_checkpoint(const std::string& dir, uint64_t seed) {
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  WANRT_CHECK(fs::is_directory(root), dir, ": cannot create the folder (", ec.message(), ")");
  // One stream per component, so changing one component's size leaves the others' weights alone.
  FastNormal high_noise(seed * 4 + 0), low_noise(seed * 4 + 1), t5(seed * 4 + 2), vae(seed * 4 + 3);
  write_text(root / "README.txt", kReadme);
  write_expert(root / kHighNoiseFolder, demo_dit_config(), high_noise);
  write_expert(root / kLowNoiseFolder, demo_dit_config(), low_noise);
  write_pth((root / str_cat(kT5Stem, ".pth")).string(),
            random_tensors(demo_t5_config().expected_tensors(), DType::BF16, t5), kT5Stem);
  write_pth((root / str_cat(kVaeStem, ".pth")).string(),
            random_tensors(demo_vae_config().expected_tensors(), DType::F32, vae), kVaeStem);
#ifdef WANRT_HAVE_SENTENCEPIECE
  write_tokenizer(root / kTokenizerModel, demo_t5_config().vocab);
#endif
}

}  // namespace wanrt
