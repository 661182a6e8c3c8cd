// Weight-only quantization on the GPU (core/quantize.h): CudaOps::quantize_weight and the
// kernels that CudaOps::linear (cuda_linear.cpp) runs around its GEMMs for a quantized weight.
//
// quantize_weight. A float checkpoint matrix goes to the GPU in its own dtype (F32, F16 or BF16:
// exact, through the same pinned staging ring as upload_weight, so the load runs at the speed of
// a bf16 load: 28.6 GB of bf16 host tensors, an A14B expert, in 1.25 s on the H100) into a
// transient buffer outside the memory pool, and is quantized there by quantize_rows_kernel, which reproduces the host
// quantize_rows bit for bit: the scale is the IEEE float quotient max|w| / code_max, int8 codes
// are rint(double(w) / double(s)) clamped to ±127 (the host's arithmetic, in double), and e4m3
// codes are the float quotient w / s rounded to e4m3. For e4m3 the host divides in double and
// rounds to float, then to e4m3; the float division gives the same float, because rounding a
// quotient of two floats first to double (53 bits) and then to float (24) is innocuous
// (53 >= 2·24 + 2), and clamping at the representable ±448 commutes with rounding. A NaN or
// infinity is an error naming the first bad row, as on the host (one 4-byte readback per weight).
// A host tensor that is already quantized (a `wanrt quantize` checkpoint) is copied as it is.
// Host bytes per weight: rows·cols·size(dtype); device: the same + rows·cols codes + 4·rows.
//
// Per linear call (weights [M, K], activations [N, K]):
//   quantize_rows_kernel on activations (fp8): the per-token scales and E4M3 codes of x, one
//     block per row, two passes over the row (the second from L2), 16-byte loads. Bytes
//     N·K·(size(x) + 1), HBM-bound: on the H100 at 720p 0.50 ms for K = 5120 and 1.34 ms for
//     K = 13824 (~2.3 TB/s), 4–11% of the linear it feeds (bench_linear).
//   dequantize_rows_kernel (int8): I8 codes to a BF16 scratch copy of the layer's weight (exact,
//     |q| <= 127), so a BF16 tensor-core GEMM can consume it. Bytes 3·M·K: 212 MB for the FFN's
//     13824×5120, 75 µs on the H100, against 14.8 ms for the 720p FFN GEMM it feeds.
//   scale_bias_activation_kernel: the epilogue of an FP8 GEMM run with unit scales, where
//     cuBLASLt has no outer-vector scaling; 4·N·M bytes.
//   simple_fp8_linear_kernel: the FP8 GEMM for shapes cuBLASLt cannot take (K % 16 != 0);
//     2·N·M·K FLOPs at low efficiency. Tiny shapes only, in practice.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <memory>
#include <type_traits>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_kernel_utils.cuh"
#include "backends/cuda/cuda_memory.h"
#include "backends/cuda/cuda_ops_impl.h"
#include "backends/cuda/cuda_quant.h"
#include "core/quantize.h"

