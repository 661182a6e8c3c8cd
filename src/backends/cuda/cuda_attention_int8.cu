// The 8-bit Hopper (sm_90a) attention kernel: softmax(scale·q·kᵀ, keys < kv_len)·v for bf16
// q [Lq, H, 128], k/v [Lk, H, 128] in the engine's token-major layout, bf16 output, with the
// two GEMMs on the 8-bit tensor cores (twice the bf16 rate). Issue 5's accuracy recipe is
// SageAttention's (plain FP8 attention with per-tensor scales is known to ruin video DiT
// output):
//   1. K minus its per-channel mean over the valid keys of each head. softmax(q·(k − m)ᵀ) =
//      softmax(q·kᵀ) row by row (q·m is one constant per query row), and DiT keys carry a
//      large shared offset per channel that would otherwise eat the int8 range.
//   2. Q and K to INT8 with fine scales: Q one scale per (token, head) row (the scale ·
//      log2(e) of the softmax folded in), K one per 128-key tile and head (the tile of the
//      main kernel, so a tile's scores dequantize with one scalar). S = Q·Kᵀ on wgmma
//      m64n128k32 s8·s8 → s32: exact integer dot products, dequantized in F32.
//   3. V to FP8 E4M3 per channel (absmax/448), written transposed (keys contiguous), the
//      K-major B operand FP8 wgmma needs (it has no transpose for 8-bit types).
//   4. P = exp2(...) scaled to ≤ 448 (the top of E4M3, so that small probabilities keep their
//      bits), FP8 in registers, O += P·V on wgmma m64n128k32 e4m3 with F32 row sums of the
//      unrounded P. Hopper's FP8 wgmma accumulates with fewer bits than F32 (SageAttention2
//      measured ~22-bit accumulators), so P·V of every kFlush key tiles goes to a fresh wgmma
//      accumulator that is then added into F32 registers (two-level accumulation; without
//      it the error on real inputs is 50× larger, see below).
//   5. O·v_scale[c] / rowsum → bf16.
// The pre-pass (1–3, four small kernels here) is O(L·d); the main kernel is the bf16 Hopper
// kernel's design (cuda_attention_sm90.cuh): TMA + mbarrier ring, producer warpgroup + two
// consumer warpgroups (setmaxnreg 24/240), S_j overlapped with P_{j−1}·V_{j−1}, ping-pong
// between the consumers, persistent grid in (head, query tile) order. It reuses that
// header's PTX helpers (mbarriers, TMA, wgmma fences, descriptors) unchanged.
//
// Details that make the 8-bit path cheap:
// - Int8 head rows are 128 bytes: one TMA box per tile row and exactly one 128-byte swizzle
//   row, so Q, K and Vᵀ tiles use the same K-major descriptor as the bf16 kernel (a k32 step
//   is +32 B in the row).
// - The s32 scores become floats without I2F (16/clock/SM, the same rate as ex2, which is
//   already the bottleneck at 8-bit tensor rates): |Σ q·k| ≤ 128·127² < 2²² so the bits of
//   s + 0x4B400000 read as a float are exactly 12,582,912 + s; the exp2 argument's FFMA
//   takes that biased value and a per-row offset that includes 12,582,912·dq (kIntMax).
// - The row maxima are taken on the integers (3-input integer max), the row sums by the
//   tensor core (P times a tile of ones), and the two consumers take turns at their exp2
//   (kIntMax, kTensorSum, kExpTurns, kFusedPack below).
// - The F32 accumulator layout of S (row g/g+8, keys 8c + 2·(lane%4) + {0,1}) is not the
//   8-bit A-fragment layout of the P·V wgmma (keys 4·(lane%4) + {0..3}, +16). Instead of
//   shuffling P between threads, the pre-pass stores the keys of every 32-key group of Vᵀ in
//   the order the registers hold them: logical column L = 16·h + 4·t + i holds key
//   16·h + 8·(i/2) + 2·t + (i%2). The sum over keys does not care about their order.
//   FLOPs (main kernel): 4·H·Lq·kv_len·128 (two GEMMs); exp2: H·Lq·kv_len.
//   Bytes from HBM, main kernel: Lq·H·128 (Q int8) + 2·kv_len·H·128 (K int8, Vᵀ FP8, once
//   per head while it stays in L2) + Lq·H·128·2 (O bf16); from L2 ⌈Lq/128⌉·2·kv_len·H·128.
//   Pre-pass: reads q, k twice, v twice (bf16: 2·(Lq + 4·kv_len)·H·128 B) and writes the
//   8-bit copies ((Lq + 2·kv_len)·H·128 B) and the scales.
//
// Tilings ("int8 s2 fN features": 2 K/V stages, two-level accumulation every N key tiles,
// feature names as below; the first is the one Ops::attention uses): "f4 imax tsum turns
// fuse", the same without fuse, f1 and f0 of that (f0: no two-level accumulation, fast but
// wrong on real inputs, kept to measure what it costs), and "f4" (the first version's
// softmax: FMNMX on floats, FADD row sums, no turns) as the measure of what the rest gained.
// Measured on an H100 80GB HBM3 SXM (700 W), 2026-11-25, TFLOP/s = 4·H·Lq·Lk·d / time;
// `bench_attention --shape S --only "int8,sm90 c2 n128 ov tmastore qreg" --seconds 0.3
// --rounds 3` (720p; other shapes 0.2 s × 2 and fewer candidates), one session; "+pre" is
// the full call (pre-pass included), "kernel" the main kernel on operands quantized once:
//   shape (H × Lq × Lk × d)        bf16 sm90  f4 ... fuse    f4 imax tsum turns  f1 ... turns   f0 ... turns   f4 (first version)
//   40 × 75,600² × 128 (720p)        699.7    907.8 / 904.5  852.9 / 876.7      837.7 / 835.5  889.7 / 877.6  745.0 / 755.5
//    5 × 75,600² × 128 (Ulysses 8)   681.7        -          835.7 / 863.8      786.2 / 823.5    - / 883.7    733.1 / 732.9
//   40 × 32,760² × 128 (480p)        692.6        -          841.4 / 882.0      792.6 / 817.5    - / 887.5    732.7 / 738.7
//   40 × 75,600 × 512 × 128 (cross)  577.4        -          387.7 / 513.2      396.7 / 513.9    - / 557.2    375.4 / 472.8
//   (-: not measured; fuse won at 720p in the session's last run, after the other shapes
//   were chosen.) Ops::attention with WANRT_ATTENTION=int8 at 720p: 877.1 (it took "f4 imax
//   tsum turns" then), bf16 696.3. A session's numbers drift by ±3% with the clocks. The
//   pre-pass alone: 2.1 ms at 720p (1.6% of the call), 0.32 ms Ulysses 8, 0.93 ms 480p,
//   0.45 ms cross (a fifth of that call: Q's 75,600 rows are quantized for 512 keys).
//   Each feature at 720p, +pre / kernel (an earlier run of the same session; f4 there
//   744.6 / 734.9): imax 806.0 / 804.8, tsum 789.2 / 797.8, both 813.7 / 843.7, turns alone
//   731.9 / 737.1, all three 855.5 / 860.2. Tried and dropped in that session: the GEMM-issue
//   turns removed once the exp2 alternate (879.9 / 877.8; with fuse 880.3 / 885.2, below
//   fuse's 907.8 / 904.5); Q's descriptors recomputed in the loop to save the 8 registers
//   that spilled (844.5 / 851.6, a tie: ptxas still reports 48–68 bytes of spills in the
//   two-level tilings, 0 in f0, and a profile shows them off the critical path); the first
//   fuse, which ptxas broke by hoisting the exp2 above the turn's bar.sync and the P·V wait
//   up to the max (830.6 / 836.1; a shared load after the barrier, added as 0·x into the
//   offsets, now pins the order).
// Where the time goes (Nsight Compute, 480p, one launch at its 1.44 GHz clocks): the first
// version took 2,717 clocks per 128 × 128 tile, 602 warp instructions per consumer warp and
// tile, schedulers issuing 47% of cycles; "f4 imax tsum turns" (with Q's descriptors
// recomputed, the dropped variant above) 2,328 clocks and 505 instructions. Per consumer warp and tile in that profile: ~600 clocks for its 66 exp2
// (MUFU-bound, in its turn), ~400 issuing 12 wgmma (~12 clocks each), ~260 integer max and
// shuffles, ~310 the exp2 arguments, ~180 packing P, the rest waits on barriers: the serial
// path outside the exp2 (~1,700 clocks) bounds it, not MUFU (~1,200 clocks per tile for
// both consumers) nor the tensor cores (~1,000). fuse moves the arguments, the packing and
// the P·V wait into the MUFU-bound turn. 1,100 TFLOP/s means ~1,800 clocks per tile at
// ~1.75 GHz, about 17% less than fuse's: the serial path has to shrink by another ~350.
// Accuracy (bench_attention_accuracy: one full-size block with random weights at 75,600
// tokens; relative error ‖a − b‖/‖b‖): on the q/k/v the block feeds its self-attention, f4
// ... fuse and ... turns 3.96e-3 (the same numbers: the same arithmetic), f1 3.83e-3, the
// first version's f4 4.24e-3 against the bf16 kernel (cosine 0.999993); f0 0.22 (cosine
// 0.995): the FP8 wgmma's short accumulator over 591 key tiles. Against float32 on a slice
// (64 queries × 2 heads): int8 3.7e-3, bf16 1.7e-3. On N(0, 1) inputs of that shape 3.9e-2
// (E4M3's 3 mantissa bits on P and V: with no dominant keys the rounding errors of P and V
// are the whole error). The block's output with int8 attention (self and cross) is 3.8e-3
// off the one with bf16 attention; the portable bf16 kernel gives 2.3e-3 there. (Summing the
// rounded P on the tensor core lowered the error slightly: the numerator sums the same P.)
// Also tried and dropped earlier: ex2.approx.f16x2 (two exps per instruction in PTX)
// compiles to two MUFU.EX2.F16 on sm_90 and measured no faster (681–716 with the first
// version's f4/f1 at 720p); a quarter of the exp2 by a cubic polynomial on the FMA pipes
// (FlashAttention-4's trick): 727.7 / 744.3 at 720p, a tie with that f4. Not tried yet:
// fusing the Q quantization into the op that produces q, a third consumer warpgroup (no
// registers for it with two 64-register accumulators), P·V in two N = 64 halves to free 32
// registers, fewer wgmma per tile.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_attention_int8.h"
#include "backends/cuda/cuda_attention_sm90.cuh"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace int8attn {

