// CudaOps::linear through cuBLASLt: y[N, M] = act(x[N, K] · W[M, K]ᵀ + b[M]).
//
// FLOPs 2·N·M·K; bytes (N·K + M·K + N·M)·size (+ M for the bias). Every GEMM of the DiT is
// compute-bound (N ≥ 9,450 tokens per GPU, K, M ≥ 5,120), so the target is tensor-core peak:
// BF16 operands, F32 accumulation, BF16 output, with bias and GELU-tanh applied in cuBLASLt's
// epilogue while the tile is still in registers (a separate bias/GELU pass would re-read and
// re-write the N×M output, ~5% of an FFN-up GEMM's time at 720p).
//
// Row-major onto column-major. cuBLASLt is column-major; a row-major [R, C] matrix is the same
// bytes as a column-major [C, R] one. So we ask for Yᵀ[M, N] = op(A)·op(B) with A = W viewed as
// column-major [K, M] (ld K) transposed, and B = X viewed as column-major [K, N] (ld K) as is;
// D = Yᵀ column-major [M, N] (ld M) is exactly row-major Y[N, M]. This is the "TN" form (both
// operands K-major) Hopper kernels prefer, and D's rows are the output features, which is
// what the bias epilogue broadcasts over (its length is D's row count, M).
//
// Precision (spec §6): BF16 weight → x converted to BF16, BF16 output; the bias epilogue reads
// a vector of D's type, so F32 biases are converted to BF16 once and cached (this matches the
// reference, whose autocast also rounds the bias to bf16). full_precision (time MLP, head):
// everything in F32 with CUBLAS_COMPUTE_32F, never TF32, the BF16 weight widened on the fly
// (those weights are small). An F32 weight outside full_precision computes in F32, with TF32
// tensor cores when CudaOptions::tf32 is set.
//
// cuBLASLt's GELU epilogue is the tanh approximation (the form Wan's FFN uses);
// tests/gpu/test_cuda_ops_core.cpp checks it against the CPU GeluTanh in true F32, where the
// erf form would be off by ~1e-4. SiLU has no epilogue: a GEMM then one bias+SiLU kernel.
#include "backends/cuda/cuda_linear.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"

#define WANRT_CHECK_CUBLAS(expr)                                                              \
  do {                                                                                        \
    const cublasStatus_t wanrt_status = (expr);                                               \
    if (wanrt_status != CUBLAS_STATUS_SUCCESS)                                                \
      ::wanrt::fail("cuBLASLt error ", cublasLtGetStatusName(wanrt_status), " (",             \
                    cublasLtGetStatusString(wanrt_status), ") in ", #expr, " at ", __FILE__, \
                    ":", __LINE__);                                                           \
  } while (0)

namespace wanrt {
namespace {

// Hopper GEMMs want a 32 MiB workspace for their split-K / stream-K variants.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
// The caches only save work; past these sizes they are dropped and refilled.
constexpr size_t kMaxPlans = 1024;
constexpr size_t kMaxCachedBiases = 4096;

std::atomic<int64_t> fused_count{0}, split_count{0}, fallback_count{0};

// Largest power of two (≤ 256, cuBLASLt's largest requirement) dividing the address.
int alignment_of(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  int alignment = 1;
  while (alignment < 256 && address % (static_cast<uintptr_t>(alignment) * 2) == 0) alignment *= 2;
  return alignment;
}

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return CUDA_R_32F;
    case DType::BF16: return CUDA_R_16BF;
    default: fail("cuda backend: linear in ", dtype_name(dtype), " is not supported");
  }
}

template <typename T>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  WANRT_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}

template <typename T>
void set_preference(cublasLtMatmulPreference_t preference, cublasLtMatmulPreferenceAttributes_t attribute, const T& value) {
  WANRT_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
}

}  // namespace

LinearPathCounts linear_path_counts() {
  return {fused_count.load(), split_count.load(), fallback_count.load()};
}

CublasLtContext::CublasLtContext() {
  WANRT_CHECK_CUBLAS(cublasLtCreate(&handle_));
  WANRT_CHECK_CUDA(cudaMalloc(&workspace_, kWorkspaceBytes));
  workspace_bytes_ = kWorkspaceBytes;
}

