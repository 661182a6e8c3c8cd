// WanModel, the Wan2.2 diffusion transformer (spec/wan22-dit-and-sampling.md §1.4), written
// once against the op interface. One call maps a noisy latent x, the I2V conditioning y, a
// timestep and the text context to the flow-matching velocity.
//
// Legend: D model width, H heads, d head width, L real video tokens, L_pad = seq_len (L rounded
// up for sequence parallelism), S = L_pad / ranks (this rank's tokens), T = text_len (512).
//
// The forward is split into its three phases so MagCache can skip the middle one:
//   prepare (patch, time and text embeddings, RoPE table; replicated on every rank; a call
//            MagCache skips runs only prepare_for_head: patch and time embeddings)
//   run_blocks (the 40 transformer blocks on this rank's S tokens)
//   head (final modulation + projection, gathered across ranks, unpatchified).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/ops.h"
#include "core/quantize.h"
#include "model/dit_config.h"

namespace wanrt {

class TensorStore;

struct DitInputs {
  const Tensor* x = nullptr;        // [out_dim, F, H, W] host F32, the noisy latent
  const Tensor* y = nullptr;        // [in_dim − out_dim, F, H, W] host F32, or null (t2v)
  double timestep = 0;              // the (integer-valued in the pipeline) timestep
  const Tensor* context = nullptr;  // [L_txt <= text_len, text_dim] host, T5 output
  int64_t seq_len = -1;             // L_pad; -1 = L rounded up to a multiple of the ranks
};

// Receives named intermediates (host F32) for golden comparisons and debugging; names match
// shared/golden/dit: patch_embedding_out, time_embedding_out, time_projection_out,
// text_embedding_out, block{i}_self_attn_out, block{i}_cross_attn_out, block{i}_out, head_out.
using DitTrace = std::function<void(const std::string& name, const Tensor& value)>;

// What prepare() computes once per call and every later phase reads.
struct DitConditioning {
  int64_t frames = 0, height = 0, width = 0;  // the patch grid (F', H', W')
  int64_t tokens = 0;                         // L = F'·H'·W'
  int64_t seq_len = 0;                        // L_pad
  int64_t local_begin = 0, local_tokens = 0;  // this rank's rows [begin, begin + S)
  Tensor x0;         // [S, D] this rank's patch embeddings (zero rows for padding)
  Tensor e;          // [D] time embedding (fp32)
  Tensor e0;         // [6, D] time projection (fp32)
  Tensor context;    // [T, D] embedded text, padding rows included
  Tensor rope;       // [S, d/2, 2] cos/sin of this rank's tokens (identity for padding)
};

struct DitLoadOptions {
  // Weight-only quantization of the blocks' linear layers (dit_weight_is_quantized), computed
  // at load from the float checkpoint. A checkpoint that is already quantized loads as it is
  // (None, or the same scheme, accepts it; the other scheme is an error).
  Quantization quantize = Quantization::None;
  // Load straight into page-locked host memory (--offload_model, WeightParking in ops.h), in
  // the backend's weight format, computed on the host (park_checkpoint_weight): no backend op
  // runs, so this may run on a background thread while the backend computes. The model is then
  // parked; unparked() brings it in.
  WeightParking* park = nullptr;
};

class WanModel {
 public:
  // Checks `weights` against `config` and uploads them through `ops`.
  static WanModel load(const DitConfig& config, const TensorStore& weights, Ops& ops,
                       const DitLoadOptions& options = {});

  // The format load() gives the blocks' linear weights for this checkpoint and these options
  // (the checkpoint's own quantization, else options.quantize); an error for a combination
  // load() refuses. Reads the checkpoint's dtypes only.
  static Quantization loaded_quantization(const DitConfig& config, const TensorStore& weights,
                                          const DitLoadOptions& options);

  const DitConfig& config() const { return config_; }
  // The format of the blocks' linear weights: None (float) or the quantization in use.
  Quantization quantization() const { return quantization_; }

  // The whole forward: prepare, run_blocks, head. Returns [out_dim, F, H, W] host F32.
  Tensor forward(Ops& ops, const DitInputs& inputs, const DitTrace* trace = nullptr) const;

