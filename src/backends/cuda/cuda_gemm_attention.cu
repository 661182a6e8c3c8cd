// Attention as S = scale·Q·Kᵀ (cuBLAS, BF16 in, F32 out), P = softmax(S) row by row (a kernel,
// F32 math, BF16 out), O = P·V (cuBLAS, BF16 in, F32 accumulation, BF16 out), per head.
//
// Why: the VAE's mid-block attention is one head of 384 channels over every pixel of a frame
// (14,400 tokens per frame at 720p). The flash kernel is compiled for head_dim 64 and 128 only,
// and 384 does not fit its register-resident output tile (a 16-row warp tile would hold 192
// F32 accumulators per thread), so it ran on the generic F32 kernel at 5.8 TFLOP/s: 55 ms per
// frame, 1.19 s of a 720p decode. With a single head the score matrix is small enough to
// materialise (14,400² F32 = 829 MB per frame; query chunks cap the scratch at
// kGemmAttentionScratchBytes, 256 MiB: 5 chunks of up to 3,106 rows at 720p), so the two
// products run as large tensor-core GEMMs and only S and P cross HBM.
//
// Cost per call, H heads, Lq queries, Lk keys (= kv_len), head_dim d:
//   FLOPs  4·H·Lq·Lk·d on tensor cores (318 GFLOP per 720p frame), plus ~5·H·Lq·Lk in the softmax
//   bytes  S written once (4·H·Lq·Lk) and read twice by the softmax (max and sum, then the
//          normalised write, the second read mostly from L2), P written (2·H·Lq·Lk) and read once
//          by the PV GEMM; q, k, v read once per query chunk, out written once. At 720p about
//          3.7 GB per frame. Measured on an H100 (bench_vae, 720p decode): 1.51 ms per frame,
//          210 TFLOP/s, against 55 ms (5.8 TFLOP/s) on the generic kernel.
// Precision: the scores are exact products of the BF16 inputs summed in F32; the probabilities
// are normalised in F32 and rounded to BF16 for the PV product, as the flash kernel rounds its
// unnormalised ones; the output is BF16 like every attention path's.
//
// Tests: tests/gpu/test_cuda_attention.cpp (against the CPU backend).
#include "backends/cuda/cuda_gemm_attention.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

using bf16 = __nv_bfloat16;

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kSoftmaxThreads = 256;

#define WANRT_CHECK_CUBLAS(expr)                                                          \
  do {                                                                                    \
    const cublasStatus_t wanrt_cublas_status = (expr);                                    \
    if (wanrt_cublas_status != CUBLAS_STATUS_SUCCESS)                                     \
      ::wanrt::fail("cuBLAS error ", cublasGetStatusString(wanrt_cublas_status), " in ", \
                    #expr, " at ", __FILE__, ":", __LINE__);                              \
  } while (0)

// One cuBLAS handle per device and thread (a handle must not be used by two threads at once);
// it is pointed at the caller's stream before each use.
cublasHandle_t cublas_handle() {
  struct Handles {
    std::map<int, cublasHandle_t> by_device;
    ~Handles() {
      for (auto& [device, handle] : by_device) cublasDestroy(handle);
    }
  };
  thread_local Handles handles;
  int device = 0;
  WANRT_CHECK_CUDA(cudaGetDevice(&device));
  auto [it, inserted] = handles.by_device.try_emplace(device, nullptr);
  if (inserted) {
    const cublasStatus_t status = cublasCreate(&it->second);
    if (status != CUBLAS_STATUS_SUCCESS) {
      handles.by_device.erase(it);
      fail("cuBLAS could not start (", cublasGetStatusString(status), ")");
    }
  }
  return it->second;
}

// Online (max, sum of 2^(x − max)) pairs: merging two keeps the sum relative to the larger max.
struct MaxSum {
  float max, sum;
};
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.sum * exp2f(a.max - m) + b.sum * exp2f(b.max - m)};
}

