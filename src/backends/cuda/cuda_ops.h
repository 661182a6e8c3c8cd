// The CUDA backend: every op of backends/ops.h on one GPU (bf16 tensor-core GEMMs and
// attention, fused elementwise kernels). Built only where nvcc is found (WANRT_HAVE_CUDA).
//
// Precision map (spec/wan22-dit-and-sampling.md §6), decided per op, not per model:
//   upload                 host float -> device F32 (latents, conditioning, tables stay exact)
//   upload_weight          host float -> device BF16 for 2-D+ weights (GEMM operands);
//                          1-D weights (biases, norm gains, modulation) -> device F32
//   linear                 BF16 × BF16 -> BF16 output with F32 accumulation (cuBLASLt, bias and
//                          GELU-tanh fused in the epilogue); full_precision: F32 × F32 -> F32
//                          without TF32 (the time MLP and the head run in true fp32)
//   layer_norm(_modulate)  any float in, statistics in F32; output F32 (norm3 / head input) or
//   rms_norm               BF16 when it feeds a GEMM — see each kernel's header
//   add_gated_             the residual stream is F32: x (BF16 or F32) becomes F32
//   rope_                  q/k rotated in F32 from BF16, stored back BF16
//   attention              BF16 q/k/v -> BF16 out, F32 online softmax (flash-attention)
//   download               any float -> host F32
// Every kernel states its FLOPs and bytes in its file's header; every op has a test against
// the CPU backend (tests/gpu/test_cuda_ops.cpp) on fresh random inputs with poisoned outputs.
#pragma once

#include <memory>

#include "backends/ops.h"
#include "parallel/communicator.h"

namespace wanrt {

// The CUDA backend on GPU `device`; throws a clear error where no GPU is present.
std::unique_ptr<Ops> make_cuda_ops(int device = 0, std::shared_ptr<Communicator> comm = nullptr);

}  // namespace wanrt