inline constexpr int kHeadDim = 128;
inline constexpr int kBlockN = 128;  // keys per tile (and per K scale)
inline constexpr float kPScale = 448.0f;  // P·448 ≤ 448, the largest finite E4M3
inline constexpr float kLog2PScale = 8.807354922057604f;  // log2(448)

struct Params {
  CUtensorMap q_map;  // int8 (128, heads, q_len), box (128, 1, 64)
  CUtensorMap k_map;  // int8 (128, heads, kv_len), box (128, 1, 128)
  CUtensorMap v_map;  // e4m3 (kv_padded, 128, heads), box (128, 128, 1)
  const float* q_scale;  // [heads, q_len]
  const float* k_scale;  // [heads, k_tiles]
  const float* v_scale;  // [heads, 128]
  __nv_bfloat16* out;    // [q_len, heads, 128]
  int64_t out_token_stride;
  int q_len, kv_len, heads, m_blocks, tiles, k_tiles;
};

// Feature bits of a configuration (Int8Tiling::features; measurements in the header):
// - kIntMax: the tile's row maxima on the s32 scores themselves (3-input integer max, one
//   VIMNMX3 on sm_90 for two 2-input ones), and the float bias of score_to_float folded into
//   the exp2 argument's FFMA, so a score costs IADD + FFMA + MUFU instead of IADD + FADD +
//   FMNMX + FFMA + MUFU.
// - kTensorSum: the softmax row sums on the tensor core: P (E4M3, the A fragment the P·V
//   wgmma already has) times a 128 × 8 tile of ones, a wgmma m64n8k32 per k32 step into a
//   fresh accumulator, instead of 64 FADDs per thread and tile. The sum is then over the
//   rounded P that the numerator uses too.
// - kExpTurns: the two consumers take turns at their runs of exp2 (two more named barriers),
//   the way their GEMM issue already alternates. MUFU is the scarcest unit (16 exp2 per clock
//   and SM); two consumers exponentiating at once slow each other while the tensor cores
//   wait; in turns, one consumer's exp2 run under the other's max, packing and GEMM issue.
// - kFusedPack (with the two above): the arguments' FFMAs, the wait for P_{j−1}·V_{j−1},
//   the packing of P_j to E4M3 and the running-max correction's exp2 all move inside the
//   exp2 turn, where the MUFU-bound run of exp2 leaves issue slots free; outside it they
//   lengthened the serial part of each consumer's iteration (out of it, the correction's
//   MUFU also waited behind the other consumer's exp2 and held up what followed it).
inline constexpr int kIntMax = 1;
inline constexpr int kTensorSum = 2;
inline constexpr int kExpTurns = 4;
inline constexpr int kFusedPack = 16;

template <int kStages_, int kFlush_, int kFeatures_ = 0>
struct Config {
  static constexpr int kFeatures = kFeatures_;
  static constexpr bool kIntMax = (kFeatures & int8attn::kIntMax) != 0;
  static constexpr bool kTensorSum = (kFeatures & int8attn::kTensorSum) != 0;
  static constexpr bool kExpTurns = (kFeatures & int8attn::kExpTurns) != 0;
  static constexpr bool kFusedPack = (kFeatures & int8attn::kFusedPack) != 0;
  static_assert(!kFusedPack || (kIntMax && kTensorSum), "the fused schedule is written for imax and tsum");
  static constexpr int kConsumers = 2;
  static constexpr int kBlockM = 64 * kConsumers;
  static constexpr int kStages = kStages_;
  static constexpr int kFlush = kFlush_;  // two-level accumulation period in key tiles; 0: none
  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;
  static constexpr uint32_t kQTileBytes = 64 * 128;         // one consumer's 64 rows
  static constexpr uint32_t kQBytes = kConsumers * kQTileBytes;
  static constexpr uint32_t kKTileBytes = kBlockN * 128;    // 128 keys × 128 B
  static constexpr uint32_t kVTileBytes = 128 * kBlockN;    // 128 channels × 128 keys
  static constexpr uint32_t kStageBytes = kKTileBytes + kVTileBytes;
  static constexpr uint32_t kOnesBytes = kTensorSum ? 1024 : 0;  // the ones tile (8 rows × 128 B)
  static constexpr uint32_t kSmemBytes = kQBytes + kStages * kStageBytes + kOnesBytes + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
};

// Four floats to four E4M3 bytes (saturating; round to nearest even), `a` in the low byte.
// E4M3 conversions exist from sm_89; the compute_80 PTX pass (whose kernels the host never
// launches: the 8-bit path runs on sm_90 only) gets a trap instead.
__device__ __forceinline__ uint32_t pack_e4m3x4(float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  uint16_t low, high;  // cvt puts its first source in the upper byte
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(low) : "f"(b), "f"(a));
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(high) : "f"(d), "f"(c));
  return uint32_t{low} | (uint32_t{high} << 16);
#else
  (void)a, (void)b, (void)c, (void)d;
  __trap();
  return 0;
#endif
}

#ifdef WANRT_SM90_KERNEL
namespace ptx8 {

#define WANRT_D64(C)                                                                                     \
  "+" C(d[0]), "+" C(d[1]), "+" C(d[2]), "+" C(d[3]), "+" C(d[4]), "+" C(d[5]), "+" C(d[6]), "+" C(d[7]),    \
      "+" C(d[8]), "+" C(d[9]), "+" C(d[10]), "+" C(d[11]), "+" C(d[12]), "+" C(d[13]), "+" C(d[14]),         \
      "+" C(d[15]), "+" C(d[16]), "+" C(d[17]), "+" C(d[18]), "+" C(d[19]), "+" C(d[20]), "+" C(d[21]),       \
      "+" C(d[22]), "+" C(d[23]), "+" C(d[24]), "+" C(d[25]), "+" C(d[26]), "+" C(d[27]), "+" C(d[28]),       \
      "+" C(d[29]), "+" C(d[30]), "+" C(d[31]), "+" C(d[32]), "+" C(d[33]), "+" C(d[34]), "+" C(d[35]),       \
      "+" C(d[36]), "+" C(d[37]), "+" C(d[38]), "+" C(d[39]), "+" C(d[40]), "+" C(d[41]), "+" C(d[42]),       \
      "+" C(d[43]), "+" C(d[44]), "+" C(d[45]), "+" C(d[46]), "+" C(d[47]), "+" C(d[48]), "+" C(d[49]),       \
      "+" C(d[50]), "+" C(d[51]), "+" C(d[52]), "+" C(d[53]), "+" C(d[54]), "+" C(d[55]), "+" C(d[56]),       \
      "+" C(d[57]), "+" C(d[58]), "+" C(d[59]), "+" C(d[60]), "+" C(d[61]), "+" C(d[62]), "+" C(d[63])
#define WANRT_D64_NAMES                                                              \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "           \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// D[64×128] (+)= A·B in s32, A and B int8 from shared memory (both K-major, k32).
__device__ __forceinline__ void wgmma_s8(uint32_t (&d)[64], uint64_t a_desc, uint64_t b_desc, uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {" WANRT_D64_NAMES "}, %64, %65, p;\n}\n"
      : WANRT_D64("r")
      : "l"(a_desc), "l"(b_desc), "r"(accumulate));
}