  DitConditioning prepare(Ops& ops, const DitInputs& inputs, const DitTrace* trace = nullptr) const;
  // The part of prepare() that head(x0 + cached residual) needs, all a call MagCache skips
  // computes before its head (spec §5.3): the input checks, the token grid, the patch
  // embedding x0 and the time embedding e. The time projection e0, the text embedding and the
  // RoPE table, which only run_blocks reads, stay empty.
  DitConditioning prepare_for_head(Ops& ops, const DitInputs& inputs,
                                   const DitTrace* trace = nullptr) const;
  // The residual stream after every block, [S, D] float32, starting from cond.x0.
  Tensor run_blocks(Ops& ops, const DitConditioning& cond, const DitTrace* trace = nullptr) const;
  Tensor head(Ops& ops, const Tensor& x, const DitConditioning& cond,
              const DitTrace* trace = nullptr) const;

  // Identifies this load's device weights: copies of the model share it, a new load (an
  // offloaded expert brought back, at new addresses) gets a new one, and it expires when the
  // last copy is gone. A captured graph of the blocks is valid for one identity only.
  std::weak_ptr<const void> weights_identity() const { return identity_; }

  // --offload_model with a backend that parks weights (Ops::weight_parking). parked(): a copy of
  // this model with every weight in page-locked host memory (this model keeps its own).
  // unparked(): a copy with every weight back on the device, all copies queued and none waited
  // for: prepare(), prepare_for_head() and head() await the weights outside the blocks (brought
  // first), and run_blocks() awaits each block's weights just before that block, so the first
  // forward starts as soon as block 0 is in and later blocks arrive while earlier ones compute.
  WanModel parked(WeightParking& parking) const;
  WanModel unparked(WeightParking& parking) const;
  bool is_parked() const { return parked_; }

 private:
  struct Linear {
    Tensor weight;  // [out, in]
    Tensor bias;    // [out]
  };
  struct Attention {
    Linear q, k, v, o;
    Tensor norm_q, norm_k;  // RMSNorm gains [D]
  };
  struct Block {
    Tensor modulation;  // [6, D]: shift/scale/gate for self-attention, then for the FFN
    Attention self_attn;
    Tensor norm3_weight, norm3_bias;  // affine LayerNorm before cross-attention
    Attention cross_attn;
    Linear ffn_up, ffn_down;  // ffn.0 (GELU-tanh after it), ffn.2
  };

  Tensor self_attention(Ops& ops, const Attention& attn, const Tensor& a,
                        const DitConditioning& cond) const;
  Tensor cross_attention(Ops& ops, const Attention& attn, const Tensor& c,
                         const Tensor& context) const;
  Tensor rope_table(Ops& ops, const DitConditioning& cond) const;
  // Every weight, the ones outside the blocks first, then block by block; `after_group(g)` runs
  // after group g (0: outside the blocks, i + 1: block i).
  template <typename Fn, typename AfterGroup>
  void for_each_weight(Fn&& fn, AfterGroup&& after_group);
  // Awaits the arrival of weight group g (see unparked()); nothing once it has arrived.
  void await_weights(Ops& ops, size_t group) const;

  DitConfig config_;
  Quantization quantization_ = Quantization::None;
  std::shared_ptr<const int> identity_ = std::make_shared<const int>(0);
  bool parked_ = false;
  // Tickets (WeightParking::arrival) of the weight groups of an unparked() model; empty for a
  // model loaded resident. Awaiting one again later costs nothing.
  std::vector<uint64_t> arrivals_;
  Linear patch_embedding;  // weight reshaped to [D, in_dim·pt·ph·pw]
  Linear text_embedding_0, text_embedding_2;
  Linear time_embedding_0, time_embedding_2;
  Linear time_projection;  // [6D, D]
  std::vector<Block> blocks;
  Tensor head_modulation;  // [2, D]: shift, scale
  Linear head_linear;      // [pt·ph·pw·out_dim, D]
};

}  // namespace wanrt
