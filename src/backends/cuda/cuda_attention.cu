// CudaOps::attention: softmax(scale·q·kᵀ + bias, keys < kv_len) · v for q [Lq, H, d] and
// k, v [Lk, H, d] in the engine's token-major layout (no transposes around the kernel), BF16
// output, F32 online softmax. On an sm_90 GPU, head_dim 128 without bias goes to the Hopper
// kernel (TMA + wgmma, cuda_attention_sm90.cu) unless CudaOptions::attention or
// WANRT_ATTENTION says portable. Otherwise two kernels:
//
// Flash kernel (head_dim 64 and 128, no bias, scale >= 0): bf16 tensor cores, FlashAttention-2's
// schedule on mma.sync; cuda_flash_attention.cuh holds it, its design and its measurements.
//
// Generic kernel (any head_dim ≤ 512, the bias case, negative scale): F32 math from F32 or
// BF16 inputs. A block of 128 threads owns 16 query rows of one head and streams 32-key
// tiles through shared memory (converted to F32); 8 threads share each query row's scores,
// and each thread accumulates up to 4 output columns of all 16 rows in registers. The score
// matrix is never materialised beyond one 16×32 tile. Used by umT5 (head_dim 64 with the
// relative-position bias, L ≤ 512: 64 × 512² × 64 + bias in 0.5 ms, 8.5 TFLOP/s) and the
// VAE's single-head mid-block attention (14,400² × 384 at 720p: 55 ms per frame, 5.8 TFLOP/s).
//   FLOPs: 4·H·Lq·kv_len·d; bytes: (Lq + 2·⌈Lq/16⌉·kv_len)·H·d·(2 or 4) + bias H·Lq·kv_len·4.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_flash_attention.cuh"
#include "backends/cuda/cuda_gemm_attention.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

using flash::FlashParams;
using flash::kFullWarp;
using flash::kLog2e;

// ---------------------------------------------------------------------------------------------
// Flash kernel: the tilings compiled (cuda_flash_attention.cuh)
// ---------------------------------------------------------------------------------------------

template <class C>
void launch_flash(const FlashParams& p, cudaStream_t stream) {
  const auto kernel = flash::flash_attention_kernel<C>;
  // Set per launch (cheap) rather than once: the attribute is per device.
  WANRT_CHECK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        C::kSmemBytes));
  const dim3 grid(static_cast<unsigned>((p.q_len + C::kBlockM - 1) / C::kBlockM),
                  static_cast<unsigned>(p.heads));
  kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  WANRT_CHECK_LAUNCH();
}

struct FlashVariant {
  FlashTiling tiling;
  void (*launch)(const FlashParams&, cudaStream_t);
};

template <class C>
FlashVariant make_variant() {
  return {C::tiling(), &launch_flash<C>};
}

// The compiled tilings; the first of each head dim is the one Ops::attention uses, the rest
// stay for the benchmark's comparison (and are tested). TFLOP/s at 40 × 75,600² × 128 on an
// H100 in the run quoted in cuda_flash_attention.cuh, registers and shared memory per block:
//   m128 w4, 32-row warp tiles, Q from smem, 2 stages   382  ~255 regs, 96 KB: 2 blocks/SM
//   m128 w8, 16-row warp tiles, Q in regs, 3 stages     302  190 regs, 128 KB: 1 block/SM
//   m128 w8, 16-row, Q in regs, block_n 128, 2 stages   307  233 regs, 160 KB: 1 block/SM
//   m64 w4, 16-row, Q in regs, 2 stages                 316  190 regs, 80 KB: 2 blocks/SM
//   m256 w8, 32-row, Q from smem, 2 stages              379  255 regs, 128 KB: 1 block/SM
// The 16-row tilings lose to the shared-memory reads of K/V fragments (see the .cuh); m256
// matches m128 at 720p but loses at 5 heads and on the 512-key cross-attention.
// head_dim 64: m128 w4 (32-row warp tiles, Q in registers: 32 regs), 3 stages, 343 TFLOP/s
// at 80 × 32,760² × 64; m128 w8 block_n 128: 262.
// Template arguments: head_dim, warps, m16 tiles per warp, block_n, stages, Q in registers,
// minimum blocks per SM (the register budget).
const std::vector<FlashVariant>& flash_variants(int64_t head_dim) {
  static const std::vector<FlashVariant> d128 = {
      make_variant<flash::FlashConfig<128, 4, 2, 64, 2, false, 2>>(),
      make_variant<flash::FlashConfig<128, 8, 1, 64, 3, true, 1>>(),
      make_variant<flash::FlashConfig<128, 8, 1, 128, 2, true, 1>>(),
      make_variant<flash::FlashConfig<128, 4, 1, 64, 2, true, 2>>(),
      make_variant<flash::FlashConfig<128, 8, 2, 64, 2, false, 1>>(),
  };
  static const std::vector<FlashVariant> d64 = {
      make_variant<flash::FlashConfig<64, 4, 2, 64, 3, true, 2>>(),
      make_variant<flash::FlashConfig<64, 8, 1, 128, 2, true, 1>>(),
  };
  static const std::vector<FlashVariant> none;
  return head_dim == 128 ? d128 : head_dim == 64 ? d64 : none;
}

