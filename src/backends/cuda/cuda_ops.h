// The CUDA backend: every op of backends/ops.h on one GPU (bf16 tensor-core GEMMs and
// attention, fused elementwise kernels). Built only where nvcc is found (WANRT_HAVE_CUDA).
//
// Precision map (spec/wan22-dit-and-sampling.md §6), decided per op, not per model:
//   upload                 host float -> device F32 (latents, conditioning, tables stay exact)
//   upload_weight          host float -> device BF16 for matrices (GEMM operands); conv weights
//                          (3-D+) -> CudaOptions::conv_dtype; 1-D weights (biases, norm gains,
//                          modulation) -> device F32
//   linear                 BF16 × BF16 -> BF16 output with F32 accumulation (cuBLASLt, bias and
//                          GELU-tanh fused in the epilogue); full_precision: F32 × F32 -> F32
//                          without TF32 (the time MLP and the head run in true fp32)
//   layer_norm(_modulate)  any float in, statistics in F32; output BF16 (every use feeds a bf16
//   rms_norm               GEMM or attention), F32 for layer_norm_modulate(full_precision: the head)
//   activation, add, mul   F32 when either input is F32, else BF16; activation and add of F16
//                          (the VAE's, see conv_dtype) give F16 unless the other input is F32
//   conv3d and video ops   compute in CudaOptions::conv_dtype (see there; F16 by default, the
//                          one place F16 is a storage dtype)
//   add_gated_             the residual stream is F32: x (BF16 or F32) becomes F32
//   rope_                  q/k rotated in F32 from BF16, stored back BF16
//   attention              BF16 q/k/v -> BF16 out, F32 online softmax (flash-attention; the
//                          Hopper kernel on sm_90 for head_dim 128, see CudaOptions::attention)
//   download               any float -> host F32
// Every kernel states its FLOPs and bytes in its file's header; every op has a test against
// the CPU backend (tests/gpu/test_cuda_ops.cpp) on fresh random inputs with poisoned outputs.
#pragma once

#include <memory>

#include "backends/ops.h"
#include "parallel/communicator.h"

namespace wanrt {

// Which kernel runs bf16 attention where several could (cuda_attention.cu).
enum class AttentionKernel {
  Auto,      // the Hopper kernel on an sm_90 GPU where it applies (head_dim 128, no bias), else
             // the portable one; the environment variable WANRT_ATTENTION=portable|sm90|int8
             // overrides this choice (for comparisons)
  Portable,  // the mma.sync flash kernel (any GPU from sm_80), the generic one where it cannot
  Sm90,      // the Hopper kernel wherever it applies; an error on a GPU that is not sm_90
  Int8,      // the 8-bit Hopper kernel (SageAttention's recipe: INT8 Q·Kᵀ, FP8 P·V) where it
             // applies, the bf16 choice of Auto elsewhere; an error on a GPU that is not sm_90
};

// Choices the caller makes for the whole backend.
struct CudaOptions {
  int device = 0;
  // TF32 tensor cores for float32 GEMMs (`--tf32`; PyTorch's default: off). Off: true float32.
  bool tf32 = false;
  // TF32 tensor cores for float32 convolutions (PyTorch's default: on, cudnn.allow_tf32;
  // `--tf32 False` turns it off for a true-float32 VAE).
  bool tf32_convolutions = true;
  // The dtype of the VAE path: conv3d converts its input and weight to it and computes on
  // tensor cores (F16, BF16; F32 with F32 accumulation, TF32 only with tf32_convolutions) and
  // returns it; conv weights (3-D and more) are stored in it; channel_rms_norm, upsample,
  // frames and add keep their input's dtype, so the whole VAE runs in it. F16 takes and
  // produces F16 only in the video ops and in activation/add (cuda_video.h); linear widens an
  // F16 input; every other op refuses it.
  //   F16 (default)  ≤ 3.2e-3 relative on the golden VAE decode (H100; the CPU emulation with
  //                  exact F16 rounding, bench/bench_vae_precision, predicted 3.1e-3), at the
  //                  speed of BF16 (the same tensor-core rate, the same 2-byte traffic): the
  //                  720p 81-frame decode in 3.69 s and 13.1 GB on an H100 (bench_vae). Its
  //                  range ends at 65504: the VAE checks its outputs and names --vae_dtype fp32
  //                  if a value overflowed.
  //   BF16           1.2e-2…2.6e-2 on the same decode, past the 1e-2 bound: 8 significant bits
  //                  are too few. Emulating one rounding point at a time shows why no mixed
  //                  scheme rescues it: bf16 conv operands alone (float32 everywhere else) give
  //                  1.4e-2…1.5e-2, and each of the decoder's ~37 convs adds about the same
  //                  share, so no few layers can be kept in a wider type instead.
  //   F32            TF32 convolutions ≤ 2.3e-3 (PyTorch's default), true F32 ≤ 1.3e-3; ~1.6×
  //                  slower than the 16-bit types and twice their memory.
  DType conv_dtype = DType::F16;
  AttentionKernel attention = AttentionKernel::Auto;
  // CUDA graphs (Ops::graph_capture, cuda_graph.cpp): the DiT's transformer blocks are captured
  // once per expert and shape and replayed on every later call (model/dit_graph.h). The
  // environment variable WANRT_CUDA_GRAPH=0 turns them off (for comparisons), =1 on.
  bool graphs = true;
};

// The CUDA backend; throws a clear error where no GPU is present.
std::unique_ptr<Ops> make_cuda_ops(const CudaOptions& options = {},
                                   std::shared_ptr<Communicator> comm = nullptr);

}  // namespace wanrt
