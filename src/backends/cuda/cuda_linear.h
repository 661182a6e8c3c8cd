// The GEMM machinery behind CudaOps::linear (internal to the CUDA backend).
//
// CublasLtContext owns the cuBLASLt handle, a workspace, and two caches: one matmul plan
// (descriptors + the heuristic's algorithm) per problem, so the heuristic runs once per shape
// rather than once per call, and F32 biases converted to BF16 (the bias epilogue of a BF16
// GEMM reads a BF16 vector), so that conversion runs once per weight.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include "backends/ops.h"

namespace wanrt {

class CudaOps;

// How linear() ran its GEMMs since the program started (all backends together): diagnostics
// for tests and benchmarks.
struct LinearPathCounts {
  int64_t fused = 0;     // cuBLASLt alone (the bias/activation, if any, in its epilogue)
  int64_t split = 0;     // cuBLASLt, then one bias+activation kernel
  int64_t fallback = 0;  // the simple kernel (no cuBLASLt algorithm for these dims/alignments)
  // Quantized weights (each call also counts above as fused/split/fallback where it ran a GEMM):
  int64_t int8_alpha_vector = 0;  // I8 -> BF16 scratch, the scale as cuBLASLt's alpha vector
  int64_t int8_folded_scale = 0;  // I8 -> BF16 scratch with the scale folded in, plain GEMM
  int64_t fp8_outer_vector = 0;   // FP8 GEMM, token and channel scales in cuBLASLt's outer-vector modes
  int64_t fp8_unit_scale = 0;     // FP8 GEMM with unit scales, then a scale/bias/activation kernel
  int64_t fp8_simple = 0;         // the simple FP8 kernel (no cuBLASLt FP8 algorithm)
};
LinearPathCounts linear_path_counts();

// Which routes linear() may take for quantized weights, process-wide. The defaults are the
// fastest exact routes; tests and bench_linear switch them to exercise and measure the others.
struct QuantizedLinearSettings {
  // int8: the per-channel scale as cuBLASLt's alpha vector (exact). Off, or where cuBLASLt has
  // no such algorithm, the scale is folded into the BF16 scratch weight (one rounding more).
  bool int8_alpha_vector = true;
  // fp8: cuBLASLt FP8 GEMMs at all (off: the simple kernel), and with the outer-vector scale
  // modes (off or unsupported: unit scales, then a scaling kernel over the output).
  bool fp8_cublaslt = true;
  bool fp8_outer_vector = true;
  // CUBLASLT_MATMUL_DESC_FAST_ACCUM: faster, but Hopper's FP8 tensor cores then accumulate the
  // whole K in their reduced-precision accumulator instead of promoting to F32 periodically.
  bool fp8_fast_accumulation = false;
};
QuantizedLinearSettings quantized_linear_settings();
void set_quantized_linear_settings(const QuantizedLinearSettings& settings);

// How a GEMM's product is scaled before its bias (quantized weights).
enum class GemmScaling : uint8_t {
  None,         // y = x·wᵀ
  AlphaVector,  // y[:, j] = w_scale[j]·(x·wᵀ)[:, j]: cuBLASLt's per-output-row alpha vector
  OuterVector,  // y[i, j] = x_scale[i]·w_scale[j]·(x·wᵀ)[i, j]: FP8 outer-vector scale modes
};

// One GEMM: out[n, m] = act(scaling(x[n, k] · w[m, k]ᵀ) + bias[m]), all row-major, all of
// `dtype` (F32 or BF16) including the bias, unless `operands` says x and w are another type
// (F8_E4M3: an FP8 GEMM with a BF16 output); F32 accumulation.
struct GemmProblem {
  int64_t n = 0, m = 0, k = 0;
  DType dtype = DType::BF16;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  std::optional<DType> operands = std::nullopt;  // x and w when not `dtype`: F8_E4M3
  GemmScaling scaling = GemmScaling::None;
  const float* w_scale = nullptr;  // [m] device F32 (AlphaVector, OuterVector)
  const float* x_scale = nullptr;  // [n] device F32 (OuterVector)
  bool fast_accumulation = false;  // FP8 only (QuantizedLinearSettings)
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;  // may be null
  void* out = nullptr;
  Activation activation = Activation::None;
};

class CublasLtContext {
 public:
  CublasLtContext();
  ~CublasLtContext();
  CublasLtContext(const CublasLtContext&) = delete;
  CublasLtContext& operator=(const CublasLtContext&) = delete;

  // Queues the GEMM on `stream`: the fused cuBLASLt epilogue where one exists, else a plain
  // cuBLASLt GEMM and a bias+activation kernel, else the simple kernel. The simple kernel knows
  // neither scales nor FP8, so a problem with either returns false where cuBLASLt has no
  // algorithm (nothing queued: the caller takes another route); otherwise true.
  bool run(const GemmProblem& problem, cudaStream_t stream);
  // Whether run() would find a cuBLASLt algorithm (fused or plain) for `problem`, without
  // running it (builds and caches the plans).
  bool has_algorithm(const GemmProblem& problem);

  // `bias` in `dtype`: itself when it already is, else a converted copy made once and cached
  // (the cache keeps the source alive, so its address cannot be reused by another tensor).
  Tensor bias_as(const Tensor& bias, DType dtype, CudaOps& ops);

 private:
  struct PlanKey {
    int64_t n, m, k;
    DType dtype;
    cublasComputeType_t compute;
    cublasLtEpilogue_t epilogue;
    int align_x, align_w, align_out, align_bias;  // bytes; cuBLASLt kernels require alignment
    DType operands;
    GemmScaling scaling;
    bool fast_accumulation;
    auto operator<=>(const PlanKey&) const = default;
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w_layout = nullptr, x_layout = nullptr, out_layout = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool found = false;  // whether the heuristic returned an algorithm
  };
  // The plan for `key` (built on first use); null when cuBLASLt has no algorithm for it.
  // `problem` supplies the pointers the heuristic looks at (bias, scales).
  Plan* plan_for(const PlanKey& key, const GemmProblem& problem, const void* bias);
  PlanKey base_key(const GemmProblem& problem) const;
  // The fused-epilogue key for `problem`, or nothing when no epilogue can take its bias/activation.
  std::optional<PlanKey> fused_key(const GemmProblem& problem) const;

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<PlanKey, std::unique_ptr<Plan>> plans_;
  struct CachedBias {
    Tensor source;
    Tensor converted;
  };
  std::map<std::tuple<const void*, int64_t, DType>, CachedBias> biases_;
};

// The kernels linear() falls back on (cuda_linear_kernels.cu):
// out[r, c] = act(out[r, c] + bias[c]) in place; out and bias of `dtype` (F32 or BF16), bias
// may be null. Bytes 2·rows·cols·size; HBM-bound.
void launch_bias_activation(void* out, const void* bias, DType dtype, int64_t rows, int64_t cols,
                            Activation activation, cudaStream_t stream);
// A plain tiled GEMM for any dims and alignments, F32 accumulation: x, w, bias (may be null)
// and out all of `dtype` (F32 or BF16), as in GemmProblem. Correct, not fast: used only where
// cuBLASLt has no algorithm (such shapes are tiny in practice).
void launch_simple_linear(const GemmProblem& problem, cudaStream_t stream);

}  // namespace wanrt