CublasLtContext::~CublasLtContext() {
  for (auto& [key, plan] : plans_) {
    if (plan->desc) cublasLtMatmulDescDestroy(plan->desc);
    for (cublasLtMatrixLayout_t layout : {plan->w_layout, plan->x_layout, plan->out_layout})
      if (layout) cublasLtMatrixLayoutDestroy(layout);
  }
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

CublasLtContext::Plan* CublasLtContext::plan_for(const PlanKey& key, const void* bias) {
  if (auto it = plans_.find(key); it != plans_.end()) return it->second->found ? it->second.get() : nullptr;
  if (plans_.size() >= kMaxPlans) {
    for (auto& [old_key, old] : plans_) {
      cublasLtMatmulDescDestroy(old->desc);
      for (cublasLtMatrixLayout_t layout : {old->w_layout, old->x_layout, old->out_layout})
        cublasLtMatrixLayoutDestroy(layout);
    }
    plans_.clear();
  }
  auto plan = std::make_unique<Plan>();
  Plan& p = *plan;
  plans_.emplace(key, std::move(plan));  // owned from here, so a throw below leaks nothing

  const cudaDataType_t type = cuda_type(key.dtype);
  WANRT_CHECK_CUBLAS(cublasLtMatmulDescCreate(&p.desc, key.compute, CUDA_R_32F));
  set_attribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_attribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  set_attribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, key.epilogue);
  if (bias) {
    // The heuristic reads the bias pointer's value (not its data) for its alignment.
    set_attribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    set_attribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(type));
  }
  const auto k = static_cast<uint64_t>(key.k), m = static_cast<uint64_t>(key.m), n = static_cast<uint64_t>(key.n);
  WANRT_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&p.w_layout, type, k, m, key.k));
  WANRT_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&p.x_layout, type, k, n, key.k));
  WANRT_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&p.out_layout, type, m, n, key.m));

  cublasLtMatmulPreference_t preference = nullptr;
  WANRT_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&preference));
  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  try {
    set_preference(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(workspace_bytes_));
    set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, static_cast<uint32_t>(key.align_w));
    set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, static_cast<uint32_t>(key.align_x));
    set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, static_cast<uint32_t>(key.align_out));
    set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, static_cast<uint32_t>(key.align_out));
    status = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.w_layout, p.x_layout, p.out_layout,
                                            p.out_layout, preference, 1, &result, &count);
  } catch (...) {
    cublasLtMatmulPreferenceDestroy(preference);
    throw;
  }
  cublasLtMatmulPreferenceDestroy(preference);
  // NOT_SUPPORTED is the heuristic's "no kernel for this problem". Anything else is unexpected
  // but not fatal: the caller falls back to a slower path that is just as correct, and says so.
  if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED)
    std::fprintf(stderr, "wanrt: cuBLASLt heuristic failed (%s) for %lldx%lldx%lld %s epilogue %d; using a fallback\n",
                 cublasLtGetStatusName(status), static_cast<long long>(key.n), static_cast<long long>(key.k),
                 static_cast<long long>(key.m), std::string(dtype_name(key.dtype)).c_str(), static_cast<int>(key.epilogue));
  p.found = status == CUBLAS_STATUS_SUCCESS && count > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (p.found) p.algo = result.algo;
  return p.found ? &p : nullptr;
}

