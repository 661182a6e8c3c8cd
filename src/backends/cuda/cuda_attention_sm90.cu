// Host side of the Hopper attention kernel (cuda_attention_sm90.cuh holds the kernel and its
// design): tensor maps, the compiled tilings, the launch. CudaOps::attention
// (cuda_attention.cu) sends bf16 head_dim-128 attention without bias here on an sm_90 GPU.
//   FLOPs: 4·H·Lq·kv_len·128; bytes: (2·Lq + 2·kv_len)·H·128·2 from HBM (see the .cuh).
// The tilings (all 2 K/V stages; the features are described in the .cuh):
//   c2 n128 ov tmastore qreg  the default since 2026-11-25: two consumers (128 rows),
//                     setmaxnreg 24/240, S_j overlapped with P_{j−1}·V_{j−1}, no ping-pong,
//                     Q in registers (RS wgmma for Q·Kᵀ), O stored through shared memory by TMA
//   c1 n128           one consumer warpgroup (64 query rows), S then softmax then P·V in
//                     turn: the plain schedule, kept as the reference point of the others
//   c2 n128 ov pp     the same as the default with ping-pong between the consumers and
//                     neither feature (FlashAttention-3's schedule; the default until then)
//   c2 n176 ov pp     the same with 176-key tiles (FlashAttention-3's choice for d = 128)
//   c2 n128 ov        overlap without ping-pong, and c2 n128 without either: to measure
//                     what each step of the schedule buys
//   c2 n128 ov pp + qreg, + tmastore, + both, + ilp tmastore qreg: each feature alone
// Measured on an H100 80GB HBM3 SXM (700 W), 2026-11-24, TFLOP/s = 4·H·Lq·Lk·d / time, bf16,
// no mask: `bench_attention --shape S --rounds 3 --seconds 0.4` (2 rounds for the last three
// shapes), PyTorch 2.11 SDPA (`bench/attention_reference.py --rounds 2`) in the same session:
//   shape (H × Lq × Lk × d)     c2 n128 ov pp  c2 n176 ov pp  c2 n128 ov  c2 n128  c1 n128  portable  cuDNN  FA2
//   40 × 75,600² × 128 (720p)        653.4          643.1        668.8     555.9    406.7     384.5  585.7  354.8
//    5 × 75,600² × 128 (Ulysses 8)   647.8          657.0        654.3     570.5    412.1     371.5  578.0  354.0
//   40 × 32,760² × 128 (480p)        654.9          651.3        647.7     573.7    405.5     392.0  554.2  361.2
//   40 × 75,600 × 512 × 128 (cross)  459.6          432.9        462.9     425.1    334.4     329.1  556.2  325.0
// A session's numbers drift by ±2–3% with the GPU's clocks at its power limit (an earlier
// single-round run had c2 n128 ov pp 655.3 and c2 n128 ov 633.1 at 720p), so the three
// overlapped c2 tilings are a tie.
// Also measured in that session and dropped (no gain): two Q buffers, so that the next
// tile's Q loads during this one (635.0 at 720p, 455.6 cross), and a 3-stage K/V ring (644.3,
// 448.5). The 720p DiT forward (`bench_dit --size 720p --warmup 1 --repeats 1 --no-profile`)
// takes 10.53 s with c2 n128 ov pp (15.49 s with the portable one in BENCHMARKS.md's session).
// Nsight Compute on c2 n128 ov pp at Ulysses 8 (clocks locked at 1.49 GHz): SM throughput
// 78.6%, L2 51.5% (hit rate 98.6%), DRAM 1.6%, issue slots 39% busy: not bound by L2 or DRAM.
//
// 2026-11-25, two sessions on an H100 80GB HBM3 (700 W), each running `bench_attention
// --shape S --only <tilings> --rounds 2 --seconds 0.3` (session 1) or `0.4` (session 2) for
// the four shapes, then `bench/attention_reference.py --shape S --rounds 2` (same seconds):
//   session 2 (TFLOP/s)             720p   480p  Ulysses 8  cross
//   c2 n128 ov tmastore qreg       673.4  688.1    671.4    552.2   <- the default
//   c2 n128 ov pp                  660.4  663.5    658.6    468.2
//   c2 n128 ov pp qreg             664.5  670.5    666.1    453.3
//   c2 n128 ov pp tmastore         641.0  630.8    645.1    552.0
//   c2 n128 ov pp tmastore qreg    626.1  660.5    660.3    520.3
//   c2 n128 ov pp ilp tmastore qreg 652.7 649.5    653.2    553.8
//   c2 n128 ov                     649.6  661.4    652.0    434.5
//   c2 n176 ov pp                  639.8  663.6    636.7    448.7
//   SDPA cuDNN                     587.8  586.4    600.1    586.5
//   SDPA flash (FA2)               357.4  371.4    363.5    334.0
// The default gains 2–4% on self-attention over c2 n128 ov pp and 18% on cross-attention
// (the TMA-store epilogue: a query tile there sees only 4 key tiles, so the scattered 4-byte
// O stores weighed); against cuDNN +14.6% (720p), +17.3% (480p), +11.9% (Ulysses 8), −5.8%
// (cross). Issue 5's target (≥ 680 TFLOP/s and ≥ 15% over cuDNN at 720p) is not reached: 673.
// Single features with ping-pong are within the ±3% drift (session 1 had c2 n128 ov pp
// lazy tmastore qreg at 645 at 720p); without ping-pong, tmastore + qreg won on all four
// shapes in session 2 and was the best non-ping-pong tiling of session 1 as well.
// Tried in session 1 and dropped (all c2 n128 ov pp + ilp, at 720p / 480p / Ulysses 8 /
// cross; plain c2 n128 ov pp 654.6 / 659.6 / 650.4 / 461.1; cuDNN 587.0 / 572.2 / 615.1 /
// 566.5):
//   ilp (4 independent max/sum chains per row)       644.1 / 629.5 / 601.3 / 448.9
//   + lazy rescale (move the max only past 2^8)       628.4 / 636.9 / 629.0 / 435.1, and it
//     raised the error on sharp rows from 1.72e-3 to 2.11e-3 (the row's max element is no
//     longer exactly 1 in P)
//   + polynomial exp2 on the FMA pipe for 1 chunk in 8 / in 4 (degree-3 minimax, relative
//     error 7.5e-5)                                  626.3 / 626.4 / 599.9 / 449.3 and
//                                                    591.1 / 615.7 / 603.9 / 445.9
//   The MUFU unit is not what limits this kernel: moving exponentials to the FMA pipe only
//   adds issue slots (9 instructions per exp2 instead of 1).
// Not tried: TMA multicast of K/V to a 2-CTA cluster (the likely next step for the cross
// shape, which reads each head's 256 KB of K/V from L2 once per 128-query tile), a variant
// keeping K/V of a 512-key head resident (256 KB of bf16 K/V does not fit in 227 KB).

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_attention_sm90.cuh"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

