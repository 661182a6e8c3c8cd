// Row normalisations of the CUDA backend: layer_norm, layer_norm_modulate (the DiT's adaptive
// LayerNorm), rms_norm, and rms_norm_rope (the DiT's q/k RMSNorm fused with the 3-D RoPE).
//
// Cost per call, for R rows of F features, input element size s_in, output s_out:
//   bytes  R·F·(s_in + s_out) + the [F] vectors (L2-resident) (+ R·F·4 of RoPE table for
//          rms_norm_rope: (cos, sin) per pair, read once per row, shared by all heads)
//   FLOPs  about 8·R·F: a rounding error beside the bytes, so every kernel here is HBM-bound
//          and the target is GB/s against the H100's ~3.35 TB/s (bench/bench_kernels.cpp).
//   At the DiT's 75,600 × 5120 (720p): layer_norm_modulate F32 -> BF16 moves 2.32 GB (0.69 ms
//   at peak); rms_norm_rope BF16 -> BF16 moves 1.59 GB (0.47 ms at peak).
//
// Design: one thread block per row, the row held in registers. Each thread loads kChunks
// vectors of 16 bytes (8 BF16 or 4 F32 features), so the row is read from HBM exactly once;
// the mean and the variance are two exact passes over those registers (two block sums),
// which is as accurate as Welford and cheaper; the output is written once. Rows too wide for
// the register budget (more than 32,768 vectorised features, or 8192 when the width or the
// alignment rules out 16-byte vectors) take a slower three-pass kernel that re-reads the row
// from memory; the DiT (5120) and T5 (4096) never do.
//
// Numerics: statistics in float32. Where x is BF16 the normalised value is rounded to bf16
// before the gain or the modulation, as the reference's norms do (they return type_as(x) before
// the affine step; spec §6 recipe 2–3); layer_norm's affine runs inside the norm in the
// reference, so it rounds only at the output. rms_norm_rope rotates in float32 and rounds to
// BF16 once at the end. Outputs follow cuda_ops.h: BF16, except layer_norm_modulate with
// full_precision (the head), which is F32.
//
// Tests: tests/gpu/test_cuda_ops_kernels.cpp (against the CPU backend); bench: bench_kernels.
#include <cuda_runtime.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_kernel_utils.cuh"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

using kernels::bf16;

enum class RowNorm { LayerNorm, LayerNormModulate, Rms, RmsRope };

struct RowNormArgs {
  const void* x = nullptr;
  void* out = nullptr;
  int64_t rows = 0, features = 0;
  float eps = 0;
  // LayerNorm: weight, bias (each may be null). Modulate: scale, shift. Rms(Rope): gain.
  const float* weight = nullptr;
  const float* bias = nullptr;
  // RmsRope: (cos, sin) per pair, [table_rows, head_dim/2, 2]; rows >= table_rows stay unrotated.
  const float* table = nullptr;
  int64_t table_rows = 0;
  int head_dim = 0;  // 32-bit: index arithmetic per pair stays cheap (rows are < 2^31 features)
  // A vector of kVec features never crosses a head and its (cos, sin) may be read as one
  // vector: head_dim % kVec == 0 and the table is 16-byte aligned.
  bool table_vectorised = false;
};

constexpr int kMaxThreads = 512;
constexpr int kMaxCachedFloats = 64;  // per thread: kChunks · kVec

// The value written for feature j of a row whose normalised value is `n` (before RoPE).
template <typename Tin, RowNorm kKind>
__device__ __forceinline__ float finish(float n, int64_t j, const RowNormArgs& a) {
  constexpr bool kRoundFirst = std::is_same_v<Tin, bf16> && kKind != RowNorm::LayerNorm;
  if constexpr (kRoundFirst) n = kernels::round_to_bf16(n);
  if constexpr (kKind == RowNorm::LayerNorm) {
    return n * (a.weight ? a.weight[j] : 1.0f) + (a.bias ? a.bias[j] : 0.0f);
  } else if constexpr (kKind == RowNorm::LayerNormModulate) {
    return n * (1.0f + a.weight[j]) + a.bias[j];
  } else {
    return n * a.weight[j];
  }
}

// Rotates the pair (even, odd) by the angle whose (cos, sin) is cs.
__device__ __forceinline__ void rotate(float& even, float& odd, float cos_angle, float sin_angle) {
  const float e = even, o = odd;
  even = e * cos_angle - o * sin_angle;
  odd = e * sin_angle + o * cos_angle;
}