// D[64×128] (+)= A·B in F32 (the tensor core's reduced-precision FP8 accumulation), A e4m3
// from registers (4 × 4 bytes), B e4m3 from shared memory (K-major, k32).
__device__ __forceinline__ void wgmma_e4m3_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b_desc,
                                              uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {" WANRT_D64_NAMES
      "}, {%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
      : WANRT_D64("f")
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(accumulate));
}
#undef WANRT_D64
#undef WANRT_D64_NAMES

// D[64×8] (+)= A·B in F32, A e4m3 from registers (the P·V fragment), B e4m3 from shared
// memory (K-major): with B all ones, the row sums of A.
__device__ __forceinline__ void wgmma_e4m3_rs_n8(float (&d)[4], const uint32_t (&a)[4], uint64_t b_desc,
                                                 uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %9, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3 {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(accumulate));
}


// The exact float value of an s32 score |s| < 2²², without I2F: 12,582,912 = 1.5·2²³.
inline constexpr uint32_t kScoreBias = 0x4B400000u;
inline constexpr float kScoreBiasValue = 12582912.0f;
__device__ __forceinline__ float biased_score(uint32_t s) { return __uint_as_float(s + kScoreBias); }
__device__ __forceinline__ float score_to_float(uint32_t s) { return biased_score(s) - kScoreBiasValue; }

}  // namespace ptx8

// The 16 values combined pairwise in a tree (4 levels of independent operations, not a chain
// of 15), written out so that the array stays in registers.
template <class Op>
__device__ __forceinline__ float tree_reduce(float (&x)[16], Op op) {
#pragma unroll
  for (int j = 0; j < 8; ++j) x[j] = op(x[j], x[j + 8]);
#pragma unroll
  for (int j = 0; j < 4; ++j) x[j] = op(x[j], x[j + 4]);
  x[0] = op(x[0], x[2]);
  x[1] = op(x[1], x[3]);
  return op(x[0], x[1]);
}

// The same with a 3-input integer max (one DPX instruction on sm_90 for two of the above).
__device__ __forceinline__ int tree_max_s32(const int (&x)[16], const int (&y)[16]) {
  int a[11];
#pragma unroll
  for (int j = 0; j < 5; ++j) a[j] = __vimax3_s32(x[3 * j], x[3 * j + 1], x[3 * j + 2]);
#pragma unroll
  for (int j = 0; j < 5; ++j) a[5 + j] = __vimax3_s32(y[3 * j], y[3 * j + 1], y[3 * j + 2]);
  a[10] = max(x[15], y[15]);
  const int b0 = __vimax3_s32(a[0], a[1], a[2]), b1 = __vimax3_s32(a[3], a[4], a[5]);
  const int b2 = __vimax3_s32(a[6], a[7], a[8]), b3 = max(a[9], a[10]);
  return max(__vimax3_s32(b0, b1, b2), b3);
}

namespace ptx = sm90::ptx;

template <class C>
struct Slots {
  static constexpr int kQFull = 0, kQEmpty = 1, kKFull = 2;
  static constexpr int kKEmpty = kKFull + C::kStages;
  static constexpr int kVFull = kKEmpty + C::kStages;
  static constexpr int kVEmpty = kVFull + C::kStages;
  static constexpr int kCount = kVEmpty + C::kStages;
  static constexpr uint32_t kConsumerArrivals = 4 * C::kConsumers;  // one per consumer warp
};

template <class C>
__device__ __forceinline__ void run_producer(const Params& p, uint32_t q_smem, uint32_t kv_smem, uint32_t bars) {
  using B = Slots<C>;
  auto bar = [&](int slot) { return bars + 8u * static_cast<uint32_t>(slot); };
  uint32_t ring = 0, local = 0;
  for (int tile = static_cast<int>(blockIdx.x); tile < p.tiles; tile += static_cast<int>(gridDim.x), ++local) {
    const int head = tile / p.m_blocks;
    const int m0 = (tile % p.m_blocks) * C::kBlockM;
    ptx::mbar_wait(bar(B::kQEmpty), (local & 1u) ^ 1u);
    ptx::mbar_arrive_expect_tx(bar(B::kQFull), C::kQBytes);
#pragma unroll
    for (int c = 0; c < C::kConsumers; ++c)
      ptx::tma_load(q_smem + static_cast<uint32_t>(c) * C::kQTileBytes, &p.q_map, 0, head, m0 + 64 * c,
                    bar(B::kQFull));
    for (int j = 0; j < p.k_tiles; ++j, ++ring) {
      const uint32_t stage = ring % C::kStages, phase = (ring / C::kStages) & 1u;
      const uint32_t k_tile = kv_smem + stage * C::kStageBytes, v_tile = k_tile + C::kKTileBytes;
      const int s = static_cast<int>(stage);
      ptx::mbar_wait(bar(B::kKEmpty + s), phase ^ 1u);
      ptx::mbar_arrive_expect_tx(bar(B::kKFull + s), C::kKTileBytes);
      ptx::tma_load(k_tile, &p.k_map, 0, head, j * kBlockN, bar(B::kKFull + s));
      ptx::mbar_wait(bar(B::kVEmpty + s), phase ^ 1u);
      ptx::mbar_arrive_expect_tx(bar(B::kVFull + s), C::kVTileBytes);
      // Vᵀ map coordinates: (key, channel, head).
      ptx::tma_load(v_tile, &p.v_map, j * kBlockN, 0, head, bar(B::kVFull + s));
    }
  }
}

