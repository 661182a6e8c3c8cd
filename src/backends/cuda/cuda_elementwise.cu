// Elementwise ops of the CUDA backend: activation (SiLU, GELU-tanh), add (same shape, or a
// [features] row broadcast over rows), mul, add_gated_ (the DiT's residual update) and rope_.
//
// Cost per call, n elements: FLOPs a few per element (tens for GELU-tanh), bytes
//   activation  n·(s_in + s_out)              add, mul  n·(s_a + s_b + s_out)
//   add_gated_  n·(4 + s_y + 4) (x read and written as F32; a BF16 x is read as BF16 once)
//   rope_       2·R·H·d·s_x + R·d·4 (the table) for R rotated rows
// so every kernel here is HBM-bound; at the DiT's 75,600 × 5120 add_gated_ with a BF16 update
// moves 3.87 GB (1.16 ms at the H100's ~3.35 TB/s; bench/bench_kernels.cpp measures it).
//
// Design: grid-stride loops over vectors of up to 16 bytes per access (the vector width is set
// by the widest dtype taking part, so F32 and BF16 operands mix without splitting a vector),
// with a scalar variant for lengths, row widths or pointers that do not allow it. Arithmetic is
// float32 whatever the storage. Output dtypes follow cuda_ops.h: F32 when either input is F32,
// else BF16; add_gated_ leaves x as F32 (a BF16 x is replaced by a new F32 tensor, the residual
// stream); rope_ rotates in float32 and stores back in x's dtype.
//
// Tests: tests/gpu/test_cuda_ops_kernels.cpp (against the CPU backend).
#include <cuda_runtime.h>

#include <initializer_list>
#include <utility>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_kernel_utils.cuh"
#include "backends/cuda/cuda_ops_impl.h"
#include "backends/cuda/cuda_video.h"

namespace wanrt {
namespace {

using kernels::bf16;
constexpr int kThreads = 256;

struct SiluOp {
  __device__ float operator()(float x) const { return x / (1.0f + expf(-x)); }
};
struct GeluTanhOp {
  __device__ float operator()(float x) const {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
  }
};
struct IdentityOp {
  __device__ float operator()(float x) const { return x; }
};
struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MulOp {
  __device__ float operator()(float a, float b) const { return a * b; }
};

template <typename Tin, typename Tout, int kVec, typename Op>
__global__ void unary_kernel(const Tin* in, Tout* out, int64_t vectors, Op op) {
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors; v += int64_t{gridDim.x} * blockDim.x) {
    float x[kVec];
    kernels::load_vector<Tin, kVec>(in + v * kVec, x);
#pragma unroll
    for (int i = 0; i < kVec; ++i) x[i] = op(x[i]);
    kernels::store_vector<Tout, kVec>(out + v * kVec, x);
  }
}

// out = op(a, b); b is a [features] row repeated over the rows of a when kBroadcast.
template <typename Ta, typename Tb, typename Tout, int kVec, bool kBroadcast, typename Op>
__global__ void binary_kernel(const Ta* a, const Tb* b, Tout* out, int64_t vectors, int64_t features,
                              Op op) {
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors; v += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = v * kVec;
    float x[kVec], y[kVec];
    kernels::load_vector<Ta, kVec>(a + i, x);
    kernels::load_vector<Tb, kVec>(b + (kBroadcast ? i % features : i), y);
#pragma unroll
    for (int k = 0; k < kVec; ++k) x[k] = op(x[k], y[k]);
    kernels::store_vector<Tout, kVec>(out + i, x);
  }
}

// out = x + y · gate[feature] (gate null: out = x + y); out is F32 and may be x itself.
template <typename Tx, typename Ty, int kVec>
__global__ void gated_add_kernel(const Tx* x, const Ty* y, const float* gate, float* out,
                                 int64_t vectors, int64_t features) {
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors; v += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = v * kVec;
    float r[kVec], u[kVec], g[kVec];
    kernels::load_vector<Tx, kVec>(x + i, r);
    kernels::load_vector<Ty, kVec>(y + i, u);
    if (gate) {
      kernels::load_vector<float, kVec>(gate + i % features, g);
    } else {
#pragma unroll
      for (int k = 0; k < kVec; ++k) g[k] = 1.0f;
    }
#pragma unroll
    for (int k = 0; k < kVec; ++k) r[k] += u[k] * g[k];
    kernels::store_vector<float, kVec>(out + i, r);
  }
}

// In-place rotation of the first `rows` rows of x [L, heads, d]: each thread turns kVec/2
// adjacent pairs; (cos, sin) of pair k of row n is table[n, k].
template <typename T, int kVec>
__global__ void rope_kernel(T* x, const float* table, int64_t vectors, int64_t heads, int64_t head_dim) {
  const int64_t row_elements = heads * head_dim;
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors; v += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = v * kVec;
    const int64_t row = i / row_elements, in_head = i % head_dim;
    float e[kVec], cs[kVec];
    kernels::load_vector<T, kVec>(x + i, e);
    kernels::load_vector<float, kVec>(table + row * head_dim + in_head, cs);
#pragma unroll
    for (int k = 0; k < kVec; k += 2) {
      const float a = e[k], b = e[k + 1], c = cs[k], s = cs[k + 1];
      e[k] = a * c - b * s;
      e[k + 1] = a * s + b * c;
    }
    kernels::store_vector<T, kVec>(x + i, e);
  }
}

