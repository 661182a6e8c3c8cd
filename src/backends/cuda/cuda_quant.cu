// CudaOps::quantize_weight: int8 / fp8 weight-only quantization on the GPU (core/quantize.h).
//
// Not implemented yet: this file exists so the backend links while the CPU reference, the
// checkpoint format and the DiT wiring are in place. What it must do:
//   - host already row-scaled (a quantized checkpoint): check host.dtype() == codes, copy the
//     codes (1 byte/element) and host.row_scale() (F32 [rows]) to the device and return
//     Tensor::with_row_scale(device codes, device scale);
//   - host float: produce exactly quantize_rows(host, codes)'s codes and scales (simplest: call
//     quantize_rows on the host and upload, which also halves the bytes copied versus bf16;
//     or a per-row absmax + encode kernel that reproduces its rounding bit for bit).
// Then CudaOps::linear takes such a weight (see the notes in core/quantize.h and ops.h).
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {

Tensor CudaOps::quantize_weight(const Tensor& host, DType codes) {
  fail("cuda backend: --quantize (", dtype_name(codes), " weights of ", host.describe(),
       ") is not implemented on CUDA yet; run without --quantize, or on the CPU backend");
}

}  // namespace wanrt