// ---------------------------------------------------------------------------------------------
// Generic kernel
// ---------------------------------------------------------------------------------------------

constexpr int kGenericRows = 16;      // query rows per block
constexpr int kGenericKeys = 32;      // keys per tile
constexpr int kGenericThreads = 128;  // 8 threads per query row in the score phase
constexpr int kGenericColumnSlots = 4;
constexpr int kGenericMaxHeadDim = kGenericThreads * kGenericColumnSlots;  // 512
static_assert(kGenericRows * 8 == kGenericThreads && kGenericKeys == 4 * 8, "score-phase mapping");

struct GenericParams {
  const void* q;
  const void* k;
  const void* v;
  const float* bias;  // [heads, q_len, keys_total] or null
  __nv_bfloat16* out;
  int64_t q_token_stride, kv_token_stride;
  int q_len, kv_len, keys_total, heads, head_dim;
  float scale;
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// Shared memory: P [keys][rows] (float4 reads in the PV phase), alpha/rowsum per row, then Q,
// K with odd row strides (lanes reading different rows hit different banks), V.
size_t generic_smem_floats(int head_dim) {
  const int odd = head_dim | 1;
  return size_t{kGenericKeys} * kGenericRows + 2 * kGenericRows +
         size_t(kGenericRows + kGenericKeys) * odd + size_t{kGenericKeys} * head_dim;
}

template <typename T>
__global__ void __launch_bounds__(kGenericThreads) generic_attention_kernel(const GenericParams p) {
  extern __shared__ float gsmem[];
  const int d = p.head_dim, stride = d | 1;
  float* p_tile = gsmem;                                  // [kGenericKeys][kGenericRows]
  float* alpha_s = p_tile + kGenericKeys * kGenericRows;  // [kGenericRows]
  float* sum_s = alpha_s + kGenericRows;                  // [kGenericRows]
  float* q_s = sum_s + kGenericRows;                      // [kGenericRows][stride]
  float* k_s = q_s + kGenericRows * stride;               // [kGenericKeys][stride]
  float* v_s = k_s + kGenericKeys * stride;               // [kGenericKeys][d]

  const int tid = threadIdx.x, head = blockIdx.y, row0 = blockIdx.x * kGenericRows;
  const T* q = static_cast<const T*>(p.q) + int64_t{head} * d;
  const T* k = static_cast<const T*>(p.k) + int64_t{head} * d;
  const T* v = static_cast<const T*>(p.v) + int64_t{head} * d;
  for (int i = tid; i < kGenericRows * d; i += kGenericThreads) {
    const int r = i / d, c = i % d;
    q_s[r * stride + c] = row0 + r < p.q_len ? to_float(q[int64_t{row0 + r} * p.q_token_stride + c]) : 0.0f;
  }

  // Score phase: thread (my_row, key_lane) scores keys key_lane + 8i of its row.
  const int my_row = tid >> 3, key_lane = tid & 7;
  const int query = row0 + my_row;
  const float* bias_row = p.bias && query < p.q_len
                              ? p.bias + (int64_t{head} * p.q_len + query) * p.keys_total
                              : nullptr;
  float running_max = -INFINITY, running_sum = 0.0f;  // replicated over the row's 8 lanes
  float acc[kGenericColumnSlots][kGenericRows] = {};  // columns tid + 128·slot, every row

  const int tiles = (p.kv_len + kGenericKeys - 1) / kGenericKeys;
  for (int tile = 0; tile < tiles; ++tile) {
    const int key0 = tile * kGenericKeys;
    __syncthreads();  // the previous tile's PV phase is done with K, V and P
    for (int i = tid; i < kGenericKeys * d; i += kGenericThreads) {
      const int r = i / d, c = i % d;
      const bool valid = key0 + r < p.kv_len;  // masked keys are never read
      const int64_t at = int64_t{key0 + r} * p.kv_token_stride + c;
      k_s[r * stride + c] = valid ? to_float(k[at]) : 0.0f;
      v_s[r * d + c] = valid ? to_float(v[at]) : 0.0f;
    }
    __syncthreads();

    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < d; ++c) {
      const float qc = q_s[my_row * stride + c];
#pragma unroll
      for (int i = 0; i < 4; ++i) x[i] = fmaf(qc, k_s[(key_lane + 8 * i) * stride + c], x[i]);
    }
    float tile_max = -INFINITY;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int key = key0 + key_lane + 8 * i;
      x[i] = key < p.kv_len ? (x[i] * p.scale + (bias_row ? bias_row[key] : 0.0f)) * kLog2e : -INFINITY;
      tile_max = fmaxf(tile_max, x[i]);
    }
#pragma unroll
    for (int width = 1; width < 8; width *= 2)
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullWarp, tile_max, width));
    const float new_max = fmaxf(running_max, tile_max);
    const float offset = new_max == -INFINITY ? 0.0f : new_max;
    const float alpha = exp2f(running_max - offset);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float pi = exp2f(x[i] - offset);
      p_tile[(key_lane + 8 * i) * kGenericRows + my_row] = pi;
      sum += pi;
    }
