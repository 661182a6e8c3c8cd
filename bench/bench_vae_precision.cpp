// bench_vae_precision: where the VAE's reduced-precision error comes from, measured on the CPU.
//
// The golden VAE cases (shared/golden/vae, the official code's float32 outputs) run on the
// float32 CPU reference through an Ops decorator that rounds chosen tensors to bf16 (or TF32)
// at the points where the CUDA backend stores or feeds them in that format. Each "scheme" is
// a set of rounding points; the table gives the relative error (‖a − b‖ / ‖b‖, as the golden
// tests) of encode and decode per case. No GPU is needed, so rounding points can be turned on
// one at a time to find the ones that matter, which one device run could never do.
//
// The emulation follows cuda_ops.h's precision map:
//   conv3d       operands rounded (bf16 or TF32), float32 accumulation; with a rounded
//                output, cuDNN's pre-bias result is rounded, then the bias added and rounded
//                again (the NDHWC->NCDHW transpose adds the bias), as on the GPU
//   linear       input, weight and output in bf16, always (the attention block's GEMMs)
//   attention    bf16 in and out, always
//   others       channel_rms_norm, activation, add: output rounded when the scheme says so;
//                upsample, frames, concat, transpose, rows only move values
// Reduction order differs from the GPU's; that error is float32-sized, far below bf16's.
//
//   bench_vae_precision [--golden DIR] [--schemes A,B,...] [--list]
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "bench_common.h"
#include "io/safetensors.h"
#include "io/tensor_store.h"
#include "io/torch_pth.h"
#include "model/vae.h"

namespace wanrt::bench {
namespace {

constexpr const char* kUsage = R"(bench_vae_precision: VAE error per rounding scheme (CPU emulation).

