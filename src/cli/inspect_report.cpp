#include "cli/inspect_report.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "core/error.h"

#ifdef WANRT_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace wanrt::cli {
namespace {

namespace fs = std::filesystem;

void describe_source(ComponentReport& report, const WeightSource& source) {
  report.present = true;
  report.source = source.path;
  report.format = weight_format_name(source.format);
  report.file_count = source.files.size();
  for (const std::string& file : source.files) {
    std::error_code ec;
    const auto size = fs::file_size(file, ec);
    if (!ec) report.bytes_on_disk += size;
  }
}

void describe_tensors(ComponentReport& report, const TensorStore& weights) {
  report.tensor_count = weights.size();
  for (const std::string& name : weights.names())
    ++report.dtype_counts[std::string(dtype_name(weights.get(name).dtype()))];
}

std::string bool_str(bool value) { return value ? "true" : "false"; }

// The keys config.json actually holds, to mark the values that came from defaults.
std::set<std::string> keys_in_file(const std::string& path) {
  std::set<std::string> keys;
  std::ifstream file(path, std::ios::binary);
  const auto json = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (json.is_object())
    for (const auto& item : json.items()) keys.insert(item.key());
  return keys;
}

std::vector<std::pair<std::string, std::string>> describe_dit_config(const DitConfig& config,
                                                                     const std::string& path) {
  const std::set<std::string> keys = keys_in_file(path);
  auto value = [&keys](const char* key, const std::string& text) {
    return std::pair<std::string, std::string>(key, keys.count(key) ? text : text + " (default)");
  };
  std::ostringstream eps;
  eps << config.eps;
  return {
      value("model_type", config.model_type),
      value("dim", std::to_string(config.dim)),
      value("ffn_dim", std::to_string(config.ffn_dim)),
      value("num_heads", str_cat(config.num_heads, " (head_dim ", config.head_dim(), ")")),
      value("num_layers", std::to_string(config.num_layers)),
      value("in_dim", std::to_string(config.in_dim)),
      value("out_dim", std::to_string(config.out_dim)),
      value("text_dim", std::to_string(config.text_dim)),
      value("freq_dim", std::to_string(config.freq_dim)),
      value("text_len", std::to_string(config.text_len)),
      value("patch_size", str_cat("[", config.patch_size[0], ", ", config.patch_size[1], ", ",
                                  config.patch_size[2], "]")),
      value("window_size", str_cat("[", config.window_size[0], ", ", config.window_size[1], "]")),
      value("qk_norm", bool_str(config.qk_norm)),
      value("cross_attn_norm", bool_str(config.cross_attn_norm)),
      value("eps", eps.str()),
  };
}

ComponentReport inspect_expert(const ExpertLayout& expert, std::optional<DitConfig>& config) {
  ComponentReport report;
  report.title = expert.name;
  if (expert.weights) describe_source(report, *expert.weights);
  if (expert.config_path.empty()) return report;
  try {
    config = load_expert_config(expert);
    report.config = describe_dit_config(*config, expert.config_path);
    report.parameters = config->parameter_count();
    report.memory = weight_memory(config->expected_tensors(), dit_weight_is_quantized);
    report.memory_known = true;
    if (!expert.weights) return report;
    const TensorStore weights = open_expert_weights(expert);  // a quantized expert's scales joined
    describe_tensors(report, weights);
    int64_t quantized = 0;
    std::string codes;
    for (const std::string& name : weights.names())
      if (weights.get(name).is_row_scaled()) {
        ++quantized;
        codes = std::string(dtype_name(weights.get(name).dtype()));
      }
    if (quantized > 0)
      report.config.emplace_back("quantized", str_cat(quantized, " weights stored as ", codes,
                                                      " codes + per-row F32 scales (wanrt quantize)"));
    config->check_weights(weights, expert.weights->path);
    report.valid = true;
  } catch (const Error& e) {
    report.error = e.what();
  }
  return report;
}

// The text encoder and the VAE: --quantize leaves them in bf16.
template <typename Config, typename Infer, typename Describe>
ComponentReport inspect_component(const char* title, const std::optional<WeightSource>& source,
                                  std::optional<Config>& config, Infer infer, Describe describe) {
  ComponentReport report;
  report.title = title;
  if (!source) return report;
  describe_source(report, *source);
  try {
    const TensorStore weights = open_weights(*source);
    describe_tensors(report, weights);
    report.parameters = weights.total_params();
    config = infer(weights, source->path);
    report.config = describe(*config);
    report.memory = weight_memory(config->expected_tensors(), nullptr);
    report.memory_known = true;
    report.valid = true;
  } catch (const Error& e) {
    report.error = e.what();
  }
  return report;
}

std::vector<std::pair<std::string, std::string>> describe_t5(const T5CheckpointConfig& c) {
  return {{"vocab", std::to_string(c.vocab)},
          {"dim", std::to_string(c.dim)},
          {"dim_attn", std::to_string(c.dim_attn)},
          {"dim_ffn", std::to_string(c.dim_ffn)},
          {"num_heads", str_cat(c.num_heads, " (head_dim ", c.head_dim(), ")")},
          {"num_layers", std::to_string(c.num_layers)},
          {"num_buckets", std::to_string(c.num_buckets)},
          {"shared_pos", bool_str(c.shared_pos)}};
}

std::vector<std::pair<std::string, std::string>> describe_vae(const VaeCheckpointConfig& c) {
  std::string mult = "[", temporal = "[";
  for (size_t i = 0; i < c.dim_mult.size(); ++i) mult += str_cat(i ? ", " : "", c.dim_mult[i]);
  for (size_t i = 0; i < c.temporal_downsample.size(); ++i)
    temporal += str_cat(i ? ", " : "", bool_str(c.temporal_downsample[i]));
  return {{"dim", std::to_string(c.dim)},
          {"z_dim", std::to_string(c.z_dim)},
          {"dim_mult", mult + "]"},
          {"num_res_blocks", std::to_string(c.num_res_blocks)},
          {"temporal_downsample", temporal + "]"}};
}

void check_consistency(InspectReport& report, const std::optional<DitConfig>& high,
                       const std::optional<DitConfig>& low,
                       const std::optional<T5CheckpointConfig>& t5,
                       const std::optional<VaeCheckpointConfig>& vae) {
  auto& warnings = report.warnings;
  if (high && low &&
      (high->in_dim != low->in_dim || high->out_dim != low->out_dim ||
       high->text_dim != low->text_dim || high->patch_size != low->patch_size))
    warnings.push_back("the two experts disagree on in_dim/out_dim/text_dim/patch_size; they "
                       "must share inputs and outputs");
  for (const auto* dit : {high ? &*high : nullptr, low ? &*low : nullptr}) {
    if (!dit) continue;
    if (dit->model_type != "i2v")
      warnings.push_back(str_cat("model_type is \"", dit->model_type,
                                 "\"; wanrt runs the image-to-video I2V-A14B pipeline (\"i2v\")"));
    if (t5 && t5->dim != dit->text_dim)
      warnings.push_back(str_cat("the umT5 encoder outputs width ", t5->dim,
                                 " but the DiT expects text_dim ", dit->text_dim));
    if (vae && vae->z_dim != dit->out_dim)
      warnings.push_back(str_cat("the VAE latent has ", vae->z_dim,
                                 " channels but the DiT outputs out_dim ", dit->out_dim));
    // i2v input = noisy latent + 4 mask channels + image latent.
    if (vae && dit->model_type == "i2v" && dit->in_dim != 2 * vae->z_dim + 4)
      warnings.push_back(str_cat("an i2v DiT needs in_dim = 2 * z_dim + 4 = ", 2 * vae->z_dim + 4,
                                 ", config says ", dit->in_dim));
    if (high && low) break;  // identical checks for the second expert add nothing
  }
}

}  // namespace

