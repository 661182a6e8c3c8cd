#include "model/dit.h"

#include <cmath>
#include <optional>

#include "io/tensor_store.h"

namespace wanrt {
namespace {

Tensor vector_row(Ops& ops, const Tensor& matrix, int64_t row) {
  return ops.rows(matrix, row, row + 1).reshape({matrix.size(1)});  // [D]
}

// Sinusoidal timestep features, in float64 as the reference, cos first then sin; ω_k uses
// `half`, not freq_dim, in the exponent (spec §1.4 step 4.2).
Tensor sinusoidal_embedding(int64_t freq_dim, double t) {
  const int64_t half = freq_dim / 2;
  Tensor emb = Tensor::empty(DType::F32, {1, freq_dim});
  float* out = emb.data<float>();
  for (int64_t k = 0; k < half; ++k) {
    const double angle = t * std::pow(10000.0, -static_cast<double>(k) / static_cast<double>(half));
    out[k] = static_cast<float>(std::cos(angle));
    out[half + k] = static_cast<float>(std::sin(angle));
  }
  return emb;
}

// What a (checked) checkpoint holds: float weights, or every quantizable weight quantized
// with one scheme and nothing else quantized. Anything in between is an error: a partly
// quantized file was not written by `wanrt quantize`.
Quantization stored_quantization(const DitConfig& config, const TensorStore& weights) {
  std::optional<Quantization> found;
  std::string first;
  for (const auto& [name, shape] : config.expected_tensors()) {
    const Tensor& tensor = weights.get(name);
    const bool quantizable = dit_weight_is_quantized(name);
    WANRT_CHECK(quantizable || !tensor.is_row_scaled(), "DiT checkpoint ", weights.file_of(name),
                ": tensor ", name, " is quantized (", tensor.describe(), "), but only the "
                "blocks' linear layers may be; the rest stays float");
    if (!quantizable) continue;
    const Quantization q = tensor.is_row_scaled() ? *quantization_of(tensor.dtype()) : Quantization::None;
    if (!found) {
      found = q;
      first = name;
    }
    WANRT_CHECK(q == *found, "DiT checkpoint ", weights.file_of(name), ": tensor ", name, " is ",
                quantization_name(q), " but ", first, " is ", quantization_name(*found),
                "; a checkpoint is float or quantized throughout");
  }
  return found.value_or(Quantization::None);
}

}  // namespace

Quantization WanModel::loaded_quantization(const DitConfig& config, const TensorStore& weights,
                                           const DitLoadOptions& options) {
  const Quantization stored = stored_quantization(config, weights);
  WANRT_CHECK(stored == Quantization::None || options.quantize == Quantization::None ||
                  options.quantize == stored,
              "DiT: the checkpoint holds ", quantization_name(stored), " weights; quantizing them "
              "to ", quantization_name(options.quantize), " would compound two roundings: load "
              "it without quantization (it runs ", quantization_name(stored), "), or quantize "
              "the float checkpoint");
  return stored != Quantization::None ? stored : options.quantize;
}

WanModel WanModel::load(const DitConfig& config, const TensorStore& weights, Ops& ops,
                        const DitLoadOptions& options) {
  WANRT_CHECK(config.patch_size[0] == 1, "DiT: temporal patch size ", config.patch_size[0],
              " is not supported (Wan2.2 uses 1)");
  config.check_weights(weights, "DiT checkpoint");
  WanModel model;
  model.config_ = config;
  model.quantization_ = loaded_quantization(config, weights, options);
  const int64_t dim = config.dim;
  // A checkpoint tensor into backend memory, or, when parking, into page-locked host memory in
  // the backend's format (no backend op then: a background thread may load a parked expert).
  auto weight = [&](const Tensor& host) {
    return options.park ? options.park->park_checkpoint_weight(host, std::nullopt) : ops.upload_weight(host);
  };
  auto tensor = [&](const std::string& name) { return weight(weights.get(name)); };
  auto linear = [&](const std::string& name) {
    return Linear{tensor(name + ".weight"), tensor(name + ".bias")};
  };
  // The blocks' linear layers: the one place the weight format is chosen.
  auto block_linear = [&](const std::string& name) {
    if (model.quantization_ == Quantization::None) return linear(name);
    const DType codes = quantization_dtype(model.quantization_);
    const Tensor& host = weights.get(name + ".weight");
    return Linear{options.park ? options.park->park_checkpoint_weight(host, codes) : ops.quantize_weight(host, codes),
                  tensor(name + ".bias")};
  };
  model.parked_ = options.park != nullptr;
  auto attention = [&](const std::string& name) {
    return Attention{block_linear(name + ".q"), block_linear(name + ".k"),
                     block_linear(name + ".v"), block_linear(name + ".o"),
                     tensor(name + ".norm_q.weight"), tensor(name + ".norm_k.weight")};
  };
  const int64_t patch_features =
      config.in_dim * config.patch_size[0] * config.patch_size[1] * config.patch_size[2];
  model.patch_embedding = {weight(weights.get("patch_embedding.weight").reshape({dim, patch_features})),
                           tensor("patch_embedding.bias")};
  model.text_embedding_0 = linear("text_embedding.0");
  model.text_embedding_2 = linear("text_embedding.2");
  model.time_embedding_0 = linear("time_embedding.0");
  model.time_embedding_2 = linear("time_embedding.2");
  model.time_projection = linear("time_projection.1");
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string prefix = "blocks." + std::to_string(i);
    Block block;
    block.modulation = weight(weights.get(prefix + ".modulation").reshape({6, dim}));
    block.self_attn = attention(prefix + ".self_attn");
    block.norm3_weight = tensor(prefix + ".norm3.weight");
    block.norm3_bias = tensor(prefix + ".norm3.bias");
    block.cross_attn = attention(prefix + ".cross_attn");
    block.ffn_up = block_linear(prefix + ".ffn.0");
    block.ffn_down = block_linear(prefix + ".ffn.2");
    model.blocks.push_back(std::move(block));
  }
  model.head_modulation = weight(weights.get("head.modulation").reshape({2, dim}));
  model.head_linear = linear("head.head");
  return model;
}