template <class C>
__device__ __forceinline__ void run_consumer(const Params& p, int consumer, uint32_t q_smem, uint32_t kv_smem,
                                             uint32_t ones_smem, uint32_t bars) {
  using B = Slots<C>;
  const int tid = static_cast<int>(threadIdx.x) % 128, warp = tid / 32, lane = tid % 32;
  const uint32_t q_tile = q_smem + static_cast<uint32_t>(consumer) * C::kQTileBytes;
  auto bar = [&](int slot) { return bars + 8u * static_cast<uint32_t>(slot); };
  auto k_tile = [&](uint32_t stage) { return kv_smem + stage * C::kStageBytes; };
  auto v_tile = [&](uint32_t stage) { return kv_smem + stage * C::kStageBytes + C::kKTileBytes; };
  auto release = [&](int slot) {
    __syncwarp();
    if (lane == 0) ptx::mbar_arrive(bar(slot));
  };
  const int kv_tiles = p.k_tiles;
  const int last_valid = p.kv_len - (kv_tiles - 1) * kBlockN;  // 1 .. 128
  const int column0 = 2 * (lane & 3);

  // Descriptors: the start address sits in the low 14 bits in 16-byte units, and every
  // shared address here is below 256 KB, so moving the start by b bytes adds b/16 to the
  // descriptor (one add, instead of rebuilding the descriptor from the address).
  const uint64_t q_desc0 = ptx::k_major_desc(q_tile), k_desc0 = ptx::k_major_desc(k_tile(0));
  const uint64_t v_desc0 = ptx::k_major_desc(v_tile(0)), ones_desc0 = ptx::k_major_desc(ones_smem);
  constexpr uint32_t kStageDesc = C::kStageBytes / 16, kStepDesc = 32 / 16;  // a stage; a k32 step
  auto issue_qk = [&](uint32_t (&s)[64], uint32_t stage) {
    ptx::fence_registers(s);
    ptx::wgmma_fence();
    const uint64_t q_desc = q_desc0;
    const uint64_t k_desc = k_desc0 + stage * kStageDesc;
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 32; ++ks)
      ptx8::wgmma_s8(s, q_desc + static_cast<uint32_t>(ks) * kStepDesc, k_desc + static_cast<uint32_t>(ks) * kStepDesc,
                     ks > 0 ? 1u : 0u);
    ptx::wgmma_commit();
    ptx::fence_registers(s);
  };
  // acc (+)= P·V: four k32 steps over the 128 keys of the tile (+32 B in each Vᵀ row); with
  // kTensorSum also sums = P·ones (a fresh accumulator: the tile's row sums).
  auto issue_pv = [&](float (&acc)[64], uint32_t (&pf)[16], float (&sums)[4], uint32_t stage, bool fresh) {
    ptx::fence_registers(acc);
    ptx::fence_registers(pf);
    if constexpr (C::kTensorSum) ptx::fence_registers(sums);
    ptx::wgmma_fence();
    const uint64_t v_desc = v_desc0 + stage * kStageDesc;
#pragma unroll
    for (int kk = 0; kk < kBlockN / 32; ++kk) {
      const uint32_t a[4] = {pf[4 * kk], pf[4 * kk + 1], pf[4 * kk + 2], pf[4 * kk + 3]};
      ptx8::wgmma_e4m3_rs(acc, a, v_desc + static_cast<uint32_t>(kk) * kStepDesc, fresh && kk == 0 ? 0u : 1u);
      if constexpr (C::kTensorSum)
        ptx8::wgmma_e4m3_rs_n8(sums, a, ones_desc0 + static_cast<uint32_t>(kk) * kStepDesc, kk == 0 ? 0u : 1u);
    }
    ptx::wgmma_commit();
    ptx::fence_registers(acc);
    ptx::fence_registers(pf);
    if constexpr (C::kTensorSum) ptx::fence_registers(sums);
  };
  // Online softmax of one score tile: s (s32 bits) in, P·448 out in pv (F32), the running
  // max in the log2 domain
  // (row_max = max of dequantized scaled scores), this thread's row sums. dq[h] =
  // q_scale(row)·k_scale(tile) ≥ 0. Element 4·j + 2·h + e of the m64n128 layout is row
  // lane/4 + 8·h, key 8·j + 2·(lane%4) + e. `mask` (std::true_type on a partial last tile):
  // keys ≥ valid_keys get no weight.
  // P·448 to E4M3 in the A-fragment layout of k32 step kk: register 0 (row g) holds keys
  // 2t, 2t+1, 8+2t, 9+2t of the step's 32 (chunks 4kk, 4kk+1), register 1 the same for row
  // g+8, registers 2 and 3 the same from chunks 4kk+2, 4kk+3; Vᵀ stores its keys in that order.
  auto pack = [&](uint32_t (&pf)[16], const float (&pv)[64]) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int base = 16 * kk + 8 * (r / 2) + 2 * (r % 2);
        pf[4 * kk + r] = pack_e4m3x4(pv[base], pv[base + 1], pv[base + 4], pv[base + 5]);
      }
  };
  // kExpTurns: consumer c waits on barrier 3 + c before its exp2 and arrives on the other's
  // after them. Unconditionally (a branch here splits the softmax's schedule): consumer 1
  // arrives once on consumer 0's barrier before its first tile so that consumer 0 starts,
  // and consumer 0 takes that extra arrival with one more wait after its last tile.
  auto exp_begin = [&](uint32_t (&s)[64]) {
    if constexpr (C::kExpTurns) {
      ptx::named_sync(3 + consumer, 256);
      ptx::fence_registers(s);  // the exp2 below read s after the barrier
    }
  };
  auto exp_end = [&] {
    if constexpr (C::kExpTurns) ptx::named_arrive(4 - consumer, 256);
  };
  if constexpr (C::kExpTurns)
    if (consumer == 1) ptx::named_arrive(3, 256);
  // before_exps: kFusedPack's wait for the previous P·V (then pf is free for packing P here).
  auto softmax = [&](auto mask, uint32_t (&s)[64], float (&pv)[64], uint32_t (&pf)[16], float (&row_max)[2],
                     float (&row_sum)[2], float (&alpha)[2], const float (&dq)[2], int valid_keys,
                     auto&& before_exps) {
    constexpr bool kMask = decltype(mask)::value;
    auto masked = [&](int i) { return kMask && 8 * (i / 4) + column0 + (i & 1) >= valid_keys; };
    if constexpr (C::kIntMax) {
      // Both rows' maxima on the integers (masked keys: INT_MIN), then per row one float.
      int tile_max[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        int x[16], y[16];
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          x[j] = masked(4 * j + 2 * h) ? INT_MIN : static_cast<int>(s[4 * j + 2 * h]);
          y[j] = masked(4 * j + 2 * h + 1) ? INT_MIN : static_cast<int>(s[4 * j + 2 * h + 1]);
        }
        tile_max[h] = tree_max_s32(x, y);
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) tile_max[h] = max(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
#pragma unroll
      for (int h = 0; h < 2; ++h) tile_max[h] = max(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
      if constexpr (C::kFusedPack) {
        float alpha_arg[2], bias_offset[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // Every tile holds at least one valid key, so tile_max is a real score; dq ≥ 0
          // keeps the order.
          const float new_max =
              fmaxf(row_max[h], ptx8::score_to_float(static_cast<uint32_t>(tile_max[h])) * dq[h]);
          // exp2(−inf) = 0 where the row had no max yet (its sum and output are still 0).
          alpha_arg[h] = row_max[h] - new_max;
          row_max[h] = new_max;
          // P·448 = exp2(x·dq − max + log2(448)) with x = biased − 12,582,912: one FFMA on
          // the biased score. bias_offset's rounding (≤ 0.75·dq) is under one unit of the
          // integer score, far below the quantization error of q and k.
          bias_offset[h] = fmaf(ptx8::kScoreBiasValue, dq[h], new_max - kLog2PScale);
        }
        if constexpr (C::kExpTurns) {
          ptx::named_sync(3 + consumer, 256);
          // ptxas moves arithmetic across bar.sync (it hoisted these exp2 above it); a shared
          // load it must leave below, added as 0·x into every argument's offset, keeps them.
          uint32_t after_barrier;
          asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(after_barrier) : "r"(ones_smem) : "memory");
#pragma unroll
          for (int h = 0; h < 2; ++h) bias_offset[h] = fmaf(0.0f, __uint_as_float(after_barrier), bias_offset[h]);
        }
        // The wait inside the turn: placed before the max, ptxas had it stall there (P·V is
        // done by now).
        before_exps();
#pragma unroll
        for (int j = 0; j < 16; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            pv[4 * j + e] = fmaf(ptx8::biased_score(s[4 * j + e]), dq[e / 2], -bias_offset[e / 2]);
#pragma unroll
        for (int h = 0; h < 2; ++h) alpha[h] = ptx::exp2_approx(alpha_arg[h]);
#pragma unroll
        for (int i = 0; i < 64; ++i) {
          const float x = ptx::exp2_approx(pv[i]);
          pv[i] = masked(i) ? 0.0f : x;  // explicit zero: masked keys may hold any score
        }
        pack(pf, pv);
        exp_end();
        return;
      }
      exp_begin(s);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        // Every tile holds at least one valid key, so tile_max is a real score; dq ≥ 0 keeps
        // the order.
        const float new_max = fmaxf(row_max[h], ptx8::score_to_float(static_cast<uint32_t>(tile_max[h])) * dq[h]);
        alpha[h] = row_max[h] == -INFINITY ? 0.0f : ptx::exp2_approx(row_max[h] - new_max);
        row_max[h] = new_max;
        // P·448 = exp2(x·dq − max + log2(448)) with x = biased − 12,582,912: one FFMA on the
        // biased score. bias_offset's rounding (≤ 0.75·dq) is under one unit of the integer
        // score, far below the quantization error of q and k.
        const float bias_offset = fmaf(ptx8::kScoreBiasValue, dq[h], new_max - kLog2PScale);
        [[maybe_unused]] float partial_sum[16];
#pragma unroll
        for (int j = 0; j < 16; ++j) {
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            float x = ptx::exp2_approx(fmaf(ptx8::biased_score(s[4 * j + e]), dq[h], -bias_offset));
            // Explicit zero: masked keys may hold any score.
            if (masked(4 * j + e)) x = 0.0f;
            pv[4 * j + e] = x;
          }
          if constexpr (!C::kTensorSum) partial_sum[j] = pv[4 * j + 2 * h] + pv[4 * j + 2 * h + 1];
        }
        if constexpr (!C::kTensorSum)
          row_sum[h] = row_sum[h] * alpha[h] + tree_reduce(partial_sum, [](float a, float b) { return a + b; });
      }
      exp_end();
      return;
    }
    exp_begin(s);  // (this path: the conversion and max inside the turn too)
#pragma unroll
    for (int i = 0; i < 64; ++i) pv[i] = masked(i) ? -INFINITY : ptx8::score_to_float(s[i]);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // Tree reductions (max here, the sum below): a chain of 32 dependent FMNMX/FADD per
      // row would leave the warp waiting on latency (one warp per scheduler per consumer).
      float partial_max[16];