WeightMemory weight_memory(const ExpectedTensors& tensors,
                           const std::function<bool(std::string_view)>& is_quantized) {
  WeightMemory memory;
  for (const auto& [name, shape] : tensors) {
    const auto elements = static_cast<uint64_t>(shape_numel(shape));
    memory.bf16 += 2 * elements;
    const bool quantized = is_quantized && is_quantized(name);
    memory.int8 += quantized ? elements + 4 * static_cast<uint64_t>(shape[0]) : 2 * elements;
  }
  return memory;
}

bool InspectReport::ok() const {
  return layout.complete() && high_noise.valid && low_noise.valid && t5.valid && vae.valid &&
         warnings.empty();
}

InspectReport inspect_checkpoint(const std::string& root) {
  InspectReport report;
  report.layout = resolve_checkpoint(root);
  std::optional<DitConfig> high, low;
  std::optional<T5CheckpointConfig> t5;
  std::optional<VaeCheckpointConfig> vae;
  report.high_noise = inspect_expert(report.layout.high_noise, high);
  report.low_noise = inspect_expert(report.layout.low_noise, low);
  report.t5 = inspect_component("umT5 text encoder", report.layout.t5, t5, infer_t5_config,
                                describe_t5);
  report.vae = inspect_component("VAE", report.layout.vae, vae, infer_vae_config, describe_vae);
  check_consistency(report, high, low, t5, vae);
#ifdef WANRT_HAVE_SENTENCEPIECE
  if (!report.layout.tokenizer_model.empty()) {
    sentencepiece::SentencePieceProcessor tokenizer;
    const auto status = tokenizer.Load(report.layout.tokenizer_model);
    if (!status.ok()) {
      report.warnings.push_back(str_cat(report.layout.tokenizer_model,
                                        ": not a SentencePiece model (", status.ToString(), ")"));
    } else {
      report.tokenizer = str_cat(tokenizer.GetPieceSize(), " pieces (pad ", tokenizer.pad_id(),
                                 ", eos ", tokenizer.eos_id(), ", unk ", tokenizer.unk_id(), ")");
      if (t5 && tokenizer.GetPieceSize() > t5->vocab)
        report.warnings.push_back(str_cat("the tokenizer has ", tokenizer.GetPieceSize(),
                                          " pieces but the umT5 embedding only ", t5->vocab,
                                          " rows"));
      if (tokenizer.pad_id() != 0 || tokenizer.eos_id() != 1)
        report.warnings.push_back(str_cat(report.layout.tokenizer_model, ": pad id ",
                                          tokenizer.pad_id(), ", eos id ", tokenizer.eos_id(),
                                          "; umT5 needs pad 0 and eos 1"));
    }
  }
#endif
  return report;
}

}  // namespace wanrt::cli