namespace wanrt {
namespace {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ float as_float(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float as_float(__half v) { return __half2float(v); }

// N consecutive elements at `p` (16-byte aligned when N·sizeof(T) >= 16) as floats.
template <typename T, int N>
__device__ __forceinline__ void load_floats(const T* p, float (&out)[N]) {
  if constexpr (N * sizeof(T) % 16 == 0) {
    constexpr int kPerPacket = 16 / static_cast<int>(sizeof(T));
#pragma unroll
    for (int i = 0; i < N / kPerPacket; ++i) {
      const uint4 raw = reinterpret_cast<const uint4*>(p)[i];
      T elements[kPerPacket];
      memcpy(elements, &raw, sizeof(raw));
#pragma unroll
      for (int j = 0; j < kPerPacket; ++j) out[i * kPerPacket + j] = as_float(elements[j]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) out[j] = as_float(p[j]);
  }
}

__device__ __forceinline__ float decode(uint8_t code, bool is_int8) {
  if (is_int8) return static_cast<float>(static_cast<int8_t>(code));
  __nv_fp8_e4m3 value;
  value.__x = code;
  return static_cast<float>(value);
}

// The host's int8 encoding (quantize_rows): nearest integer of the double quotient, ties to even.
__device__ __forceinline__ uint8_t encode_int8(float v, float scale) {
  if (scale == 0.0f) return 0;
  const double code = fmin(fmax(rint(static_cast<double>(v) / static_cast<double>(scale)), -127.0), 127.0);
  return static_cast<uint8_t>(static_cast<int8_t>(code));
}

// The host's e4m3 encoding through the float quotient (the header says why that is the same);
// the clamp keeps a NaN a NaN, so a NaN activation reaches the output.
__device__ __forceinline__ uint8_t encode_e4m3(float v, float scale) {
  if (scale == 0.0f) return 0;
  float ratio = __fdiv_rn(v, scale);
  ratio = ratio > 448.0f ? 448.0f : ratio < -448.0f ? -448.0f : ratio;
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(ratio, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

constexpr int kRowThreads = 256;

// One block per row. kVec elements per access (kVec divides cols; 8 when the row allows 16-byte
// loads and 8-byte stores of codes, else 1).
template <typename T, bool kInt8, int kVec>
__global__ void quantize_rows_kernel(const T* x, int64_t cols, uint8_t* codes, float* scale,
                                     int32_t* first_bad_row) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* in = x + row * cols;
  uint8_t* out = codes + row * cols;
  const int64_t vectors = cols / kVec;
  float max_abs = 0.0f;
  bool finite = true;
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    float values[kVec];
    load_floats<T, kVec>(in + v * kVec, values);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      finite = finite && isfinite(values[j]);
      max_abs = fmaxf(max_abs, fabsf(values[j]));
    }
  }
  max_abs = block_max(max_abs, scratch);
  if (first_bad_row && !__syncthreads_and(finite)) {
    if (threadIdx.x == 0) atomicMin(reinterpret_cast<int*>(first_bad_row), static_cast<int>(row));
    return;  // the caller throws; the row's codes do not matter
  }
  const float row_scale = __fdiv_rn(max_abs, kInt8 ? 127.0f : 448.0f);
  if (threadIdx.x == 0) scale[row] = row_scale;
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    float values[kVec];
    load_floats<T, kVec>(in + v * kVec, values);
    uint8_t encoded[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) encoded[j] = kInt8 ? encode_int8(values[j], row_scale) : encode_e4m3(values[j], row_scale);
    if constexpr (kVec == 8) {
      uint2 packed;
      memcpy(&packed, encoded, sizeof(packed));
      reinterpret_cast<uint2*>(out)[v] = packed;
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) out[v * kVec + j] = encoded[j];
    }
  }
}

template <typename T>
void quantize_rows_typed(const T* x, int64_t rows, int64_t cols, bool int8, uint8_t* codes, float* scale,
                         int32_t* first_bad_row, cudaStream_t stream) {
  const bool vector = cols % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(codes) % 8 == 0;
  const auto blocks = static_cast<unsigned>(rows);
  if (int8 && vector) quantize_rows_kernel<T, true, 8><<<blocks, kRowThreads, 0, stream>>>(x, cols, codes, scale, first_bad_row);
  else if (int8) quantize_rows_kernel<T, true, 1><<<blocks, kRowThreads, 0, stream>>>(x, cols, codes, scale, first_bad_row);
  else if (vector) quantize_rows_kernel<T, false, 8><<<blocks, kRowThreads, 0, stream>>>(x, cols, codes, scale, first_bad_row);
  else quantize_rows_kernel<T, false, 1><<<blocks, kRowThreads, 0, stream>>>(x, cols, codes, scale, first_bad_row);
}

// Rows are strided over gridDim.y, each row's elements (in groups of kVec) over the x-grid: no
// index division, and a group never straddles two rows.
template <typename TOut, bool kInt8, int kVec>
__global__ void dequantize_rows_kernel(const uint8_t* codes, const float* scale, int64_t rows, int64_t cols, TOut* out) {
  const int64_t groups = cols / kVec;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float s = scale ? scale[r] : 1.0f;
    const uint8_t* in = codes + r * cols;
    TOut* dst = out + r * cols;
    for (int64_t g = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; g < groups; g += int64_t{gridDim.x} * blockDim.x) {
      uint8_t q[kVec];
      if constexpr (kVec == 8) {
        const uint2 packed = reinterpret_cast<const uint2*>(in)[g];
        memcpy(q, &packed, sizeof(packed));
      } else {
        q[0] = in[g];
      }
      TOut values[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const float v = scale ? s * decode(q[j], kInt8) : decode(q[j], kInt8);
        if constexpr (std::is_same_v<TOut, float>) values[j] = v;
        else values[j] = __float2bfloat16_rn(v);
      }
      if constexpr (kVec == 8) {
        constexpr int kPackets = 8 * sizeof(TOut) / 16;
        uint4 packets[kPackets];
        memcpy(packets, values, sizeof(packets));
#pragma unroll
        for (int i = 0; i < kPackets; ++i) reinterpret_cast<uint4*>(dst + g * kVec)[i] = packets[i];
      } else {
        dst[g] = values[0];
      }
    }
  }
}