#pragma unroll
      for (int j = 0; j < 16; ++j) partial_max[j] = fmaxf(pv[4 * j + 2 * h], pv[4 * j + 2 * h + 1]);
      const float tile_max_here = tree_reduce(partial_max, [](float a, float b) { return fmaxf(a, b); });
      float tile_max = tile_max_here;
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      // Every tile holds at least one valid key, so tile_max is finite; dq ≥ 0 keeps the order.
      const float new_max = fmaxf(row_max[h], tile_max * dq[h]);
      alpha[h] = row_max[h] == -INFINITY ? 0.0f : ptx::exp2_approx(row_max[h] - new_max);
      row_max[h] = new_max;
      const float offset = new_max - kLog2PScale;  // P·448 = exp2(x·dq − max + log2(448))
      [[maybe_unused]] float partial_sum[16];
#pragma unroll
      for (int j = 0; j < 16; ++j) {
#pragma unroll
        for (int e = 2 * h; e < 2 * h + 2; ++e) {
          float x = ptx::exp2_approx(fmaf(pv[4 * j + e], dq[h], -offset));
          // Explicit zero: with dq 0 (scale 0 or an all-zero row), −inf·0 would be NaN.
          if (masked(4 * j + e)) x = 0.0f;
          pv[4 * j + e] = x;
        }
        if constexpr (!C::kTensorSum) partial_sum[j] = pv[4 * j + 2 * h] + pv[4 * j + 2 * h + 1];
      }
      if constexpr (!C::kTensorSum)
        row_sum[h] = row_sum[h] * alpha[h] + tree_reduce(partial_sum, [](float a, float b) { return a + b; });
    }
    exp_end();
  };
  auto any_below_one = [&](const float (&alpha)[2]) {
    return __any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f);
  };
  auto scale_rows = [&](float (&o)[64], const float (&alpha)[2]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] *= alpha[(i >> 1) & 1];
  };

  const int my_tiles = (p.tiles - static_cast<int>(blockIdx.x) + static_cast<int>(gridDim.x) - 1) /
                       static_cast<int>(gridDim.x);
  const int turns_total = my_tiles * (kv_tiles - 1);
  int turns_done = 0;
  auto turn_begin = [&] {
    if (consumer == 1 || turns_done > 0) ptx::named_sync(1 + consumer, 256);
  };
  auto turn_end = [&] {
    if (consumer == 0 || turns_done < turns_total - 1) ptx::named_arrive(2 - consumer, 256);
    ++turns_done;
  };

  uint32_t ring = 0, local = 0;
  for (int tile = static_cast<int>(blockIdx.x); tile < p.tiles; tile += static_cast<int>(gridDim.x), ++local) {
    const int head = tile / p.m_blocks;
    const int m0 = (tile % p.m_blocks) * C::kBlockM;
    const int row0 = m0 + consumer * 64 + warp * 16 + (lane >> 2);
    float q_scale[2];
#pragma unroll
    for (int h = 0; h < 2; ++h)
      q_scale[h] = row0 + 8 * h < p.q_len ? __ldg(p.q_scale + int64_t{head} * p.q_len + row0 + 8 * h) : 0.0f;
    const float* k_scales = p.k_scale + int64_t{head} * kv_tiles;

    float o[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
    // Two-level accumulation: P·V of kFlush key tiles in the wgmma accumulator ot, then added
    // into the F32 registers o (kFlush 0: every P·V straight into o).
    float ot[C::kFlush > 0 ? 64 : 1];
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
    uint32_t s[64];
    float pv[64];
    uint32_t pf[16];
    float tile_sums[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // kTensorSum: the row sums of the last P (rows g, g, g+8, g+8)
    ptx::mbar_wait(bar(B::kQFull), local & 1u);

    auto tile_softmax = [&](int j, float k_scale, float (&alpha)[2], auto&& before_exps) {
      const float dq[2] = {q_scale[0] * k_scale, q_scale[1] * k_scale};
      if (j == kv_tiles - 1 && last_valid < kBlockN)
        softmax(std::true_type{}, s, pv, pf, row_max, row_sum, alpha, dq, last_valid, before_exps);
      else
        softmax(std::false_type{}, s, pv, pf, row_max, row_sum, alpha, dq, kBlockN, before_exps);
    };
    // Prologue: S_0 and its softmax alone.
    uint32_t stage = ring % C::kStages, phase = (ring / C::kStages) & 1u;
    float k_scale = __ldg(k_scales);
    ptx::mbar_wait(bar(B::kKFull + static_cast<int>(stage)), phase);
    issue_qk(s, stage);
    ptx::wgmma_wait<0>();
    ptx::fence_registers(s);
    release(B::kKEmpty + static_cast<int>(stage));
    if (kv_tiles == 1) release(B::kQEmpty);
    {
      float alpha[2];
      tile_softmax(0, k_scale, alpha, [] {});
    }
    if constexpr (!C::kFusedPack) pack(pf, pv);
    uint32_t v_stage = stage, v_phase = phase;
    ++ring;
    for (int j = 1; j < kv_tiles; ++j, ++ring) {
      stage = ring % C::kStages;
      phase = (ring / C::kStages) & 1u;
      k_scale = __ldg(k_scales + j);
      ptx::mbar_wait(bar(B::kKFull + static_cast<int>(stage)), phase);
      turn_begin();
      issue_qk(s, stage);
      ptx::mbar_wait(bar(B::kVFull + static_cast<int>(v_stage)), v_phase);
      // P_{j−1}·V_{j−1}: a fresh accumulator at the start of each group of kFlush tiles.
      if constexpr (C::kFlush > 0)
        issue_pv(ot, pf, tile_sums, v_stage, (j - 1) % C::kFlush == 0);
      else
        issue_pv(o, pf, tile_sums, v_stage, false);
      turn_end();
      ptx::wgmma_wait<1>();  // S_j is done; P_{j−1}·V_{j−1} may still run
      ptx::fence_registers(s);
      release(B::kKEmpty + static_cast<int>(stage));
      if (j == kv_tiles - 1) release(B::kQEmpty);
      float alpha[2];
      // P_{j−1}·V_{j−1} done: its accumulators and pf are free again.
      auto pv_done = [&] {
        ptx::wgmma_wait<0>();
        if constexpr (C::kFlush > 0) {
          ptx::fence_registers(ot);
        } else {
          ptx::fence_registers(o);
        }
        ptx::fence_registers(pf);
      };
      if constexpr (C::kFusedPack) {
        tile_softmax(j, k_scale, alpha, pv_done);
      } else {
        tile_softmax(j, k_scale, alpha, [] {});
        pv_done();
      }
      if constexpr (C::kTensorSum) {
        ptx::fence_registers(tile_sums);
        // P_{j−1}'s sums are relative to the previous max: add, then bring to the new one.
#pragma unroll
        for (int h = 0; h < 2; ++h) row_sum[h] = (row_sum[h] + tile_sums[2 * h]) * alpha[h];
      }
      release(B::kVEmpty + static_cast<int>(v_stage));
      // Bring everything to the new running max (alpha is exactly 1 for a warp whose rows'
      // maxima stayed put, which after the first few tiles is nearly every tile).
      const bool rescale = any_below_one(alpha);
      if constexpr (C::kFlush > 0) {
        if ((j - 1) % C::kFlush == C::kFlush - 1) {
#pragma unroll
          for (int i = 0; i < 64; ++i) o[i] += ot[i];
          if (rescale) scale_rows(o, alpha);
        } else if (rescale) {
          scale_rows(o, alpha);
          scale_rows(ot, alpha);
        }
      } else {
        if (rescale) scale_rows(o, alpha);
      }
      if constexpr (!C::kFusedPack) pack(pf, pv);
      v_stage = stage;
      v_phase = phase;
    }
    ptx::mbar_wait(bar(B::kVFull + static_cast<int>(v_stage)), v_phase);
    if constexpr (C::kFlush > 0) {
      issue_pv(ot, pf, tile_sums, v_stage, (kv_tiles - 1) % C::kFlush == 0);
      ptx::wgmma_wait<0>();
      ptx::fence_registers(ot);
#pragma unroll
      for (int i = 0; i < 64; ++i) o[i] += ot[i];
    } else {
      issue_pv(o, pf, tile_sums, v_stage, false);
      ptx::wgmma_wait<0>();
      ptx::fence_registers(o);
    }
    ptx::fence_registers(pf);
    if constexpr (C::kTensorSum) {
      ptx::fence_registers(tile_sums);
#pragma unroll
      for (int h = 0; h < 2; ++h) row_sum[h] += tile_sums[2 * h];
    }
    release(B::kVEmpty + static_cast<int>(v_stage));

    // Epilogue: O·v_scale[c] / rowsum → bf16 (the 448 of P cancels in the ratio).
    const float* v_scale = p.v_scale + int64_t{head} * kHeadDim + column0;
    __nv_bfloat16* out = p.out + int64_t{head} * kHeadDim + column0;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = row_sum[h];
      if constexpr (!C::kTensorSum) {  // the tensor core's sums already cover the whole row
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      }
      const float inverse = 1.0f / sum;
      const int row = row0 + 8 * h;
      if (row < p.q_len) {
        __nv_bfloat16* dst = out + int64_t{row} * p.out_token_stride;
#pragma unroll
        for (int j = 0; j < kHeadDim / 8; ++j) {
          const float2 scale = __ldg(reinterpret_cast<const float2*>(v_scale + 8 * j));
          *reinterpret_cast<uint32_t*>(dst + 8 * j) = ptx::pack_bf16x2(o[4 * j + 2 * h] * scale.x * inverse,
                                                                       o[4 * j + 2 * h + 1] * scale.y * inverse);
        }
      }
    }
  }
  if constexpr (C::kExpTurns)
    if (consumer == 0) ptx::named_sync(3, 256);  // consumer 1's arrival from before its first tile
}
#endif  // WANRT_SM90_KERNEL

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) int8_attention_kernel(const __grid_constant__ Params p) {
#ifdef WANRT_SM90_KERNEL
  using B = Slots<C>;
  extern __shared__ unsigned char smem[];
  __shared__ uint64_t barrier_storage[B::kCount];
  const uint32_t base = (ptx::shared_address(smem) + 1023u) & ~1023u;  // the swizzle period
  const uint32_t q_smem = base, kv_smem = base + C::kQBytes;
  const uint32_t ones_smem = kv_smem + C::kStages * C::kStageBytes;  // 1024-aligned
  const uint32_t bars = ptx::shared_address(barrier_storage);
  const int warpgroup = static_cast<int>(threadIdx.x) / 128;
  if constexpr (C::kTensorSum) {
    // E4M3 1.0 = 0x38 in every byte (so the swizzle does not matter); the wgmma reads it
    // through the async proxy.
    for (uint32_t i = threadIdx.x; i < C::kOnesBytes / 4; i += C::kThreads) ptx::st_shared(ones_smem + 4 * i, 0x38383838u);
    ptx::fence_proxy_async();
  }
  if (threadIdx.x == 0) {
    ptx::prefetch_tensor_map(&p.q_map);
    ptx::prefetch_tensor_map(&p.k_map);
    ptx::prefetch_tensor_map(&p.v_map);
    ptx::mbar_init(bars + 8u * B::kQFull, 1);
    ptx::mbar_init(bars + 8u * B::kQEmpty, B::kConsumerArrivals);
    for (int s = 0; s < C::kStages; ++s) {
      ptx::mbar_init(bars + 8u * static_cast<uint32_t>(B::kKFull + s), 1);
      ptx::mbar_init(bars + 8u * static_cast<uint32_t>(B::kKEmpty + s), B::kConsumerArrivals);
      ptx::mbar_init(bars + 8u * static_cast<uint32_t>(B::kVFull + s), 1);
      ptx::mbar_init(bars + 8u * static_cast<uint32_t>(B::kVEmpty + s), B::kConsumerArrivals);
    }
    ptx::mbar_init_fence();
  }
  __syncthreads();
  if (warpgroup == 0) {
    ptx::release_registers<C::kProducerRegisters>();
    if (threadIdx.x == 0) run_producer<C>(p, q_smem, kv_smem, bars);
    return;
  }
  ptx::claim_registers<C::kConsumerRegisters>();
  run_consumer<C>(p, warpgroup - 1, q_smem, kv_smem, ones_smem, bars);
#else
  __trap();  // never launched: the host takes this kernel only on an sm_90 GPU
#endif
}