#pragma unroll
    for (int width = 1; width < 8; width *= 2) sum += __shfl_xor_sync(kFullWarp, sum, width);
    running_max = new_max;
    running_sum = running_sum * alpha + sum;
    if (key_lane == 0) alpha_s[my_row] = alpha;
    __syncthreads();

    // PV phase: O[r][c] = alpha[r]·O[r][c] + Σ_j P[j][r]·V[j][c].
    const int keys_here = min(kGenericKeys, p.kv_len - key0);
#pragma unroll
    for (int slot = 0; slot < kGenericColumnSlots; ++slot) {
      const int c = tid + slot * kGenericThreads;
      if (c >= d) break;
#pragma unroll
      for (int r = 0; r < kGenericRows; ++r) acc[slot][r] *= alpha_s[r];
      for (int j = 0; j < keys_here; ++j) {
        const float vj = v_s[j * d + c];
        const float4* pj = reinterpret_cast<const float4*>(p_tile + j * kGenericRows);
#pragma unroll
        for (int r4 = 0; r4 < kGenericRows / 4; ++r4) {
          const float4 pr = pj[r4];
          acc[slot][4 * r4 + 0] = fmaf(pr.x, vj, acc[slot][4 * r4 + 0]);
          acc[slot][4 * r4 + 1] = fmaf(pr.y, vj, acc[slot][4 * r4 + 1]);
          acc[slot][4 * r4 + 2] = fmaf(pr.z, vj, acc[slot][4 * r4 + 2]);
          acc[slot][4 * r4 + 3] = fmaf(pr.w, vj, acc[slot][4 * r4 + 3]);
        }
      }
    }
  }
  if (key_lane == 0) sum_s[my_row] = running_sum;
  __syncthreads();
  __nv_bfloat16* out = p.out + int64_t{head} * d;