// Launch geometry shared by the row-wise elementwise kernels: x-blocks cover one row's groups,
// the y-grid strides over rows.
dim3 row_grid(int64_t rows, int64_t groups_per_row, int threads) {
  const auto x = static_cast<unsigned>(std::clamp<int64_t>((groups_per_row + threads - 1) / threads, 1, 1024));
  const auto y = static_cast<unsigned>(std::clamp<int64_t>(rows, 1, 65535));
  return dim3(x, y);
}

template <typename TOut, bool kInt8>
void dequantize_typed(const uint8_t* codes, const float* scale, int64_t rows, int64_t cols, TOut* out,
                      cudaStream_t stream) {
  constexpr int kThreads = 256;
  const bool vector = cols % 8 == 0 && reinterpret_cast<uintptr_t>(codes) % 8 == 0 &&
                      reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vector)
    dequantize_rows_kernel<TOut, kInt8, 8><<<row_grid(rows, cols / 8, kThreads), kThreads, 0, stream>>>(codes, scale, rows, cols, out);
  else
    dequantize_rows_kernel<TOut, kInt8, 1><<<row_grid(rows, cols, kThreads), kThreads, 0, stream>>>(codes, scale, rows, cols, out);
}

__global__ void scale_bias_activation_kernel(bf16* y, const float* row_scale, const float* col_scale,
                                             const bf16* bias, int64_t rows, int64_t cols, Activation activation) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float rs = row_scale ? row_scale[r] : 1.0f;
    bf16* out = y + r * cols;
    for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols; c += int64_t{gridDim.x} * blockDim.x) {
      float v = __bfloat162float(out[c]) * rs * col_scale[c];
      if (bias) v += __bfloat162float(bias[c]);
      out[c] = __float2bfloat16_rn(kernels::activate(v, activation));
    }
  }
}

constexpr int kTile = 16;

// As simple_linear_kernel (cuda_linear_kernels.cu), on E4M3 codes with their scales.
__global__ void simple_fp8_linear_kernel(const uint8_t* x, const float* x_scale, const uint8_t* w, const float* w_scale,
                                         const bf16* bias, bf16* out, int64_t n, int64_t m, int64_t k,
                                         Activation activation) {
  __shared__ float x_tile[kTile][kTile + 1];
  __shared__ float w_tile[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row0 = int64_t{blockIdx.x} * kTile, col0 = int64_t{blockIdx.y} * kTile;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += kTile) {
    const int64_t kk = k0 + tx;
    x_tile[ty][tx] = (row0 + ty < n && kk < k) ? decode(x[(row0 + ty) * k + kk], false) : 0.0f;
    w_tile[ty][tx] = (col0 + ty < m && kk < k) ? decode(w[(col0 + ty) * k + kk], false) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTile; ++i) acc = fmaf(x_tile[ty][i], w_tile[tx][i], acc);
    __syncthreads();
  }
  const int64_t row = row0 + ty, col = col0 + tx;
  if (row < n && col < m) {
    const float v = acc * x_scale[row] * w_scale[col] + (bias ? __bfloat162float(bias[col]) : 0.0f);
    out[row * m + col] = __float2bfloat16_rn(kernels::activate(v, activation));
  }
}

bool is_code_dtype(DType dtype) { return dtype == DType::I8 || dtype == DType::F8_E4M3; }

}  // namespace