// ---------------------------------------------------------------------------------------------
// Pre-pass kernels (plain CUDA, any architecture)
// ---------------------------------------------------------------------------------------------

inline constexpr int kStatRows = 256;  // keys per block of the statistics kernel

// Per (head, chunk of kStatRows keys): the per-channel sum of k and absmax of v over the valid
// keys, written as partials [heads, chunks, 128] (summed in a fixed order afterwards, so the
// mean is deterministic). Block: 256 threads = 64 channel pairs × 4 row lanes.
__global__ void __launch_bounds__(256) kv_stats_kernel(const __nv_bfloat16* k, const __nv_bfloat16* v, int kv_len,
                                                       int heads, float* k_partial, float* v_partial) {
  const int head = static_cast<int>(blockIdx.y), chunk = static_cast<int>(blockIdx.x);
  const int pair = static_cast<int>(threadIdx.x) % 64, lane_row = static_cast<int>(threadIdx.x) / 64;
  const int64_t stride = int64_t{heads} * kHeadDim;
  float2 sum = {0.0f, 0.0f}, amax = {0.0f, 0.0f};
  const int end = min(kv_len, (chunk + 1) * kStatRows);
  for (int row = chunk * kStatRows + lane_row; row < end; row += 4) {
    const int64_t at = row * stride + int64_t{head} * kHeadDim + 2 * pair;
    const float2 kf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(k + at));
    const float2 vf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v + at));
    sum.x += kf.x;
    sum.y += kf.y;
    amax.x = fmaxf(amax.x, fabsf(vf.x));
    amax.y = fmaxf(amax.y, fabsf(vf.y));
  }
  __shared__ float4 partial[4][64];
  partial[lane_row][pair] = make_float4(sum.x, sum.y, amax.x, amax.y);
  __syncthreads();
  if (lane_row == 0) {
    float4 total = partial[0][pair];
    for (int r = 1; r < 4; ++r) {
      const float4 x = partial[r][pair];
      total.x += x.x;
      total.y += x.y;
      total.z = fmaxf(total.z, x.z);
      total.w = fmaxf(total.w, x.w);
    }
    const int64_t at = (int64_t{head} * gridDim.x + chunk) * kHeadDim + 2 * pair;
    k_partial[at] = total.x;
    k_partial[at + 1] = total.y;
    v_partial[at] = total.z;
    v_partial[at + 1] = total.w;
  }
}

// Per head: k_mean = Σ partials / kv_len and v_scale = absmax / 448. Block: 128 channels.
__global__ void kv_finish_kernel(const float* k_partial, const float* v_partial, int chunks, int kv_len,
                                 float* k_mean, float* v_scale) {
  const int head = static_cast<int>(blockIdx.x), c = static_cast<int>(threadIdx.x);
  float sum = 0.0f, amax = 0.0f;
  for (int i = 0; i < chunks; ++i) {
    const int64_t at = (int64_t{head} * chunks + i) * kHeadDim + c;
    sum += k_partial[at];
    amax = fmaxf(amax, v_partial[at]);
  }
  k_mean[head * kHeadDim + c] = sum / static_cast<float>(kv_len);
  v_scale[head * kHeadDim + c] = amax / kPScale;
}

__device__ __forceinline__ int8_t quantize_s8(float x, float inverse) {
  return static_cast<int8_t>(max(-127, min(127, __float2int_rn(x * inverse))));
}

// Half a warp per (token, head) row of q (16-byte loads, 8 values a lane): absmax/127 scale,
// int8 values. The scale stored folds in softmax scale · log2(e). Blocks of 8 warps.
__global__ void __launch_bounds__(256) quantize_q_kernel(const __nv_bfloat16* q, int64_t rows_heads, int q_len,
                                                         int heads, float scale_log2, int8_t* q8, float* q_scale) {
  const int64_t item = int64_t{blockIdx.x} * 16 + threadIdx.x / 16;  // token·heads + head
  // Whole warps stay to the end (the shuffles below span the warp's two rows).
  const bool valid = item < rows_heads;
  const int lane = static_cast<int>(threadIdx.x) % 16;
  uint4 bits = make_uint4(0, 0, 0, 0);
  if (valid) bits = *reinterpret_cast<const uint4*>(q + item * kHeadDim + 8 * lane);
  const uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
  float x[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 pair = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[i]));
    x[2 * i] = pair.x;
    x[2 * i + 1] = pair.y;
  }
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(x[i]));
#pragma unroll
  for (int width = 8; width >= 1; width /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, width));
  if (!valid) return;
  const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
  uint32_t packed[2] = {0, 0};
