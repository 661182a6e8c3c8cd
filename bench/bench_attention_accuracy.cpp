// bench_attention_accuracy: how far the 8-bit attention kernel (cuda_attention_int8.cu) lands
// from the bf16 Hopper kernel, on q/k/v taken from a real forward and on random inputs, and
// what it does to a DiT block's output (issue 5: "measure the error honestly").
//
// The model: one full-size Wan2.2 I2V-A14B block (dim 5120, 40 heads of 128, FFN 13824; the
// real prepare and head around it) with random weights as bench_dit draws them (N(0, 0.02²),
// norm gains 1 + N(0, 0.02²)), a random latent x and conditioning y (N(0, 1)) and a random
// context (0.1·N(0, 1)), at the 720p latent grid 21×90×160 = 75,600 tokens by default
// (--grid F H W for another). A decorator around the CUDA ops records the q/k/v of the first
// self-attention call (the block's, after RMSNorm and RoPE) and can send every head_dim-128
// attention call to the 8-bit kernel, or to the portable bf16 kernel.
// Printed, relative error ‖a − b‖/‖b‖ and cosine similarity a·b/(‖a‖‖b‖) over the whole output:
//   1. the recorded q/k/v: every int8 configuration against the bf16 Hopper kernel;
//   2. a slice of them (the first --slice-rows queries of --slice-heads heads against all
//      keys): int8 and bf16 against the float32 CPU reference;
//   3. random inputs of the same shape (N(0, 1) q/k/v): int8 against bf16;
//   4. the block run three times, attention by the bf16 Hopper kernel, by the 8-bit kernel and
//      by the portable bf16 kernel: the block's self-attention output, its output and the
//      head's output of the int8 and portable runs against the Hopper bf16 run (portable vs
//      Hopper bf16 is the scale of plain bf16 rounding differences).
//
//   bench_attention_accuracy [--grid F H W] [--seed N] [--slice-rows N] [--slice-heads N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/ops.h"
#include "bench_common.h"
#include "core/error.h"
#include "core/tensor.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_attention_int8.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops_impl.h"
#include "io/random_weights.h"
#include "io/tensor_store.h"
#include "model/dit.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA

// Which kernel the decorator sends head_dim-128 attention to.
enum class Route { Bf16Hopper, Int8, Portable };

// Forwards every op to the CUDA ops; records the first self-attention call's inputs and routes
// attention as told.
class RoutingOps final : public Ops {
 public:
  explicit RoutingOps(CudaOps& inner) : inner_(inner) {}
  Route route = Route::Bf16Hopper;
  bool recorded = false;
  Tensor recorded_q, recorded_k, recorded_v;
  AttentionOptions recorded_options;