// P[row, :] = 2^(S[row, :] − max) / Σ 2^(S[row, :] − max) for the scores S already multiplied
// by scale·log2(e). One block per (row, head): the first pass keeps a running (max, sum) per
// thread and merges them across the block, the second writes the probabilities. kVec
// consecutive columns per access (float4 reads where the row width allows).
template <int kVec>
__global__ void softmax_rows_kernel(const float* scores, bf16* probabilities, int64_t cols, int64_t head_stride) {
  const int64_t offset = blockIdx.y * head_stride + blockIdx.x * cols;
  const float* in = scores + offset;
  bf16* out = probabilities + offset;
  const int64_t vectors = cols / kVec;

  MaxSum local{-INFINITY, 0.0f};
  for (int64_t v = threadIdx.x; v < vectors; v += kSoftmaxThreads) {
    float x[kVec];
    if constexpr (kVec == 4) {
      const float4 raw = reinterpret_cast<const float4*>(in)[v];
      x[0] = raw.x, x[1] = raw.y, x[2] = raw.z, x[3] = raw.w;
    } else {
      x[0] = in[v];
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) local = merge(local, MaxSum{x[i], 1.0f});
  }
#pragma unroll
  for (int offset_lanes = 16; offset_lanes > 0; offset_lanes >>= 1)
    local = merge(local, MaxSum{__shfl_xor_sync(0xffffffffu, local.max, offset_lanes),
                                __shfl_xor_sync(0xffffffffu, local.sum, offset_lanes)});
  __shared__ MaxSum partial[kSoftmaxThreads / 32];
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  if (lane == 0) partial[warp] = local;
  __syncthreads();
  MaxSum row = partial[0];
#pragma unroll
  for (int w = 1; w < kSoftmaxThreads / 32; ++w) row = merge(row, partial[w]);
  const float inverse = 1.0f / row.sum;

  for (int64_t v = threadIdx.x; v < vectors; v += kSoftmaxThreads) {
    if constexpr (kVec == 4) {
      const float4 raw = reinterpret_cast<const float4*>(in)[v];
      const __nv_bfloat162 lo = __floats2bfloat162_rn(exp2f(raw.x - row.max) * inverse, exp2f(raw.y - row.max) * inverse);
      const __nv_bfloat162 hi = __floats2bfloat162_rn(exp2f(raw.z - row.max) * inverse, exp2f(raw.w - row.max) * inverse);
      reinterpret_cast<__nv_bfloat162*>(out)[2 * v] = lo;
      reinterpret_cast<__nv_bfloat162*>(out)[2 * v + 1] = hi;
    } else {
      out[v] = __float2bfloat16_rn(exp2f(in[v] - row.max) * inverse);
    }
  }
}

}  // namespace

bool gemm_attention_applies(const Tensor& q, const Tensor& k, const AttentionOptions& options) {
  if (options.bias || q.dim() != 3 || k.dim() != 3) return false;
  const int64_t keys = options.kv_len < 0 ? k.size(0) : options.kv_len;
  return flash_attention_tilings(q.size(2)).empty() && keys >= kGemmAttentionMinKeys &&
         q.size(0) >= kGemmAttentionMinQueries;
}