#pragma unroll
  for (int i = 0; i < 8; ++i)
    packed[i / 4] |= uint32_t{static_cast<uint8_t>(quantize_s8(x[i], inverse))} << (8 * (i % 4));
  *reinterpret_cast<uint2*>(q8 + item * kHeadDim + 8 * lane) = make_uint2(packed[0], packed[1]);
  if (lane == 0) {
    const int64_t token = item / heads, head = item % heads;
    q_scale[head * q_len + token] = amax / 127.0f * scale_log2;
  }
}

// One block per (128-key tile, head) of k: k − mean, absmax/127 over the tile, int8 values.
// 256 threads = 64 channel pairs × 4 row lanes; the tile is read twice (the second time
// from L1/L2).
__global__ void __launch_bounds__(256) quantize_k_kernel(const __nv_bfloat16* k, int kv_len, int heads,
                                                         const float* k_mean, int8_t* k8, float* k_scale) {
  const int tile = static_cast<int>(blockIdx.x), head = static_cast<int>(blockIdx.y);
  const int pair = static_cast<int>(threadIdx.x) % 64, lane_row = static_cast<int>(threadIdx.x) / 64;
  const int64_t stride = int64_t{heads} * kHeadDim;
  const float2 mean = *reinterpret_cast<const float2*>(k_mean + head * kHeadDim + 2 * pair);
  const int begin = tile * kBlockN, end = min(kv_len, begin + kBlockN);
  float amax = 0.0f;
  for (int row = begin + lane_row; row < end; row += 4) {
    const float2 x = __bfloat1622float2(
        *reinterpret_cast<const __nv_bfloat162*>(k + row * stride + int64_t{head} * kHeadDim + 2 * pair));
    amax = fmaxf(amax, fmaxf(fabsf(x.x - mean.x), fabsf(x.y - mean.y)));
  }
#pragma unroll
  for (int width = 16; width >= 1; width /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, width));
  __shared__ float warp_max[8];
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = warp_max[0];
#pragma unroll
  for (int w = 1; w < 8; ++w) amax = fmaxf(amax, warp_max[w]);
  const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
  for (int row = begin + lane_row; row < end; row += 4) {
    const int64_t at = row * stride + int64_t{head} * kHeadDim + 2 * pair;
    const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(k + at));
    const uint16_t packed = static_cast<uint16_t>(static_cast<uint8_t>(quantize_s8(x.x - mean.x, inverse)) |
                                                  static_cast<uint8_t>(quantize_s8(x.y - mean.y, inverse)) << 8);
    *reinterpret_cast<uint16_t*>(k8 + at) = packed;
  }
  if (threadIdx.x == 0) k_scale[int64_t{head} * gridDim.x + tile] = amax / 127.0f;
}

// The key stored at logical column `l` (0..31) of a 32-key group of Vᵀ: the order in which the
// P·V wgmma's A fragment holds P (see the header).
__host__ __device__ constexpr int vt_key_of_column(int l) {
  return 16 * (l / 16) + 8 * ((l % 4) / 2) + 2 * ((l % 16) / 4) + (l % 2);
}

inline constexpr int kVtStride = 130;  // bf16 per row of the staging tile: 65 words, no bank conflicts

// One block per (128-key tile, head) of v: V / v_scale → E4M3, transposed to [head][channel]
// [key] with the keys of each 32-key group permuted; keys ≥ kv_len are written as zeros.
__global__ void __launch_bounds__(256) quantize_v_kernel(const __nv_bfloat16* v, int kv_len, int heads,
                                                         int64_t kv_padded, const float* v_scale, uint8_t* vt8) {
  __shared__ __nv_bfloat162 staged[kBlockN * kVtStride / 2];
  const int tile = static_cast<int>(blockIdx.x), head = static_cast<int>(blockIdx.y);
  const int64_t stride = int64_t{heads} * kHeadDim;
  const int key0 = tile * kBlockN;
  for (int i = static_cast<int>(threadIdx.x); i < kBlockN * 64; i += 256) {
    const int row = i / 64, pair = i % 64;
    __nv_bfloat162 x = __floats2bfloat162_rn(0.0f, 0.0f);
    if (key0 + row < kv_len)
      x = *reinterpret_cast<const __nv_bfloat162*>(v + (key0 + row) * stride + int64_t{head} * kHeadDim + 2 * pair);
    staged[row * (kVtStride / 2) + pair] = x;
  }
  __syncthreads();
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const __nv_bfloat16* rows = reinterpret_cast<const __nv_bfloat16*>(staged);
  for (int c = warp; c < kHeadDim; c += 8) {
    const float scale = v_scale[head * kHeadDim + c];
    const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
    float x[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int column = 4 * lane + i;  // 0..127 within the tile
      const int key = 32 * (column / 32) + vt_key_of_column(column % 32);
      x[i] = __bfloat162float(rows[key * kVtStride + c]) * inverse;
    }
    *reinterpret_cast<uint32_t*>(vt8 + (int64_t{head} * kHeadDim + c) * kv_padded + key0 + 4 * lane) =
        pack_e4m3x4(x[0], x[1], x[2], x[3]);
  }
}

}  // namespace int8attn

namespace {

using int8attn::Config;
using int8attn::Params;

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiledFn encode_tiled() {
  static const EncodeTiledFn fn = [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    WANRT_CHECK_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry, 12000, cudaEnableDefault,
                                                      &found));
    WANRT_CHECK(found == cudaDriverEntryPointSuccess && entry != nullptr,
                "cuda backend: the driver has no cuTensorMapEncodeTiled (needs CUDA 12 or newer)");
    return reinterpret_cast<EncodeTiledFn>(entry);
  }();
  return fn;
}

// A 3-D byte tensor (dims innermost first, byte strides of dims 1 and 2) read in `box` with
// the 128-byte swizzle; reads past the dims are zeros.
CUtensorMap make_byte_map(const void* base, const cuuint64_t (&dims)[3], const cuuint64_t (&strides)[2],
                          const cuuint32_t (&box)[3], const char* what) {
  CUtensorMap map{};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult status = encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, const_cast<void*>(base), dims,
                                         strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                         CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                         CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  WANRT_CHECK(status == CUDA_SUCCESS, "cuda backend: cuTensorMapEncodeTiled failed (", static_cast<int>(status),
              ") for the 8-bit attention ", what, " (", dims[0], ", ", dims[1], ", ", dims[2], ")");
  return map;
}

template <class C>
void launch(const Params& p, int multiprocessors, cudaStream_t stream) {
  const auto kernel = int8attn::int8_attention_kernel<C>;
  WANRT_CHECK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(C::kSmemBytes)));
  const int grid = std::min(p.tiles, multiprocessors);  // persistent: one CTA per SM
  kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  WANRT_CHECK_LAUNCH();
}

struct Int8Variant {
  Int8Tiling tiling;
  void (*launch)(const Params&, int, cudaStream_t);
};

template <int kStages, int kFlush, int kFeatures = 0>
Int8Variant make_variant() {
  return {{kStages, kFlush, kFeatures}, &launch<Config<kStages, kFlush, kFeatures>>};
}

// The first is the one Ops::attention uses; the last is the first version's softmax (the
// measure of what the features gained).
constexpr int kSoftmaxFeatures = int8attn::kIntMax | int8attn::kTensorSum | int8attn::kExpTurns;
const std::vector<Int8Variant>& variants() {
  static const std::vector<Int8Variant> all = {
      make_variant<2, 4, kSoftmaxFeatures | int8attn::kFusedPack>(),
      make_variant<2, 4, kSoftmaxFeatures>(),
      make_variant<2, 1, kSoftmaxFeatures>(),
      make_variant<2, 0, kSoftmaxFeatures>(),
      make_variant<2, 4>(),
  };
  return all;
}

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

std::string Int8Tiling::name() const {
  return str_cat("int8 s", stages, " f", flush_every, features & int8attn::kIntMax ? " imax" : "",
                 features & int8attn::kTensorSum ? " tsum" : "", features & int8attn::kExpTurns ? " turns" : "",
                 features & int8attn::kFusedPack ? " fuse" : "");
}

std::vector<Int8Tiling> int8_attention_tilings() {
  std::vector<Int8Tiling> tilings;
  for (const Int8Variant& v : variants()) tilings.push_back(v.tiling);
  return tilings;
}

bool int8_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  return sm90_attention_applies(q, k, v, options);
}

