#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/quantized_checkpoint.h"
#include "io/safetensors.h"
#include "io/torch_pth.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;

bool is_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string download_hint(const std::string& root) {
  return str_cat("download Wan-AI/Wan2.2-I2V-A14B into this folder (huggingface-cli download "
                 "Wan-AI/Wan2.2-I2V-A14B --local-dir ",
                 root,
                 "), or write a random-weight test checkpoint with `wanrt make-demo-checkpoint "
                 "DIR`");
}

// The shard files named by a sharded expert's index, in sorted order.
std::vector<std::string> shards_named_by_index(const fs::path& index_path) {
  const SafetensorsIndex index = parse_safetensors_index(read_text(index_path), index_path.string());
  std::set<std::string> shards;
  for (const auto& entry : index.weight_map) shards.insert(entry.second);
  return {shards.begin(), shards.end()};
}

void resolve_expert(CheckpointLayout& layout, ExpertLayout& expert, const char* name,
                    const char* description) {
  expert.name = name;
  const fs::path folder = fs::path(layout.root) / name;
  expert.folder = folder.string();
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    layout.missing.push_back({str_cat(description, " folder"), folder.string(),
                              download_hint(layout.root)});
    return;
  }
  const fs::path config = folder / "config.json";
  if (is_file(config))
    expert.config_path = config.string();
  else
    layout.missing.push_back({str_cat(description, " config"), config.string(),
                              str_cat("copy ", name, "/config.json from Wan-AI/Wan2.2-I2V-A14B")});

  const fs::path index = folder / kDitIndexName;
  const fs::path single = folder / kDitSingleName;
  bool weights_ok = false;
  if (is_file(index)) {
    WeightSource source{index.string(), WeightFormat::SafetensorsSharded, {}};
    try {
      weights_ok = true;
      for (const std::string& shard : shards_named_by_index(index)) {
        const fs::path shard_path = folder / shard;
        source.files.push_back(shard_path.string());
        if (!is_file(shard_path)) {
          weights_ok = false;
          layout.missing.push_back({str_cat(description, " weight shard ", shard),
                                    shard_path.string(),
                                    str_cat("the index names this shard; download it (an "
                                            "interrupted download leaves shards out)")});
        }
      }
    } catch (const Error& e) {
      weights_ok = false;
      layout.missing.push_back({str_cat(description, " weight index"), index.string(),
                                str_cat(e.what(), "; download the index again")});
    }
    if (weights_ok) expert.weights = std::move(source);
  } else if (is_file(single)) {
    expert.weights = WeightSource{single.string(), WeightFormat::Safetensors, {single.string()}};
    weights_ok = true;
  } else {
    std::vector<std::string> candidates;
    for (const auto& entry : fs::directory_iterator(folder, ec))
      if (entry.path().extension() == ".safetensors" && is_file(entry.path()))
        candidates.push_back(entry.path().string());
    std::sort(candidates.begin(), candidates.end());
    if (candidates.size() == 1) {
      expert.weights = WeightSource{candidates[0], WeightFormat::Safetensors, {candidates[0]}};
      layout.notes.push_back(str_cat(name, ": using the only .safetensors file there, ",
                                     candidates[0]));
      weights_ok = true;
    } else if (candidates.empty()) {
      layout.missing.push_back({str_cat(description, " weights"), index.string(),
                                str_cat("expected ", kDitIndexName, " with its shards, or one ",
                                        kDitSingleName, "; ", download_hint(layout.root))});
    } else {
      layout.missing.push_back(
          {str_cat(description, " weight index"), index.string(),
           str_cat("found ", candidates.size(), " .safetensors files but no index saying which "
                   "tensor is in which; download ", kDitIndexName, " as well")});
    }
  }
  expert.found = weights_ok && !expert.config_path.empty();
}

// A component stored as STEM.pth or STEM.safetensors at the root; .pth (the official file)
// wins when both exist.
void resolve_single_file(CheckpointLayout& layout, std::optional<WeightSource>& out,
                         const char* stem, const char* description) {
  const fs::path pth = fs::path(layout.root) / str_cat(stem, ".pth");
  const fs::path safetensors = fs::path(layout.root) / str_cat(stem, ".safetensors");
  const bool have_pth = is_file(pth);
  const bool have_safetensors = is_file(safetensors);
  if (have_pth) {
    out = WeightSource{pth.string(), WeightFormat::Pth, {pth.string()}};
    if (have_safetensors)
      layout.notes.push_back(str_cat(description, ": both ", pth.filename().string(), " and ",
                                     safetensors.filename().string(),
                                     " exist; using the .pth (the official file)"));
  } else if (have_safetensors) {
    out = WeightSource{safetensors.string(), WeightFormat::Safetensors, {safetensors.string()}};
  } else {
    layout.missing.push_back({description, pth.string(),
                              str_cat("download ", pth.filename().string(),
                                      " from Wan-AI/Wan2.2-I2V-A14B (a .safetensors file of the "
                                      "same name and tensors also works)")});
  }
}

}  // namespace

