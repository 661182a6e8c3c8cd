// Attention as two cuBLAS GEMMs around a softmax kernel (cuda_gemm_attention.cu), for the long
// sequences whose head_dim the flash kernel does not cover: the VAE's mid-block attention, one
// head of 384 channels over the 14,400 pixels of a 720p latent frame. CudaOps::attention picks
// it through gemm_attention_applies(); tests and benchmarks may call it directly.
#pragma once

#include "backends/ops.h"

namespace wanrt {

class CudaOps;

// Whether CudaOps::attention takes the GEMM path: no bias, a head_dim without a flash tiling,
// and at least kGemmAttentionMinKeys keys and kGemmAttentionMinQueries queries (below that the
// generic kernel's single pass costs less than two GEMM launches and a softmax).
inline constexpr int64_t kGemmAttentionMinKeys = 256;
inline constexpr int64_t kGemmAttentionMinQueries = 64;
bool gemm_attention_applies(const Tensor& q, const Tensor& k, const AttentionOptions& options);

// Scratch for the scores (F32) and probabilities (BF16) of one chunk of queries, all heads:
// queries run in chunks of ⌊scratch / (6·H·Lk)⌋ rows (at least one).
inline constexpr int64_t kGemmAttentionScratchBytes = int64_t{256} << 20;

// Ops::attention through the GEMM path (no bias): q, k, v converted to BF16, F32 scores and
// softmax, BF16 probabilities and output. Throws on a bias or bad shapes. `scratch_bytes`
// sets the query chunk (tests shrink it to cross many chunk boundaries).
Tensor gemm_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionOptions& options,
                      int64_t scratch_bytes = kGemmAttentionScratchBytes);

}  // namespace wanrt
