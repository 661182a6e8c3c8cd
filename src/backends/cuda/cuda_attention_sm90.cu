// Host side of the Hopper attention kernel (cuda_attention_sm90.cuh holds the kernel and its
// design): tensor maps, the compiled tilings, the launch. CudaOps::attention
// (cuda_attention.cu) sends bf16 head_dim-128 attention without bias here on an sm_90 GPU.
//   FLOPs: 4·H·Lq·kv_len·128; bytes: (2·Lq + 2·kv_len)·H·128·2 from HBM (see the .cuh).
// The tilings (all 2 K/V stages):
//   c1 n128           one consumer warpgroup (64 query rows), S then softmax then P·V in
//                     turn: the plain schedule, kept as the reference point of the others
//   c2 n128 ov pp     two consumers (128 rows), setmaxnreg 24/240, S_j overlapped with
//                     P_{j−1}·V_{j−1}, ping-pong between the consumers (FlashAttention-3's)
//   c2 n176 ov pp     the same with 176-key tiles (FlashAttention-3's choice for d = 128)
//   c2 n128 ov        overlap without ping-pong, and c2 n128 without either: to measure
//                     what each step of the schedule buys
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
// overlapped c2 tilings are a tie; the default stays FlashAttention-3's schedule (ping-pong).
// Also measured in that session and dropped (no gain): two Q buffers, so that the next
// tile's Q loads during this one (635.0 at 720p, 455.6 cross), and a 3-stage K/V ring (644.3,
// 448.5). The 720p DiT forward (`bench_dit --size 720p --warmup 1 --repeats 1 --no-profile`)
// takes 10.53 s with this kernel (15.49 s with the portable one in BENCHMARKS.md's session).
// Nsight Compute on c2 n128 ov pp at Ulysses 8 (clocks locked at 1.49 GHz): SM throughput
// 78.6%, L2 51.5% (hit rate 98.6%), DRAM 1.6%, issue slots 39% busy: not bound by L2 or DRAM.
// The cross-attention shape has only 4 key tiles per query tile, and each tile's first S and
// last P·V run without the overlap (likely most of its gap to cuDNN; not measured apart).
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
      make_variant<2, 128, true, true>(),
      make_variant<2, 176, true, true>(),
      make_variant<2, 128, true, false>(),
      make_variant<2, 128, false, false>(),
      make_variant<1, 128, false, false>(),
      make_variant<2, 128, true, true, kQInRegisters>(),
      make_variant<2, 128, true, true, kStoreTma>(),
      make_variant<2, 128, true, true, kStoreTma | kQInRegisters>(),
      make_variant<2, 128, true, true, kFastReduce | kStoreTma | kQInRegisters>(),
      make_variant<2, 128, true, false, kStoreTma | kQInRegisters>(),
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

Sm90Tiling sm90_default_tiling(int64_t kv_len) {
  // Few key tiles per query tile (the DiT's cross-attention to 512 text keys): the epilogue
  // and the Q hand-over weigh, and the TMA-store epilogue with Q in registers wins there.
  constexpr int64_t kShortKeys = 1024;
  const std::vector<Sm90Tiling> tilings = sm90_attention_tilings();
  const Sm90Tiling short_keys{2, 128, true, true, sm90::kStoreTma | sm90::kQInRegisters};
  return kv_len <= kShortKeys ? short_keys : tilings.front();
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