void launch_quantize_rows(const void* x, DType x_dtype, int64_t rows, int64_t cols, DType codes, void* codes_out,
                          float* scale_out, int32_t* first_bad_row, cudaStream_t stream) {
  WANRT_CHECK(is_code_dtype(codes), "cuda backend: quantize rows to ", dtype_name(codes),
              ": codes must be I8 or F8_E4M3");
  if (rows == 0) return;
  WANRT_CHECK(rows <= INT_MAX, "cuda backend: quantize rows: ", rows, " rows are too many for one launch");
  const bool int8 = codes == DType::I8;
  auto* out = static_cast<uint8_t*>(codes_out);
  switch (x_dtype) {
    case DType::F32: quantize_rows_typed(static_cast<const float*>(x), rows, cols, int8, out, scale_out, first_bad_row, stream); break;
    case DType::BF16: quantize_rows_typed(static_cast<const bf16*>(x), rows, cols, int8, out, scale_out, first_bad_row, stream); break;
    case DType::F16: quantize_rows_typed(static_cast<const __half*>(x), rows, cols, int8, out, scale_out, first_bad_row, stream); break;
    default: fail("cuda backend: quantize rows of ", dtype_name(x_dtype), " values: expected F32, BF16 or F16");
  }
  WANRT_CHECK_LAUNCH();
}

void launch_dequantize_rows(const void* codes, DType code_dtype, const float* scale, int64_t rows, int64_t cols,
                            void* out, DType out_dtype, cudaStream_t stream) {
  WANRT_CHECK(is_code_dtype(code_dtype), "cuda backend: dequantize ", dtype_name(code_dtype),
              " codes: expected I8 or F8_E4M3");
  if (rows == 0 || cols == 0) return;
  const auto* in = static_cast<const uint8_t*>(codes);
  const bool int8 = code_dtype == DType::I8;
  switch (out_dtype) {
    case DType::BF16:
      if (int8) dequantize_typed<bf16, true>(in, scale, rows, cols, static_cast<bf16*>(out), stream);
      else dequantize_typed<bf16, false>(in, scale, rows, cols, static_cast<bf16*>(out), stream);
      break;
    case DType::F32:
      if (int8) dequantize_typed<float, true>(in, scale, rows, cols, static_cast<float*>(out), stream);
      else dequantize_typed<float, false>(in, scale, rows, cols, static_cast<float*>(out), stream);
      break;
    default: fail("cuda backend: dequantize to ", dtype_name(out_dtype), ": expected BF16 or F32");
  }
  WANRT_CHECK_LAUNCH();
}

void launch_scale_bias_activation(void* y_bf16, const float* row_scale, const float* col_scale, const void* bias_bf16,
                                  int64_t rows, int64_t cols, Activation activation, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  constexpr int kThreads = 256;
  scale_bias_activation_kernel<<<row_grid(rows, cols, kThreads), kThreads, 0, stream>>>(
      static_cast<bf16*>(y_bf16), row_scale, col_scale, static_cast<const bf16*>(bias_bf16), rows, cols, activation);
  WANRT_CHECK_LAUNCH();
}

void launch_simple_fp8_linear(const void* x_codes, const float* x_scale, const void* w_codes, const float* w_scale,
                              const void* bias_bf16, void* out_bf16, int64_t n, int64_t m, int64_t k,
                              Activation activation, cudaStream_t stream) {
  if (n == 0 || m == 0) return;
  WANRT_CHECK((m + kTile - 1) / kTile <= 65535, "cuda backend: the fallback FP8 GEMM cannot produce ", m,
              " output features");
  const dim3 threads(kTile, kTile);
  const dim3 blocks(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>((m + kTile - 1) / kTile));
  simple_fp8_linear_kernel<<<blocks, threads, 0, stream>>>(
      static_cast<const uint8_t*>(x_codes), x_scale, static_cast<const uint8_t*>(w_codes), w_scale,
      static_cast<const bf16*>(bias_bf16), static_cast<bf16*>(out_bf16), n, m, k, activation);
  WANRT_CHECK_LAUNCH();
}

