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
//
// Quantized weights (row-scaled: codes W_q [M, K] and an F32 scale s [M]; core/quantize.h),
// y = act(x·(s ⊙ W_q)ᵀ + b) = act(s ⊙ (x·W_qᵀ) + b), the scale being per output feature:
//   int8 (weight-only; activations stay bf16). cuBLASLt has no BF16 × I8 GEMM, so the layer's
//     codes are widened to a BF16 scratch weight just before a BF16 GEMM (exact: |q| <= 127;
//     the scratch is one layer's weight, at most 13824×5120 = 141 MB, back to the pool right
//     after). The scale goes into the epilogue as cuBLASLt's alpha vector (pointer mode
//     ALPHA_DEVICE_VECTOR_BETA_ZERO: one alpha per row of D, which here are the output features)
//     where cuBLASLt offers that, else it is folded into the scratch (bf16(s·q), one rounding
//     more, like any bf16 weight). cuBLASLt 13.1 on the H100 offers no BF16 algorithm with an
//     alpha vector, so there the folded route runs (the probe is one cached map lookup). The
//     widening costs 3·M·K bytes of HBM traffic: 30–75 µs, 0.5% of a 720p GEMM (bench_linear),
//     and int8 linears run at the bf16 speed (704–738 TFLOP/s vs 708–723). A fused
//     mixed-input kernel could save at most that 0.5%, so wanrt has none.
//   fp8 (E4M3 weights and per-token dynamic activation scales). x's rows are quantized on the
//     GPU (cuda_quant.cu: launch_quantize_rows, the twin of quantize_rows(x, F8_E4M3)), then one
//     FP8 GEMM (E4M3 × E4M3, F32 accumulation, BF16 out) applies both scales in cuBLASLt's
//     outer-vector scale modes (A: the weight's [M], B: the tokens' [N]; cuBLAS 12.9+ on
//     Hopper) with bias and GELU in the epilogue. Where those modes are not offered it runs with
//     unit scales and one kernel scales the output; where no FP8 GEMM exists (K % 16 != 0, a
//     GPU without FP8 tensor cores) a simple kernel computes from the codes. On the H100 at
//     720p: 856 / 916 / 760 TFLOP/s for q/k/v/o, FFN up, FFN down including the quantizer
//     (bf16: 709 / 708 / 723). FAST_ACCUM (QuantizedLinearSettings) reaches 1129 / 1189 / 1030
//     at a relative error of 2.2–3.0e-3 instead of 1.8e-3, but is off by default: the brief is
//     F32 accumulation.
#include "backends/cuda/cuda_linear.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"
#include "backends/cuda/cuda_quant.h"

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
std::atomic<int64_t> int8_alpha_count{0}, int8_folded_count{0}, fp8_outer_count{0}, fp8_unit_count{0},
    fp8_simple_count{0};
QuantizedLinearSettings settings;  // set_quantized_linear_settings(); read on the calling thread

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
    case DType::F8_E4M3: return CUDA_R_8F_E4M3;
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
  return {fused_count.load(),     split_count.load(),     fallback_count.load(),  int8_alpha_count.load(),
          int8_folded_count.load(), fp8_outer_count.load(), fp8_unit_count.load(), fp8_simple_count.load()};
}

QuantizedLinearSettings quantized_linear_settings() { return settings; }
void set_quantized_linear_settings(const QuantizedLinearSettings& new_settings) { settings = new_settings; }

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

