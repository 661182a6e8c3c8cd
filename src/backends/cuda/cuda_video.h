// What the CUDA video ops (cuda_video.cu) share with the other op files.
//
// F16 is a storage dtype of the VAE path only (CudaOptions::conv_dtype = F16): the video ops
// (conv3d, channel_rms_norm, upsample_nearest_2x, frames, concat_frames, transpose) take and
// keep it, and the two elementwise ops the VAE applies to video tensors, activation and add,
// route an F16 operand here (cuda_elementwise.cu knows F32 and BF16 only). Every other op
// refuses F16 through expect_device_float.
#pragma once

#include "backends/ops.h"

namespace wanrt {

class CudaOps;

// Argument check of the video ops: a contiguous device tensor of F32, BF16 or F16.
const Tensor& expect_video_tensor(const Tensor& t, const char* what);

// The dtype mixed video operands meet in: the more precise one (F32, then F16, then BF16;
// BF16 converts into F16 exactly within F16's range).
DType promoted_video_dtype(DType a, DType b);

// Ops::activation of an F16 tensor (F16 out, float32 arithmetic).
Tensor half_activation(CudaOps& ops, const Tensor& x, Activation act);

// Ops::add where either operand is F16 (the other F32, BF16 or F16): the result has
// promoted_video_dtype of the two; b may be one row of a's last axis, broadcast.
Tensor half_add(CudaOps& ops, const Tensor& a, const Tensor& b);

}  // namespace wanrt