  std::string name() const override { return inner_.name(); }
  Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                   const AttentionOptions& o) override {
    if (!recorded && q_in.size(0) == k_in.size(0)) {
      recorded_q = q_in;
      recorded_k = k_in;
      recorded_v = v_in;
      recorded_options = o;
      recorded_options.bias = nullptr;
      recorded = true;
    }
    if (route == Route::Int8 && int8_attention_applies(q_in, k_in, v_in, o))
      return int8_attention(inner_, q_in, k_in, v_in, o, int8_attention_tilings().front());
    if (route == Route::Portable && !o.bias && q_in.size(2) == 128)
      return flash_attention(inner_, q_in, k_in, v_in, o, flash_attention_tilings(128).front());
    return inner_.attention(q_in, k_in, v_in, o);
  }
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  Tensor upload(const Tensor& host) override { return inner_.upload(host); }
  Tensor upload_weight(const Tensor& host) override { return inner_.upload_weight(host); }
  Tensor quantize_weight(const Tensor& host, DType codes) override { return inner_.quantize_weight(host, codes); }
  Tensor download(const Tensor& tensor) override { return inner_.download(tensor); }
  Tensor zeros(Shape shape) override { return inner_.zeros(std::move(shape)); }
  Tensor linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const LinearOptions& options) override { return inner_.linear(x, weight, bias, options); }
  Tensor layer_norm(const Tensor& x, float eps, const Tensor* weight, const Tensor* bias) override { return inner_.layer_norm(x, eps, weight, bias); }
  Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps, bool full_precision) override { return inner_.layer_norm_modulate(x, shift, scale, eps, full_precision); }
  Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) override { return inner_.rms_norm(x, weight, eps); }
  Tensor activation(const Tensor& x, Activation act) override { return inner_.activation(x, act); }
  Tensor add(const Tensor& a, const Tensor& b) override { return inner_.add(a, b); }
  Tensor mul(const Tensor& a, const Tensor& b) override { return inner_.mul(a, b); }
  void add_gated_(Tensor& x, const Tensor& y, const Tensor* gate) override { inner_.add_gated_(x, y, gate); }
  void rope_(Tensor& x, const Tensor& table) override { inner_.rope_(x, table); }
  Tensor rms_norm_rope(const Tensor& x, const Tensor& weight, float eps, const Tensor& table, int64_t heads) override { return inner_.rms_norm_rope(x, weight, eps, table, heads); }
  Tensor embedding(const Tensor& table, const Tensor& ids) override { return inner_.embedding(table, ids); }
  Tensor conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, const Conv3dOptions& options) override { return inner_.conv3d(x, weight, bias, options); }
  Tensor conv3d_after(const Tensor& prefix, const Tensor& x, const Tensor& weight, const Tensor* bias, const Conv3dOptions& options) override { return inner_.conv3d_after(prefix, x, weight, bias, options); }
  Tensor channel_rms_norm(const Tensor& x, const Tensor& gamma) override { return inner_.channel_rms_norm(x, gamma); }
  Tensor channel_rms_norm_silu(const Tensor& x, const Tensor& gamma) override { return inner_.channel_rms_norm_silu(x, gamma); }
  Tensor upsample_nearest_2x(const Tensor& x) override { return inner_.upsample_nearest_2x(x); }
  Tensor frames(const Tensor& x, int64_t begin, int64_t end) override { return inner_.frames(x, begin, end); }
  Tensor concat_frames(const Tensor& a, const Tensor& b) override { return inner_.concat_frames(a, b); }
  Tensor transpose(const Tensor& x) override { return inner_.transpose(x); }
  Tensor patchify(const Tensor& video, int64_t ph, int64_t pw) override { return inner_.patchify(video, ph, pw); }
  Tensor unpatchify(const Tensor& tokens, int64_t channels, int64_t frames, int64_t h, int64_t w, int64_t ph, int64_t pw) override { return inner_.unpatchify(tokens, channels, frames, h, w, ph, pw); }
  Tensor pad_rows(const Tensor& x, int64_t rows) override { return inner_.pad_rows(x, rows); }
  Tensor concat_rows(const Tensor& a, const Tensor& b) override { return inner_.concat_rows(a, b); }
  Tensor rows(const Tensor& x, int64_t begin, int64_t end) override { return inner_.rows(x, begin, end); }
  Tensor sequence_to_heads(const Tensor& x) override { return inner_.sequence_to_heads(x); }
  Tensor heads_to_sequence(const Tensor& x) override { return inner_.heads_to_sequence(x); }
  Tensor all_gather_rows(const Tensor& x) override { return inner_.all_gather_rows(x); }

 private:
  CudaOps& inner_;
};

struct Errors {
  double relative = 0, cosine = 0;
};
Errors compare(const Tensor& actual_in, const Tensor& expected_in) {
  const Tensor a = actual_in.to(DType::F32), b = expected_in.to(DType::F32);
  WANRT_CHECK(a.numel() == b.numel(), "compare: ", a.describe(), " vs ", b.describe());
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  double diff = 0, na = 0, nb = 0, dot = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double p = x[i], r = y[i];
    diff += (p - r) * (p - r);
    na += p * p;
    nb += r * r;
    dot += p * r;
  }
  return {std::sqrt(diff / nb), dot / std::sqrt(na * nb)};
}