#pragma unroll
  for (int slot = 0; slot < kGenericColumnSlots; ++slot) {
    const int c = tid + slot * kGenericThreads;
    if (c >= d) break;
#pragma unroll
    for (int r = 0; r < kGenericRows; ++r)
      if (row0 + r < p.q_len)
        out[int64_t{row0 + r} * p.q_token_stride + c] = __float2bfloat16_rn(acc[slot][r] / sum_s[r]);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

struct AttentionShape {
  int64_t q_len, keys_total, heads, head_dim, kv_len;
};

AttentionShape check_attention_args(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options) {
  expect_device_float(q, "attention q");
  expect_device_float(k, "attention k");
  expect_device_float(v, "attention v");
  WANRT_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3 && k.shape() == v.shape() &&
                  q.size(1) == k.size(1) && q.size(2) == k.size(2),
              "cuda backend: attention needs q [Lq, H, d] and k, v [Lk, H, d]; got ", q.describe(),
              ", ", k.describe(), ", ", v.describe());
  AttentionShape shape{q.size(0), k.size(0), q.size(1), q.size(2), 0};
  shape.kv_len = options.kv_len < 0 ? shape.keys_total : options.kv_len;
  WANRT_CHECK(shape.kv_len >= 1 && shape.kv_len <= shape.keys_total, "cuda backend: attention kv_len ",
              options.kv_len, " out of range for ", shape.keys_total, " keys");
  WANRT_CHECK(shape.heads >= 1 && shape.heads <= 65535 && shape.head_dim >= 1,
              "cuda backend: attention needs 1..65535 heads and head_dim >= 1, got ", q.describe());
  WANRT_CHECK(shape.q_len < (int64_t{1} << 31) && shape.keys_total < (int64_t{1} << 31),
              "cuda backend: attention sequence lengths must be below 2^31, got ", q.describe(),
              " and ", k.describe());
  if (options.bias) {
    expect_device_float(*options.bias, "attention bias");
    WANRT_CHECK(options.bias->shape() == Shape({shape.heads, shape.q_len, shape.keys_total}),
                "cuda backend: attention bias ", options.bias->describe(), " must be [", shape.heads,
                ", ", shape.q_len, ", ", shape.keys_total, "]");
  }
  return shape;
}

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
// A bf16 input is read in place; any other dtype is converted into a fresh (aligned) buffer.
bool flash_can_read(const Tensor& t) { return t.dtype() != DType::BF16 || aligned_16(t.raw()); }

Tensor run_flash(CudaOps& ops, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                 const AttentionShape& shape, float scale, const FlashVariant& variant) {
  const Tensor q = ops.as_dtype(q_in, DType::BF16);
  const Tensor k = ops.as_dtype(k_in, DType::BF16);
  const Tensor v = ops.as_dtype(v_in, DType::BF16);
  Tensor out = ops.empty(DType::BF16, q.shape());
  if (shape.q_len == 0) return out;
  WANRT_CHECK(aligned_16(q.raw()) && aligned_16(k.raw()) && aligned_16(v.raw()) && aligned_16(out.raw()),
              "cuda backend: flash attention needs 16-byte aligned q/k/v");
  FlashParams p{};
  p.q = static_cast<const __nv_bfloat16*>(q.raw());
  p.k = static_cast<const __nv_bfloat16*>(k.raw());
  p.v = static_cast<const __nv_bfloat16*>(v.raw());
  p.out = static_cast<__nv_bfloat16*>(out.raw_mut());
  p.q_token_stride = shape.heads * shape.head_dim;
  p.kv_token_stride = shape.heads * shape.head_dim;
  p.q_len = static_cast<int>(shape.q_len);
  p.kv_len = static_cast<int>(shape.kv_len);
  p.heads = static_cast<int>(shape.heads);
  p.scale_log2 = scale * kLog2e;
  variant.launch(p, ops.stream());
  return out;
}

template <typename T>
void launch_generic(const GenericParams& p, cudaStream_t stream) {
  const auto kernel = generic_attention_kernel<T>;
  const size_t smem = generic_smem_floats(p.head_dim) * sizeof(float);
  WANRT_CHECK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>((p.q_len + kGenericRows - 1) / kGenericRows),
                  static_cast<unsigned>(p.heads));
  kernel<<<grid, kGenericThreads, smem, stream>>>(p);
  WANRT_CHECK_LAUNCH();
}

Tensor run_generic(CudaOps& ops, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                   const AttentionShape& shape, const AttentionOptions& options) {
  WANRT_CHECK(shape.head_dim <= kGenericMaxHeadDim, "cuda backend: attention head_dim ",
              shape.head_dim, " is above the supported ", kGenericMaxHeadDim);
  // One element type for all three; mixed inputs meet in F32.
  const bool same = q_in.dtype() == k_in.dtype() && q_in.dtype() == v_in.dtype();
  const DType dtype = same ? q_in.dtype() : DType::F32;
  const Tensor q = ops.as_dtype(q_in, dtype), k = ops.as_dtype(k_in, dtype), v = ops.as_dtype(v_in, dtype);
  const Tensor bias = options.bias ? ops.as_dtype(*options.bias, DType::F32) : Tensor();
  Tensor out = ops.empty(DType::BF16, q.shape());
  if (shape.q_len == 0) return out;
  GenericParams p{};
  p.q = q.raw();
  p.k = k.raw();
  p.v = v.raw();
  p.bias = options.bias ? static_cast<const float*>(bias.raw()) : nullptr;
  p.out = static_cast<__nv_bfloat16*>(out.raw_mut());
  p.q_token_stride = shape.heads * shape.head_dim;
  p.kv_token_stride = shape.heads * shape.head_dim;
  p.q_len = static_cast<int>(shape.q_len);
  p.kv_len = static_cast<int>(shape.kv_len);
  p.keys_total = static_cast<int>(shape.keys_total);
  p.heads = static_cast<int>(shape.heads);
  p.head_dim = static_cast<int>(shape.head_dim);
  p.scale = options.scale;
  if (dtype == DType::BF16)
    launch_generic<__nv_bfloat16>(p, ops.stream());
  else
    launch_generic<float>(p, ops.stream());
  return out;
}

}  // namespace