const char* weight_format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::Safetensors: return "safetensors";
    case WeightFormat::SafetensorsSharded: return "sharded safetensors";
    case WeightFormat::Pth: return "PyTorch .pth";
  }
  return "?";
}

CheckpointLayout resolve_checkpoint(const std::string& root) {
  std::error_code ec;
  WANRT_CHECK(fs::exists(root, ec), root, ": no such checkpoint folder (expected the "
              "Wan-AI/Wan2.2-I2V-A14B layout: high_noise_model/, low_noise_model/, ",
              kT5Stem, ".pth, ", kVaeStem, ".pth, google/umt5-xxl/)");
  WANRT_CHECK(fs::is_directory(root, ec), root, ": is not a folder (give the checkpoint folder, "
              "the one holding high_noise_model/ and low_noise_model/)");
  CheckpointLayout layout;
  layout.root = root;
  resolve_expert(layout, layout.high_noise, kHighNoiseFolder, "high-noise expert");
  resolve_expert(layout, layout.low_noise, kLowNoiseFolder, "low-noise expert");
  resolve_single_file(layout, layout.t5, kT5Stem, "umT5 text encoder");
  resolve_single_file(layout, layout.vae, kVaeStem, "VAE");

  const fs::path tokenizer = fs::path(root) / kTokenizerModel;
  if (is_file(tokenizer)) {
    layout.tokenizer_model = tokenizer.string();
  } else {
    const bool has_json = is_file(tokenizer.parent_path() / "tokenizer.json");
    layout.missing.push_back(
        {"tokenizer", tokenizer.string(),
         str_cat(has_json ? "only tokenizer.json is there; " : "",
                 "wanrt reads the SentencePiece model: copy google/umt5-xxl/spiece.model from "
                 "Wan-AI/Wan2.2-I2V-A14B")});
  }
  const fs::path readme = fs::path(root) / "README.txt";
  layout.random_demo =
      is_file(readme) && read_text(readme).find(kRandomWeightsMarker) != std::string::npos;
  return layout;
}

void require_complete(const CheckpointLayout& layout) {
  if (layout.complete()) return;
  std::string message = str_cat(layout.root, ": the checkpoint is incomplete:");
  for (const MissingPart& part : layout.missing)
    message += str_cat("\n  missing ", part.what, ": ", part.expected_path, "\n    -> ", part.hint);
  fail(message);
}

TensorStore open_weights(const WeightSource& source) {
  switch (source.format) {
    case WeightFormat::Pth: return read_pth(source.path);
    case WeightFormat::Safetensors: return std::move(read_safetensors(source.path).tensors);
    case WeightFormat::SafetensorsSharded: return read_safetensors_index(source.path);
  }
  fail("internal error: unknown weight format");
}

DitConfig load_expert_config(const ExpertLayout& expert) {
  WANRT_CHECK(!expert.config_path.empty(), expert.folder, "/config.json: missing (the ",
              expert.name, " expert needs its config.json)");
  return DitConfig::from_json_file(expert.config_path);
}

TensorStore open_expert_weights(const ExpertLayout& expert) {
  WANRT_CHECK(expert.weights.has_value(), expert.folder, ": no weights found (expected ",
              kDitIndexName, " with its shards, or ", kDitSingleName, ")");
  const WeightSource& source = *expert.weights;
  if (source.format != WeightFormat::Safetensors)  // .pth and shards carry no file metadata
    return join_row_scales(open_weights(source), {}, source.path);
  SafetensorsContents contents = read_safetensors(source.path);
  return join_row_scales(std::move(contents.tensors), contents.metadata, source.path);
}

TensorStore load_expert_weights(const ExpertLayout& expert, const DitConfig& config) {
  TensorStore weights = open_expert_weights(expert);
  config.check_weights(weights, expert.weights->path);
  return weights;
}

}  // namespace wanrt
