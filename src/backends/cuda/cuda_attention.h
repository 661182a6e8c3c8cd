// The attention kernels behind CudaOps::attention, exposed for tests and benchmarks: the
// bf16 tensor-core flash kernel under each of its compiled tilings, and the generic kernel.
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

// Ops::attention through the generic kernel (any head_dim up to 512, bias, F32 math).
Tensor generic_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionOptions& options);

}  // namespace wanrt