using sm90::Sm90Config;
using sm90::Sm90Params;

// cuTensorMapEncodeTiled through the runtime's driver entry point, so that wanrt links only
// the runtime (libcudart), not libcuda.
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                   const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                   const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiledFn encode_tiled() {
  static const EncodeTiledFn fn = [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    WANRT_CHECK_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry, 12000,
                                                      cudaEnableDefault, &found));
    WANRT_CHECK(found == cudaDriverEntryPointSuccess && entry != nullptr,
                "cuda backend: the driver has no cuTensorMapEncodeTiled (needs CUDA 12 or newer)");
    return reinterpret_cast<EncodeTiledFn>(entry);
  }();
  return fn;
}

// A [rows, heads, 128] bf16 tensor as a 3-D tensor map (columns, heads, rows) read in boxes
// of 64 columns × 1 head × box_rows with the 128-byte swizzle; rows ≥ `rows` read as zeros.
CUtensorMap make_tensor_map(const void* base, int64_t rows, int64_t heads, int box_rows, const char* what) {
  CUtensorMap map{};
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(sm90::kHeadDim), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(sm90::kHeadDim) * 2,
                                 static_cast<cuuint64_t>(heads * sm90::kHeadDim) * 2};  // bytes
  const cuuint32_t box[3] = {64, 1, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult status = encode_tiled()(
      &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides, box,
      element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  WANRT_CHECK(status == CUDA_SUCCESS, "cuda backend: cuTensorMapEncodeTiled failed (", static_cast<int>(status),
              ") for attention ", what, " [", rows, ", ", heads, ", 128]");
  return map;
}

template <class C>
void launch(const Sm90Params& p, int multiprocessors, cudaStream_t stream) {
  const auto kernel = sm90::sm90_attention_kernel<C>;
  WANRT_CHECK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(C::kSmemBytes)));
  const int grid = std::min(p.tiles, multiprocessors);  // persistent: one CTA per SM
  kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  WANRT_CHECK_LAUNCH();
}

struct Sm90Variant {
  Sm90Tiling tiling;
  int block_m;
  void (*launch)(const Sm90Params&, int, cudaStream_t);
};

template <int kConsumers, int kBlockN, bool kOverlap, bool kPingPong, int kFeatures = 0>
Sm90Variant make_variant() {
  using C = Sm90Config<kConsumers, kBlockN, kOverlap, kPingPong, kFeatures>;
  return {{kConsumers, kBlockN, kOverlap, kPingPong, kFeatures}, C::kBlockM, &launch<C>};
}

using sm90::kFastReduce;
using sm90::kQInRegisters;
using sm90::kStoreTma;

// The first is the one Ops::attention uses.
const std::vector<Sm90Variant>& variants() {
  static const std::vector<Sm90Variant> all = {
      make_variant<2, 128, true, false, kStoreTma | kQInRegisters>(),
      make_variant<2, 128, true, true>(),
      make_variant<2, 176, true, true>(),
      make_variant<2, 128, true, false>(),
      make_variant<2, 128, false, false>(),
      make_variant<1, 128, false, false>(),
      make_variant<2, 128, true, true, kQInRegisters>(),
      make_variant<2, 128, true, true, kStoreTma>(),
      make_variant<2, 128, true, true, kStoreTma | kQInRegisters>(),
      make_variant<2, 128, true, true, kFastReduce | kStoreTma | kQInRegisters>(),
  };
  return all;
}

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