  --golden DIR    the golden folder (default: $WANRT_GOLDEN_DIR, else ../shared/golden)
  --schemes A,B   run only these schemes (default: all)
  --list          list the schemes and exit
)";

// Round-to-nearest-even of a float32 to `mantissa` explicit bits (7: bf16, 10: TF32).
float round_mantissa(float value, int mantissa) {
  if (mantissa >= 23 || !std::isfinite(value)) return value;
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  const int drop = 23 - mantissa;
  const uint32_t lsb = (bits >> drop) & 1u;
  bits += (1u << (drop - 1)) - 1u + lsb;
  bits &= ~((1u << drop) - 1u);
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

constexpr int kF32 = 23, kTf32 = 10, kBf16 = 7;
constexpr int kF16 = -10;  // IEEE half: 10 mantissa bits, subnormals below 2^-14, inf past 65504

// The value an IEEE half would hold (round to nearest even, with its range).
float round_half(float value) {
  if (!std::isfinite(value)) return value;
  const float magnitude = std::fabs(value);
  if (magnitude >= 65520.0f) return std::copysign(INFINITY, value);
  if (magnitude < 6.103515625e-05f) {  // subnormal: a fixed quantum of 2^-24
    const float quantum = 5.9604644775390625e-08f;
    return std::nearbyint(value / quantum) * quantum;  // default rounding: to nearest even
  }
  return round_mantissa(value, 10);
}

// The largest magnitude seen at each rounding point, to judge the F16 range (65504).
std::map<std::string, float>& magnitudes() {
  static std::map<std::string, float> seen;
  return seen;
}

Tensor rounded(const Tensor& t, int mantissa, const char* point = nullptr) {
  if (point) {
    float& largest = magnitudes()[point];
    const Tensor values = t.to(DType::F32);  // named: floats() is a view into it
    for (const float v : values.floats()) largest = std::max(largest, std::fabs(v));
  }
  if (mantissa >= 23) return t;
  Tensor out = t.to(DType::F32);
  if (mantissa == kF16) {
    for (float& v : out.floats()) v = round_half(v);
  } else {
    for (float& v : out.floats()) v = round_mantissa(v, mantissa);
  }
  return out;
}

struct Scheme {
  std::string name, what;
  int conv_operands = kF32;     // conv input and weight
  bool conv_output = false;     // conv result stored in `storage` (before and after the bias)
  int storage = kBf16;       // the format of the conv output
  int rest_storage = kBf16;  // the format of norm, activation and add outputs
  // Only the pre-bias conv result is rounded (cuDNN's output); the bias is added in float32
  // and the conv returns float32.
  bool conv_output_f32 = false;
  bool norm_output = false;     // channel_rms_norm result in bf16
  bool activation_output = false;
  bool add_output = false;      // residual adds in bf16
  bool attention_bf16 = true;   // the mid-block attention's GEMMs and attention (the GPU's)
  bool round_conv_input = true;   // with conv_operands: which of the two operands to round
  bool round_conv_weight = true;
  // Only the conv whose weight was uploaded as the `only_layer`-th conv weight (load order:
  // the encoder's, then the decoder's) is reduced; -1: every conv.
  int only_layer = -1;
};

std::vector<Scheme> schemes() {
  std::vector<Scheme> list;
  list.push_back({.name = "f32", .what = "float32 everywhere but the attention block", .conv_operands = kF32});
  list.push_back({.name = "f32-exact", .what = "float32 everywhere, attention too", .attention_bf16 = false});
  list.push_back({.name = "tf32", .what = "TF32 conv operands (the current default)", .conv_operands = kTf32});
  list.push_back({.name = "bf16-all",
                  .what = "conv_dtype BF16 today: every video op's output in bf16",
                  .conv_operands = kBf16, .conv_output = true, .norm_output = true,
                  .activation_output = true, .add_output = true});
  list.push_back({.name = "bf16-operands", .what = "bf16 conv operands, everything else float32",
                  .conv_operands = kBf16});
  list.push_back({.name = "bf16-inputs", .what = "bf16 conv inputs, float32 conv weights",
                  .conv_operands = kBf16, .round_conv_weight = false});
  list.push_back({.name = "bf16-weights", .what = "bf16 conv weights, float32 conv inputs",
                  .conv_operands = kBf16, .round_conv_input = false});
  list.push_back({.name = "bf16-operands+out", .what = "bf16 conv operands and conv output",
                  .conv_operands = kBf16, .conv_output = true});
  list.push_back({.name = "bf16-operands+out+norm+act",
                  .what = "bf16 conv operands and output, norm and SiLU outputs; adds in float32",
                  .conv_operands = kBf16, .conv_output = true, .norm_output = true,
                  .activation_output = true});
  list.push_back({.name = "bf16-operands+out+add",
                  .what = "bf16 conv operands, conv output and residual adds",
                  .conv_operands = kBf16, .conv_output = true, .add_output = true});
  list.push_back({.name = "bf16-operands+add", .what = "bf16 conv operands and residual adds",
                  .conv_operands = kBf16, .add_output = true});
  list.push_back({.name = "bf16-all-but-add", .what = "bf16-all with the residual adds in float32",
                  .conv_operands = kBf16, .conv_output = true, .norm_output = true,
                  .activation_output = true});
  list.push_back({.name = "f16-operands", .what = "f16 conv operands, everything else float32",
                  .conv_operands = kF16});
  list.push_back({.name = "f16-operands+out",
                  .what = "f16 conv operands and pre-bias output (cuDNN's), bias and all else float32",
                  .conv_operands = kF16, .conv_output = true, .storage = kF16, .conv_output_f32 = true});
  list.push_back({.name = "f16-all", .what = "every video op's output in f16 (conv_dtype F16 as BF16 today)",
                  .conv_operands = kF16, .conv_output = true, .storage = kF16, .rest_storage = kF16,
                  .norm_output = true,
                  .activation_output = true, .add_output = true});
  list.push_back({.name = "f16-conv+bf16-rest",
                  .what = "f16 conv operands and output, bf16 norm/activation/add outputs",
                  .conv_operands = kF16, .conv_output = true, .storage = kF16, .conv_output_f32 = true,
                  .norm_output = true, .activation_output = true, .add_output = true});
  return list;
}

// The float32 reference with bf16/TF32 rounding at the scheme's points (see the file comment).
class RoundingOps final : public Ops {
 public:
  RoundingOps(Ops& inner, const Scheme& scheme) : inner_(inner), s_(scheme) {}
  std::string name() const override { return "rounding(" + inner_.name() + ")"; }

  Tensor upload(const Tensor& host) override { return inner_.upload(host); }
  Tensor upload_weight(const Tensor& host) override {
    // Matrices are GEMM operands (bf16 on the GPU when attention_bf16); conv weights are
    // rounded at the conv, with its operands.
    if (host.dim() == 2 && s_.attention_bf16) return inner_.upload_weight(rounded(host, kBf16));
    Tensor w = inner_.upload_weight(host);
    if (host.dim() == 5) conv_layer_[w.raw()] = static_cast<int>(conv_layer_.size());
    return w;
  }
  Tensor quantize_weight(const Tensor& host, DType codes) override {
    return inner_.quantize_weight(host, codes);
  }
  Tensor download(const Tensor& t) override { return inner_.download(t); }
  Tensor zeros(Shape shape) override { return inner_.zeros(std::move(shape)); }

  Tensor linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                const LinearOptions& options) override {
    if (!s_.attention_bf16) return inner_.linear(x, weight, bias, options);
    return rounded(inner_.linear(rounded(x, kBf16), weight, bias, options), kBf16);
  }
  Tensor layer_norm(const Tensor& x, float eps, const Tensor* w, const Tensor* b) override {
    return inner_.layer_norm(x, eps, w, b);
  }
  Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                             bool full_precision) override {
    return inner_.layer_norm_modulate(x, shift, scale, eps, full_precision);
  }
  Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) override {
    return inner_.rms_norm(x, w, eps);
  }
  Tensor activation(const Tensor& x, Activation act) override {
    Tensor y = inner_.activation(x, act);
    return s_.activation_output ? rounded(y, s_.rest_storage) : y;
  }
  Tensor add(const Tensor& a, const Tensor& b) override {
    Tensor y = inner_.add(a, b);
    return s_.add_output ? rounded(y, s_.rest_storage, "residual add") : y;
  }
  Tensor mul(const Tensor& a, const Tensor& b) override { return inner_.mul(a, b); }
  void add_gated_(Tensor& x, const Tensor& y, const Tensor* gate) override {
    inner_.add_gated_(x, y, gate);
  }
  void rope_(Tensor& x, const Tensor& table) override { inner_.rope_(x, table); }
  Tensor rms_norm_rope(const Tensor& x, const Tensor& w, float eps, const Tensor& table,
                       int64_t heads) override {
    return inner_.rms_norm_rope(x, w, eps, table, heads);
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                   const AttentionOptions& options) override {
    if (!s_.attention_bf16) return inner_.attention(q, k, v, options);
    return rounded(inner_.attention(rounded(q, kBf16), rounded(k, kBf16), rounded(v, kBf16), options),
                   kBf16);
  }
  Tensor embedding(const Tensor& table, const Tensor& ids) override {
    return inner_.embedding(table, ids);
  }

  Tensor conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                const Conv3dOptions& options) override {
    const auto layer = conv_layer_.find(weight.raw());
    const bool reduce = s_.only_layer < 0 || (layer != conv_layer_.end() && layer->second == s_.only_layer);
    const int bits = reduce ? s_.conv_operands : kF32;
    Tensor y = inner_.conv3d(rounded(x, s_.round_conv_input ? bits : kF32, "conv input"),
                             rounded(weight, s_.round_conv_weight ? bits : kF32), nullptr, options);
    if (s_.conv_output) y = rounded(y, s_.storage, "conv output (pre-bias)");
    if (bias) {
      const int64_t channels = y.size(0), per_channel = y.numel() / channels;
      const Tensor b = bias->to(DType::F32);
      float* values = y.floats().data();
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < per_channel; ++i) values[c * per_channel + i] += b.floats()[static_cast<size_t>(c)];
    }
    return s_.conv_output && !s_.conv_output_f32 ? rounded(y, s_.storage) : y;
  }
  Tensor channel_rms_norm(const Tensor& x, const Tensor& gamma) override {
    Tensor y = inner_.channel_rms_norm(x, gamma);
    return s_.norm_output ? rounded(y, s_.rest_storage) : y;
  }
  Tensor upsample_nearest_2x(const Tensor& x) override { return inner_.upsample_nearest_2x(x); }
  Tensor frames(const Tensor& x, int64_t begin, int64_t end) override {
    return inner_.frames(x, begin, end);
  }
  Tensor concat_frames(const Tensor& a, const Tensor& b) override {
    return inner_.concat_frames(a, b);
  }
  Tensor transpose(const Tensor& x) override { return inner_.transpose(x); }
  Tensor patchify(const Tensor& v, int64_t ph, int64_t pw) override {
    return inner_.patchify(v, ph, pw);
  }
  Tensor unpatchify(const Tensor& t, int64_t c, int64_t f, int64_t h, int64_t w, int64_t ph,
                    int64_t pw) override {
    return inner_.unpatchify(t, c, f, h, w, ph, pw);
  }
  Tensor pad_rows(const Tensor& x, int64_t rows) override { return inner_.pad_rows(x, rows); }
  Tensor concat_rows(const Tensor& a, const Tensor& b) override {
    return inner_.concat_rows(a, b);
  }
  Tensor rows(const Tensor& x, int64_t begin, int64_t end) override {
    return inner_.rows(x, begin, end);
  }
  Tensor sequence_to_heads(const Tensor& x) override { return inner_.sequence_to_heads(x); }
  Tensor heads_to_sequence(const Tensor& x) override { return inner_.heads_to_sequence(x); }
  Tensor all_gather_rows(const Tensor& x) override { return inner_.all_gather_rows(x); }
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }

 private:
  Ops& inner_;
  Scheme s_;
  std::map<const void*, int> conv_layer_;  // conv weight -> its upload index
};