template <typename T>
const T* typed(const Tensor& t) {
  return static_cast<const T*>(t.raw());
}
template <typename T>
T* typed_mut(Tensor& t) {
  return static_cast<T*>(t.raw_mut());
}

// The widest vector (≤ 16 bytes per access for every operand) that divides `n` (and `period`,
// the broadcast row width, when nonzero) and that every pointer's alignment allows; else 1.
template <int kVec>
bool vector_fits(int64_t n, int64_t period, std::initializer_list<std::pair<const void*, size_t>> operands) {
  if (n % kVec != 0 || (period != 0 && period % kVec != 0)) return false;
  for (const auto& [pointer, element_bytes] : operands)
    if (pointer && !kernels::is_aligned(pointer, kernels::vector_alignment(kVec, element_bytes))) return false;
  return true;
}

template <typename Tin, typename Tout, typename Op>
void launch_unary(const Tensor& in, Tensor& out, Op op, cudaStream_t stream) {
  const int64_t n = in.numel();
  if (n == 0) return;
  constexpr int kVec = 16 / std::max(sizeof(Tin), sizeof(Tout));
  if (vector_fits<kVec>(n, 0, {{in.raw(), sizeof(Tin)}, {out.raw(), sizeof(Tout)}}))
    unary_kernel<Tin, Tout, kVec><<<kernels::grid_stride_blocks(n / kVec, kThreads), kThreads, 0, stream>>>(
        typed<Tin>(in), typed_mut<Tout>(out), n / kVec, op);
  else
    unary_kernel<Tin, Tout, 1><<<kernels::grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(
        typed<Tin>(in), typed_mut<Tout>(out), n, op);
  WANRT_CHECK_LAUNCH();
}

template <typename Ta, typename Tb, typename Tout, bool kBroadcast, typename Op>
void launch_binary(const Tensor& a, const Tensor& b, Tensor& out, int64_t features, Op op,
                   cudaStream_t stream) {
  const int64_t n = a.numel();
  if (n == 0) return;
  constexpr int kVec = 16 / std::max({sizeof(Ta), sizeof(Tb), sizeof(Tout)});
  if (vector_fits<kVec>(n, kBroadcast ? features : 0,
                        {{a.raw(), sizeof(Ta)}, {b.raw(), sizeof(Tb)}, {out.raw(), sizeof(Tout)}}))
    binary_kernel<Ta, Tb, Tout, kVec, kBroadcast><<<kernels::grid_stride_blocks(n / kVec, kThreads), kThreads, 0, stream>>>(
        typed<Ta>(a), typed<Tb>(b), typed_mut<Tout>(out), n / kVec, features, op);
  else
    binary_kernel<Ta, Tb, Tout, 1, kBroadcast><<<kernels::grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(
        typed<Ta>(a), typed<Tb>(b), typed_mut<Tout>(out), n, features, op);
  WANRT_CHECK_LAUNCH();
}

DType promoted(const Tensor& a, const Tensor& b) {
  return a.dtype() == DType::F32 || b.dtype() == DType::F32 ? DType::F32 : DType::BF16;
}

// out = op(a, b) over the dtype combination of a and b.
template <bool kBroadcast, typename Op>
void binary(CudaOps& ops, const Tensor& a, const Tensor& b, Tensor& out, int64_t features, Op op) {
  kernels::dispatch_float(a.dtype(), [&](auto a_tag) {
    kernels::dispatch_float(b.dtype(), [&](auto b_tag) {
      using Ta = decltype(a_tag);
      using Tb = decltype(b_tag);
      if (out.dtype() == DType::F32)
        launch_binary<Ta, Tb, float, kBroadcast>(a, b, out, features, op, ops.stream());
      else
        launch_binary<Ta, Tb, bf16, kBroadcast>(a, b, out, features, op, ops.stream());
    });
  });
}

}  // namespace

Tensor CudaOps::activation(const Tensor& x, Activation act) {
  if (x.dtype() == DType::F16) return half_activation(*this, x, act);  // the VAE's F16 path
  expect_device_float(x, "activation input");
  Tensor out = empty(x.dtype(), x.shape());
  kernels::dispatch_float(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    switch (act) {
      case Activation::None: launch_unary<T, T>(x, out, IdentityOp{}, stream_); break;
      case Activation::Silu: launch_unary<T, T>(x, out, SiluOp{}, stream_); break;
      case Activation::GeluTanh: launch_unary<T, T>(x, out, GeluTanhOp{}, stream_); break;
    }
  });
  return out;
}

