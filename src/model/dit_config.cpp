#include "model/dit_config.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/expected_tensors.h"
#include "io/tensor_store.h"

namespace wanrt {
namespace {

using nlohmann::json;

// The sizes have no safe default: a silently defaulted width would build a different network,
// so these must be in the file (the real config.json always has them).
const std::set<std::string> kRequiredKeys = {"model_type", "in_dim",    "dim",
                                             "ffn_dim",    "freq_dim",  "out_dim",
                                             "num_heads",  "num_layers"};
// The rest take the WanModel constructor defaults; patch_size, text_dim, window_size, qk_norm
// and cross_attn_norm are never written by diffusers (spec §1.1).
const std::set<std::string> kOptionalKeys = {"patch_size", "text_len", "text_dim", "window_size",
                                             "qk_norm",    "cross_attn_norm", "eps"};

class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& origin) : root_(root), origin_(origin) {}

  bool has(const char* key) const { return root_.contains(key); }

  void read_int(const char* key, int64_t& out) const {
    if (!has(key)) return;
    const json& value = root_.at(key);
    if (!value.is_number_integer()) type_error(key, "an integer", value);
    out = value.get<int64_t>();
  }
  void read_double(const char* key, double& out) const {
    if (!has(key)) return;
    const json& value = root_.at(key);
    if (!value.is_number()) type_error(key, "a number", value);
    out = value.get<double>();
  }
  void read_bool(const char* key, bool& out) const {
    if (!has(key)) return;
    const json& value = root_.at(key);
    if (!value.is_boolean()) type_error(key, "true or false", value);
    out = value.get<bool>();
  }
  void read_string(const char* key, std::string& out) const {
    if (!has(key)) return;
    const json& value = root_.at(key);
    if (!value.is_string()) type_error(key, "a string", value);
    out = value.get<std::string>();
  }
  template <size_t N>
  void read_int_array(const char* key, std::array<int64_t, N>& out) const {
    if (!has(key)) return;
    const json& value = root_.at(key);
    const std::string wanted = str_cat("a list of ", N, " integers");
    if (!value.is_array() || value.size() != N) type_error(key, wanted.c_str(), value);
    for (size_t i = 0; i < N; ++i) {
      if (!value[i].is_number_integer()) type_error(key, wanted.c_str(), value);
      out[i] = value[i].get<int64_t>();
    }
  }

  [[noreturn]] void type_error(const char* key, const char* wanted, const json& value) const {
    fail(origin_, ": key \"", key, "\" must be ", wanted, ", found ", value.dump());
  }
  [[noreturn]] void value_error(const char* key, const std::string& why) const {
    fail(origin_, ": key \"", key, "\" ", why);
  }

 private:
  const json& root_;
  const std::string& origin_;
};

}  // namespace

DitConfig DitConfig::from_json_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  WANRT_CHECK(file, path, ": cannot open the DiT config (expected an expert's config.json)");
  std::ostringstream text;
  text << file.rdbuf();
  WANRT_CHECK(!file.bad(), path, ": read error");
  return from_json_text(text.str(), path);
}

DitConfig DitConfig::from_json_text(const std::string& text, const std::string& origin) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    fail(origin, ": not valid JSON (", e.what(), ")");
  }
  WANRT_CHECK(root.is_object(), origin, ": a DiT config must be a JSON object, found ",
              root.type_name());

  for (const std::string& key : kRequiredKeys)
    WANRT_CHECK(root.contains(key), origin, ": required key \"", key,
                "\" is missing (a Wan2.2 expert config.json has model_type, in_dim, dim, ffn_dim, "
                "freq_dim, out_dim, num_heads and num_layers)");
  for (const auto& item : root.items()) {
    const std::string& key = item.key();
    if (key.starts_with("_") || kRequiredKeys.count(key) || kOptionalKeys.count(key)) continue;
    // Newer diffusers versions add keys; failing on them would refuse a usable checkpoint.
    std::cerr << "wanrt: warning: " << origin << ": unknown key \"" << key << "\" ignored\n";
  }

  DitConfig config;
  const ConfigReader reader(root, origin);
  reader.read_string("model_type", config.model_type);
  reader.read_int_array("patch_size", config.patch_size);
  reader.read_int("text_len", config.text_len);
  reader.read_int("in_dim", config.in_dim);
  reader.read_int("dim", config.dim);
  reader.read_int("ffn_dim", config.ffn_dim);
  reader.read_int("freq_dim", config.freq_dim);
  reader.read_int("text_dim", config.text_dim);
  reader.read_int("out_dim", config.out_dim);
  reader.read_int("num_heads", config.num_heads);
  reader.read_int("num_layers", config.num_layers);
  reader.read_int_array("window_size", config.window_size);
  reader.read_bool("qk_norm", config.qk_norm);
  reader.read_bool("cross_attn_norm", config.cross_attn_norm);
  reader.read_double("eps", config.eps);

  // Validation: each message names the key so the user knows which line of the file to fix.
  if (config.model_type != "t2v" && config.model_type != "i2v" && config.model_type != "ti2v")
    reader.value_error("model_type", str_cat("is \"", config.model_type,
                                             "\"; expected \"t2v\", \"i2v\" or \"ti2v\""));
  const std::pair<const char*, int64_t> sizes[] = {
      {"text_len", config.text_len}, {"in_dim", config.in_dim},       {"dim", config.dim},
      {"ffn_dim", config.ffn_dim},   {"freq_dim", config.freq_dim},   {"text_dim", config.text_dim},
      {"out_dim", config.out_dim},   {"num_heads", config.num_heads}, {"num_layers", config.num_layers}};
  // The bound keeps parameter counts far from int64 overflow; real sizes are below 2^15.
  constexpr int64_t kLargestSize = int64_t{1} << 20;
  for (const auto& [key, value] : sizes) {
    if (value <= 0) reader.value_error(key, str_cat("must be positive, found ", value));
    if (value > kLargestSize)
      reader.value_error(key, str_cat("is implausibly large (", value, " > ", kLargestSize, ")"));
  }
  if (config.num_layers > 1024)
    reader.value_error("num_layers", str_cat("is implausibly large (", config.num_layers,
                                             " > 1024)"));
  for (int64_t p : config.patch_size)
    if (p <= 0 || p > 64)
      reader.value_error("patch_size", str_cat("must hold sizes from 1 to 64, found [",
                                               config.patch_size[0], ", ", config.patch_size[1],
                                               ", ", config.patch_size[2], "]"));
  for (int64_t w : config.window_size)
    if (w < -1 || w == 0)
      reader.value_error("window_size", "must hold -1 (global attention) or positive sizes");
  if (config.dim % config.num_heads != 0)
    reader.value_error("num_heads", str_cat("(", config.num_heads, ") must divide dim (",
                                            config.dim, ")"));
  // RoPE rotates adjacent pairs of each head's channels, and the time embedding is half sine,
  // half cosine: both need even sizes.
  if (config.head_dim() % 2 != 0)
    reader.value_error("num_heads", str_cat("gives an odd head width dim/num_heads = ",
                                            config.head_dim(), "; RoPE needs it even"));
  if (config.freq_dim % 2 != 0)
    reader.value_error("freq_dim", str_cat("must be even (half sine, half cosine), found ",
                                           config.freq_dim));
  if (!(config.eps > 0)) reader.value_error("eps", str_cat("must be positive, found ", config.eps));
  return config;
}

