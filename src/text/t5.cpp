#include "text/t5.h"

#include <algorithm>
#include <set>
#include <string>

#include "core/error.h"

namespace wanrt {
namespace {

std::string block_key(int64_t layer, const char* name) {
  return str_cat("blocks.", layer, ".", name);
}

// Every key the encoder reads, in checkpoint order.
std::vector<std::string> expected_keys(int64_t num_layers) {
  std::vector<std::string> keys = {"token_embedding.weight"};
  for (int64_t i = 0; i < num_layers; ++i) {
    for (const char* name : {"norm1.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight",
                             "attn.o.weight", "norm2.weight", "ffn.gate.0.weight",
                             "ffn.fc1.weight", "ffn.fc2.weight", "pos_embedding.embedding.weight"})
      keys.push_back(block_key(i, name));
  }
  keys.push_back("norm.weight");
  return keys;
}

const Tensor& require_matrix(const TensorStore& checkpoint, const std::string& name) {
  const Tensor& t = checkpoint.get(name);
  WANRT_CHECK(t.dim() == 2, "T5 checkpoint tensor ", name, " in ", checkpoint.file_of(name),
              " should be a matrix, but is ", t.describe());
  return t;
}

}  // namespace

int64_t relative_position_bucket(int64_t key_minus_query) {
  // Offsets 0..7 have a bucket each; beyond, buckets grow logarithmically up to distance 128.
  // First |d| of buckets 8..15 (the reference's float32 log formula, checked at every boundary).
  constexpr int64_t kLogBucketStarts[] = {8, 12, 16, 23, 32, 46, 64, 91};
  constexpr int64_t kExactBuckets = 8;
  constexpr int64_t kBucketsPerDirection = 16;
  const int64_t direction_base = key_minus_query > 0 ? kBucketsPerDirection : 0;
  const int64_t distance = key_minus_query < 0 ? -key_minus_query : key_minus_query;
  if (distance < kExactBuckets) return direction_base + distance;
  int64_t bucket = kExactBuckets - 1;
  for (int64_t start : kLogBucketStarts)
    if (distance >= start) ++bucket;
  return direction_base + bucket;
}

T5Config infer_t5_config(const TensorStore& checkpoint) {
  T5Config config;
  const Tensor embedding = require_matrix(checkpoint, "token_embedding.weight");
  config.vocab = embedding.size(0);
  config.dim = embedding.size(1);
  while (checkpoint.contains(block_key(config.num_layers, "norm1.weight"))) ++config.num_layers;
  WANRT_CHECK(config.num_layers > 0, "T5 checkpoint (", checkpoint.sources(),
              ") has no blocks.0.norm1.weight: not a umT5 encoder state dict");
  config.dim_attn = require_matrix(checkpoint, block_key(0, "attn.q.weight")).size(0);
  config.dim_ffn = require_matrix(checkpoint, block_key(0, "ffn.fc1.weight")).size(0);
  const Tensor position_table =
      require_matrix(checkpoint, block_key(0, "pos_embedding.embedding.weight"));
  config.num_buckets = position_table.size(0);
  config.num_heads = position_table.size(1);
  WANRT_CHECK(config.num_heads > 0 && config.dim_attn % config.num_heads == 0,
              "T5 checkpoint (", checkpoint.sources(), "): attention width ", config.dim_attn,
              " is not a multiple of the ", config.num_heads, " heads of pos_embedding");
  WANRT_CHECK(config.num_buckets == 32, "T5 checkpoint (", checkpoint.sources(), ") has ",
              config.num_buckets, " relative-position buckets; only umT5's 32 are supported");

  // Strict loading, as the reference's load_state_dict: exactly these keys.
  const auto keys = expected_keys(config.num_layers);
  const std::set<std::string> expected(keys.begin(), keys.end());
  std::vector<std::string> unexpected;
  for (const auto& name : checkpoint.names())
    if (!expected.count(name)) unexpected.push_back(name);
  if (!unexpected.empty()) {
    std::string listed;
    for (size_t i = 0; i < std::min<size_t>(unexpected.size(), 5); ++i)
      listed += (i ? ", " : "") + unexpected[i];
    fail("T5 checkpoint (", checkpoint.sources(), ") has ", unexpected.size(),
         " tensor(s) a umT5 encoder does not have: ", listed,
         unexpected.size() > 5 ? ", ..." : "");
  }
  return config;
}

T5Encoder::T5Encoder(const TensorStore& checkpoint, Ops& ops) : config_(infer_t5_config(checkpoint)) {
  const T5Config& c = config_;
  auto weight = [&](const std::string& name, const Shape& shape) {
    return ops.upload_weight(checkpoint.get(name, shape));
  };
  token_embedding_ = weight("token_embedding.weight", {c.vocab, c.dim});
  blocks_.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Block& block = blocks_[static_cast<size_t>(i)];
    block.norm1 = weight(block_key(i, "norm1.weight"), {c.dim});
    block.q = weight(block_key(i, "attn.q.weight"), {c.dim_attn, c.dim});
    block.k = weight(block_key(i, "attn.k.weight"), {c.dim_attn, c.dim});
    block.v = weight(block_key(i, "attn.v.weight"), {c.dim_attn, c.dim});
    block.o = weight(block_key(i, "attn.o.weight"), {c.dim, c.dim_attn});
    block.norm2 = weight(block_key(i, "norm2.weight"), {c.dim});
    block.ffn_gate = weight(block_key(i, "ffn.gate.0.weight"), {c.dim_ffn, c.dim});
    block.ffn_fc1 = weight(block_key(i, "ffn.fc1.weight"), {c.dim_ffn, c.dim});
    block.ffn_fc2 = weight(block_key(i, "ffn.fc2.weight"), {c.dim, c.dim_ffn});
    // Kept on the host: the bias tensor is built from it per call.
    block.position_bias_table =
        checkpoint.get(block_key(i, "pos_embedding.embedding.weight"), {c.num_buckets, c.num_heads})
            .to(DType::F32);
  }
  final_norm_ = weight("norm.weight", {c.dim});
}