Tensor CudaOps::add(const Tensor& a, const Tensor& b) {
  if (a.dtype() == DType::F16 || b.dtype() == DType::F16) return half_add(*this, a, b);  // the VAE's F16 path
  expect_device_float(a, "add lhs");
  expect_device_float(b, "add rhs");
  const bool broadcast = b.shape() != a.shape();
  const int64_t features = a.dim() ? a.size(-1) : 1;
  WANRT_CHECK(!broadcast || b.numel() == features, "cuda backend: add of ", a.describe(), " and ",
              b.describe(), ": shapes must match or the rhs be one row of ", features);
  Tensor out = empty(promoted(a, b), a.shape());
  if (broadcast)
    binary<true>(*this, a, b, out, features, AddOp{});
  else
    binary<false>(*this, a, b, out, features, AddOp{});
  return out;
}

Tensor CudaOps::mul(const Tensor& a, const Tensor& b) {
  expect_device_float(a, "mul lhs");
  expect_device_float(b, "mul rhs");
  WANRT_CHECK(a.shape() == b.shape(), "cuda backend: mul of ", a.describe(), " and ", b.describe(),
              ": shapes must match");
  Tensor out = empty(promoted(a, b), a.shape());
  binary<false>(*this, a, b, out, a.dim() ? a.size(-1) : 1, MulOp{});
  return out;
}

void CudaOps::add_gated_(Tensor& x, const Tensor& y, const Tensor* gate) {
  expect_device_float(x, "residual");
  expect_device_float(y, "residual update");
  WANRT_CHECK(x.shape() == y.shape(), "cuda backend: residual ", x.describe(), " and update ",
              y.describe(), " differ in shape");
  const int64_t features = x.dim() ? x.size(-1) : 1;
  Tensor gate_f32;
  if (gate) {
    expect_device_float(*gate, "residual gate");
    WANRT_CHECK(gate->numel() == features, "cuda backend: residual gate ", gate->describe(),
                " has ", gate->numel(), " elements, expected ", features);
    gate_f32 = as_dtype(*gate, DType::F32);
  }
  // The residual stream is F32: an F32 x is updated in place, a BF16 x is replaced.
  Tensor out = x.dtype() == DType::F32 ? x : empty(DType::F32, x.shape());
  const int64_t n = x.numel();
  const float* g = gate ? static_cast<const float*>(gate_f32.raw()) : nullptr;
  if (n > 0) {
    kernels::dispatch_float(x.dtype(), [&](auto x_tag) {
      kernels::dispatch_float(y.dtype(), [&](auto y_tag) {
        using Tx = decltype(x_tag);
        using Ty = decltype(y_tag);
        constexpr int kVec = 4;  // the F32 output and gate bound the vector to 16 bytes
        if (vector_fits<kVec>(n, features, {{x.raw(), sizeof(Tx)}, {y.raw(), sizeof(Ty)}, {out.raw(), 4}, {g, 4}}))
          gated_add_kernel<Tx, Ty, kVec><<<kernels::grid_stride_blocks(n / kVec, kThreads), kThreads, 0, stream_>>>(
              typed<Tx>(x), typed<Ty>(y), g, typed_mut<float>(out), n / kVec, features);
        else
          gated_add_kernel<Tx, Ty, 1><<<kernels::grid_stride_blocks(n, kThreads), kThreads, 0, stream_>>>(
              typed<Tx>(x), typed<Ty>(y), g, typed_mut<float>(out), n, features);
        WANRT_CHECK_LAUNCH();
      });
    });
  }
  x = out;
}

void CudaOps::rope_(Tensor& x, const Tensor& table) {
  expect_device_float(x, "rope input");
  expect_device_float(table, "rope table");
  WANRT_CHECK(x.dim() == 3 && x.size(2) % 2 == 0, "cuda backend: rope needs [L, heads, even d], got ",
              x.describe());
  const int64_t heads = x.size(1), head_dim = x.size(2);
  WANRT_CHECK(table.dtype() == DType::F32 && table.dim() == 3 && table.size(1) == head_dim / 2 &&
                  table.size(2) == 2 && table.size(0) <= x.size(0),
              "cuda backend: rope table ", table.describe(), " (expected F32 [rows <= ", x.size(0), ", ",
              head_dim / 2, ", 2]) does not fit ", x.describe());
  const int64_t n = table.size(0) * heads * head_dim;  // only the rows the table covers turn
  if (n == 0) return;
  kernels::dispatch_float(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    T* data = typed_mut<T>(x);
    const float* cs = static_cast<const float*>(table.raw());
    if (head_dim % kVec == 0 && vector_fits<kVec>(n, 0, {{data, sizeof(T)}, {cs, 4}})) {
      rope_kernel<T, kVec><<<kernels::grid_stride_blocks(n / kVec, kThreads), kThreads, 0, stream_>>>(
          data, cs, n / kVec, heads, head_dim);
    } else {
      WANRT_CHECK(kernels::is_aligned(data, 2 * sizeof(T)), "cuda backend: rope input ", x.describe(),
                  " does not start at a pair boundary");
      rope_kernel<T, 2><<<kernels::grid_stride_blocks(n / 2, kThreads), kThreads, 0, stream_>>>(
          data, cs, n / 2, heads, head_dim);
    }
    WANRT_CHECK_LAUNCH();
  });
}

}  // namespace wanrt