template <typename Fn, typename AfterGroup>
void WanModel::for_each_weight(Fn&& fn, AfterGroup&& after_group) {
  auto linear = [&](Linear& l) {
    fn(l.weight);
    fn(l.bias);
  };
  auto attention = [&](Attention& a) {
    for (Linear* l : {&a.q, &a.k, &a.v, &a.o}) linear(*l);
    fn(a.norm_q);
    fn(a.norm_k);
  };
  for (Linear* l : {&patch_embedding, &text_embedding_0, &text_embedding_2, &time_embedding_0,
                    &time_embedding_2, &time_projection, &head_linear})
    linear(*l);
  fn(head_modulation);
  after_group(size_t{0});
  for (size_t i = 0; i < blocks.size(); ++i) {
    Block& block = blocks[i];
    fn(block.modulation);
    attention(block.self_attn);
    fn(block.norm3_weight);
    fn(block.norm3_bias);
    attention(block.cross_attn);
    linear(block.ffn_up);
    linear(block.ffn_down);
    after_group(i + 1);
  }
}

WanModel WanModel::parked(WeightParking& parking) const {
  WANRT_CHECK(!parked_, "DiT: parked() of a model that is already parked");
  WanModel copy = *this;
  copy.for_each_weight([&](Tensor& weight) { weight = parking.park(weight); }, [](size_t) {});
  copy.parked_ = true;
  copy.arrivals_.clear();
  copy.identity_ = std::make_shared<const int>(0);
  return copy;
}

WanModel WanModel::unparked(WeightParking& parking) const {
  WANRT_CHECK(parked_, "DiT: unparked() of a model whose weights are not parked");
  WanModel copy = *this;
  copy.arrivals_.clear();
  copy.for_each_weight([&](Tensor& weight) { weight = parking.unpark(weight); },
                       [&](size_t) { copy.arrivals_.push_back(parking.arrival()); });
  copy.parked_ = false;
  copy.identity_ = std::make_shared<const int>(0);  // new device addresses: new graphs
  return copy;
}

void WanModel::await_weights(Ops& ops, size_t group) const {
  WANRT_CHECK(!parked_, "DiT: this model's weights are parked in host memory; bring them to the "
              "device first (unparked())");
  if (arrivals_.empty()) return;
  WeightParking* parking = ops.weight_parking();
  WANRT_CHECK(parking, "DiT: this model's weights were brought in by weight parking, which the ",
              ops.name(), " backend does not have");
  parking->await(arrivals_.at(group));
}

Tensor WanModel::forward(Ops& ops, const DitInputs& inputs, const DitTrace* trace) const {
  const DitConditioning cond = prepare(ops, inputs, trace);
  const Tensor x = run_blocks(ops, cond, trace);
  return head(ops, x, cond, trace);
}