// Rows [0, rows) of heads [0, heads) of a host [L, H, d] tensor.
Tensor slice(const Tensor& t, int64_t rows, int64_t heads) {
  const Tensor f = t.to(DType::F32);
  const int64_t h_all = f.size(1), d = f.size(2);
  Tensor out = Tensor::empty(DType::F32, {rows, heads, d});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t c = 0; c < d; ++c)
        out.data<float>()[(r * heads + h) * d + c] = f.data<float>()[(r * h_all + h) * d + c];
  return out;
}

void print(const std::string& what, const Errors& e) {
  std::printf("  %-62s rel %.4e  cos %.6f\n", what.c_str(), e.relative, e.cosine);
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  int64_t frames = 21, height = 90, width = 160, slice_rows = 64, slice_heads = 2;
  uint64_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--grid" && i + 3 < argc) {
      frames = std::stoll(argv[++i]);
      height = std::stoll(argv[++i]);
      width = std::stoll(argv[++i]);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::stoull(argv[++i]);
    } else if (arg == "--slice-rows" && i + 1 < argc) {
      slice_rows = std::stoll(argv[++i]);
    } else if (arg == "--slice-heads" && i + 1 < argc) {
      slice_heads = std::stoll(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_attention_accuracy [--grid F H W] [--seed N] [--slice-rows N] [--slice-heads N]\n");
      return 2;
    }
  }
  WANRT_CHECK(cuda::device_count() > 0, "no CUDA GPU: bench_attention_accuracy measures the CUDA backend");
  auto cuda_owner = make_cuda_ops();
  auto& cuda = dynamic_cast<CudaOps&>(*cuda_owner);
  WANRT_CHECK(sm90_attention_available(cuda.device()), "the 8-bit attention kernel needs an sm_90 GPU");
  RoutingOps ops(cuda);

  DitConfig config = DitConfig::i2v_a14b();
  config.num_layers = 1;
  const int64_t tokens = frames * (height / config.patch_size[1]) * (width / config.patch_size[2]);
  std::printf("bench_attention_accuracy: one full-size I2V-A14B block (random weights, seed %llu), latent "
              "%lldx%lldx%lld -> %lld tokens, %lld heads of %lld\n\n",
              static_cast<unsigned long long>(seed), static_cast<long long>(frames), static_cast<long long>(height),
              static_cast<long long>(width), static_cast<long long>(tokens),
              static_cast<long long>(config.num_heads), static_cast<long long>(config.head_dim()));
  const WanModel model =
      WanModel::load(config, random_weight_store(config.expected_tensors(), DType::BF16, seed), ops);
  const Tensor x = random_weight("bench.x", {config.out_dim, frames, height, width}, DType::F32, seed + 1);
  const Tensor y = random_weight("bench.y", {config.in_dim - config.out_dim, frames, height, width}, DType::F32,
                                 seed + 2);
  const Tensor context = random_weight("bench.context", {config.text_len, config.text_dim}, DType::F32, seed + 3);
  // random_weight draws 0.02·N(0, 1): x and y at N(0, 1), the context at 0.1·N(0, 1) as in bench_dit.
  auto scaled = [](Tensor t, float factor) {
    for (float& value : t.floats()) value *= factor;
    return t;
  };
  const Tensor x1 = scaled(x, 50.0f), y1 = scaled(y, 50.0f), context1 = scaled(context, 5.0f);
  const DitInputs inputs{.x = &x1, .y = &y1, .timestep = 999, .context = &context1};

  const std::vector<std::string> kept = {"block0_self_attn_out", "block0_cross_attn_out", "block0_out", "out"};
  auto forward = [&](Route route) {
    ops.route = route;
    std::map<std::string, Tensor> traced;
    const DitTrace trace = [&](const std::string& name, const Tensor& value) {
      if (std::find(kept.begin(), kept.end(), name) != kept.end()) traced[name] = value.clone();
    };
    traced["out"] = model.forward(ops, inputs, &trace);
    return traced;
  };
  const auto bf16_run = forward(Route::Bf16Hopper);
  WANRT_CHECK(ops.recorded, "the forward made no self-attention call");
  const Tensor q = ops.recorded_q, k = ops.recorded_k, v = ops.recorded_v;
  const AttentionOptions options = ops.recorded_options;
  std::printf("recorded self-attention inputs: q %s, k %s, v %s, scale %.5f, kv_len %lld\n\n",
              q.describe().c_str(), k.describe().c_str(), v.describe().c_str(), options.scale,
              static_cast<long long>(options.kv_len));

  std::printf("1. model-derived q/k/v, whole output, against the bf16 Hopper kernel:\n");
  const Tensor bf16_out = cuda.download(sm90_attention(cuda, q, k, v, options, sm90_attention_tilings().front()));
  for (const Int8Tiling& tiling : int8_attention_tilings())
    print(str_cat(tiling.name(), " vs bf16"), compare(cuda.download(int8_attention(cuda, q, k, v, options, tiling)), bf16_out));
  print("portable bf16 kernel vs bf16 Hopper (bf16 rounding alone)",
        compare(cuda.download(flash_attention(cuda, q, k, v, options, flash_attention_tilings(128).front())), bf16_out));

  std::printf("\n2. model-derived q/k/v, the first %lld queries of %lld heads, against float32 (CPU):\n",
              static_cast<long long>(slice_rows), static_cast<long long>(slice_heads));
  {
    const Tensor qh = cuda.download(q), kh = cuda.download(k), vh = cuda.download(v);
    const int64_t keys = kh.size(0);
    const Tensor qs = slice(qh, slice_rows, slice_heads), ks = slice(kh, keys, slice_heads),
                 vs = slice(vh, keys, slice_heads);
    auto cpu = make_cpu_ops();
    const Tensor reference = cpu->attention(qs, ks, vs, options);
    const Tensor qd = cuda.upload(qs), kd = cuda.upload(ks), vd = cuda.upload(vs);
    print("bf16 Hopper kernel vs float32",
          compare(cuda.download(sm90_attention(cuda, qd, kd, vd, options, sm90_attention_tilings().front())), reference));
    print(str_cat(int8_attention_tilings().front().name(), " vs float32"),
          compare(cuda.download(int8_attention(cuda, qd, kd, vd, options, int8_attention_tilings().front())), reference));
  }

  std::printf("\n3. random N(0, 1) q/k/v of the same shape, against the bf16 Hopper kernel:\n");
  {
    // random_weight draws 0.02·N(0, 1); the softmax scale takes the 50² back for q·k, and
    // neither kernel's relative error depends on the scale of v.
    const Tensor rq = cuda.upload(random_weight("bench.q", q.shape(), DType::BF16, seed + 4));
    const Tensor rk = cuda.upload(random_weight("bench.k", k.shape(), DType::BF16, seed + 5));
    const Tensor rv = cuda.upload(random_weight("bench.v", v.shape(), DType::BF16, seed + 6));
    AttentionOptions random_options = options;
    random_options.scale = options.scale * 2500.0f;
    const Tensor reference =
        cuda.download(sm90_attention(cuda, rq, rk, rv, random_options, sm90_attention_tilings().front()));
    for (const Int8Tiling& tiling : int8_attention_tilings())
      print(str_cat(tiling.name(), " vs bf16"),
            compare(cuda.download(int8_attention(cuda, rq, rk, rv, random_options, tiling)), reference));
  }

  std::printf("\n4. the block with 8-bit attention (self and cross) and with the portable bf16 kernel, against\n"
              "   the block with the bf16 Hopper kernel:\n");
  const auto int8_run = forward(Route::Int8);
  const auto portable_run = forward(Route::Portable);
  for (const std::string& name : kept) {
    WANRT_CHECK(bf16_run.count(name) && int8_run.count(name) && portable_run.count(name), "no trace of ", name);
    print(str_cat(name, ": int8 vs bf16"), compare(int8_run.at(name), bf16_run.at(name)));
    print(str_cat(name, ": portable vs bf16"), compare(portable_run.at(name), bf16_run.at(name)));
  }
  return 0;
}

#else

int run(int, char**) {
  std::printf("bench_attention_accuracy: this build has no CUDA backend (nvcc not found); nothing to measure\n");
  return 0;
}

#endif

}  // namespace
}  // namespace wanrt

int main(int argc, char** argv) {
  return wanrt::bench::run_main("bench_attention_accuracy", [&] { return wanrt::run(argc, argv); });
}
