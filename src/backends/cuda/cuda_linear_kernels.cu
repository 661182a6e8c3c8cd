// The two kernels CudaOps::linear falls back on when cuBLASLt cannot do the whole job.
//
// bias_activation: out = act(out + bias) in place, after a cuBLASLt GEMM for activations that
//   have no cuBLASLt epilogue (SiLU; GELU where no fused algorithm exists). rows·cols elements,
//   bytes 2·rows·cols·size (+ cols·size of bias), ~20 FLOPs each (tanh/exp): HBM-bound. In the
//   DiT it only runs on the one-row time MLP, so one element per thread in a grid-stride loop.
// simple_linear: a 16×16 shared-memory tiled GEMM with F32 accumulation, 2·n·m·k FLOPs, bytes
//   (n·k + m·k)·size·(tile reuse 1/16) + n·m·size. It exists for correctness, not speed: it
//   runs only where cuBLASLt returns no algorithm (unaligned leading dimensions or pointers),
//   which for the Wan models means small odd test shapes. Bias and activation are fused.
#include <cuda_bf16.h>

#include <algorithm>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_kernel_utils.cuh"
#include "backends/cuda/cuda_linear.h"

namespace wanrt {
namespace {

__device__ __forceinline__ float load_float(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_float(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store_float(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_float(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

template <typename T>
__global__ void bias_activation_kernel(T* out, const T* bias, int64_t rows, int64_t cols, Activation activation) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float v = load_float(out, i) + (bias ? load_float(bias, i % cols) : 0.0f);
    store_float(out, i, kernels::activate(v, activation));
  }
}

constexpr int kTile = 16;

// Block (bx, by) computes out rows [16·bx, +16) × columns [16·by, +16); thread (tx, ty) one
// element. The +1 column of padding keeps the transposed shared-memory reads conflict-free.
template <typename T>
__global__ void simple_linear_kernel(const T* x, const T* w, const T* bias, T* out, int64_t n,
                                     int64_t m, int64_t k, Activation activation) {
  __shared__ float x_tile[kTile][kTile + 1];
  __shared__ float w_tile[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row0 = int64_t{blockIdx.x} * kTile, col0 = int64_t{blockIdx.y} * kTile;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    const int64_t kk = k0 + tx;
    x_tile[ty][tx] = (row0 + ty < n && kk < k) ? load_float(x, (row0 + ty) * k + kk) : 0.0f;
    w_tile[ty][tx] = (col0 + ty < m && kk < k) ? load_float(w, (col0 + ty) * k + kk) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTile; ++i) acc = fmaf(x_tile[ty][i], w_tile[tx][i], acc);
    __syncthreads();
  }
  const int64_t row = row0 + ty, col = col0 + tx;
  if (row < n && col < m)
    store_float(out, row * m + col, kernels::activate(acc + (bias ? load_float(bias, col) : 0.0f), activation));
}

template <typename T>
void simple_linear(const GemmProblem& p, cudaStream_t stream) {
  const dim3 threads(kTile, kTile);
  const dim3 blocks(static_cast<unsigned>((p.n + kTile - 1) / kTile), static_cast<unsigned>((p.m + kTile - 1) / kTile));
  simple_linear_kernel<<<blocks, threads, 0, stream>>>(static_cast<const T*>(p.x), static_cast<const T*>(p.w),
                                                       static_cast<const T*>(p.bias), static_cast<T*>(p.out),
                                                       p.n, p.m, p.k, p.activation);
}

}  // namespace

void launch_bias_activation(void* out, const void* bias, DType dtype, int64_t rows, int64_t cols,
                            Activation activation, cudaStream_t stream) {
  if (rows == 0 || cols == 0 || (!bias && activation == Activation::None)) return;
  constexpr int64_t kThreads = 256;
  const auto blocks = static_cast<unsigned>(std::clamp<int64_t>((rows * cols + kThreads - 1) / kThreads, 1, 132 * 32));
  switch (dtype) {
    case DType::F32:
      bias_activation_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<float*>(out), static_cast<const float*>(bias), rows, cols, activation);
      break;
    case DType::BF16:
      bias_activation_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(bias), rows, cols, activation);
      break;
    default: fail("cuda backend: bias/activation on ", dtype_name(dtype), " is not supported");
  }
  WANRT_CHECK_LAUNCH();
}

void launch_simple_linear(const GemmProblem& problem, cudaStream_t stream) {
  if (problem.n == 0 || problem.m == 0) return;
  WANRT_CHECK((problem.m + kTile - 1) / kTile <= 65535, "cuda backend: the fallback GEMM cannot produce ",
              problem.m, " output features");
  switch (problem.dtype) {
    case DType::F32: simple_linear<float>(problem, stream); break;
    case DType::BF16: simple_linear<__nv_bfloat16>(problem, stream); break;
    default: fail("cuda backend: linear in ", dtype_name(problem.dtype), " is not supported");
  }
  WANRT_CHECK_LAUNCH();
}

}  // namespace wanrt