double relative_error(const Tensor& actual, const Tensor& expected) {
  const Tensor a = actual.to(DType::F32), b = expected.to(DType::F32);
  WANRT_CHECK(a.numel() == b.numel(), "shape mismatch ", a.describe(), " vs ", b.describe());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.floats().size(); ++i) {
    const double d = static_cast<double>(a.floats()[i]) - b.floats()[i];
    diff += d * d;
    norm += static_cast<double>(b.floats()[i]) * b.floats()[i];
  }
  return std::sqrt(diff / norm);
}

const Scheme& find_scheme(const std::vector<Scheme>& list, const std::string& name) {
  for (const Scheme& s : list)
    if (s.name == name) return s;
  fail("unknown scheme '", name, "' (--list shows them)");
}

// Decode error with `base`'s conv rounding applied to one conv layer at a time (decoder only).
int run_per_layer(Ops& cpu, const std::string& golden, const std::vector<std::string>& cases,
                  const std::string& scheme_name) {
  const std::vector<Scheme> list = schemes();
  Scheme scheme = find_scheme(list, scheme_name);
  // The conv layers, in upload order, with their weight shapes.
  std::vector<std::pair<std::string, Shape>> convs;
  {
    const TensorStore weights = read_pth(golden + "/Wan2.2-I2V-tiny/Wan2.1_VAE.pth");
    const VaeConfig config = VaeConfig::from_weights(weights);
    for (const auto& [name, shape] : config.checkpoint_layout())
      if (name.ends_with(".weight") && (shape.size() == 5 || (shape.size() == 4 && name.find("to_qkv") == std::string::npos &&
                                                              name.find("proj") == std::string::npos)))
        convs.emplace_back(name, shape);
  }
  std::vector<SafetensorsContents> data;
  for (const std::string& name : cases) data.push_back(read_safetensors(golden + "/vae/" + name + ".safetensors"));
  std::cout << "| layer | conv | weight |";
  for (const std::string& name : cases) std::cout << " " << name << " decode |";
  std::cout << "\n|---|---|---|" << std::string(cases.size() * 4, '-') << "\n";
  for (size_t layer = 0; layer < convs.size(); ++layer) {
    if (!convs[layer].first.starts_with("decoder") && convs[layer].first != "conv2.weight") continue;
    scheme.only_layer = static_cast<int>(layer);
    RoundingOps ops(cpu, scheme);
    WanVae vae = WanVae::load_file(ops, golden + "/Wan2.2-I2V-tiny/Wan2.1_VAE.pth");
    std::cout << "| " << layer << " | " << convs[layer].first << " | " << shape_str(convs[layer].second) << " |";
    for (size_t c = 0; c < cases.size(); ++c) {
      VaeDecodeOptions unclamped;
      unclamped.clamp = false;
      const Tensor video = vae.decode(ops, data[c].tensors.get("decode_in"), unclamped);
      std::cout << fmt(" %.2e |", relative_error(video, data[c].tensors.get("decode_out")));
    }
    std::cout << std::endl;
  }
  return 0;
}