DitConditioning WanModel::prepare(Ops& ops, const DitInputs& in, const DitTrace* trace) const {
  const DitConfig& c = config_;
  DitConditioning cond = prepare_for_head(ops, in, trace);

  // Step 4 (cont.): the time projection, what the blocks' modulation adds to.
  cond.e0 = ops.linear(ops.activation(cond.e.reshape({1, c.dim}), Activation::Silu),
                       time_projection.weight, &time_projection.bias, {.full_precision = true})
                .reshape({6, c.dim});  // [6, D]
  if (trace) (*trace)("time_projection_out", ops.download(cond.e0));

  // Step 5: the text embedding over all text_len rows; padding rows are zeros and are NOT
  // masked later (the reference attends to them).
  const Tensor padded_text = ops.pad_rows(ops.upload(*in.context), c.text_len);  // [T, text_dim]
  const LinearOptions gelu{.activation = Activation::GeluTanh};
  cond.context = ops.linear(ops.linear(padded_text, text_embedding_0.weight, &text_embedding_0.bias, gelu),
                            text_embedding_2.weight, &text_embedding_2.bias);  // [T, D]
  if (trace) (*trace)("text_embedding_out", ops.download(cond.context));

  cond.rope = rope_table(ops, cond);
  return cond;
}

DitConditioning WanModel::prepare_for_head(Ops& ops, const DitInputs& in, const DitTrace* trace) const {
  const DitConfig& c = config_;
  await_weights(ops, 0);
  WANRT_CHECK(in.x && in.context, "DiT: the latent x and the text context are required");
  const Tensor& x = *in.x;
  WANRT_CHECK(x.dim() == 4 && x.size(0) == c.out_dim, "DiT: latent ", x.describe(),
              " must be [", c.out_dim, ", F, H, W]");
  const int64_t cond_channels = c.in_dim - c.out_dim;
  if (cond_channels > 0) {
    WANRT_CHECK(in.y != nullptr, "DiT: this ", c.model_type, " model needs the conditioning y");
    WANRT_CHECK(in.y->dim() == 4 && in.y->size(0) == cond_channels &&
                    in.y->size(1) == x.size(1) && in.y->size(2) == x.size(2) && in.y->size(3) == x.size(3),
                "DiT: conditioning ", in.y->describe(), " must be [", cond_channels, ", ",
                x.size(1), ", ", x.size(2), ", ", x.size(3), "]");
  }
  const int64_t ph = c.patch_size[1], pw = c.patch_size[2];
  WANRT_CHECK(x.size(2) % ph == 0 && x.size(3) % pw == 0, "DiT: latent height and width ",
              x.size(2), "x", x.size(3), " must be multiples of the patch ", ph, "x", pw);
  const Tensor& context = *in.context;
  WANRT_CHECK(context.dim() == 2 && context.size(1) == c.text_dim && context.size(0) <= c.text_len,
              "DiT: text context ", context.describe(), " must be [<= ", c.text_len, ", ",
              c.text_dim, "]");

  DitConditioning cond;
  cond.frames = x.size(1);
  cond.height = x.size(2) / ph;
  cond.width = x.size(3) / pw;
  cond.tokens = cond.frames * cond.height * cond.width;
  const int64_t ranks = ops.world_size();
  cond.seq_len = in.seq_len >= 0 ? in.seq_len : (cond.tokens + ranks - 1) / ranks * ranks;
  WANRT_CHECK(cond.seq_len >= cond.tokens && cond.seq_len % ranks == 0, "DiT: seq_len ",
              cond.seq_len, " must be >= the ", cond.tokens, " video tokens and divisible by ",
              ranks, " ranks");
  cond.local_tokens = cond.seq_len / ranks;
  cond.local_begin = ops.rank() * cond.local_tokens;

  // Steps 1–3: channel concat, patch embedding as a GEMM, zero padding to seq_len.
  const int64_t voxels = x.numel() / x.size(0);
  Tensor xin = ops.upload(x);
  if (cond_channels > 0)
    xin = ops.concat_rows(xin.reshape({c.out_dim, voxels}), ops.upload(*in.y).reshape({cond_channels, voxels}))
              .reshape({c.in_dim, x.size(1), x.size(2), x.size(3)});  // [in_dim, F, H, W]
  const Tensor patches = ops.patchify(xin, ph, pw);                    // [L, in_dim·ph·pw]
  const Tensor embedded = ops.linear(patches, patch_embedding.weight, &patch_embedding.bias);  // [L, D]
  if (trace) (*trace)("patch_embedding_out", ops.download(embedded));
  cond.x0 = ops.rows(ops.pad_rows(embedded, cond.seq_len), cond.local_begin,
                     cond.local_begin + cond.local_tokens);  // [S, D]

  // Step 4: the time embedding, once per call (every token carries the same t).
  const Tensor sinusoid = ops.upload(sinusoidal_embedding(c.freq_dim, in.timestep));  // [1, 256]
  const LinearOptions fp32_silu{.activation = Activation::Silu, .full_precision = true};
  const LinearOptions fp32{.full_precision = true};
  const Tensor hidden = ops.linear(sinusoid, time_embedding_0.weight, &time_embedding_0.bias, fp32_silu);
  cond.e = ops.linear(hidden, time_embedding_2.weight, &time_embedding_2.bias, fp32).reshape({c.dim});
  if (trace) (*trace)("time_embedding_out", ops.download(cond.e));
  return cond;
}

