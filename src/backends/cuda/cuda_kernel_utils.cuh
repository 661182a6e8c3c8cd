// Device helpers shared by the memory-bound kernels (cuda_norms.cu, cuda_elementwise.cu,
// cuda_video.cu): element conversion to and from float32, vectorised loads and stores of
// F32/BF16, block-wide sums, and launch geometry; and the linear epilogues' activation
// (cuda_linear_kernels.cu, cuda_quant.cu).
//
// Every one of those kernels is bound by HBM bandwidth, so they move 16-byte vectors per thread
// where alignment and the row width allow (one LDG.128 / STG.128 instead of eight 2-byte
// accesses) and compute in float32 registers whatever the storage dtype.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backends/ops.h"
#include "core/error.h"
#include "core/tensor.h"

namespace wanrt::kernels {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) { return __float2bfloat16_rn(v); }

// v rounded to bf16 and widened again: the value a bf16 tensor would hold.
__device__ __forceinline__ float round_to_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// The same formulas as the CPU reference (cpu_dense.cpp), in float32.
__device__ __forceinline__ float activate(float v, Activation activation) {
  switch (activation) {
    case Activation::Silu: return v / (1.0f + expf(-v));
    case Activation::GeluTanh: {
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      return 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
    }
    case Activation::None: break;
  }
  return v;
}

// The unsigned integer type of exactly `kBytes` bytes, the unit of one vector memory access.
template <int kBytes>
struct Packet;
template <> struct Packet<2> { using type = uint16_t; };
template <> struct Packet<4> { using type = uint32_t; };
template <> struct Packet<8> { using type = uint2; };
template <> struct Packet<16> { using type = uint4; };

// Accesses of N contiguous T at `p` in packets of up to 16 bytes; `p` must be aligned to
// min(16, N·sizeof(T)) bytes (vector_alignment()).
template <typename T, int N>
struct VectorAccess {
  static constexpr int kBytes = N * static_cast<int>(sizeof(T));
  static constexpr int kPacketBytes = kBytes < 16 ? kBytes : 16;
  static constexpr int kPackets = kBytes / kPacketBytes;
  static constexpr int kPerPacket = kPacketBytes / static_cast<int>(sizeof(T));
  using P = typename Packet<kPacketBytes>::type;
  static_assert(kBytes % kPacketBytes == 0, "vector of whole packets");
};

template <typename T, int N>
__device__ __forceinline__ void load_vector(const T* p, float (&out)[N]) {
  using A = VectorAccess<T, N>;
#pragma unroll
  for (int i = 0; i < A::kPackets; ++i) {
    const typename A::P raw = reinterpret_cast<const typename A::P*>(p)[i];
    T elements[A::kPerPacket];
    memcpy(elements, &raw, sizeof(raw));
#pragma unroll
    for (int j = 0; j < A::kPerPacket; ++j) out[i * A::kPerPacket + j] = to_float(elements[j]);
  }
}

template <typename T, int N>
__device__ __forceinline__ void store_vector(T* p, const float (&in)[N]) {
  using A = VectorAccess<T, N>;
#pragma unroll
  for (int i = 0; i < A::kPackets; ++i) {
    T elements[A::kPerPacket];
#pragma unroll
    for (int j = 0; j < A::kPerPacket; ++j) elements[j] = from_float<T>(in[i * A::kPerPacket + j]);
    typename A::P raw;
    memcpy(&raw, elements, sizeof(raw));
    reinterpret_cast<typename A::P*>(p)[i] = raw;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The sum of `v` over the block, returned to every thread. blockDim.x must be a multiple of 32;
// `scratch` is 32 floats of shared memory. The leading barrier lets consecutive calls share it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

// ---- host side ----

// Byte alignment a vector of N elements of `element_bytes` needs (see VectorAccess).
inline size_t vector_alignment(int n, size_t element_bytes) {
  return std::min<size_t>(16, static_cast<size_t>(n) * element_bytes);
}
inline bool is_aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// Blocks for a grid-stride loop over `work` items at `threads` per block: enough to fill the
// GPU many times over, few enough that each thread loops when the tensor is huge.
inline unsigned grid_stride_blocks(int64_t work, int threads) {
  constexpr int64_t kMaxBlocks = 1 << 16;
  return static_cast<unsigned>(std::clamp<int64_t>((work + threads - 1) / threads, 1, kMaxBlocks));
}

// Calls f(float{}) or f(bf16{}) for the dtype of a device float tensor.
template <typename F>
decltype(auto) dispatch_float(DType dtype, F&& f) {
  switch (dtype) {
    case DType::F32: return f(float{});
    case DType::BF16: return f(bf16{});
    default: fail("cuda backend: expected an F32 or BF16 tensor, got ", dtype_name(dtype));
  }
}

template <typename T>
constexpr DType dtype_of() {
  return std::is_same_v<T, float> ? DType::F32 : DType::BF16;
}

}  // namespace wanrt::kernels