void CublasLtContext::run(const GemmProblem& p, cudaStream_t stream) {
  if (p.n == 0 || p.m == 0) return;
  PlanKey key{p.n, p.m, p.k, p.dtype, p.compute, CUBLASLT_EPILOGUE_DEFAULT,
              alignment_of(p.x), alignment_of(p.w), alignment_of(p.out), 0};
  const float alpha = 1.0f, beta = 0.0f;
  // False when cuBLASLt refuses at launch (the plan is then retired and the caller falls back).
  auto execute = [&](Plan& plan, const void* bias) {
    if (bias) set_attribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    const cublasStatus_t status =
        cublasLtMatmul(handle_, plan.desc, &alpha, p.w, plan.w_layout, p.x, plan.x_layout, &beta, p.out,
                       plan.out_layout, p.out, plan.out_layout, &plan.algo, workspace_, workspace_bytes_, stream);
    if (status == CUBLAS_STATUS_SUCCESS) return true;
    std::fprintf(stderr, "wanrt: cuBLASLt matmul failed (%s) for %lldx%lldx%lld; using a fallback\n",
                 cublasLtGetStatusName(status), static_cast<long long>(p.n), static_cast<long long>(p.k),
                 static_cast<long long>(p.m));
    plan.found = false;
    return false;
  };
  if (p.k > 0) {
    // Fused: the epilogue adds the bias (and GELU). Epilogue bias reads want 16-byte alignment;
    // our biases come from the pool (256-byte aligned), anything else takes the split path.
    const bool has_epilogue = p.activation != Activation::Silu;
    if (has_epilogue && (p.bias || p.activation != Activation::None) &&
        (!p.bias || alignment_of(p.bias) >= 16)) {
      PlanKey fused = key;
      const bool gelu = p.activation == Activation::GeluTanh;
      fused.epilogue = gelu ? (p.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                            : CUBLASLT_EPILOGUE_BIAS;
      fused.align_bias = p.bias ? alignment_of(p.bias) : 0;
      if (Plan* plan = plan_for(fused, p.bias); plan && execute(*plan, p.bias)) {
        ++fused_count;
        return;
      }
    }
    if (Plan* plan = plan_for(key, nullptr); plan && execute(*plan, nullptr)) {
      launch_bias_activation(p.out, p.bias, p.dtype, p.n, p.m, p.activation, stream);
      if (p.bias || p.activation != Activation::None) ++split_count; else ++fused_count;
      return;
    }
  }
  launch_simple_linear(p, stream);
  ++fallback_count;
}

Tensor CublasLtContext::bias_as(const Tensor& bias, DType dtype, CudaOps& ops) {
  if (bias.dtype() == dtype) return bias;
  const auto key = std::make_tuple(bias.raw(), bias.numel(), dtype);
  if (auto it = biases_.find(key); it != biases_.end()) return it->second.converted;
  if (biases_.size() >= kMaxCachedBiases) biases_.clear();
  Tensor converted = ops.as_dtype(bias, dtype);
  biases_.emplace(key, CachedBias{bias, converted});
  return converted;
}

Tensor CudaOps::linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                       const LinearOptions& options) {
  // An F16 input (the VAE's attention tokens, cuda_video.h) widens exactly, then goes the usual way.
  if (x.dtype() == DType::F16 && x.device() == Device::Cuda) return linear(as_dtype(x, DType::F32), weight, bias, options);
  expect_device_float(x, "linear input");
  expect_device_float(weight, "linear weight");
  WANRT_CHECK(weight.dim() == 2, "cuda backend: linear weight must be 2-D [out, in], got ", weight.describe());
  WANRT_CHECK(x.dim() >= 1, "cuda backend: linear input must be at least 1-D, got ", x.describe());
  const int64_t k = x.size(-1), m = weight.size(0);
  WANRT_CHECK(weight.size(1) == k, "cuda backend: linear input ", x.describe(), " has ", k,
              " features but weight ", weight.describe(), " expects ", weight.size(1));
  int64_t n = 1;
  for (int64_t axis = 0; axis + 1 < x.dim(); ++axis) n *= x.size(axis);
  if (bias) {
    expect_device_float(*bias, "linear bias");
    WANRT_CHECK(bias->numel() == m, "cuda backend: linear bias ", bias->describe(), " does not have the ",
                m, " elements of weight ", weight.describe());
  }

  const bool in_f32 = options.full_precision || weight.dtype() == DType::F32;
  const DType dtype = in_f32 ? DType::F32 : DType::BF16;
  Shape out_shape = x.shape();
  out_shape.back() = m;
  // The output is allocated before the temporaries, so it reuses the block of its size freed
  // last (which lets tests poison it).
  Tensor out = empty(dtype, std::move(out_shape));
  const Tensor x_in = as_dtype(x, dtype);
  const Tensor w_in = as_dtype(weight, dtype);  // full precision: a temporary F32 copy
  const Tensor b_in = bias ? cublaslt_->bias_as(*bias, dtype, *this) : Tensor();

  GemmProblem problem;
  problem.n = n;
  problem.m = m;
  problem.k = k;
  problem.dtype = dtype;
  problem.compute = in_f32 && options_.tf32 && !options.full_precision ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                        : CUBLAS_COMPUTE_32F;
  problem.x = x_in.raw();
  problem.w = w_in.raw();
  problem.bias = bias ? b_in.raw() : nullptr;
  problem.out = out.raw_mut();
  problem.activation = options.activation;
  cublaslt_->run(problem, stream_);
  return out;
}

}  // namespace wanrt