// Step 6: the 3-D RoPE angles for this rank's tokens. The d/2 complex slots of a head split
// into [d/2 − 2⌊d/6⌋, ⌊d/6⌋, ⌊d/6⌋] for (frame, row, column); slot k of an axis whose table
// has `axis_dim` real dims turns by pos · 10000^(−2k/axis_dim). Angles in float64; padding
// tokens get the identity rotation.
Tensor WanModel::rope_table(Ops& ops, const DitConditioning& cond) const {
  const int64_t d = config_.head_dim(), slots = d / 2;
  const int64_t hw_slots = d / 6, t_slots = slots - 2 * hw_slots;
  const double t_dim = static_cast<double>(d - 4 * (d / 6)), hw_dim = static_cast<double>(2 * (d / 6));
  WANRT_CHECK(cond.frames < 1024 && cond.height < 1024 && cond.width < 1024,
              "DiT: the patch grid ", cond.frames, "x", cond.height, "x", cond.width,
              " exceeds the RoPE table's 1024 positions per axis");
  std::vector<double> omega(static_cast<size_t>(slots));
  for (int64_t k = 0; k < slots; ++k) {
    const bool temporal = k < t_slots;
    const int64_t index = temporal ? k : (k - t_slots) % hw_slots;
    omega[static_cast<size_t>(k)] = std::pow(10000.0, -2.0 * static_cast<double>(index) / (temporal ? t_dim : hw_dim));
  }
  Tensor table = Tensor::empty(DType::F32, {cond.local_tokens, slots, 2});
  float* out = table.data<float>();
  for (int64_t local = 0; local < cond.local_tokens; ++local) {
    const int64_t n = cond.local_begin + local;
    const int64_t f = n / (cond.height * cond.width), i = (n / cond.width) % cond.height, j = n % cond.width;
    for (int64_t k = 0; k < slots; ++k) {
      double angle = 0;
      if (n < cond.tokens) {
        const int64_t pos = k < t_slots ? f : (k < t_slots + hw_slots ? i : j);
        angle = static_cast<double>(pos) * omega[static_cast<size_t>(k)];
      }
      out[(local * slots + k) * 2] = static_cast<float>(std::cos(angle));
      out[(local * slots + k) * 2 + 1] = static_cast<float>(std::sin(angle));
    }
  }
  return ops.upload(table);
}

Tensor WanModel::run_blocks(Ops& ops, const DitConditioning& cond, const DitTrace* trace) const {
  const DitConfig& c = config_;
  const auto eps = static_cast<float>(c.eps);
  Tensor x = ops.rows(cond.x0, 0, cond.local_tokens);  // [S, D] the float32 residual stream
  for (size_t i = 0; i < blocks.size(); ++i) {
    await_weights(ops, i + 1);
    const Block& block = blocks[i];
    const std::string name = "block" + std::to_string(i);
    const Tensor mod = ops.add(block.modulation, cond.e0);  // [6, D]
    const Tensor shift_sa = vector_row(ops, mod, 0), scale_sa = vector_row(ops, mod, 1),
                 gate_sa = vector_row(ops, mod, 2), shift_ff = vector_row(ops, mod, 3),
                 scale_ff = vector_row(ops, mod, 4), gate_ff = vector_row(ops, mod, 5);

    const Tensor a = ops.layer_norm_modulate(x, shift_sa, scale_sa, eps);          // [S, D]
    const Tensor self_out = self_attention(ops, block.self_attn, a, cond);       // [S, D]
    if (trace) (*trace)(name + "_self_attn_out", ops.download(ops.all_gather_rows(self_out)));
    ops.add_gated_(x, self_out, &gate_sa);

    const Tensor normed = ops.layer_norm(x, eps, &block.norm3_weight, &block.norm3_bias);  // [S, D]
    const Tensor cross_out = cross_attention(ops, block.cross_attn, normed, cond.context);  // [S, D]
    if (trace) (*trace)(name + "_cross_attn_out", ops.download(ops.all_gather_rows(cross_out)));
    ops.add_gated_(x, cross_out, nullptr);

    const Tensor f_in = ops.layer_norm_modulate(x, shift_ff, scale_ff, eps);  // [S, D]
    const Tensor hidden = ops.linear(f_in, block.ffn_up.weight, &block.ffn_up.bias,
                                     {.activation = Activation::GeluTanh});  // [S, ffn_dim]
    const Tensor ffn_out = ops.linear(hidden, block.ffn_down.weight, &block.ffn_down.bias);  // [S, D]
    ops.add_gated_(x, ffn_out, &gate_ff);
    if (trace) (*trace)(name + "_out", ops.download(ops.all_gather_rows(x)));
  }
  return x;
}