Tensor T5Encoder::relative_position_bias(const Tensor& table, int64_t rows) const {
  const int64_t heads = config_.num_heads;
  const float* bucket_values = table.data<float>();  // [num_buckets, heads]
  // The bias depends on j − i only: one strip of 2·rows − 1 offsets per head, then copied out.
  const int64_t offsets = 2 * rows - 1;
  std::vector<float> strip(static_cast<size_t>(heads * offsets));  // [heads, offsets]
  for (int64_t d = -(rows - 1); d <= rows - 1; ++d) {
    const int64_t bucket = relative_position_bucket(d);
    for (int64_t h = 0; h < heads; ++h)
      strip[static_cast<size_t>(h * offsets + d + rows - 1)] = bucket_values[bucket * heads + h];
  }
  Tensor bias = Tensor::empty(DType::F32, {heads, rows, rows});
  float* out = bias.data<float>();
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < rows; ++i) {
      // Row i holds offsets j − i = −i .. rows − 1 − i, contiguous in the strip.
      const float* first = &strip[static_cast<size_t>(h * offsets + rows - 1 - i)];
      std::copy(first, first + rows, out + (h * rows + i) * rows);
    }
  return bias;
}

Tensor T5Encoder::self_attention(Ops& ops, const Block& block, const Tensor& x, const Tensor& bias,
                                 int64_t kv_len) const {
  const int64_t rows = x.size(0);
  const Shape per_head = {rows, config_.num_heads, config_.head_dim()};
  const Tensor q = ops.linear(x, block.q, nullptr).reshape(per_head);  // [L, heads, head_dim]
  const Tensor k = ops.linear(x, block.k, nullptr).reshape(per_head);  // [L, heads, head_dim]
  const Tensor v = ops.linear(x, block.v, nullptr).reshape(per_head);  // [L, heads, head_dim]
  AttentionOptions options;
  options.scale = 1.0f;  // no 1/sqrt(head_dim): T5 folds it into its weights
  options.kv_len = kv_len;
  options.bias = &bias;
  const Tensor attended = ops.attention(q, k, v, options);              // [L, heads, head_dim]
  return ops.linear(attended.reshape({rows, config_.dim_attn}), block.o, nullptr);  // [L, dim]
}

Tensor T5Encoder::feed_forward(Ops& ops, const Block& block, const Tensor& x) const {
  LinearOptions gelu;
  gelu.activation = Activation::GeluTanh;
  const Tensor gate = ops.linear(x, block.ffn_gate, nullptr, gelu);  // [L, dim_ffn]
  const Tensor hidden = ops.mul(ops.linear(x, block.ffn_fc1, nullptr), gate);  // [L, dim_ffn]
  return ops.linear(hidden, block.ffn_fc2, nullptr);                 // [L, dim]
}

Tensor T5Encoder::forward(Ops& ops, std::span<const int64_t> ids, int64_t kv_len) const {
  const auto rows = static_cast<int64_t>(ids.size());
  Tensor id_tensor = Tensor::empty(DType::I64, {rows});
  std::copy(ids.begin(), ids.end(), id_tensor.data<int64_t>());
  Tensor x = ops.embedding(token_embedding_, id_tensor);  // [L, dim]
  for (const Block& block : blocks_) {
    const Tensor bias = ops.upload(relative_position_bias(block.position_bias_table, rows));
    const Tensor attention_in = ops.rms_norm(x, block.norm1, config_.eps);  // [L, dim]
    x = ops.add(x, self_attention(ops, block, attention_in, bias, kv_len));  // [L, dim]
    const Tensor ffn_in = ops.rms_norm(x, block.norm2, config_.eps);          // [L, dim]
    x = ops.add(x, feed_forward(ops, block, ffn_in));                         // [L, dim]
  }
  return ops.rms_norm(x, final_norm_, config_.eps);  // [L, dim]
}

Tensor T5Encoder::encode_all_positions(Ops& ops, std::span<const int64_t> ids,
                                       int64_t length) const {
  WANRT_CHECK(length >= 1 && length <= static_cast<int64_t>(ids.size()), "T5 encode: length ",
              length, " must be in [1, ", ids.size(), "] (EOS is always a real token)");
  return ops.download(forward(ops, ids, length));  // [ids.size(), dim]
}

Tensor T5Encoder::encode(Ops& ops, std::span<const int64_t> ids, int64_t length,
                         T5Positions positions) const {
  WANRT_CHECK(length >= 1 && length <= static_cast<int64_t>(ids.size()), "T5 encode: length ",
              length, " must be in [1, ", ids.size(), "] (EOS is always a real token)");
  if (positions == T5Positions::TrueLength) {
    // No padded keys at all, so nothing to mask.
    return ops.download(forward(ops, ids.first(static_cast<size_t>(length)), -1));  // [length, dim]
  }
  const Tensor all_rows = forward(ops, ids, length);             // [ids.size(), dim]
  return ops.download(ops.rows(all_rows, 0, length));            // [length, dim]
}

}  // namespace wanrt
