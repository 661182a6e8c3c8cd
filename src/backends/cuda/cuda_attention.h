// The attention kernels behind CudaOps::attention, exposed for tests and benchmarks: the
// Hopper (sm_90a) kernel and the portable bf16 tensor-core flash kernel under each of their
// compiled tilings, and the generic kernel.
// Model code never calls these; it calls Ops::attention, which picks the path itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/ops.h"

namespace wanrt {

class CudaOps;

// One compiled tile configuration of the flash kernel (cuda_attention.cu says why each exists).
struct FlashTiling {
  int head_dim = 0;
  int block_m = 0;   // query rows per thread block
  int block_n = 0;   // keys per K/V tile
  int warps = 0;
  int stages = 0;    // K/V tiles in flight in shared memory (cp.async pipeline depth)
  bool q_in_registers = false;  // Q fragments loaded once, else re-read from shared memory
  std::string name() const;     // "m128 n64 w4 s2 q-smem"
  bool operator==(const FlashTiling&) const = default;
};

// The tilings compiled for `head_dim`, the one Ops::attention uses first; empty for head dims
// the flash kernel does not cover (they take the generic kernel).
std::vector<FlashTiling> flash_attention_tilings(int64_t head_dim);

// Ops::attention through the flash kernel with `tiling` (no bias; q/k/v converted to bf16).
// Throws where the inputs do not fit the tiling.
Tensor flash_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionOptions& options, const FlashTiling& tiling);

// One compiled configuration of the Hopper kernel (cuda_attention_sm90.cu says why each exists).
struct Sm90Tiling {
  int consumers = 0;       // consumer warpgroups, 64 query rows each
  int block_n = 0;         // keys per K/V tile
  bool overlap = false;    // S_j = Q·K_jᵀ overlapped with P_{j−1}·V_{j−1}
  bool ping_pong = false;  // the two consumers take turns at the tensor cores
  int features = 0;        // sm90::kFastReduce | kStoreTma | kQInRegisters (cuda_attention_sm90.cuh)
  std::string name() const;  // "sm90 c2 n128 ov pp", then " ilp", " tmastore", " qreg"
  bool operator==(const Sm90Tiling&) const = default;
};

// The Hopper kernel's tilings, the one Ops::attention uses first.
std::vector<Sm90Tiling> sm90_attention_tilings();
// Whether `device` runs the Hopper kernel (compute capability 9.0; it is built for sm_90a only).
bool sm90_attention_available(int device);
// Whether the Hopper kernel takes these arguments: head_dim 128, no bias, scale >= 0, bf16
// inputs 16-byte aligned (other float inputs are converted first).
bool sm90_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options);
// Ops::attention through the Hopper kernel with `tiling`; throws where it does not apply.
Tensor sm90_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionOptions& options, const Sm90Tiling& tiling);

// Ops::attention through the generic kernel (any head_dim up to 512, bias, F32 math).
Tensor generic_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionOptions& options);

}  // namespace wanrt
