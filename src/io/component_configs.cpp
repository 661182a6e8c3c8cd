// T5 and VAE sizes inferred from tensor shapes, and the key sets those sizes imply.
// Neither .pth carries a config, so the shapes are the only source; the full key-set check
// afterwards catches a file whose shapes are consistent at the anchors but wrong elsewhere.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "io/checkpoint.h"

namespace wanrt {
namespace {

// A tensor the inference reads a size from; its absence means this is not the expected file.
const Tensor& anchor(const TensorStore& weights, const std::string& name, int64_t rank,
                     const std::string& where, const char* what) {
  WANRT_CHECK(weights.contains(name), where, ": no tensor ", name, " — this does not look like ",
              what, " (", weights.size(), " tensors read from ", weights.sources(), ")");
  const Tensor& tensor = weights.get(name);
  WANRT_CHECK(tensor.dim() == rank, where, ": tensor ", name, " has shape ",
              shape_str(tensor.shape()), ", expected ", rank, " dimensions");
  return tensor;
}

// 1 + the largest N of keys "PREFIX.N.*", or 0 when there is none.
int64_t count_indexed(const TensorStore& weights, const std::string& prefix) {
  int64_t count = 0;
  for (const std::string& name : weights.names()) {
    if (!name.starts_with(prefix)) continue;
    const char* digits = name.c_str() + prefix.size();
    char* end = nullptr;
    const long long index = std::strtoll(digits, &end, 10);
    if (end != digits && *end == '.' && index >= 0 && index < (1 << 20))
      count = std::max<int64_t>(count, index + 1);
  }
  return count;
}

void add_resblock(ExpectedTensors& list, const std::string& p, int64_t in, int64_t out) {
  list.emplace_back(p + ".residual.0.gamma", Shape{in, 1, 1, 1});
  list.emplace_back(p + ".residual.2.weight", Shape{out, in, 3, 3, 3});
  list.emplace_back(p + ".residual.2.bias", Shape{out});
  list.emplace_back(p + ".residual.3.gamma", Shape{out, 1, 1, 1});
  list.emplace_back(p + ".residual.6.weight", Shape{out, out, 3, 3, 3});
  list.emplace_back(p + ".residual.6.bias", Shape{out});
  if (in != out) {
    list.emplace_back(p + ".shortcut.weight", Shape{out, in, 1, 1, 1});
    list.emplace_back(p + ".shortcut.bias", Shape{out});
  }
}

void add_attention(ExpectedTensors& list, const std::string& p, int64_t channels) {
  list.emplace_back(p + ".norm.gamma", Shape{channels, 1, 1});
  list.emplace_back(p + ".to_qkv.weight", Shape{3 * channels, channels, 1, 1});
  list.emplace_back(p + ".to_qkv.bias", Shape{3 * channels});
  list.emplace_back(p + ".proj.weight", Shape{channels, channels, 1, 1});
  list.emplace_back(p + ".proj.bias", Shape{channels});
}

void add_middle(ExpectedTensors& list, const std::string& p, int64_t channels) {
  add_resblock(list, p + ".0", channels, channels);
  add_attention(list, p + ".1", channels);
  add_resblock(list, p + ".2", channels, channels);
}

}  // namespace

ExpectedTensors T5CheckpointConfig::expected_tensors() const {
  ExpectedTensors list;
  list.emplace_back("token_embedding.weight", Shape{vocab, dim});
  if (shared_pos) list.emplace_back("pos_embedding.embedding.weight", Shape{num_buckets, num_heads});
  for (int64_t i = 0; i < num_layers; ++i) {
    const std::string block = str_cat("blocks.", i, ".");
    list.emplace_back(block + "norm1.weight", Shape{dim});
    list.emplace_back(block + "attn.q.weight", Shape{dim_attn, dim});
    list.emplace_back(block + "attn.k.weight", Shape{dim_attn, dim});
    list.emplace_back(block + "attn.v.weight", Shape{dim_attn, dim});
    list.emplace_back(block + "attn.o.weight", Shape{dim, dim_attn});
    list.emplace_back(block + "norm2.weight", Shape{dim});
    list.emplace_back(block + "ffn.gate.0.weight", Shape{dim_ffn, dim});
    list.emplace_back(block + "ffn.fc1.weight", Shape{dim_ffn, dim});
    list.emplace_back(block + "ffn.fc2.weight", Shape{dim, dim_ffn});
    if (!shared_pos)
      list.emplace_back(block + "pos_embedding.embedding.weight", Shape{num_buckets, num_heads});
  }
  list.emplace_back("norm.weight", Shape{dim});
  return list;
}

T5CheckpointConfig infer_t5_config(const TensorStore& weights, const std::string& where) {
  constexpr const char* kWhat = "a umT5 encoder state dict";
  T5CheckpointConfig config;
  const Tensor embedding = anchor(weights, "token_embedding.weight", 2, where, kWhat);
  config.vocab = embedding.size(0);
  config.dim = embedding.size(1);
  config.num_layers = count_indexed(weights, "blocks.");
  WANRT_CHECK(config.num_layers > 0, where, ": no encoder blocks (blocks.0.*) — this does not look "
              "like ", kWhat);
  config.dim_attn = anchor(weights, "blocks.0.attn.q.weight", 2, where, kWhat).size(0);
  config.dim_ffn = anchor(weights, "blocks.0.ffn.fc1.weight", 2, where, kWhat).size(0);
  // The number of heads appears only as the width of the relative-position bias table
  // [num_buckets, num_heads]; dim_attn alone does not determine it.
  config.shared_pos = weights.contains("pos_embedding.embedding.weight");
  const Tensor bias_table =
      anchor(weights, config.shared_pos ? "pos_embedding.embedding.weight"
                                        : "blocks.0.pos_embedding.embedding.weight",
             2, where, kWhat);
  config.num_buckets = bias_table.size(0);
  config.num_heads = bias_table.size(1);
  WANRT_CHECK(config.num_heads > 0 && config.dim_attn % config.num_heads == 0, where,
              ": the relative-position table says ", config.num_heads,
              " heads, which does not divide the attention width ", config.dim_attn);
  check_tensor_set(weights, config.expected_tensors(),
                   str_cat(where, ": the umT5 tensors do not match the sizes read from them (vocab ",
                           config.vocab, ", dim ", config.dim, ", ", config.num_layers,
                           " layers, ", config.num_heads, " heads)"));
  return config;
}

ExpectedTensors VaeCheckpointConfig::expected_tensors() const {
  ExpectedTensors list;
  const size_t stages = dim_mult.size();
  WANRT_ASSERT(stages >= 1 && temporal_downsample.size() + 1 == stages);
  // Encoder: stage widths dim·[1, dim_mult...]; each stage but the last ends in a downsample.
  std::vector<int64_t> widths = {dim};
  for (int64_t m : dim_mult) widths.push_back(dim * m);
  list.emplace_back("encoder.conv1.weight", Shape{widths[0], 3, 3, 3, 3});
  list.emplace_back("encoder.conv1.bias", Shape{widths[0]});
  int64_t index = 0;
  for (size_t stage = 0; stage < stages; ++stage) {
    int64_t in = widths[stage];
    const int64_t out = widths[stage + 1];
    for (int64_t r = 0; r < num_res_blocks; ++r, ++index) {
      add_resblock(list, str_cat("encoder.downsamples.", index), in, out);
      in = out;
    }
    if (stage + 1 == stages) break;
    const std::string p = str_cat("encoder.downsamples.", index++);
    list.emplace_back(p + ".resample.1.weight", Shape{out, out, 3, 3});
    list.emplace_back(p + ".resample.1.bias", Shape{out});
    if (temporal_downsample[stage]) {
      list.emplace_back(p + ".time_conv.weight", Shape{out, out, 3, 1, 1});
      list.emplace_back(p + ".time_conv.bias", Shape{out});
    }
  }
  const int64_t deepest = widths.back();
  add_middle(list, "encoder.middle", deepest);
  list.emplace_back("encoder.head.0.gamma", Shape{deepest, 1, 1, 1});
  list.emplace_back("encoder.head.2.weight", Shape{2 * z_dim, deepest, 3, 3, 3});
  list.emplace_back("encoder.head.2.bias", Shape{2 * z_dim});
  list.emplace_back("conv1.weight", Shape{2 * z_dim, 2 * z_dim, 1, 1, 1});
  list.emplace_back("conv1.bias", Shape{2 * z_dim});
  list.emplace_back("conv2.weight", Shape{z_dim, z_dim, 1, 1, 1});
  list.emplace_back("conv2.bias", Shape{z_dim});

  // Decoder: widths dim·[last, reversed dim_mult...]; each upsample halves the channels, so
  // every stage after the first starts at half the previous stage's width.
  std::vector<int64_t> up_widths = {dim * dim_mult.back()};
  for (size_t i = stages; i-- > 0;) up_widths.push_back(dim * dim_mult[i]);
  list.emplace_back("decoder.conv1.weight", Shape{up_widths[0], z_dim, 3, 3, 3});
  list.emplace_back("decoder.conv1.bias", Shape{up_widths[0]});
  add_middle(list, "decoder.middle", up_widths[0]);
  index = 0;
  for (size_t stage = 0; stage < stages; ++stage) {
    int64_t in = stage == 0 ? up_widths[0] : up_widths[stage] / 2;
    const int64_t out = up_widths[stage + 1];
    for (int64_t r = 0; r <= num_res_blocks; ++r, ++index) {
      add_resblock(list, str_cat("decoder.upsamples.", index), in, out);
      in = out;
    }
    if (stage + 1 == stages) break;
    const std::string p = str_cat("decoder.upsamples.", index++);
    list.emplace_back(p + ".resample.1.weight", Shape{out / 2, out, 3, 3});
    list.emplace_back(p + ".resample.1.bias", Shape{out / 2});
    // The decoder upsamples in time where the encoder downsampled, in reverse stage order.
    if (temporal_downsample[stages - 2 - stage]) {
      list.emplace_back(p + ".time_conv.weight", Shape{2 * out, out, 3, 1, 1});
      list.emplace_back(p + ".time_conv.bias", Shape{2 * out});
    }
  }
  const int64_t last = up_widths.back();
  list.emplace_back("decoder.head.0.gamma", Shape{last, 1, 1, 1});
  list.emplace_back("decoder.head.2.weight", Shape{3, last, 3, 3, 3});
  list.emplace_back("decoder.head.2.bias", Shape{3});
  return list;
}

VaeCheckpointConfig infer_vae_config(const TensorStore& weights, const std::string& where) {
  constexpr const char* kWhat = "a Wan2.1 VAE state dict";
  VaeCheckpointConfig config;
  config.dim = anchor(weights, "encoder.conv1.weight", 5, where, kWhat).size(0);
  config.z_dim = anchor(weights, "conv2.weight", 5, where, kWhat).size(0);
  WANRT_CHECK(config.dim > 0 && config.z_dim > 0, where, ": zero-sized VAE (dim ", config.dim,
              ", z_dim ", config.z_dim, ")");
  // Walk the encoder's downsamples: runs of residual blocks, each run but the last closed by a
  // Resample, which has a time_conv when it also halves the frame count.
  int64_t index = 0;
  for (;;) {
    int64_t blocks = 0;
    int64_t width = 0;
    for (;; ++index, ++blocks) {
      const std::string conv = str_cat("encoder.downsamples.", index, ".residual.2.weight");
      if (!weights.contains(conv)) break;
      width = anchor(weights, conv, 5, where, kWhat).size(0);
    }
    WANRT_CHECK(blocks > 0, where, ": expected residual blocks at encoder.downsamples.", index,
                " — this does not look like ", kWhat);
    if (config.dim_mult.empty()) config.num_res_blocks = blocks;
    WANRT_CHECK(width % config.dim == 0, where, ": encoder stage width ", width,
                " is not a multiple of the base width ", config.dim);
    config.dim_mult.push_back(width / config.dim);
    const std::string resample = str_cat("encoder.downsamples.", index);
    if (!weights.contains(resample + ".resample.1.weight")) break;
    config.temporal_downsample.push_back(weights.contains(resample + ".time_conv.weight"));
    ++index;
  }
  check_tensor_set(weights, config.expected_tensors(),
                   str_cat(where, ": the VAE tensors do not match the sizes read from them (dim ",
                           config.dim, ", z_dim ", config.z_dim, ", ", config.dim_mult.size(),
                           " stages of ", config.num_res_blocks, " residual blocks)"));
  return config;
}

}  // namespace wanrt
