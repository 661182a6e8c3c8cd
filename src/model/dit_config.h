// DiT (WanModel) hyper-parameters, read from an expert's config.json.
//
// Keys absent from the file take the WanModel constructor defaults (spec §1.1): patch_size,
// text_dim, window_size, qk_norm and cross_attn_norm are never written by diffusers, so the
// real I2V-A14B config.json lacks them. The sizes every real file has (model_type, in_dim, dim,
// ffn_dim, freq_dim, out_dim, num_heads, num_layers) are required: a defaulted width would
// silently build a different network. Keys beginning with "_" are metadata and ignored;
// other unknown keys draw a warning on stderr.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wanrt {

class TensorStore;

struct DitConfig {
  std::string model_type = "t2v";  // "i2v" needs the conditioning input y
  std::array<int64_t, 3> patch_size = {1, 2, 2};  // (t, h, w)
  int64_t text_len = 512;
  int64_t in_dim = 16;
  int64_t dim = 2048;
  int64_t ffn_dim = 8192;
  int64_t freq_dim = 256;
  int64_t text_dim = 4096;
  int64_t out_dim = 16;
  int64_t num_heads = 16;
  int64_t num_layers = 32;
  std::array<int64_t, 2> window_size = {-1, -1};
  bool qk_norm = true;
  bool cross_attn_norm = true;
  double eps = 1e-6;

  int64_t head_dim() const { return dim / num_heads; }

  // Parses config.json; a bad value or type is an error naming the file and key.
  static DitConfig from_json_file(const std::string& path);
  static DitConfig from_json_text(const std::string& text, const std::string& origin);
  // The I2V-A14B expert configuration (both experts are identical).
  static DitConfig i2v_a14b();

  // Checks the configuration against the checkpoint's tensor shapes (every expected tensor
  // present with the expected shape and a float dtype, none unexpected); the error lists every
  // mismatch with the tensor's name, its file, and the expected and actual shapes.
  void check_weights(const TensorStore& weights, const std::string& where) const;
  int64_t parameter_count() const;
  // Every tensor this configuration needs, with its shape (PyTorch order), in module order.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensors() const;
};

// Which weights weight-only quantization (--quantize int8/fp8) applies to: the 2-D weights of
// the blocks' linear layers, self- and cross-attention q/k/v/o and the FFN (ffn.0, ffn.2), 98.3%
// of an A14B expert's parameters and all of its per-token GEMM work. Everything outside the
// blocks keeps its float format, following the precision map (spec §6): the time MLP, the time
// projection and the head compute in fp32 in the reference (their errors would reach every
// block's modulation, or the velocity itself), the patch embedding is a Conv3d in the
// reference, and the text embedding runs once per call (together 1.7% of the parameters). So do
// biases, norms and modulation tables. `wanrt inspect` counts memory with the same rule.
bool dit_weight_is_quantized(std::string_view name);

}  // namespace wanrt