int run(int argc, char** argv) {
  Args args(argc, argv);
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  std::string golden = "../shared/golden";
  if (const char* env = std::getenv("WANRT_GOLDEN_DIR"); env && *env) golden = env;
  golden = args.value("--golden").value_or(golden);
  const bool list_only = args.flag("--list");
  const std::optional<std::string> per_layer = args.value("--per-layer");
  std::vector<std::string> wanted;
  if (const std::optional<std::string> list = args.value("--schemes")) {
    size_t begin = 0;
    while (begin <= list->size()) {
      const size_t end = std::min(list->find(',', begin), list->size());
      wanted.push_back(list->substr(begin, end - begin));
      begin = end + 1;
    }
  }
  args.finish();
  if (list_only) {
    for (const Scheme& s : schemes()) std::cout << s.name << ": " << s.what << "\n";
    return 0;
  }
  const std::vector<std::string> cases = {"t1_16x24", "t5_16x16", "t9_32x48"};
  std::unique_ptr<Ops> cpu = make_cpu_ops();
  if (per_layer) return run_per_layer(*cpu, golden, cases, *per_layer);
  std::cout << "| scheme | case | encode rel err | decode rel err |\n|---|---|---|---|\n";
  for (const Scheme& scheme : schemes()) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), scheme.name) == wanted.end()) continue;
    RoundingOps ops(*cpu, scheme);
    WanVae vae = WanVae::load_file(ops, golden + "/Wan2.2-I2V-tiny/Wan2.1_VAE.pth");
    magnitudes().clear();
    for (const std::string& name : cases) {
      const SafetensorsContents data = read_safetensors(golden + "/vae/" + name + ".safetensors");
      const Tensor latent = vae.encode(ops, data.tensors.get("video"));
      VaeDecodeOptions unclamped;
      unclamped.clamp = false;
      const Tensor video = vae.decode(ops, data.tensors.get("decode_in"), unclamped);
      std::cout << fmt("| %s | %s | %.2e | %.2e |", scheme.name.c_str(), name.c_str(),
                       relative_error(latent, data.tensors.get("latent")),
                       relative_error(video, data.tensors.get("decode_out")))
                << std::endl;
    }
    std::cout << "|   largest magnitudes:";
    for (const auto& [point, value] : magnitudes()) std::cout << fmt(" %s %.3g;", point.c_str(), value);
    std::cout << " |\n";
  }
  return 0;
}

}  // namespace
}  // namespace wanrt::bench

int main(int argc, char** argv) {
  return wanrt::bench::run_main("bench_vae_precision", [&] { return wanrt::bench::run(argc, argv); });
}
