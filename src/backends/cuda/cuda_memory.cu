// Element kernels of the memory ops: dtype conversion and the embedding gather.
//
// convert:      n elements, bytes n·(in + out), no arithmetic to speak of: HBM-bound (or PCIe-bound
//               when `in` is host memory). A grid-stride loop with one element per step keeps
//               every access coalesced for any n and any alignment (chunks of a weight upload
//               start anywhere), which is all an HBM-bound copy needs.
// gather rows:  rows·dim elements read and written, bytes 2·rows·dim·element; one block per
//               output row, threads across the row so reads and writes are coalesced.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_memory.h"

namespace wanrt {
namespace {

__device__ __forceinline__ float load_float(const float* p, size_t i) { return p[i]; }
__device__ __forceinline__ float load_float(const __nv_bfloat16* p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float load_float(const __half* p, size_t i) { return __half2float(p[i]); }

__device__ __forceinline__ void store_float(float* p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_float(__nv_bfloat16* p, size_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_float(__half* p, size_t i, float v) { p[i] = __float2half_rn(v); }

// Every F16/BF16 value is exact in float32, so going through float and rounding once (RNE)
// gives the same bits as the host's convert_elements.
template <typename In, typename Out>
__global__ void convert_kernel(const In* in, Out* out, size_t n) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    store_float(out, i, load_float(in, i));
}

unsigned grid_for(size_t n, unsigned threads) {
  // Enough blocks to fill an H100 several times over; the grid-stride loop covers the rest.
  const size_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<size_t>(blocks, 1, 132 * 32));
}

template <typename In>
void convert_from(const In* in, void* out, DType to, size_t n, cudaStream_t stream) {
  constexpr unsigned kThreads = 256;
  switch (to) {
    case DType::F32: convert_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(in, static_cast<float*>(out), n); break;
    case DType::BF16: convert_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(in, static_cast<__nv_bfloat16*>(out), n); break;
    case DType::F16: convert_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(in, static_cast<__half*>(out), n); break;
    default: fail("cuda backend: conversion to ", dtype_name(to), " is not supported (F32, F16, BF16 only)");
  }
}

template <typename T>
__global__ void gather_rows_kernel(const T* table, const int64_t* ids, T* out, int64_t dim) {
  const int64_t row = blockIdx.x;
  const T* src = table + ids[row] * dim;
  T* dst = out + row * dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

void launch_convert(const void* in, DType from, void* out, DType to, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  switch (from) {
    case DType::F32: convert_from(static_cast<const float*>(in), out, to, n, stream); break;
    case DType::BF16: convert_from(static_cast<const __nv_bfloat16*>(in), out, to, n, stream); break;
    case DType::F16: convert_from(static_cast<const __half*>(in), out, to, n, stream); break;
    default: fail("cuda backend: conversion from ", dtype_name(from), " is not supported (F32, F16, BF16 only)");
  }
  WANRT_CHECK_LAUNCH();
}

void launch_gather_rows(const void* table, const int64_t* ids, void* out, int64_t rows, int64_t dim,
                        size_t element_bytes, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  WANRT_ASSERT(rows <= int64_t{2147483647});
  const unsigned threads = static_cast<unsigned>(std::clamp<int64_t>((dim + 31) / 32 * 32, 32, 256));
  const auto blocks = static_cast<unsigned>(rows);
  switch (element_bytes) {
    case 4: gather_rows_kernel<<<blocks, threads, 0, stream>>>(static_cast<const uint32_t*>(table), ids, static_cast<uint32_t*>(out), dim); break;
    case 2: gather_rows_kernel<<<blocks, threads, 0, stream>>>(static_cast<const uint16_t*>(table), ids, static_cast<uint16_t*>(out), dim); break;
    default: fail("cuda backend: embedding of ", element_bytes, "-byte elements is not supported");
  }
  WANRT_CHECK_LAUNCH();
}

}  // namespace wanrt