Tensor gemm_attention(CudaOps& ops, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                      const AttentionOptions& options, int64_t scratch_bytes) {
  expect_device_float(q_in, "attention q");
  expect_device_float(k_in, "attention k");
  expect_device_float(v_in, "attention v");
  WANRT_CHECK(!options.bias, "cuda backend: the GEMM attention path takes no bias");
  WANRT_CHECK(q_in.dim() == 3 && k_in.dim() == 3 && k_in.shape() == v_in.shape() && q_in.size(1) == k_in.size(1) &&
                  q_in.size(2) == k_in.size(2),
              "cuda backend: attention needs q [Lq, H, d] and k, v [Lk, H, d]; got ", q_in.describe(), ", ",
              k_in.describe(), ", ", v_in.describe());
  const int64_t q_len = q_in.size(0), heads = q_in.size(1), head_dim = q_in.size(2);
  const int64_t kv_len = options.kv_len < 0 ? k_in.size(0) : options.kv_len;
  WANRT_CHECK(kv_len >= 1 && kv_len <= k_in.size(0), "cuda backend: attention kv_len ", options.kv_len,
              " out of range for ", k_in.size(0), " keys");
  const int64_t token_stride = heads * head_dim;
  WANRT_CHECK(heads >= 1 && heads <= 65535 && head_dim >= 1 && token_stride <= 0x7fffffff && kv_len <= 0x7fffffff &&
                  q_len <= 0x7fffffff,
              "cuda backend: attention shapes out of range for the GEMM path: ", q_in.describe(), ", ",
              k_in.describe());

  const Tensor q = ops.as_dtype(q_in, DType::BF16), k = ops.as_dtype(k_in, DType::BF16),
               v = ops.as_dtype(v_in, DType::BF16);
  Tensor out = ops.empty(DType::BF16, q.shape());
  if (q_len == 0) return out;

  // Query rows per chunk: S and P of all heads within scratch_bytes.
  const int64_t rows = std::clamp<int64_t>(scratch_bytes / (6 * heads * kv_len), 1, q_len);
  Tensor scores = ops.empty(DType::F32, {heads, rows, kv_len});
  Tensor probabilities = ops.empty(DType::BF16, {heads, rows, kv_len});
  const cublasHandle_t handle = cublas_handle();
  WANRT_CHECK_CUBLAS(cublasSetStream(handle, ops.stream()));
  const auto* q_ptr = static_cast<const bf16*>(q.raw());
  const auto* k_ptr = static_cast<const bf16*>(k.raw());
  const auto* v_ptr = static_cast<const bf16*>(v.raw());
  auto* out_ptr = static_cast<bf16*>(out.raw_mut());
  auto* s_ptr = static_cast<float*>(scores.raw_mut());
  auto* p_ptr = static_cast<bf16*>(probabilities.raw_mut());
  const int ld_tokens = static_cast<int>(token_stride), keys = static_cast<int>(kv_len), dim = static_cast<int>(head_dim);
  const long long head_stride = static_cast<long long>(rows) * kv_len;
  const float score_scale = options.scale * kLog2e, one = 1.0f, zero = 0.0f;

  for (int64_t r0 = 0; r0 < q_len; r0 += rows) {
    const int chunk = static_cast<int>(std::min(rows, q_len - r0));
    // Column-major view: Sᵀ[Lk, chunk] = Kᵀ·Q for each head, K and Q rows strided by H·d.
    WANRT_CHECK_CUBLAS(cublasGemmStridedBatchedEx(
        handle, CUBLAS_OP_T, CUBLAS_OP_N, keys, chunk, dim, &score_scale, k_ptr, CUDA_R_16BF, ld_tokens, head_dim,
        q_ptr + r0 * token_stride, CUDA_R_16BF, ld_tokens, head_dim, &zero, s_ptr, CUDA_R_32F, keys, head_stride,
        static_cast<int>(heads), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    const dim3 grid(static_cast<unsigned>(chunk), static_cast<unsigned>(heads));
    if (kv_len % 4 == 0)
      softmax_rows_kernel<4><<<grid, kSoftmaxThreads, 0, ops.stream()>>>(s_ptr, p_ptr, kv_len, head_stride);
    else
      softmax_rows_kernel<1><<<grid, kSoftmaxThreads, 0, ops.stream()>>>(s_ptr, p_ptr, kv_len, head_stride);
    WANRT_CHECK_LAUNCH();
    // Oᵀ[d, chunk] = Vᵀ·Pᵀ for each head, written into the token-major output.
    WANRT_CHECK_CUBLAS(cublasGemmStridedBatchedEx(
        handle, CUBLAS_OP_N, CUBLAS_OP_N, dim, chunk, keys, &one, v_ptr, CUDA_R_16BF, ld_tokens, head_dim, p_ptr,
        CUDA_R_16BF, keys, head_stride, &zero, out_ptr + r0 * token_stride, CUDA_R_16BF, ld_tokens, head_dim,
        static_cast<int>(heads), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  return out;
}

}  // namespace wanrt