DitConfig DitConfig::i2v_a14b() {
  DitConfig config;
  config.model_type = "i2v";
  config.in_dim = 36;
  config.dim = 5120;
  config.ffn_dim = 13824;
  config.freq_dim = 256;
  config.text_dim = 4096;
  config.out_dim = 16;
  config.num_heads = 40;
  config.num_layers = 40;
  return config;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> DitConfig::expected_tensors() const {
  ExpectedTensors list;
  const int64_t d = dim;
  auto linear = [&list](const std::string& prefix, int64_t out, int64_t in) {
    list.emplace_back(prefix + ".weight", Shape{out, in});
    list.emplace_back(prefix + ".bias", Shape{out});
  };
  list.emplace_back("patch_embedding.weight",
                    Shape{d, in_dim, patch_size[0], patch_size[1], patch_size[2]});
  list.emplace_back("patch_embedding.bias", Shape{d});
  linear("text_embedding.0", d, text_dim);
  linear("text_embedding.2", d, d);
  linear("time_embedding.0", d, freq_dim);
  linear("time_embedding.2", d, d);
  linear("time_projection.1", 6 * d, d);
  for (int64_t i = 0; i < num_layers; ++i) {
    const std::string block = str_cat("blocks.", i, ".");
    list.emplace_back(block + "modulation", Shape{1, 6, d});
    for (const char* attention : {"self_attn", "cross_attn"}) {
      for (const char* projection : {"q", "k", "v", "o"})
        linear(block + attention + "." + projection, d, d);
      if (qk_norm) {  // RMSNorm gains over the full width
        list.emplace_back(block + attention + ".norm_q.weight", Shape{d});
        list.emplace_back(block + attention + ".norm_k.weight", Shape{d});
      }
      if (std::string_view(attention) == "self_attn" && cross_attn_norm) {
        list.emplace_back(block + "norm3.weight", Shape{d});
        list.emplace_back(block + "norm3.bias", Shape{d});
      }
    }
    linear(block + "ffn.0", ffn_dim, d);
    linear(block + "ffn.2", d, ffn_dim);
  }
  list.emplace_back("head.modulation", Shape{1, 2, d});
  linear("head.head", out_dim * patch_size[0] * patch_size[1] * patch_size[2], d);
  return list;
}

void DitConfig::check_weights(const TensorStore& weights, const std::string& where) const {
  check_tensor_set(weights, expected_tensors(),
                   str_cat(where, ": the DiT weights do not match its config (dim ", dim,
                           ", ffn_dim ", ffn_dim, ", num_layers ", num_layers, ", in_dim ", in_dim,
                           ", text_dim ", text_dim, ")"));
}

int64_t DitConfig::parameter_count() const { return expected_parameter_count(expected_tensors()); }

bool dit_weight_is_quantized(std::string_view name) {
  constexpr std::string_view kBlocks = "blocks.";
  if (!name.starts_with(kBlocks)) return false;
  name.remove_prefix(kBlocks.size());
  const size_t digits = name.find_first_not_of("0123456789");
  if (digits == 0 || digits == std::string_view::npos || name[digits] != '.') return false;
  name.remove_prefix(digits + 1);  // "self_attn.q.weight", "ffn.0.weight", ...
  for (std::string_view layer :
       {"self_attn.q.weight", "self_attn.k.weight", "self_attn.v.weight", "self_attn.o.weight",
        "cross_attn.q.weight", "cross_attn.k.weight", "cross_attn.v.weight", "cross_attn.o.weight",
        "ffn.0.weight", "ffn.2.weight"})
    if (name == layer) return true;
  return false;
}

}  // namespace wanrt