// Self-attention over the whole sequence. Under sequence parallelism each rank projects its
// own tokens, the first all-to-all trades token chunks for head groups, attention runs over
// all L_pad tokens for H/p heads with padding keys masked (kv_len = L), and the second
// all-to-all trades back.
Tensor WanModel::self_attention(Ops& ops, const Attention& attn, const Tensor& a,
                                const DitConditioning& cond) const {
  const DitConfig& c = config_;
  const auto eps = static_cast<float>(c.eps);
  const Shape heads_shape = {cond.local_tokens, c.num_heads, c.head_dim()};
  // q/k: RMSNorm over all heads' features, then RoPE per head, as one op (one fused kernel).
  const Tensor q = ops.rms_norm_rope(ops.linear(a, attn.q.weight, &attn.q.bias), attn.norm_q, eps,
                                     cond.rope, c.num_heads);  // [S, H, d]
  const Tensor k = ops.rms_norm_rope(ops.linear(a, attn.k.weight, &attn.k.bias), attn.norm_k, eps,
                                     cond.rope, c.num_heads);  // [S, H, d]
  const Tensor v = ops.linear(a, attn.v.weight, &attn.v.bias).reshape(heads_shape);  // [S, H, d]
  const AttentionOptions options{.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim())),
                                 .kv_len = cond.tokens};
  const Tensor out = ops.heads_to_sequence(ops.attention(
      ops.sequence_to_heads(q), ops.sequence_to_heads(k), ops.sequence_to_heads(v), options));  // [S, H, d]
  return ops.linear(out.reshape({cond.local_tokens, c.dim}), attn.o.weight, &attn.o.bias);  // [S, D]
}

// Cross-attention from this rank's tokens to every text row (no mask, no RoPE, no gate).
Tensor WanModel::cross_attention(Ops& ops, const Attention& attn, const Tensor& c_in,
                                 const Tensor& context) const {
  const DitConfig& c = config_;
  const auto eps = static_cast<float>(c.eps);
  const int64_t rows = c_in.size(0), text_rows = context.size(0);
  const Tensor q = ops.rms_norm(ops.linear(c_in, attn.q.weight, &attn.q.bias), attn.norm_q, eps)
                       .reshape({rows, c.num_heads, c.head_dim()});
  const Tensor k = ops.rms_norm(ops.linear(context, attn.k.weight, &attn.k.bias), attn.norm_k, eps)
                       .reshape({text_rows, c.num_heads, c.head_dim()});
  const Tensor v = ops.linear(context, attn.v.weight, &attn.v.bias).reshape({text_rows, c.num_heads, c.head_dim()});
  const Tensor out = ops.attention(q, k, v, {.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim()))});
  return ops.linear(out.reshape({rows, c.dim}), attn.o.weight, &attn.o.bias);  // [S, D]
}

// Step 8–9: the head's modulation uses e (not e0); the projection runs in float32.
Tensor WanModel::head(Ops& ops, const Tensor& x, const DitConditioning& cond,
                      const DitTrace* trace) const {
  const DitConfig& c = config_;
  await_weights(ops, 0);
  const Tensor mod = ops.add(head_modulation, cond.e);  // [2, D]
  const Tensor normed = ops.layer_norm_modulate(x, vector_row(ops, mod, 0), vector_row(ops, mod, 1),
                                                static_cast<float>(c.eps), /*full_precision=*/true);
  const Tensor local_out = ops.linear(normed, head_linear.weight, &head_linear.bias,
                                      {.full_precision = true});  // [S, ph·pw·out_dim]
  const Tensor out = ops.all_gather_rows(local_out);             // [L_pad, ph·pw·out_dim]
  if (trace) (*trace)("head_out", ops.download(out));
  return ops.download(ops.unpatchify(out, c.out_dim, cond.frames, cond.height, cond.width,
                                     c.patch_size[1], c.patch_size[2]));  // [out_dim, F, H, W]
}

}  // namespace wanrt