// (cos, sin) for the pair starting at feature j (even) of a row whose table row is `table_row`
// (head_dim floats: the pairs of one head, shared by all heads).
__device__ __forceinline__ float2 pair_angle(const float* table_row, int64_t j, int head_dim) {
  const int in_head = static_cast<int>(j) % head_dim;
  return reinterpret_cast<const float2*>(table_row)[in_head / 2];
}

// One block per row; thread t owns vectors t, t + blockDim, ... (kChunks of them), each of kVec
// contiguous features. features % kVec == 0 (so a vector is wholly inside the row or outside).
template <typename Tin, typename Tout, RowNorm kKind, int kVec, int kChunks>
__global__ void __launch_bounds__(kMaxThreads) row_norm_in_registers(RowNormArgs a) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const Tin* x = static_cast<const Tin*>(a.x) + row * a.features;
  Tout* out = static_cast<Tout*>(a.out) + row * a.features;
  const float n_inv = 1.0f / static_cast<float>(a.features);

  float v[kChunks][kVec];
  float sum = 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t first = (int64_t{c} * blockDim.x + threadIdx.x) * kVec;
    if (first < a.features) {
      kernels::load_vector<Tin, kVec>(x + first, v[c]);
    } else {
#pragma unroll
      for (int i = 0; i < kVec; ++i) v[c][i] = 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) sum += v[c][i];
  }

  float mean = 0.0f;
  if constexpr (kKind == RowNorm::LayerNorm || kKind == RowNorm::LayerNormModulate)
    mean = kernels::block_sum(sum, scratch) * n_inv;
  float squares = 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t first = (int64_t{c} * blockDim.x + threadIdx.x) * kVec;
    if (first < a.features) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) squares += (v[c][i] - mean) * (v[c][i] - mean);
    }
  }
  const float inv = rsqrtf(kernels::block_sum(squares, scratch) * n_inv + a.eps);

#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t first = (int64_t{c} * blockDim.x + threadIdx.x) * kVec;
    float y[kVec];
#pragma unroll
    for (int i = 0; i < kVec; ++i)
      y[i] = first < a.features ? finish<Tin, kKind>((v[c][i] - mean) * inv, first + i, a) : 0.0f;
    if constexpr (kKind == RowNorm::RmsRope) {
      const bool rotated_row = row < a.table_rows;
      const float* table_row = a.table + row * a.head_dim;
      if constexpr (kVec == 1) {
        // A pair spans two neighbouring threads (blockDim is even, so lane parity = feature
        // parity); every lane joins the shuffle, in range or not.
        const float partner = __shfl_xor_sync(0xffffffffu, y[0], 1);
        if (rotated_row && first < a.features) {
          const bool is_even = first % 2 == 0;
          float even = is_even ? y[0] : partner, odd = is_even ? partner : y[0];
          const float2 cs = pair_angle(table_row, first - (is_even ? 0 : 1), a.head_dim);
          rotate(even, odd, cs.x, cs.y);
          y[0] = is_even ? even : odd;
        }
      } else if (rotated_row && first < a.features) {
        if (a.table_vectorised) {
          // kVec/2 consecutive pairs of one head: their (cos, sin) are kVec consecutive floats.
          float cs[kVec];
          kernels::load_vector<float, kVec>(table_row + static_cast<int>(first) % a.head_dim, cs);
#pragma unroll
          for (int i = 0; i < kVec; i += 2) rotate(y[i], y[i + 1], cs[i], cs[i + 1]);
        } else {
#pragma unroll
          for (int i = 0; i < kVec; i += 2) {
            const float2 cs = pair_angle(table_row, first + i, a.head_dim);
            rotate(y[i], y[i + 1], cs.x, cs.y);
          }
        }
      }
    }
    if (first < a.features) kernels::store_vector<Tout, kVec>(out + first, y);
  }
}