Tensor CudaOps::quantize_weight(const Tensor& host, DType codes) {
  const auto start = std::chrono::steady_clock::now();
  WANRT_CHECK(is_code_dtype(codes), "cuda backend: quantize_weight to ", dtype_name(codes),
              ": the codes must be I8 (int8) or F8_E4M3 (fp8)");
  WANRT_CHECK(host.device() == Device::Host, "cuda backend: quantize_weight of ", host.describe(),
              ", which is already on the GPU");
  WANRT_CHECK(host.dim() == 2, "cuda backend: quantize_weight expects a matrix [out, in], got ", host.describe());
  const int64_t rows = host.size(0), cols = host.size(1);
  Tensor device_codes, device_scale;
  if (host.is_row_scaled()) {
    WANRT_CHECK(host.dtype() == codes, "cuda backend: quantize_weight to ", dtype_name(codes),
                " of a weight already quantized to ", dtype_name(host.dtype()),
                " (re-quantizing quantized codes would compound the error; quantize the float "
                "checkpoint instead)");
    // A quantized checkpoint: codes and scales move as they are (a row-scaled tensor and its
    // scale are contiguous by construction, core/tensor.h).
    device_codes = empty(codes, host.shape());
    device_scale = empty(DType::F32, {rows});
    staging_->copy_to_device(host.raw(), device_codes.raw_mut(), host.nbytes(), stream_);
    staging_->copy_to_device(host.row_scale().raw(), device_scale.raw_mut(), device_scale.nbytes(), stream_);
  } else {
    WANRT_CHECK(dtype_is_float(host.dtype()), "cuda backend: quantize_weight needs a float matrix, got ",
                host.describe());
    // The values travel exactly, in their own dtype; F64 and FP8 checkpoints are widened to F32
    // on the host first, as quantize_rows does.
    const bool device_readable = host.dtype() == DType::F32 || host.dtype() == DType::BF16 || host.dtype() == DType::F16;
    const Tensor source = device_readable && host.is_contiguous() ? host : host.to(DType::F32);
    device_codes = empty(codes, source.shape());
    device_scale = empty(DType::F32, {rows});
    // The staged float copy (and the bad-row flag after it) lives outside the stream-ordered
    // pool: a transient block of up to 283 MB between every two weights would fragment the pool
    // that holds the codes (measured: an int8 expert's 14.5 GB of weights held 20.6 GB of pool
    // reservation that trimming could not return). One cudaMalloc/cudaFree per weight costs
    // ~1 ms, and this call synchronises anyway.
    const size_t staged_bytes = (source.nbytes() + 255) / 256 * 256;
    void* staged = nullptr;
    cudaError_t status = cudaMalloc(&staged, staged_bytes + sizeof(int32_t));
    if (status == cudaErrorMemoryAllocation) {
      // The pool may hold freed blocks: hand them back to the driver and try once more.
      cudaGetLastError();
      cudaMemPool_t pool = nullptr;
      if (cudaStreamSynchronize(stream_) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess &&
          cudaMemPoolTrimTo(pool, 0) == cudaSuccess)
        status = cudaMalloc(&staged, staged_bytes + sizeof(int32_t));
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      fail("GPU out of memory on cuda:", device_, " while quantizing ", host.describe(), ": ", staged_bytes,
           " bytes of staging (", cudaGetErrorName(status), "). Try --offload_model True");
    }
    const std::unique_ptr<void, void (*)(void*)> staged_owner(staged, [](void* p) { cudaFree(p); });
    auto* bad_row = reinterpret_cast<int32_t*>(static_cast<char*>(staged) + staged_bytes);
    staging_->stream_to_device(source.raw(), source.dtype(), staged, source.dtype(),
                               static_cast<size_t>(source.numel()), nullptr, stream_);
    WANRT_CHECK_CUDA(cudaMemsetAsync(bad_row, 0x7F, sizeof(int32_t), stream_));  // 0x7F7F7F7F: none
    launch_quantize_rows(staged, source.dtype(), rows, cols, codes, device_codes.raw_mut(),
                         static_cast<float*>(device_scale.raw_mut()), bad_row, stream_);
    int32_t first_bad = 0;
    WANRT_CHECK_CUDA(cudaMemcpyAsync(&first_bad, bad_row, sizeof(first_bad), cudaMemcpyDeviceToHost, stream_));
    WANRT_CHECK_CUDA(cudaStreamSynchronize(stream_));  // the staged copy may be freed from here
    WANRT_CHECK(first_bad == 0x7F7F7F7F, "quantize weight ", host.describe(), ": row ", first_bad,
                " holds a non-finite value (NaN or infinity); the checkpoint is damaged");
  }
  load_stats_.tensors += 1;
  load_stats_.host_bytes += host.nbytes() + (host.is_row_scaled() ? host.row_scale().nbytes() : 0);
  load_stats_.device_bytes += device_codes.nbytes() + device_scale.nbytes();
  load_stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Tensor::with_row_scale(std::move(device_codes), std::move(device_scale));
}

}  // namespace wanrt