std::string FlashTiling::name() const {
  return str_cat("d", head_dim, " m", block_m, " n", block_n, " w", warps, " s", stages,
                 q_in_registers ? " q-reg" : " q-smem");
}

std::vector<FlashTiling> flash_attention_tilings(int64_t head_dim) {
  std::vector<FlashTiling> tilings;
  for (const FlashVariant& v : flash_variants(head_dim)) tilings.push_back(v.tiling);
  return tilings;
}

Tensor flash_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionOptions& options, const FlashTiling& tiling) {
  const AttentionShape shape = check_attention_args(q, k, v, options);
  WANRT_CHECK(!options.bias, "cuda backend: the flash attention kernel takes no bias");
  WANRT_CHECK(options.scale >= 0.0f, "cuda backend: the flash attention kernel needs scale >= 0, got ",
              options.scale);
  for (const FlashVariant& variant : flash_variants(shape.head_dim))
    if (variant.tiling == tiling) return run_flash(ops, q, k, v, shape, options.scale, variant);
  fail("cuda backend: no flash attention tiling ", tiling.name(), " for head_dim ", shape.head_dim);
}

Tensor generic_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionOptions& options) {
  return run_generic(ops, q, k, v, check_attention_args(q, k, v, options), options);
}

namespace {

// CudaOptions::attention, with WANRT_ATTENTION=auto|portable|sm90 overriding Auto (read once).
AttentionKernel attention_choice(AttentionKernel configured) {
  static const AttentionKernel from_environment = [] {
    const char* value = std::getenv("WANRT_ATTENTION");
    const std::string text = value ? value : "";
    if (text.empty() || text == "auto") return AttentionKernel::Auto;
    if (text == "portable") return AttentionKernel::Portable;
    if (text == "sm90") return AttentionKernel::Sm90;
    fail("WANRT_ATTENTION must be auto, portable or sm90, got '", text, "'");
  }();
  return configured == AttentionKernel::Auto ? from_environment : configured;
}

// Whether this device runs the Hopper kernel, asked once per device.
bool device_has_sm90(int device) {
  static std::mutex mutex;
  static std::map<int, bool> known;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto found = known.find(device);
  if (found != known.end()) return found->second;
  return known[device] = sm90_attention_available(device);
}

}  // namespace

Tensor CudaOps::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const AttentionOptions& options) {
  const AttentionShape shape = check_attention_args(q, k, v, options);
  const AttentionKernel choice = attention_choice(options_.attention);
  WANRT_CHECK(choice != AttentionKernel::Int8,
              "cuda backend: the 8-bit attention kernel (--attention int8) is not built yet; use "
              "--attention auto");
  if (choice != AttentionKernel::Portable && sm90_attention_applies(q, k, v, options)) {
    const bool hopper = device_has_sm90(device_);
    WANRT_CHECK(hopper || choice != AttentionKernel::Sm90,
                "cuda backend: the sm90 attention kernel was asked for, but this GPU is not sm_90");
    if (hopper) return sm90_attention(*this, q, k, v, options, sm90_attention_tilings().front());
  }
  const std::vector<FlashVariant>& variants = flash_variants(shape.head_dim);
  // The flash kernel folds the scale into exp2 after taking the row max of the raw scores,
  // which needs scale >= 0; biased and other-head-dim attention takes the generic kernel.
  const bool flash = !variants.empty() && !options.bias && options.scale >= 0.0f &&
                     flash_can_read(q) && flash_can_read(k) && flash_can_read(v);
  if (flash) return run_flash(*this, q, k, v, shape, options.scale, variants.front());
  // Long sequences of other head dims (the VAE's one head of 384): two GEMMs and a softmax.
  if (gemm_attention_applies(q, k, options)) return gemm_attention(*this, q, k, v, options);
  return run_generic(*this, q, k, v, shape, options);
}

}  // namespace wanrt