// Rows too wide for registers: three passes over memory (mean, variance, output), one block
// per row. RoPE partners are recomputed from memory.
template <typename Tin, typename Tout, RowNorm kKind>
__global__ void __launch_bounds__(kMaxThreads) row_norm_wide(RowNormArgs a) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const Tin* x = static_cast<const Tin*>(a.x) + row * a.features;
  Tout* out = static_cast<Tout*>(a.out) + row * a.features;
  const float n_inv = 1.0f / static_cast<float>(a.features);
  float mean = 0.0f;
  if constexpr (kKind == RowNorm::LayerNorm || kKind == RowNorm::LayerNormModulate) {
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < a.features; j += blockDim.x) sum += kernels::to_float(x[j]);
    mean = kernels::block_sum(sum, scratch) * n_inv;
  }
  float squares = 0.0f;
  for (int64_t j = threadIdx.x; j < a.features; j += blockDim.x) {
    const float d = kernels::to_float(x[j]) - mean;
    squares += d * d;
  }
  const float inv = rsqrtf(kernels::block_sum(squares, scratch) * n_inv + a.eps);
  for (int64_t j = threadIdx.x; j < a.features; j += blockDim.x) {
    float y = finish<Tin, kKind>((kernels::to_float(x[j]) - mean) * inv, j, a);
    if (kKind == RowNorm::RmsRope && row < a.table_rows) {
      const int64_t partner_j = j ^ 1;
      const float partner = finish<Tin, kKind>(kernels::to_float(x[partner_j]) * inv, partner_j, a);
      float even = j % 2 == 0 ? y : partner, odd = j % 2 == 0 ? partner : y;
      const float2 cs = pair_angle(a.table + row * a.head_dim, j - j % 2, a.head_dim);
      rotate(even, odd, cs.x, cs.y);
      y = j % 2 == 0 ? even : odd;
    }
    out[j] = kernels::from_float<Tout>(y);
  }
}

template <typename Tin, typename Tout, RowNorm kKind, int kVec, int kChunks>
void launch_in_registers(const RowNormArgs& a, int threads, cudaStream_t stream) {
  row_norm_in_registers<Tin, Tout, kKind, kVec, kChunks>
      <<<static_cast<unsigned>(a.rows), static_cast<unsigned>(threads), 0, stream>>>(a);
}

// Picks vectors per thread (a power of two up to the register budget) so that about 256
// threads cover the row: enough loads in flight per SM, and several blocks resident per SM.
template <typename Tin, typename Tout, RowNorm kKind, int kVec>
void launch_with_vector(const RowNormArgs& a, cudaStream_t stream) {
  constexpr int kMaxChunks = std::min(16, kMaxCachedFloats / kVec);
  const int64_t vectors = a.features / kVec;
  int chunks = 1;
  while (chunks < kMaxChunks && (vectors + chunks - 1) / chunks > 256) chunks *= 2;
  const int64_t threads = std::max<int64_t>(32, ((vectors + chunks - 1) / chunks + 31) / 32 * 32);
  if (threads > kMaxThreads) {
    row_norm_wide<Tin, Tout, kKind><<<static_cast<unsigned>(a.rows), kMaxThreads, 0, stream>>>(a);
    return;
  }
  const int t = static_cast<int>(threads);
  switch (chunks) {
    case 1: launch_in_registers<Tin, Tout, kKind, kVec, 1>(a, t, stream); break;
    case 2: launch_in_registers<Tin, Tout, kKind, kVec, 2>(a, t, stream); break;
    case 4: launch_in_registers<Tin, Tout, kKind, kVec, 4>(a, t, stream); break;
    case 8: launch_in_registers<Tin, Tout, kKind, kVec, 8>(a, t, stream); break;
    default:
      if constexpr (kMaxChunks >= 16) launch_in_registers<Tin, Tout, kKind, kVec, 16>(a, t, stream);
      break;
  }
}

template <typename Tin, typename Tout, RowNorm kKind>
void launch_row_norm(const RowNormArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.features == 0) return;
  WANRT_CHECK(a.rows <= int64_t{0x7fffffff}, "cuda backend: ", a.rows, " rows exceed one grid");
  constexpr int kVec = 16 / sizeof(Tin);
  bool vectorised = a.features % kVec == 0 &&
                    kernels::is_aligned(a.x, kernels::vector_alignment(kVec, sizeof(Tin))) &&
                    kernels::is_aligned(a.out, kernels::vector_alignment(kVec, sizeof(Tout)));
  if (vectorised) {
    RowNormArgs args = a;
    args.table_vectorised = args.head_dim % kVec == 0 && kernels::is_aligned(args.table, 16);
    launch_with_vector<Tin, Tout, kKind, kVec>(args, stream);
  } else {
    launch_with_vector<Tin, Tout, kKind, 1>(a, stream);
  }
  WANRT_CHECK_LAUNCH();
}

// A [features] vector argument as F32 on the device (1-D weights arrive F32 from upload_weight;
// a BF16 one is widened, which costs F·4 bytes).
const float* float_vector(CudaOps& ops, const Tensor& v, int64_t features, const char* what,
                          Tensor& keep_alive) {
  expect_device_float(v, what);
  WANRT_CHECK(v.numel() == features, "cuda backend: ", what, " ", v.describe(), " has ", v.numel(),
              " elements, expected ", features);
  keep_alive = ops.as_dtype(v, DType::F32);
  return static_cast<const float*>(keep_alive.raw());
}