CublasLtContext::Plan* CublasLtContext::plan_for(const PlanKey& key, const GemmProblem& problem, const void* bias) {
  if (auto it = plans_.find(key); it != plans_.end()) return it->second->found ? it->second.get() : nullptr;
  if (plans_.size() >= kMaxPlans) {
    for (auto& [old_key, old] : plans_) {  // a plan abandoned while being built has nulls
      if (old->desc) cublasLtMatmulDescDestroy(old->desc);
      for (cublasLtMatrixLayout_t layout : {old->w_layout, old->x_layout, old->out_layout})
        if (layout) cublasLtMatrixLayoutDestroy(layout);
    }
    plans_.clear();
  }
  auto plan = std::make_unique<Plan>();
  Plan& p = *plan;
  plans_.emplace(key, std::move(plan));  // owned from here, so a throw below leaks nothing

  const cudaDataType_t type = cuda_type(key.dtype), operand_type = cuda_type(key.operands);
  WANRT_CHECK_CUBLAS(cublasLtMatmulDescCreate(&p.desc, key.compute, CUDA_R_32F));
  set_attribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_attribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  set_attribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, key.epilogue);
  if (bias) {
    // The heuristic reads the bias pointer's value (not its data) for its alignment.
    set_attribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    set_attribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(type));
  }
  // The quantized GEMMs' attributes are optional features: a cuBLASLt that refuses one has no
  // algorithm for this key (the caller takes another route), it is not an error.
  bool accepted = true;
  auto optional_attribute = [&](cublasLtMatmulDescAttributes_t attribute, const auto& value) {
    accepted = accepted && cublasLtMatmulDescSetAttribute(p.desc, attribute, &value, sizeof(value)) == CUBLAS_STATUS_SUCCESS;
  };
  if (key.scaling == GemmScaling::AlphaVector) {
    optional_attribute(CUBLASLT_MATMUL_DESC_POINTER_MODE,
                       static_cast<int32_t>(CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO));
    optional_attribute(CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE, int64_t{0});  // this mode requires 0
  } else if (key.scaling == GemmScaling::OuterVector) {
    // A is the weight (cuBLAS's M = our output features), B the activations (N = tokens).
    optional_attribute(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, static_cast<int32_t>(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F));
    optional_attribute(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, static_cast<int32_t>(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F));
    optional_attribute(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(problem.w_scale));
    optional_attribute(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(problem.x_scale));
  }
  if (key.operands == DType::F8_E4M3)
    optional_attribute(CUBLASLT_MATMUL_DESC_FAST_ACCUM, static_cast<int8_t>(key.fast_accumulation ? 1 : 0));
  if (!accepted) return nullptr;  // p.found stays false: cached as "no algorithm"
  const auto k = static_cast<uint64_t>(key.k), m = static_cast<uint64_t>(key.m), n = static_cast<uint64_t>(key.n);
  WANRT_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&p.w_layout, operand_type, k, m, key.k));
  WANRT_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&p.x_layout, operand_type, k, n, key.k));
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
  // (Scaled and FP8 problems probe optional cuBLASLt features; INVALID_VALUE there means the
  // same as NOT_SUPPORTED, so it is not reported.)
  const bool probing = key.scaling != GemmScaling::None || key.operands != key.dtype;
  if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED &&
      !(probing && status == CUBLAS_STATUS_INVALID_VALUE))
    std::fprintf(stderr, "wanrt: cuBLASLt heuristic failed (%s) for %lldx%lldx%lld %s epilogue %d; using a fallback\n",
                 cublasLtGetStatusName(status), static_cast<long long>(key.n), static_cast<long long>(key.k),
                 static_cast<long long>(key.m), std::string(dtype_name(key.dtype)).c_str(), static_cast<int>(key.epilogue));
  p.found = status == CUBLAS_STATUS_SUCCESS && count > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (p.found) p.algo = result.algo;
  return p.found ? &p : nullptr;
}

CublasLtContext::PlanKey CublasLtContext::base_key(const GemmProblem& p) const {
  const bool scaled = p.scaling != GemmScaling::None;
  WANRT_ASSERT(!scaled || p.w_scale);
  WANRT_ASSERT(p.scaling != GemmScaling::OuterVector || p.x_scale);
  return PlanKey{p.n, p.m, p.k, p.dtype, p.compute, CUBLASLT_EPILOGUE_DEFAULT, alignment_of(p.x), alignment_of(p.w),
                 alignment_of(p.out), 0, p.operands.value_or(p.dtype), p.scaling,
                 p.operands == DType::F8_E4M3 && p.fast_accumulation};
}

std::optional<CublasLtContext::PlanKey> CublasLtContext::fused_key(const GemmProblem& p) const {
  // Fused: the epilogue adds the bias (and GELU). Epilogue bias reads want 16-byte alignment;
  // our biases come from the pool (256-byte aligned), anything else takes the split path.
  const bool has_epilogue = p.activation != Activation::Silu;
  if (!has_epilogue || (!p.bias && p.activation == Activation::None) || (p.bias && alignment_of(p.bias) < 16))
    return std::nullopt;
  PlanKey fused = base_key(p);
  const bool gelu = p.activation == Activation::GeluTanh;
  fused.epilogue = gelu ? (p.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU) : CUBLASLT_EPILOGUE_BIAS;
  fused.align_bias = p.bias ? alignment_of(p.bias) : 0;
  return fused;
}

