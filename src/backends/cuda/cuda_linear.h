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
};
LinearPathCounts linear_path_counts();

// One GEMM: out[n, m] = act(x[n, k] · w[m, k]ᵀ + bias[m]), all row-major, all of `dtype`
// (F32 or BF16) including the bias; F32 accumulation.
struct GemmProblem {
  int64_t n = 0, m = 0, k = 0;
  DType dtype = DType::BF16;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
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
  // cuBLASLt GEMM and a bias+activation kernel, else the simple kernel.
  void run(const GemmProblem& problem, cudaStream_t stream);

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
    auto operator<=>(const PlanKey&) const = default;
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w_layout = nullptr, x_layout = nullptr, out_layout = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool found = false;  // whether the heuristic returned an algorithm
  };
  // The plan for `key` (built on first use); null when cuBLASLt has no algorithm for it.
  Plan* plan_for(const PlanKey& key, const void* bias);

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