Int8Operands int8_attention_prepare(CudaOps& ops, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    const AttentionOptions& options) {
  expect_device_float(q_in, "attention q");
  expect_device_float(k_in, "attention k");
  expect_device_float(v_in, "attention v");
  WANRT_CHECK(q_in.dim() == 3 && k_in.dim() == 3 && v_in.dim() == 3 && k_in.shape() == v_in.shape() &&
                  q_in.size(1) == k_in.size(1) && q_in.size(2) == k_in.size(2),
              "cuda backend: attention needs q [Lq, H, d] and k, v [Lk, H, d]; got ", q_in.describe(), ", ",
              k_in.describe(), ", ", v_in.describe());
  WANRT_CHECK(q_in.size(2) == int8attn::kHeadDim, "cuda backend: the 8-bit attention kernel needs head_dim 128, got ",
              q_in.describe());
  WANRT_CHECK(!options.bias, "cuda backend: the 8-bit attention kernel takes no bias");
  WANRT_CHECK(options.scale >= 0.0f, "cuda backend: the 8-bit attention kernel needs scale >= 0, got ",
              options.scale);
  Int8Operands r;
  r.q_len = q_in.size(0);
  r.heads = q_in.size(1);
  const int64_t keys = k_in.size(0);
  r.kv_len = options.kv_len < 0 ? keys : options.kv_len;
  WANRT_CHECK(r.kv_len >= 1 && r.kv_len <= keys, "cuda backend: attention kv_len ", options.kv_len,
              " out of range for ", keys, " keys");
  WANRT_CHECK(r.heads >= 1 && r.heads <= 65535 && r.q_len < (int64_t{1} << 31) && keys < (int64_t{1} << 31),
              "cuda backend: attention sizes out of range: ", q_in.describe(), ", ", k_in.describe());
  const int64_t k_tiles = (r.kv_len + int8attn::kBlockN - 1) / int8attn::kBlockN;
  r.kv_padded = k_tiles * int8attn::kBlockN;

  const Tensor q = ops.as_dtype(q_in, DType::BF16);
  const Tensor k = ops.as_dtype(k_in, DType::BF16);
  const Tensor v = ops.as_dtype(v_in, DType::BF16);
  WANRT_CHECK(aligned_16(q.raw()) && aligned_16(k.raw()) && aligned_16(v.raw()),
              "cuda backend: the 8-bit attention kernel needs 16-byte aligned q/k/v");
  const int heads = static_cast<int>(r.heads), kv_len = static_cast<int>(r.kv_len);
  r.q8 = ops.empty(DType::I8, {r.q_len, r.heads, int8attn::kHeadDim});
  r.k8 = ops.empty(DType::I8, {r.kv_len, r.heads, int8attn::kHeadDim});
  r.vt8 = ops.empty(DType::F8_E4M3, {r.heads, int8attn::kHeadDim, r.kv_padded});
  r.q_scale = ops.empty(DType::F32, {r.heads, r.q_len});
  r.k_scale = ops.empty(DType::F32, {r.heads, k_tiles});
  r.v_scale = ops.empty(DType::F32, {r.heads, int8attn::kHeadDim});
  const int64_t chunks = (r.kv_len + int8attn::kStatRows - 1) / int8attn::kStatRows;
  Tensor k_partial = ops.empty(DType::F32, {r.heads, chunks, int8attn::kHeadDim});
  Tensor v_partial = ops.empty(DType::F32, {r.heads, chunks, int8attn::kHeadDim});
  Tensor k_mean = ops.empty(DType::F32, {r.heads, int8attn::kHeadDim});
  const cudaStream_t stream = ops.stream();
  const auto* kp = static_cast<const __nv_bfloat16*>(k.raw());
  const auto* vp = static_cast<const __nv_bfloat16*>(v.raw());

  int8attn::kv_stats_kernel<<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(heads)), 256, 0, stream>>>(
      kp, vp, kv_len, heads, static_cast<float*>(k_partial.raw_mut()), static_cast<float*>(v_partial.raw_mut()));
  WANRT_CHECK_LAUNCH();
  int8attn::kv_finish_kernel<<<static_cast<unsigned>(heads), int8attn::kHeadDim, 0, stream>>>(
      static_cast<const float*>(k_partial.raw()), static_cast<const float*>(v_partial.raw()),
      static_cast<int>(chunks), kv_len, static_cast<float*>(k_mean.raw_mut()),
      static_cast<float*>(r.v_scale.raw_mut()));
  WANRT_CHECK_LAUNCH();
  if (r.q_len > 0) {
    const int64_t items = r.q_len * r.heads;
    int8attn::quantize_q_kernel<<<static_cast<unsigned>((items + 15) / 16), 256, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(q.raw()), items, static_cast<int>(r.q_len), heads,
        options.scale * sm90::kLog2e, static_cast<int8_t*>(r.q8.raw_mut()), static_cast<float*>(r.q_scale.raw_mut()));
    WANRT_CHECK_LAUNCH();
  }
  const dim3 tiles_grid(static_cast<unsigned>(k_tiles), static_cast<unsigned>(heads));
  int8attn::quantize_k_kernel<<<tiles_grid, 256, 0, stream>>>(kp, kv_len, heads,
                                                              static_cast<const float*>(k_mean.raw()),
                                                              static_cast<int8_t*>(r.k8.raw_mut()),
                                                              static_cast<float*>(r.k_scale.raw_mut()));
  WANRT_CHECK_LAUNCH();
  int8attn::quantize_v_kernel<<<tiles_grid, 256, 0, stream>>>(vp, kv_len, heads, r.kv_padded,
                                                              static_cast<const float*>(r.v_scale.raw()),
                                                              static_cast<uint8_t*>(r.vt8.raw_mut()));
  WANRT_CHECK_LAUNCH();
  return r;
}

Tensor int8_attention_run(CudaOps& ops, const Int8Operands& r, const Int8Tiling& tiling) {
  WANRT_CHECK(sm90_attention_available(ops.device()),
              "cuda backend: the 8-bit attention kernel needs an sm_90 GPU (H100/H200)");
  const Int8Variant* variant = nullptr;
  for (const Int8Variant& v : variants())
    if (v.tiling == tiling) variant = &v;
  WANRT_CHECK(variant != nullptr, "cuda backend: no 8-bit attention tiling ", tiling.name());
  Tensor out = ops.empty(DType::BF16, {r.q_len, r.heads, int8attn::kHeadDim});
  if (r.q_len == 0) return out;
  const int64_t m_blocks = (r.q_len + 127) / 128;
  WANRT_CHECK(m_blocks * r.heads < (int64_t{1} << 31), "cuda backend: attention has too many tiles: ",
              out.describe());
  const auto d = static_cast<cuuint64_t>(int8attn::kHeadDim);
  const auto h = static_cast<cuuint64_t>(r.heads);
  Params p{};
  p.q_map = make_byte_map(r.q8.raw(), {d, h, static_cast<cuuint64_t>(r.q_len)}, {d, h * d}, {128, 1, 64}, "q");
  p.k_map = make_byte_map(r.k8.raw(), {d, h, static_cast<cuuint64_t>(r.kv_len)}, {d, h * d}, {128, 1, 128}, "k");
  const auto padded = static_cast<cuuint64_t>(r.kv_padded);
  p.v_map = make_byte_map(r.vt8.raw(), {padded, d, h}, {padded, padded * d}, {128, 128, 1}, "v");
  p.q_scale = static_cast<const float*>(r.q_scale.raw());
  p.k_scale = static_cast<const float*>(r.k_scale.raw());
  p.v_scale = static_cast<const float*>(r.v_scale.raw());
  p.out = static_cast<__nv_bfloat16*>(out.raw_mut());
  p.out_token_stride = r.heads * int8attn::kHeadDim;
  p.q_len = static_cast<int>(r.q_len);
  p.kv_len = static_cast<int>(r.kv_len);
  p.heads = static_cast<int>(r.heads);
  p.m_blocks = static_cast<int>(m_blocks);
  p.tiles = static_cast<int>(m_blocks * r.heads);
  p.k_tiles = static_cast<int>(r.kv_padded / int8attn::kBlockN);
  int multiprocessors = 0;
  WANRT_CHECK_CUDA(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, ops.device()));
  variant->launch(p, multiprocessors, ops.stream());
  return out;
}

Tensor int8_attention(CudaOps& ops, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options,
                      const Int8Tiling& tiling) {
  WANRT_CHECK(sm90_attention_available(ops.device()),
              "cuda backend: the 8-bit attention kernel needs an sm_90 GPU (H100/H200)");
  return int8_attention_run(ops, int8_attention_prepare(ops, q, k, v, options), tiling);
}

}  // namespace wanrt
