// The kernels behind weight-only quantization on the GPU (cuda_quant.cu; internal to the CUDA
// backend): CudaOps::quantize_weight uses the row quantizer at load, CudaOps::linear
// (cuda_linear.cpp) the rest on every call with a quantized weight.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/ops.h"
#include "core/dtype.h"

namespace wanrt {

// The twin of quantize_rows (core/quantize.h) for a device matrix x [rows, cols] of `x_dtype`
// (F32, BF16 or F16): per row s[r] = max|x[r, :]| / code_max and codes[r, c] =
// encode(x[r, c] / s[r]), bit for bit the codes and scales quantize_rows computes on the host.
// `codes` is I8 or F8_E4M3; `codes_out` holds rows·cols bytes, `scale_out` rows floats. If
// `first_bad_row` is not null it must hold INT32_MAX on entry and receives the smallest row index
// that holds a NaN or infinity (quantize_rows' error); null skips the check (activations: a NaN
// then reaches the output, where it shows). Bytes: rows·cols·(size(x) + 1) + 4·rows (the second
// pass over a row is served from L2); FLOPs: one division per element.
void launch_quantize_rows(const void* x, DType x_dtype, int64_t rows, int64_t cols, DType codes,
                          void* codes_out, float* scale_out, int32_t* first_bad_row,
                          cudaStream_t stream);

// out[r, c] = code[r, c] (· scale[r] when `scale` is not null), as `out_dtype` (BF16 or F32).
// `codes` is I8 or F8_E4M3. Unscaled, both code formats convert exactly (|int8| <= 127 and every
// e4m3 value fit in bf16); scaled, s·q is one float rounding (exact in F32 for int8, whose
// product has at most 31 significant bits; then rounded to bf16 for a BF16 out). HBM-bound:
// bytes rows·cols·(1 + size(out)).
void launch_dequantize_rows(const void* codes, DType code_dtype, const float* scale, int64_t rows,
                            int64_t cols, void* out, DType out_dtype, cudaStream_t stream);

// In place on a BF16 GEMM result y [rows, cols] computed with unit scales:
// y[r, c] = act(y[r, c] · row_scale[r] · col_scale[c] + bias[c]); row_scale and bias may be null.
// Bytes 4·rows·cols (+ scales and bias); HBM-bound.
void launch_scale_bias_activation(void* y_bf16, const float* row_scale, const float* col_scale,
                                  const void* bias_bf16, int64_t rows, int64_t cols,
                                  Activation activation, cudaStream_t stream);

// The FP8 fallback GEMM for any dims (no cuBLASLt FP8 algorithm: K not a multiple of 16, a GPU
// without FP8 tensor cores): out_bf16[n, m] = act(x_scale[i] · w_scale[j] · Σ_k x[i, k]·w[j, k]
// + bias[j]) from E4M3 codes, F32 accumulation, 16×16 shared-memory tiles. Correct, not fast.
void launch_simple_fp8_linear(const void* x_codes, const float* x_scale, const void* w_codes,
                              const float* w_scale, const void* bias_bf16, void* out_bf16,
                              int64_t n, int64_t m, int64_t k, Activation activation,
                              cudaStream_t stream);

}  // namespace wanrt
