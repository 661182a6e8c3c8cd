// The 8-bit Hopper attention kernel (SageAttention's accuracy recipe on sm_90a; the design,
// its costs and measurements are in cuda_attention_int8.cu), exposed for tests and benchmarks.
// Model code never calls these: Ops::attention takes this kernel when CudaOptions::attention
// (or WANRT_ATTENTION) says int8.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/ops.h"

namespace wanrt {

class CudaOps;

// One compiled configuration of the 8-bit kernel.
struct Int8Tiling {
  int stages = 0;       // K/V tiles in flight in shared memory
  int flush_every = 0;  // two-level accumulation: P·V of this many key tiles in a wgmma
                        // accumulator, then added into F32 registers; 0: all in one
                        // (fast but wrong on real inputs, kept as the measure of the cost)
  int features = 0;     // int8attn feature bits (cuda_attention_int8.cu): softmax variants
  std::string name() const;  // "int8 s2 f4", with features "int8 s2 f4 imax tsum"
  bool operator==(const Int8Tiling&) const = default;
};

// The compiled configurations, the one Ops::attention uses first.
std::vector<Int8Tiling> int8_attention_tilings();

// The pre-pass's output: q/k/v quantized as the main kernel reads them.
//   q8      [Lq, H, 128] int8, one scale per (token, head); q_scale [H, Lq] holds
//           absmax/127 · softmax scale · log2(e)
//   k8      [kv_len, H, 128] int8 of k − mean_head(k) (the per-channel mean over the valid
//           keys), one scale per 128-key tile and head: k_scale [H, ⌈kv_len/128⌉]
//   vt8     [H, 128, kv_padded] FP8 E4M3, V transposed (keys contiguous) and divided by its
//           per-channel scale v_scale [H, 128] = absmax/448; keys ≥ kv_len are zero, and the
//           keys of each 32-key group are stored in the order the P·V wgmma's register
//           fragment of P holds them (see cuda_attention_int8.cu)
struct Int8Operands {
  Tensor q8, k8, vt8, q_scale, k_scale, v_scale;
  int64_t q_len = 0, kv_len = 0, heads = 0, kv_padded = 0;
};

// Whether the 8-bit kernel takes these arguments (the same as the bf16 Hopper kernel:
// head_dim 128, no bias, scale >= 0, bf16 inputs 16-byte aligned).
bool int8_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options);
// The pre-pass alone (O(L·d)); throws where the kernel does not apply.
Int8Operands int8_attention_prepare(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options);
// The main kernel alone on prepared operands: bf16 [Lq, H, 128].
Tensor int8_attention_run(CudaOps& ops, const Int8Operands& operands, const Int8Tiling& tiling);
// Both: Ops::attention through the 8-bit kernel with `tiling`. Needs an sm_90 GPU.
Tensor int8_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionOptions& options, const Int8Tiling& tiling);

}  // namespace wanrt