int64_t row_features(const Tensor& x, const char* what) {
  WANRT_CHECK(x.dim() >= 1, "cuda backend: ", what, " must be at least 1-D, got ", x.describe());
  return x.size(-1);
}

template <RowNorm kKind>
Tensor run_row_norm(CudaOps& ops, const Tensor& x, RowNormArgs a, DType out_dtype, Shape out_shape) {
  Tensor out = ops.empty(out_dtype, std::move(out_shape));
  a.x = x.raw();
  a.out = out.raw_mut();
  a.rows = a.features == 0 ? 0 : x.numel() / a.features;
  kernels::dispatch_float(x.dtype(), [&](auto in_tag) {
    using Tin = decltype(in_tag);
    if (out_dtype == DType::F32)
      launch_row_norm<Tin, float, kKind>(a, ops.stream());
    else
      launch_row_norm<Tin, bf16, kKind>(a, ops.stream());
  });
  return out;
}

}  // namespace

Tensor CudaOps::layer_norm(const Tensor& x, float eps, const Tensor* weight, const Tensor* bias) {
  expect_device_float(x, "layer_norm input");
  RowNormArgs a;
  a.features = row_features(x, "layer_norm input");
  a.eps = eps;
  Tensor weight_f32, bias_f32;
  if (weight) a.weight = float_vector(*this, *weight, a.features, "layer_norm weight", weight_f32);
  if (bias) a.bias = float_vector(*this, *bias, a.features, "layer_norm bias", bias_f32);
  return run_row_norm<RowNorm::LayerNorm>(*this, x, a, DType::BF16, x.shape());
}

Tensor CudaOps::layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                    float eps, bool full_precision) {
  expect_device_float(x, "layer_norm_modulate input");
  RowNormArgs a;
  a.features = row_features(x, "layer_norm_modulate input");
  a.eps = eps;
  Tensor scale_f32, shift_f32;
  a.weight = float_vector(*this, scale, a.features, "modulation scale", scale_f32);
  a.bias = float_vector(*this, shift, a.features, "modulation shift", shift_f32);
  return run_row_norm<RowNorm::LayerNormModulate>(*this, x, a, full_precision ? DType::F32 : DType::BF16,
                                                  x.shape());
}

Tensor CudaOps::rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  expect_device_float(x, "rms_norm input");
  RowNormArgs a;
  a.features = row_features(x, "rms_norm input");
  a.eps = eps;
  Tensor weight_f32;
  a.weight = float_vector(*this, weight, a.features, "rms_norm weight", weight_f32);
  return run_row_norm<RowNorm::Rms>(*this, x, a, DType::BF16, x.shape());
}

Tensor CudaOps::rms_norm_rope(const Tensor& x, const Tensor& weight, float eps, const Tensor& table,
                              int64_t heads) {
  expect_device_float(x, "rms_norm_rope input");
  WANRT_CHECK(x.dim() >= 2 && heads >= 1, "cuda backend: rms_norm_rope needs x [L, heads·head_dim], got ",
              x.describe(), " for ", heads, " heads");
  const int64_t tokens = x.size(0);
  const int64_t features = shape_numel(Shape(x.shape().begin() + 1, x.shape().end()));
  WANRT_CHECK(features % heads == 0 && (features / heads) % 2 == 0, "cuda backend: rms_norm_rope: ",
              features, " features of ", x.describe(), " do not split into ", heads,
              " heads of even size");
  const int64_t head_dim = features / heads;
  expect_device_float(table, "rope table");
  WANRT_CHECK(table.dtype() == DType::F32 && table.dim() == 3 && table.size(1) == head_dim / 2 &&
                  table.size(2) == 2 && table.size(0) <= tokens,
              "cuda backend: rope table ", table.describe(), " (expected F32 [rows <= ", tokens, ", ",
              head_dim / 2, ", 2]) does not fit ", x.describe());
  RowNormArgs a;
  a.features = features;
  a.eps = eps;
  a.table = static_cast<const float*>(table.raw());
  a.table_rows = table.size(0);
  WANRT_CHECK(features <= int64_t{0x7fffffff}, "cuda backend: rms_norm_rope rows of ", features,
              " features exceed 32-bit indexing");
  a.head_dim = static_cast<int>(head_dim);
  Tensor weight_f32;
  a.weight = float_vector(*this, weight, features, "rms_norm_rope weight", weight_f32);
  return run_row_norm<RowNorm::RmsRope>(*this, x, a, DType::BF16, {tokens, heads, head_dim});
}

}  // namespace wanrt