bool CublasLtContext::has_algorithm(const GemmProblem& p) {
  if (p.n == 0 || p.m == 0) return true;
  if (p.k == 0) return false;
  if (const auto fused = fused_key(p); fused && plan_for(*fused, p, p.bias)) return true;
  return plan_for(base_key(p), p, nullptr) != nullptr;
}

bool CublasLtContext::run(const GemmProblem& p, cudaStream_t stream) {
  if (p.n == 0 || p.m == 0) return true;
  const float alpha = 1.0f, beta = 0.0f;
  // The alpha vector replaces the scalar alpha; beta is zero in that mode and not read.
  const void* alpha_pointer = p.scaling == GemmScaling::AlphaVector ? static_cast<const void*>(p.w_scale) : &alpha;
  // False when cuBLASLt refuses at launch (the plan is then retired and the caller falls back).
  auto execute = [&](Plan& plan, const void* bias) {
    if (bias) set_attribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    if (p.scaling == GemmScaling::OuterVector) {
      set_attribute(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(p.w_scale));
      set_attribute(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(p.x_scale));
    }
    const cublasStatus_t status =
        cublasLtMatmul(handle_, plan.desc, alpha_pointer, p.w, plan.w_layout, p.x, plan.x_layout, &beta, p.out,
                       plan.out_layout, p.out, plan.out_layout, &plan.algo, workspace_, workspace_bytes_, stream);
    if (status == CUBLAS_STATUS_SUCCESS) return true;
    std::fprintf(stderr, "wanrt: cuBLASLt matmul failed (%s) for %lldx%lldx%lld; using a fallback\n",
                 cublasLtGetStatusName(status), static_cast<long long>(p.n), static_cast<long long>(p.k),
                 static_cast<long long>(p.m));
    plan.found = false;
    return false;
  };
  if (p.k > 0) {
    if (const auto fused = fused_key(p)) {
      if (Plan* plan = plan_for(*fused, p, p.bias); plan && execute(*plan, p.bias)) {
        ++fused_count;
        return true;
      }
    }
    if (Plan* plan = plan_for(base_key(p), p, nullptr); plan && execute(*plan, nullptr)) {
      launch_bias_activation(p.out, p.bias, p.dtype, p.n, p.m, p.activation, stream);
      if (p.bias || p.activation != Activation::None) ++split_count; else ++fused_count;
      return true;
    }
  }
  if (p.scaling != GemmScaling::None || p.operands.value_or(p.dtype) != p.dtype) return false;
  launch_simple_linear(p, stream);
  ++fallback_count;
  return true;
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

namespace {

// A quantized weight as linear() takes it: codes on this GPU with their scale.
void expect_quantized_weight(const Tensor& weight) {
  WANRT_CHECK(weight.device() == Device::Cuda, "cuda backend: linear weight ", weight.describe(),
              " is in host memory; put it on the GPU with ops.quantize_weight");
  WANRT_CHECK(weight.dtype() == DType::I8 || weight.dtype() == DType::F8_E4M3,
              "cuda backend: a quantized linear weight must hold I8 or F8_E4M3 codes, got ", weight.describe());
  WANRT_CHECK(weight.is_contiguous() && weight.row_scale().device() == Device::Cuda,
              "cuda backend: quantized linear weight ", weight.describe(), " must be contiguous, with its scale on the GPU");
}

}  // namespace

Tensor CudaOps::linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                       const LinearOptions& options) {
  // An F16 input (the VAE's attention tokens, cuda_video.h) widens exactly, then goes the usual way.
  if (x.dtype() == DType::F16 && x.device() == Device::Cuda) return linear(as_dtype(x, DType::F32), weight, bias, options);
  expect_device_float(x, "linear input");
  const bool quantized = weight.is_row_scaled();
  if (quantized) expect_quantized_weight(weight);
  else expect_device_float(weight, "linear weight");
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
  const Tensor b_in = bias ? cublaslt_->bias_as(*bias, dtype, *this) : Tensor();

  GemmProblem problem;
  problem.n = n;
  problem.m = m;
  problem.k = k;
  problem.dtype = dtype;
  problem.compute = in_f32 && options_.tf32 && !options.full_precision ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                        : CUBLAS_COMPUTE_32F;
  problem.bias = bias ? b_in.raw() : nullptr;
  problem.out = out.raw_mut();
  problem.activation = options.activation;
  const QuantizedLinearSettings route = settings;
  const float* w_scale = quantized ? static_cast<const float*>(weight.row_scale().raw()) : nullptr;

  if (!quantized || options.full_precision) {
    const Tensor x_in = as_dtype(x, dtype);
    Tensor w_in;
    if (quantized) {
      // Full precision with a quantized weight (not used by the DiT): s·q in F32 is the exact
      // product rounded once, the value the CPU backend multiplies.
      w_in = empty(DType::F32, {m, k});
      launch_dequantize_rows(weight.raw(), weight.dtype(), w_scale, m, k, w_in.raw_mut(), DType::F32, stream_);
    } else {
      w_in = as_dtype(weight, dtype);  // full precision: a temporary F32 copy
    }
    problem.x = x_in.raw();
    problem.w = w_in.raw();
    cublaslt_->run(problem, stream_);
    return out;
  }

  if (weight.dtype() == DType::I8) {
    const Tensor x_in = as_dtype(x, DType::BF16);
    Tensor w_scratch = empty(DType::BF16, {m, k});  // this layer's weight, widened
    problem.x = x_in.raw();
    problem.w = w_scratch.raw();
    if (route.int8_alpha_vector) {
      GemmProblem scaled = problem;
      scaled.scaling = GemmScaling::AlphaVector;
      scaled.w_scale = w_scale;
      if (cublaslt_->has_algorithm(scaled)) {
        launch_dequantize_rows(weight.raw(), DType::I8, nullptr, m, k, w_scratch.raw_mut(), DType::BF16, stream_);
        if (cublaslt_->run(scaled, stream_)) {
          ++int8_alpha_count;
          return out;
        }
      }
    }
    launch_dequantize_rows(weight.raw(), DType::I8, w_scale, m, k, w_scratch.raw_mut(), DType::BF16, stream_);
    cublaslt_->run(problem, stream_);
    ++int8_folded_count;
    return out;
  }

  // FP8: the tokens' codes and scales, then one FP8 GEMM.
  Tensor x_codes = empty(DType::F8_E4M3, {n, k});
  Tensor x_scale = empty(DType::F32, {n});
  launch_quantize_rows(x.raw(), x.dtype(), n, k, DType::F8_E4M3, x_codes.raw_mut(),
                       static_cast<float*>(x_scale.raw_mut()), nullptr, stream_);
  const auto* token_scale = static_cast<const float*>(x_scale.raw());
  problem.operands = DType::F8_E4M3;
  problem.x = x_codes.raw();
  problem.w = weight.raw();
  problem.fast_accumulation = route.fp8_fast_accumulation;
  // cuBLASLt's FP8 kernels need K-major rows of a multiple of 16 bytes.
  if (route.fp8_cublaslt && k % 16 == 0) {
    if (route.fp8_outer_vector) {
      GemmProblem scaled = problem;
      scaled.scaling = GemmScaling::OuterVector;
      scaled.w_scale = w_scale;
      scaled.x_scale = token_scale;
      if (cublaslt_->run(scaled, stream_)) {
        ++fp8_outer_count;
        return out;
      }
    }
    GemmProblem unit = problem;
    unit.bias = nullptr;
    unit.activation = Activation::None;
    if (cublaslt_->run(unit, stream_)) {
      launch_scale_bias_activation(out.raw_mut(), token_scale, w_scale, problem.bias, n, m, options.activation, stream_);
      ++fp8_unit_count;
      return out;
    }
  }
  launch_simple_fp8_linear(x_codes.raw(), token_scale, weight.raw(), w_scale, problem.bias, out.raw_mut(), n, m, k,
                           options.activation, stream_);
  ++fp8_simple_count;
  return out;
}

}  // namespace wanrt
