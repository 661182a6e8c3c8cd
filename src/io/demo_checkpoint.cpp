#include "io/demo_checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "core/error.h"
#include "io/random_weights.h"
#include "io/safetensors.h"
#include "io/torch_pth.h"

#ifdef WANRT_HAVE_SENTENCEPIECE
#include <sentencepiece_trainer.h>
#endif

namespace wanrt {
namespace {

namespace fs = std::filesystem;

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

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

// ---- the full-size checkpoint ----

constexpr double kGB = 1e9;

uint64_t bytes_of(const ExpectedTensors& tensors, DType dtype) {
  uint64_t total = 0;
  for (const auto& entry : tensors)
    total += static_cast<uint64_t>(shape_numel(entry.second)) * dtype_size(dtype);
  return total;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Progress lines: what was written, how much in all so far, and the rate.
class WriteProgress {
 public:
  WriteProgress(const FullSizeLog& log, uint64_t total_bytes) : log_(log), total_(total_bytes) {}
  void done(const std::string& what, uint64_t bytes) {
    written_ += bytes;
    const double seconds = seconds_since(start_);
    char line[256];
    std::snprintf(line, sizeof line, "%5.1f %%  %6.2f / %.2f GB  %6.1f s  %6.0f MB/s  %s",
                  100.0 * static_cast<double>(written_) / static_cast<double>(total_),
                  static_cast<double>(written_) / kGB, static_cast<double>(total_) / kGB, seconds,
                  seconds > 0 ? static_cast<double>(written_) / seconds / 1e6 : 0.0, what.c_str());
    if (log_) log_(line);
  }

 private:
  const FullSizeLog& log_;
  uint64_t total_;
  uint64_t written_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// README.txt of a shared-expert checkpoint: the random-weights marker first, then the sizes.
std::string shared_expert_readme(const RandomCheckpointSpec& spec) {
  const DitConfig& dit = spec.dit;
  const bool full = spec.dit.dim == DitConfig::i2v_a14b().dim;
  return str_cat(
      "RANDOM WEIGHTS - this is a wanrt ", full ? "FULL-SIZE " : "", "benchmark checkpoint, NOT a "
      "trained model.\n\n"
      "It was written by `wanrt make-demo-checkpoint --full-size` for measuring the engine: every\n"
      "weight is random, so any video generated from it is noise by design. It has the layout of\n"
      "Wan-AI/Wan2.2-I2V-A14B with these sizes:\n"
      "  DiT experts: dim ", dit.dim, ", ", dit.num_layers, " blocks, ", dit.num_heads, " heads, FFN ",
      dit.ffn_dim, ", ", dit.parameter_count(), " parameters each, bf16 safetensors shards\n"
      "  umT5 encoder: vocab ", spec.t5.vocab, ", dim ", spec.t5.dim, ", ", spec.t5.num_layers,
      " blocks, FFN ", spec.t5.dim_ffn, ", bf16 .pth\n"
      "  VAE: base width ", spec.vae.dim, ", float32 .pth\n"
      "  tokenizer: a tiny one (when wanrt was built with SentencePiece)\n\n"
      "To fit a small disk, low_noise_model/ holds its own config.json and index, but its shards are\n"
      "symbolic links to high_noise_model/'s: both experts have the SAME random weights, and a\n"
      "loader reads and uploads those bytes twice, as it would two different experts (the second\n"
      "read may come from the page cache).\n\n"
      "For real videos, download the real checkpoint:\n"
      "huggingface-cli download Wan-AI/Wan2.2-I2V-A14B --local-dir DIR\n");
}

NamedTensors random_tensors_by_name(const ExpectedTensors& expected, DType dtype, uint64_t seed) {
  NamedTensors out;
  out.reserve(expected.size());
  for (const auto& [name, shape] : expected)
    out.emplace_back(name, random_weight(name, shape, dtype, weight_seed(seed, name)));
  return out;
}

// One expert in bf16, shard by shard (only one shard's tensors in memory at a time); returns
// the shard file names.
std::vector<std::string> write_expert_shards(const fs::path& folder, const DitConfig& config,
                                             uint64_t shard_limit, uint64_t seed,
                                             WriteProgress& progress) {
  fs::create_directories(folder);
  write_text(folder / "config.json", diffusers_config_json(config));
  const ExpectedTensors expected = config.expected_tensors();
  std::vector<ExpectedTensors> shards(1);
  uint64_t shard_bytes = 0;
  for (const auto& entry : expected) {
    const uint64_t bytes = static_cast<uint64_t>(shape_numel(entry.second)) * dtype_size(DType::BF16);
    if (shard_bytes > 0 && shard_bytes + bytes > shard_limit) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(entry);
    shard_bytes += bytes;
  }
  const size_t count = shards.size();
  std::vector<std::string> names;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < count; ++i) {
    char name[96];
    std::snprintf(name, sizeof name, "diffusion_pytorch_model-%05zu-of-%05zu.safetensors", i + 1, count);
    names.emplace_back(name);
    for (const auto& entry : shards[i]) weight_map[entry.first] = names.back();
    write_safetensors((folder / names.back()).string(),
                      random_tensors_by_name(shards[i], DType::BF16, seed), {{"format", "pt"}});
    progress.done(str_cat(folder.filename().string(), "/", names.back()), bytes_of(shards[i], DType::BF16));
  }
  nlohmann::json index;
  index["metadata"] = {{"total_size", bytes_of(expected, DType::BF16)}};
  index["weight_map"] = std::move(weight_map);
  write_text(folder / kDitIndexName, index.dump(2) + "\n");
  return names;
}

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

T5CheckpointConfig full_size_t5_config() {
  T5CheckpointConfig config;  // umT5-XXL encoder (spec t5-vae-and-files §1.1)
  config.vocab = 256384;
  config.dim = 4096;
  config.dim_attn = 4096;
  config.dim_ffn = 10240;
  config.num_heads = 64;
  config.num_layers = 24;
  config.num_buckets = 32;
  config.shared_pos = false;
  return config;
}

VaeCheckpointConfig full_size_vae_config() {
  VaeCheckpointConfig config;  // the released Wan2.1_VAE.pth
  config.dim = 96;
  config.z_dim = 16;
  config.dim_mult = {1, 2, 4, 4};
  config.num_res_blocks = 2;
  config.temporal_downsample = {false, true, true};
  return config;
}

RandomCheckpointSpec full_size_spec() {
  RandomCheckpointSpec spec;
  spec.dit = DitConfig::i2v_a14b();
  spec.t5 = full_size_t5_config();
  spec.vae = full_size_vae_config();
  // ~5 GB keeps the host memory of one shard small while the expert still has six shards, as
  // the real one does (there in fp32, ~10 GB each).
  spec.shard_bytes = uint64_t{5} << 30;
  return spec;
}

uint64_t RandomCheckpointSpec::bytes() const {
  return bytes_of(dit.expected_tensors(), DType::BF16) + bytes_of(t5.expected_tensors(), DType::BF16) +
         bytes_of(vae.expected_tensors(), DType::F32);
}

void write_shared_expert_checkpoint(const std::string& dir, uint64_t seed,
                                    const RandomCheckpointSpec& spec, const FullSizeLog& log) {
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  WANRT_CHECK(fs::is_directory(root), dir, ": cannot create the folder (", ec.message(), ")");
  const uint64_t needed = spec.bytes();
  const fs::space_info space = fs::space(root, ec);
  constexpr uint64_t kMargin = uint64_t{1} << 30;  // headers, the tokenizer, the file system
  WANRT_CHECK(ec || space.available >= needed + kMargin, dir, ": not enough free disk space for "
              "the checkpoint: it needs ", static_cast<double>(needed + kMargin) / kGB, " GB, and ",
              static_cast<double>(space.available) / kGB, " GB are free");
  if (log)
    log(str_cat("Writing a RANDOM-weight checkpoint of ", static_cast<double>(needed) / kGB,
                " GB: one expert in bf16 (linked as both experts), umT5 in bf16, the VAE in fp32"));
  WriteProgress progress(log, needed);
  write_text(root / "README.txt", shared_expert_readme(spec));
  const std::vector<std::string> shards = write_expert_shards(
      root / kHighNoiseFolder, spec.dit, spec.shard_bytes, seed * 4 + 0, progress);
  // The low-noise expert: its own config.json and index, shards linked to the high-noise ones.
  const fs::path low = root / kLowNoiseFolder;
  fs::create_directories(low);
  fs::copy_file(root / kHighNoiseFolder / "config.json", low / "config.json",
                fs::copy_options::overwrite_existing);
  fs::copy_file(root / kHighNoiseFolder / kDitIndexName, low / kDitIndexName,
                fs::copy_options::overwrite_existing);
  for (const std::string& shard : shards) {
    fs::remove(low / shard);
    fs::create_symlink(fs::path("..") / kHighNoiseFolder / shard, low / shard);
  }
  if (log)
    log(str_cat(kLowNoiseFolder, ": config.json, index and ", shards.size(), " shard links to ",
                kHighNoiseFolder, "/ (the same random weights; a loader reads them twice)"));
  const ExpectedTensors t5_tensors = spec.t5.expected_tensors();
  write_pth((root / str_cat(kT5Stem, ".pth")).string(),
            random_tensors_by_name(t5_tensors, DType::BF16, seed * 4 + 2), kT5Stem);
  progress.done(str_cat(kT5Stem, ".pth"), bytes_of(t5_tensors, DType::BF16));
  const ExpectedTensors vae_tensors = spec.vae.expected_tensors();
  write_pth((root / str_cat(kVaeStem, ".pth")).string(),
            random_tensors_by_name(vae_tensors, DType::F32, seed * 4 + 3), kVaeStem);
  progress.done(str_cat(kVaeStem, ".pth"), bytes_of(vae_tensors, DType::F32));
#ifdef WANRT_HAVE_SENTENCEPIECE
  write_tokenizer(root / kTokenizerModel, spec.t5.vocab);
#endif
}

void write_full_size_checkpoint(const std::string& dir, uint64_t seed, const FullSizeLog& log) {
  write_shared_expert_checkpoint(dir, seed, full_size_spec(), log);
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
