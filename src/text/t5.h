// The umT5-XXL text encoder (spec §1.4), written against the op interface.
//
//   x = token_embedding[ids]
//   per block:  x += Attn(RMSNorm(x; norm1), relative-position bias, key mask)
//               x += W_fc2 · (W_fc1·h ⊙ GELU_tanh(W_gate·h)),  h = RMSNorm(x; norm2)
//   out = RMSNorm(x; norm)
//
// Attention has no 1/sqrt(head_dim) scale (T5 folds it into the weights); every block has its
// own relative-position bias table [num_buckets, num_heads]; padded keys are masked.
// The configuration is read off the checkpoint's tensor shapes, so the tiny test checkpoint
// and the real 5.7 B-parameter one load through the same code.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backends/ops.h"
#include "io/tensor_store.h"

namespace wanrt {

struct T5Config {
  int64_t vocab = 0;        // token_embedding rows
  int64_t dim = 0;          // model width
  int64_t dim_attn = 0;     // q/k/v/o width = num_heads · head_dim
  int64_t dim_ffn = 0;      // gated FFN hidden width
  int64_t num_heads = 0;    // pos_embedding columns
  int64_t num_layers = 0;   // blocks.{i}
  int64_t num_buckets = 0;  // pos_embedding rows (only 32, with max distance 128, is supported)
  float eps = 1e-6f;        // RMSNorm epsilon

  int64_t head_dim() const { return dim_attn / num_heads; }
};

// Infers the configuration from tensor shapes and checks that the checkpoint holds exactly the
// encoder's keys (a missing, misshapen or unexpected tensor is an error naming it).
T5Config infer_t5_config(const TensorStore& checkpoint);

// The bidirectional T5 bucket of the offset d = key position − query position, for 32 buckets
// and max distance 128 (spec §1.4's table; never evaluates log(0)).
int64_t relative_position_bucket(int64_t key_minus_query);

// Which positions the encoder runs.
enum class T5Positions : uint8_t {
  TrueLength,  // only the `length` real tokens: same first rows as the padded run (spec §1.5.4)
  Padded,      // every id given, padded keys masked, as the reference runs its 512 positions
};

class T5Encoder {
 public:
  // Uploads the weights of `checkpoint` (the models_t5_umt5-xxl-enc-bf16.pth state dict) through
  // `ops`; encode() must be called with the same backend.
  T5Encoder(const TensorStore& checkpoint, Ops& ops);

  const T5Config& config() const { return config_; }

  // Hidden states of the `length` real tokens of `ids` (EOS included): host F32 [length, dim].
  Tensor encode(Ops& ops, std::span<const int64_t> ids, int64_t length,
                T5Positions positions = T5Positions::TrueLength) const;
  // The reference's full output: every one of the ids.size() positions (pads included), keys at
  // index >= length masked. Host F32 [ids.size(), dim].
  Tensor encode_all_positions(Ops& ops, std::span<const int64_t> ids, int64_t length) const;

 private:
  struct Block {
    Tensor norm1;                // [dim]
    Tensor q, k, v;              // [dim_attn, dim]
    Tensor o;                    // [dim, dim_attn]
    Tensor norm2;                // [dim]
    Tensor ffn_gate, ffn_fc1;    // [dim_ffn, dim]
    Tensor ffn_fc2;              // [dim, dim_ffn]
    Tensor position_bias_table;  // host F32 [num_buckets, num_heads]
  };

  // Runs ids[0, rows) with keys >= kv_len masked; returns the backend tensor [rows, dim].
  Tensor forward(Ops& ops, std::span<const int64_t> ids, int64_t kv_len) const;
  Tensor self_attention(Ops& ops, const Block& block, const Tensor& x, const Tensor& bias,
                        int64_t kv_len) const;
  Tensor feed_forward(Ops& ops, const Block& block, const Tensor& x) const;
  // bias[h, i, j] = table[bucket(j − i), h], host F32 [num_heads, rows, rows].
  Tensor relative_position_bias(const Tensor& table, int64_t rows) const;

  T5Config config_;
  Tensor token_embedding_;  // [vocab, dim]
  std::vector<Block> blocks_;
  Tensor final_norm_;  // [dim]
};

}  // namespace wanrt