std::string Sm90Tiling::name() const {
  return str_cat("sm90 c", consumers, " n", block_n, overlap ? " ov" : "", ping_pong ? " pp" : "",
                 features & sm90::kFastReduce ? " ilp" : "", features & sm90::kStoreTma ? " tmastore" : "",
                 features & sm90::kQInRegisters ? " qreg" : "");
}

std::vector<Sm90Tiling> sm90_attention_tilings() {
  std::vector<Sm90Tiling> tilings;
  for (const Sm90Variant& v : variants()) tilings.push_back(v.tiling);
  return tilings;
}

bool sm90_attention_available(int device) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;  // the kernels are compiled for sm_90a only
}

bool sm90_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  auto readable = [](const Tensor& t) { return t.dtype() != DType::BF16 || aligned_16(t.raw()); };
  return q.dim() == 3 && q.size(2) == sm90::kHeadDim && !options.bias && options.scale >= 0.0f &&
         readable(q) && readable(k) && readable(v);
}

Tensor sm90_attention(CudaOps& ops, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                      const AttentionOptions& options, const Sm90Tiling& tiling) {
  expect_device_float(q_in, "attention q");
  expect_device_float(k_in, "attention k");
  expect_device_float(v_in, "attention v");
  WANRT_CHECK(q_in.dim() == 3 && k_in.dim() == 3 && v_in.dim() == 3 && k_in.shape() == v_in.shape() &&
                  q_in.size(1) == k_in.size(1) && q_in.size(2) == k_in.size(2),
              "cuda backend: attention needs q [Lq, H, d] and k, v [Lk, H, d]; got ", q_in.describe(),
              ", ", k_in.describe(), ", ", v_in.describe());
  WANRT_CHECK(q_in.size(2) == sm90::kHeadDim, "cuda backend: the sm90 attention kernel needs head_dim 128, got ",
              q_in.describe());
  WANRT_CHECK(!options.bias, "cuda backend: the sm90 attention kernel takes no bias");
  WANRT_CHECK(options.scale >= 0.0f, "cuda backend: the sm90 attention kernel needs scale >= 0, got ",
              options.scale);
  WANRT_CHECK(sm90_attention_available(ops.device()),
              "cuda backend: the sm90 attention kernel needs an sm_90 GPU (H100/H200)");
  const int64_t q_len = q_in.size(0), keys = k_in.size(0), heads = q_in.size(1);
  const int64_t kv_len = options.kv_len < 0 ? keys : options.kv_len;
  WANRT_CHECK(kv_len >= 1 && kv_len <= keys, "cuda backend: attention kv_len ", options.kv_len,
              " out of range for ", keys, " keys");
  WANRT_CHECK(heads >= 1 && q_len < (int64_t{1} << 31) && keys < (int64_t{1} << 31),
              "cuda backend: attention sizes out of range: ", q_in.describe(), ", ", k_in.describe());
  const Sm90Variant* variant = nullptr;
  for (const Sm90Variant& v : variants())
    if (v.tiling == tiling) variant = &v;
  WANRT_CHECK(variant != nullptr, "cuda backend: no sm90 attention tiling ", tiling.name());

  const Tensor q = ops.as_dtype(q_in, DType::BF16);
  const Tensor k = ops.as_dtype(k_in, DType::BF16);
  const Tensor v = ops.as_dtype(v_in, DType::BF16);
  Tensor out = ops.empty(DType::BF16, q.shape());
  if (q_len == 0) return out;
  WANRT_CHECK(aligned_16(q.raw()) && aligned_16(k.raw()) && aligned_16(v.raw()) && aligned_16(out.raw()),
              "cuda backend: the sm90 attention kernel needs 16-byte aligned q/k/v (TMA)");
  const int64_t m_blocks = (q_len + variant->block_m - 1) / variant->block_m;
  WANRT_CHECK(m_blocks * heads < (int64_t{1} << 31), "cuda backend: attention has too many tiles: ",
              q.describe());

  Sm90Params p{};
  p.q_map = make_tensor_map(q.raw(), q_len, heads, 64, "q");
  p.k_map = make_tensor_map(k.raw(), kv_len, heads, tiling.block_n, "k");
  p.v_map = make_tensor_map(v.raw(), kv_len, heads, tiling.block_n, "v");
  p.o_map = make_tensor_map(out.raw(), q_len, heads, 64, "out");
  p.out = static_cast<__nv_bfloat16*>(out.raw_mut());
  p.out_token_stride = heads * sm90::kHeadDim;
  p.q_len = static_cast<int>(q_len);
  p.kv_len = static_cast<int>(kv_len);
  p.heads = static_cast<int>(heads);
  p.m_blocks = static_cast<int>(m_blocks);
  p.tiles = static_cast<int>(m_blocks * heads);
  p.scale_log2 = options.scale * sm90::kLog2e;
  int multiprocessors = 0;
  WANRT_CHECK_CUDA(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, ops.device()));
  variant->launch(p, multiprocessors, ops.stream());
  return out;
}

}  // namespace wanrt
