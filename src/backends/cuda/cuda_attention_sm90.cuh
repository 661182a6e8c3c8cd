// The Hopper (sm_90a) attention kernel behind CudaOps::attention for head_dim 128 (the host
// side, the tilings compiled and their measurements are in cuda_attention_sm90.cu):
// softmax(scale·q·kᵀ, keys < kv_len)·v for bf16 q [Lq, H, 128], k/v [Lk, H, 128] in the
// engine's token-major layout (row stride H·128), bf16 output in q's layout, F32 softmax.
//
// Design (FlashAttention-3's, written here with raw PTX):
// - Loads: TMA (cp.async.bulk.tensor) from 3-D tensor maps (128 columns, H heads, L tokens)
//   with boxes of 64 columns × 1 head × rows, so each 128-wide head row lands as two
//   [rows][128 B] blocks with the 128-byte swizzle that wgmma reads without bank conflicts.
//   The K/V maps end at kv_len: keys past it are zero-filled by the TMA unit and never read
//   from memory (masked keys may hold anything, even NaN); their scores are masked to −inf.
//   Query rows past Lq are zero-filled too and never stored.
// - Roles: warpgroup 0 is the producer (one thread issues every TMA; with two consumers the
//   warpgroup gives its registers away with setmaxnreg), warpgroups 1.. are consumers, each
//   owning 64 query rows of the CTA's query tile. Shared memory: the Q tile, and a ring of
//   kStages K tiles and V tiles with separate full/empty mbarriers, so K is handed back as
//   soon as S = Q·Kᵀ is done and V after O += P·V.
// - Math: S = Q·Kᵀ by wgmma m64nNk16 with both operands in shared memory (K-major);
//   O += P·V by wgmma m64n128k16 with P in registers (the F32 accumulator layout of S, packed
//   to bf16 pairs, is the A-fragment layout) and V read MN-major straight from its row-major
//   tile (no transpose). Online softmax in the exp2 domain with scale·log2(e) in one FFMA.
// - Schedule (kOverlap): iteration j issues S_j = Q·K_jᵀ and O += P_{j−1}·V_{j−1} back to
//   back, then runs the softmax of S_j while the tensor cores still work on P_{j−1}·V_{j−1}.
//   With two consumers (kPingPong) two named barriers make the warpgroups take turns at
//   issuing their GEMMs, so one warpgroup's softmax overlaps the other's GEMMs. (The default
//   tiling runs without it: with Q in registers and the TMA-store epilogue it measured
//   faster without; see the .cu.)
// - Optional features (kFeatures): Q in registers for Q·Kᵀ, the epilogue through shared
//   memory and a TMA store, independent reduction chains in the softmax (described below).
// - Persistent: grid = the number of SMs; CTA b takes tiles b, b + grid, ... in the order
//   (head, query tile), query tiles fastest, so the CTAs running at one time share one head's
//   K/V in L2 (2·75,600·128·2 B = 39 MB at 720p, below the H100's 50 MB).
//   FLOPs: 4·H·Lq·kv_len·128 (two GEMMs); exp2: H·Lq·kv_len.
//   Bytes from HBM: (2·Lq + 2·kv_len)·H·128·2 (Q in, O out, K/V once per head while it stays
//   in L2); from L2: ⌈Lq/block_m⌉·2·kv_len·H·128·2.
// Correctness evidence: tests/gpu/test_cuda_attention.cpp runs every tiling against the CPU
// reference (all passed on an H100, compute-sanitizer memcheck clean before the features were
// added; with them, all 33 attention tests passed on an H100 on 2026-11-25); the descriptors
// follow the PTX ISA's canonical 128-byte-swizzle layouts (K-major: 8-row groups 1024 B
// apart; MN-major: 8-key groups 1024 B apart, the two 64-column halves block_n·128 B apart).
#pragma once

#include <cuda.h>  // CUtensorMap (the struct only; no driver-API call is made here)
#include <cuda_bf16.h>

#include <cstdint>

namespace wanrt::sm90 {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr int kHeadDim = 128;

struct Sm90Params {
  CUtensorMap q_map;  // (128, heads, q_len), box (64, 1, 64)
  CUtensorMap k_map;  // (128, heads, kv_len), box (64, 1, block_n)
  CUtensorMap v_map;  // same as k_map
  CUtensorMap o_map;  // the output, as q_map (used by the kStoreTma epilogue)
  __nv_bfloat16* out;  // [q_len, heads, 128]
  int64_t out_token_stride;  // heads·128
  int q_len, kv_len, heads;
  int m_blocks;  // query tiles per head
  int tiles;     // m_blocks·heads
  float scale_log2;  // scale·log2(e), scale >= 0
};

// Optional parts of the consumer's work (Sm90Config's kFeatures, Sm90Tiling::features):
// - kFastReduce: the softmax's row max and row sum as 4 independent chains per row instead
//   of one 32-deep chain of dependent FMNMX/FADD (the idea: shorten a warp's softmax). It
//   measured slower on the self-attention shapes (the softmax is hidden behind the other
//   consumer's GEMMs already; the extra live registers cost more).
// - kStoreTma: the epilogue writes O through shared memory (the 128-byte swizzle, 32 KB more)
//   and a TMA store of full 128-byte lines, instead of 4-byte stores straight from the
//   accumulators (each warp store touching 8 rows 10 KB apart). Matters where a query tile
//   sees few key tiles: cross-attention to 512 keys has 4.
// - kQInRegisters: each consumer loads its 64×128 Q slice into registers once per query tile
//   (ldmatrix, 32 registers) and runs S = Q·Kᵀ with A from registers, instead of the SS form
//   re-reading Q's 2 KB from shared memory at every k16 step (at full tensor rate the wgmma
//   operands and the TMA writes ask ~110 of shared memory's 128 bytes per clock; Q is 32 of
//   them). The Q buffer is also handed back at once, so the next tile's Q loads during this
//   one.
inline constexpr int kFastReduce = 1;
inline constexpr int kStoreTma = 4;
inline constexpr int kQInRegisters = 8;

// One compiled configuration. Shared memory: Q 64·256 B per consumer, kStages × (K + V) of
// block_n·256 B each (and with kStoreTma an O tile of 64·256 B per consumer).
template <int kConsumers_, int kBlockN_, bool kOverlap_, bool kPingPong_, int kFeatures_ = 0>
struct Sm90Config {
  static constexpr int kFeatures = kFeatures_;
  static constexpr bool kFastReduce = (kFeatures & sm90::kFastReduce) != 0;
  static constexpr bool kStoreTma = (kFeatures & sm90::kStoreTma) != 0;
  static constexpr bool kQInRegisters = (kFeatures & sm90::kQInRegisters) != 0;
  static constexpr int kConsumers = kConsumers_;
  static constexpr int kBlockM = 64 * kConsumers;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = 2;
  static constexpr bool kOverlap = kOverlap_;
  static constexpr bool kPingPong = kPingPong_;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  // Two consumers need more than the 168 registers a 384-thread block starts with; the
  // producer warpgroup gives its registers away (128·24 + 256·240 = 64,512 of 65,536).
  static constexpr bool kRegisterSplit = kConsumers >= 2;
  static constexpr int kProducerRegisters = 24;
  static constexpr int kConsumerRegisters = 240;
  static constexpr uint32_t kQHalfBytes = 64 * 128;  // 64 rows × 64 columns
  static constexpr uint32_t kQBytes = kConsumers * 2 * kQHalfBytes;
  static constexpr uint32_t kKvHalfBytes = kBlockN * 128;
  static constexpr uint32_t kKvTileBytes = 2 * kKvHalfBytes;
  static constexpr uint32_t kStageBytes = 2 * kKvTileBytes;  // K then V
  // + 1 KB: the dynamic shared memory base is rounded up to the 1024-byte swizzle period.
  static constexpr uint32_t kOBytes = kStoreTma ? kQBytes : 0;
  static constexpr uint32_t kSmemBytes = kQBytes + kStages * kStageBytes + kOBytes + 1024;
  static_assert(kBlockN == 128 || kBlockN == 176, "wgmma wrappers exist for N = 128 and 176");
  static_assert(!kQInRegisters || (kBlockN == 128 && kOverlap), "Q in registers: N = 128, overlapped");
  static_assert(kConsumers == 1 || kConsumers == 2, "one or two consumer warpgroups");
  static_assert(!kPingPong || (kConsumers == 2 && kOverlap), "ping-pong needs two overlapped consumers");
  static_assert(kKvHalfBytes % 1024 == 0, "every block starts on a swizzle period");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
};

// wgmma, setmaxnreg and the tensor-map TMA need sm_90a; the build's other pass (compute_80
// PTX for other GPUs) compiles the kernel as a stub that the host never launches.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WANRT_SM90_KERNEL 1
#endif

#ifdef WANRT_SM90_KERNEL
namespace ptx {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- mbarriers ----
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Arrives and announces `bytes` of TMA writes that will complete the current phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
// Spins until the phase with parity `parity` has completed. A fresh barrier is in phase 0,
// so waiting for parity 1 returns at once (how a producer's first pass finds every slot free).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// ---- TMA ----
__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
// The box at (column, head, row) of `map` into shared memory at `dst`; completes on `bar`.
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap* map, int column, int head,
                                         int row, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(column), "r"(head), "r"(row), "r"(bar)
      : "memory");
}

// The box at (column, head, row) of `map` from shared memory at `src` (rows past the map's
// end are not written); completes in the thread's current bulk group.
__device__ __forceinline__ void tma_store(const CUtensorMap* map, uint32_t src, int column, int head, int row) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%1, %2, %3}], [%4];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(column), "r"(head), "r"(row), "r"(src)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Waits until every bulk store this thread committed has finished reading shared memory.
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
// Makes this thread's generic-proxy shared-memory writes visible to the TMA unit.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void st_shared(uint32_t address, uint32_t value) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(address), "r"(value) : "memory");
}

// ---- register reallocation and named barriers ----
template <int kRegisters>
__device__ __forceinline__ void release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ __forceinline__ void claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- wgmma ----
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Pins registers in place around asynchronous wgmma: the compiler may neither move reads
// of an accumulator above the wait that completes it nor writes below an issue.
template <int N>
__device__ __forceinline__ void fence_registers(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_registers(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// Shared-memory matrix descriptors for the 128-byte swizzle (layout type 1): start address,
// leading byte offset (bits 16–29) and stride byte offset (bits 32–45), all in 16-byte units.
// K-major (Q, K): rows of 128 B, 8-row groups 1024 B apart; the leading offset is unused
// (1 by convention); a k16 step inside the 128-byte row is +32 B on the start address (the
// hardware applies the swizzle to the final address, as TMA did when writing).
__device__ __forceinline__ uint64_t k_major_desc(uint32_t address) {
  return uint64_t{(address & 0x3FFFFu) >> 4} | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) |
         (uint64_t{1} << 62);
}
// MN-major (V as the B operand of P·V: keys are K, head columns are N, N contiguous): rows
// (keys) of 128 B, 8-key groups 1024 B apart (stride offset); the next 64 columns are the
// other half block, `half_bytes` away (leading offset).
__device__ __forceinline__ uint64_t mn_major_desc(uint32_t address, uint32_t half_bytes) {
  return uint64_t{(address & 0x3FFFFu) >> 4} | (uint64_t{half_bytes >> 4} << 16) |
         (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

// ---- math ----
__device__ __forceinline__ float exp2_approx(float x) {  // ex2.approx(−inf) = +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ uint32_t pack_bf16x2(float low, float high) {
  uint32_t packed;  // cvt packs its first source into the upper half
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(packed) : "f"(high), "f"(low));
  return packed;
}

// D[64×128] (+)= A·B, A and B from shared memory (both K-major): 64 F32 accumulators.
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], uint64_t a_desc, uint64_t b_desc,
                                                   uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a_desc), "l"(b_desc), "r"(accumulate));
}

// D[64×176] (+)= A·B, A and B from shared memory (both K-major): 88 F32 accumulators.
__device__ __forceinline__ void wgmma_m64n176k16_ss(float (&d)[88], uint64_t a_desc, uint64_t b_desc,
                                                   uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %90, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87"
      "}, %88, %89, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
      : "l"(a_desc), "l"(b_desc), "r"(accumulate));
}

// D[64×128] += A·B, A (bf16 pairs) from registers, B from shared memory MN-major: 64 F32
// accumulators.
__device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4],
                                                   uint64_t b_desc) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1u));
}

// D[64×128] (+)= A·B, A (bf16 pairs) from registers, B from shared memory K-major (Q·Kᵀ with
// Q in registers).
__device__ __forceinline__ void wgmma_m64n128k16_rs_k_major(float (&d)[64], const uint32_t (&a)[4],
                                                           uint64_t b_desc, uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\n"
      "setp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(accumulate));
}

// Four 8×8 bf16 matrices from shared memory, one row address per lane (lanes 8·i.. give
// matrix i), in the mma fragment layout: thread t holds row t/4, columns 2·(t%4) + {0, 1}.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}

template <int N>
__device__ __forceinline__ void wgmma_qk(float (&d)[N / 2], uint64_t a_desc, uint64_t b_desc,
                                         uint32_t accumulate) {
  if constexpr (N == 128) {
    wgmma_m64n128k16_ss(d, a_desc, b_desc, accumulate);
  } else {
    wgmma_m64n176k16_ss(d, a_desc, b_desc, accumulate);
  }
}

}  // namespace ptx

// mbarrier slots (8 bytes each) in the kernel's static shared array.
template <class C>
struct BarrierSlots {
  static constexpr int kQFull = 0;   // the Q tile has landed (TMA bytes)
  static constexpr int kQEmpty = 1;  // every consumer warp is done with Q (its last S = Q·Kᵀ)
  static constexpr int kKFull = 2;   // + stage
  static constexpr int kKEmpty = kKFull + C::kStages;
  static constexpr int kVFull = kKEmpty + C::kStages;
  static constexpr int kVEmpty = kVFull + C::kStages;
  static constexpr int kCount = kVEmpty + C::kStages;
  // Consumers release a slot per warp (lane 0, after the warp's wgmma.wait_group).
  static constexpr uint32_t kConsumerArrivals = 4 * C::kConsumers;
};

// One thread issues every load, in the order the consumers use them: per query tile Q (once
// the previous tile's Q is released), then K_j, V_j for j = 0, 1, ... through the ring.
template <class C>
__device__ __forceinline__ void run_producer(const Sm90Params& p, uint32_t q_smem, uint32_t kv_smem,
                                             uint32_t bars) {
  using B = BarrierSlots<C>;
  auto bar = [&](int slot) { return bars + 8u * static_cast<uint32_t>(slot); };
  const int kv_tiles = (p.kv_len + C::kBlockN - 1) / C::kBlockN;
  uint32_t ring = 0;  // K/V tiles issued so far (the ring position runs on across query tiles)
  uint32_t local = 0;
  for (int tile = static_cast<int>(blockIdx.x); tile < p.tiles; tile += static_cast<int>(gridDim.x), ++local) {
    const int head = tile / p.m_blocks;
    const int m0 = (tile % p.m_blocks) * C::kBlockM;
    ptx::mbar_wait(bar(B::kQEmpty), (local & 1u) ^ 1u);
    ptx::mbar_arrive_expect_tx(bar(B::kQFull), C::kQBytes);
#pragma unroll
    for (int c = 0; c < C::kConsumers; ++c)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        ptx::tma_load(q_smem + static_cast<uint32_t>(2 * c + half) * C::kQHalfBytes, &p.q_map, 64 * half,
                      head, m0 + 64 * c, bar(B::kQFull));
    for (int j = 0; j < kv_tiles; ++j, ++ring) {
      const uint32_t stage = ring % C::kStages, phase = (ring / C::kStages) & 1u;
      const uint32_t k_tile = kv_smem + stage * C::kStageBytes, v_tile = k_tile + C::kKvTileBytes;
      const int key0 = j * C::kBlockN;
      ptx::mbar_wait(bar(B::kKEmpty + static_cast<int>(stage)), phase ^ 1u);
      ptx::mbar_arrive_expect_tx(bar(B::kKFull + static_cast<int>(stage)), C::kKvTileBytes);
      ptx::tma_load(k_tile, &p.k_map, 0, head, key0, bar(B::kKFull + static_cast<int>(stage)));
      ptx::tma_load(k_tile + C::kKvHalfBytes, &p.k_map, 64, head, key0, bar(B::kKFull + static_cast<int>(stage)));
      ptx::mbar_wait(bar(B::kVEmpty + static_cast<int>(stage)), phase ^ 1u);
      ptx::mbar_arrive_expect_tx(bar(B::kVFull + static_cast<int>(stage)), C::kKvTileBytes);
      ptx::tma_load(v_tile, &p.v_map, 0, head, key0, bar(B::kVFull + static_cast<int>(stage)));
      ptx::tma_load(v_tile + C::kKvHalfBytes, &p.v_map, 64, head, key0, bar(B::kVFull + static_cast<int>(stage)));
    }
  }
}

// Online softmax of one S tile in place (S becomes P = exp2(S·scale_log2 − max·scale_log2)),
// updating the running max and this thread's part of the row sums. Thread layout of the
// m64nN accumulator: rows lane/4 (h = 0) and lane/4 + 8 (h = 1) of the warp's 16, columns
// 8·j + 2·(lane%4) + {0, 1} of chunk j; element 4·j + 2·h + e. kMask: keys ≥ valid_keys
// (the tail of the last tile) get no weight.
template <int kBlockN, bool kMask>
__device__ __forceinline__ void online_softmax(float (&s)[kBlockN / 2], float (&row_max)[2],
                                               float (&row_sum)[2], float (&alpha)[2],
                                               float scale_log2, int valid_keys, int lane) {
  constexpr int kChunks = kBlockN / 8;
  const int column0 = 2 * (lane & 3);
  if constexpr (kMask) {
#pragma unroll
    for (int j = 0; j < kChunks; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (8 * j + column0 + (e & 1) >= valid_keys) s[4 * j + e] = -INFINITY;
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kChunks; ++j)
      tile_max = fmaxf(tile_max, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));  // the row's quad
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    // Every tile holds at least one unmasked key, so new_max is finite.
    const float new_max = fmaxf(row_max[h], tile_max);
    alpha[h] = row_max[h] == -INFINITY ? 0.0f : ptx::exp2_approx((row_max[h] - new_max) * scale_log2);
    row_max[h] = new_max;
    const float offset = new_max * scale_log2;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kChunks; ++j)
#pragma unroll
      for (int e = 2 * h; e < 2 * h + 2; ++e) {
        float x = ptx::exp2_approx(fmaf(s[4 * j + e], scale_log2, -offset));
        // Explicit zero: with scale 0, −inf·0 would be NaN.
        if constexpr (kMask) x = 8 * j + column0 + (e & 1) < valid_keys ? x : 0.0f;
        s[4 * j + e] = x;
        sum += x;
      }
    row_sum[h] = row_sum[h] * alpha[h] + sum;  // this thread's columns; quad-summed at the end
  }
}

// The same with kFastReduce's independent chains (online_softmax above is what the tilings
// without it run).
template <class C, bool kMask>
__device__ __forceinline__ void online_softmax_tuned(float (&s)[C::kBlockN / 2], float (&row_max)[2],
                                                     float (&row_sum)[2], float (&alpha)[2],
                                                     float scale_log2, int valid_keys, int lane) {
  constexpr int kChunks = C::kBlockN / 8;
  constexpr int kChains = C::kFastReduce ? 4 : 1;
  static_assert(kChunks >= kChains, "a chunk per chain at least");
  const int column0 = 2 * (lane & 3);
  if constexpr (kMask) {
#pragma unroll
    for (int j = 0; j < kChunks; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (8 * j + column0 + (e & 1) >= valid_keys) s[4 * j + e] = -INFINITY;
  }
  // Both rows' maxima first (independent chains, then the two rows' shuffles interleaved).
  float tile_max[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float chain[kChains];
#pragma unroll
    for (int c = 0; c < kChains; ++c) chain[c] = fmaxf(s[4 * c + 2 * h], s[4 * c + 2 * h + 1]);
#pragma unroll
    for (int j = kChains; j < kChunks; ++j)
      chain[j % kChains] = fmaxf(chain[j % kChains], fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
#pragma unroll
    for (int width = kChains / 2; width > 0; width /= 2)
#pragma unroll
      for (int c = 0; c < width; ++c) chain[c] = fmaxf(chain[c], chain[c + width]);
    tile_max[h] = chain[0];
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
#pragma unroll
  for (int h = 0; h < 2; ++h) tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
  float offset[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    // Every tile holds at least one unmasked key, so new_max is finite.
    const float new_max = fmaxf(row_max[h], tile_max[h]);
    alpha[h] = row_max[h] == -INFINITY ? 0.0f : ptx::exp2_approx((row_max[h] - new_max) * scale_log2);
    row_max[h] = new_max;
    offset[h] = new_max * scale_log2;
  }
  float sum[2][kChains];
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int c = 0; c < kChains; ++c) sum[h][c] = 0.0f;
#pragma unroll
  for (int j = 0; j < kChunks; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int h = e >> 1;
      const float x_log2 = fmaf(s[4 * j + e], scale_log2, -offset[h]);
      float x = ptx::exp2_approx(x_log2);
      // Explicit zero: with scale 0, −inf·0 would be NaN.
      if constexpr (kMask) x = 8 * j + column0 + (e & 1) < valid_keys ? x : 0.0f;
      s[4 * j + e] = x;
      sum[h][j % kChains] += x;
    }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int width = kChains / 2; width > 0; width /= 2)
#pragma unroll
      for (int c = 0; c < width; ++c) sum[h][c] += sum[h][c + width];
    row_sum[h] = row_sum[h] * alpha[h] + sum[h][0];  // this thread's columns; quad-summed at the end
  }
}

// One consumer warpgroup: 64 query rows of every query tile of this CTA.
template <class C>
__device__ __forceinline__ void run_consumer(const Sm90Params& p, int consumer, uint32_t q_smem,
                                             uint32_t kv_smem, uint32_t o_smem, uint32_t bars) {
  using B = BarrierSlots<C>;
  constexpr int kS = C::kBlockN / 2;        // S accumulators per thread
  constexpr int kPvSteps = C::kBlockN / 16;  // k16 steps of P·V
  const int tid = static_cast<int>(threadIdx.x) % 128, warp = tid / 32, lane = tid % 32;
  const uint32_t q_tile = q_smem + static_cast<uint32_t>(consumer) * 2 * C::kQHalfBytes;
  auto bar = [&](int slot) { return bars + 8u * static_cast<uint32_t>(slot); };
  auto k_tile = [&](uint32_t stage) { return kv_smem + stage * C::kStageBytes; };
  auto v_tile = [&](uint32_t stage) { return kv_smem + stage * C::kStageBytes + C::kKvTileBytes; };
  // Lane 0 of each warp hands a slot back once the warp's wgmma reading it has completed.
  auto release = [&](int slot) {
    __syncwarp();
    if (lane == 0) ptx::mbar_arrive(bar(slot));
  };

  const int kv_tiles = (p.kv_len + C::kBlockN - 1) / C::kBlockN;
  const int last_valid = p.kv_len - (kv_tiles - 1) * C::kBlockN;  // 1 .. kBlockN

  // S = Q·Kᵀ for the K tile in `stage`: 8 k16 steps over the two 64-column halves.
  // Q in registers (kQInRegisters): k16 step ks's A fragment, loaded once per query tile.
  uint32_t q_frag[C::kQInRegisters ? kHeadDim / 16 : 1][4];
  auto load_q = [&] {
    // Lane l addresses row (l/8 % 2)·8 + l%8 of the warp's 16, 16-byte chunk l/16 of the
    // step's 32 bytes; the chunk index is XOR-swizzled with the row as TMA wrote it.
    const uint32_t row = static_cast<uint32_t>(warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7));
#pragma unroll
    for (int ks = 0; ks < (C::kQInRegisters ? kHeadDim / 16 : 0); ++ks) {
      const uint32_t chunk = static_cast<uint32_t>((ks % 4) * 2 + (lane >> 4));
      ptx::ldmatrix_x4(q_frag[ks], q_tile + static_cast<uint32_t>(ks / 4) * C::kQHalfBytes + row * 128 +
                                       ((chunk ^ (row & 7u)) << 4));
    }
  };
  auto issue_qk = [&](float (&s)[kS], uint32_t stage) {
    ptx::fence_registers(s);
    ptx::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      const uint32_t in_row = static_cast<uint32_t>(ks % 4) * 32;
      const uint64_t b = ptx::k_major_desc(k_tile(stage) + static_cast<uint32_t>(ks / 4) * C::kKvHalfBytes + in_row);
      if constexpr (C::kQInRegisters) {
        ptx::wgmma_m64n128k16_rs_k_major(s, q_frag[ks], b, ks > 0 ? 1u : 0u);
      } else {
        const uint64_t a = ptx::k_major_desc(q_tile + static_cast<uint32_t>(ks / 4) * C::kQHalfBytes + in_row);
        ptx::wgmma_qk<C::kBlockN>(s, a, b, ks > 0 ? 1u : 0u);
      }
    }
    ptx::wgmma_commit();
    ptx::fence_registers(s);
  };
  // O += P·V for the V tile in `stage`: one k16 step per 16 keys (2 KB of V rows each).
  auto issue_pv = [&](float (&o)[64], uint32_t (&pf)[kS / 2], uint32_t stage) {
    ptx::fence_registers(o);
    ptx::fence_registers(pf);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kPvSteps; ++kk) {
      const uint32_t a[4] = {pf[4 * kk], pf[4 * kk + 1], pf[4 * kk + 2], pf[4 * kk + 3]};
      ptx::wgmma_m64n128k16_rs(o, a, ptx::mn_major_desc(v_tile(stage) + static_cast<uint32_t>(kk) * 2048, C::kKvHalfBytes));
    }
    ptx::wgmma_commit();
    ptx::fence_registers(o);
    ptx::fence_registers(pf);
  };
  auto softmax = [&](float (&s)[kS], float (&row_max)[2], float (&row_sum)[2], float (&alpha)[2], bool last) {
    if constexpr (C::kFeatures != 0) {
      if (last && last_valid < C::kBlockN)
        online_softmax_tuned<C, true>(s, row_max, row_sum, alpha, p.scale_log2, last_valid, lane);
      else
        online_softmax_tuned<C, false>(s, row_max, row_sum, alpha, p.scale_log2, C::kBlockN, lane);
    } else if (last && last_valid < C::kBlockN) {
      online_softmax<C::kBlockN, true>(s, row_max, row_sum, alpha, p.scale_log2, last_valid, lane);
    } else {
      online_softmax<C::kBlockN, false>(s, row_max, row_sum, alpha, p.scale_log2, C::kBlockN, lane);
    }
  };
  // O·alpha: skipped by a warp whose rows' maxima all stayed put (then alpha is exactly 1),
  // which after the first few tiles is nearly every tile.
  auto rescale = [&](float (&o)[64], const float (&alpha)[2]) {
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
      for (int i = 0; i < 64; ++i) o[i] *= alpha[(i >> 1) & 1];
    }
  };
  // P = S packed to bf16 pairs: accumulator chunks 2·kk, 2·kk + 1 are the A fragment of k16
  // step kk (rows g, g + 8 × keys 2c.., 8 + 2c..).
  auto pack = [&](uint32_t (&pf)[kS / 2], const float (&s)[kS]) {
#pragma unroll
    for (int i = 0; i < kS / 2; ++i) pf[i] = ptx::pack_bf16x2(s[2 * i], s[2 * i + 1]);
  };

  // Ping-pong: consumer c issues its GEMMs after bar.sync on barrier 1 + c, then lets the
  // other consumer go (bar.arrive on its barrier). Consumer 0 goes first without waiting, and
  // consumer 1 skips its very last arrive, so every barrier instance completes (no arrivals
  // are left pending when the CTA exits).
  const int my_tiles = (p.tiles - static_cast<int>(blockIdx.x) + static_cast<int>(gridDim.x) - 1) /
                       static_cast<int>(gridDim.x);
  const int turns_total = my_tiles * (kv_tiles - 1);
  int turns_done = 0;
  auto turn_begin = [&] {
    if constexpr (C::kPingPong)
      if (consumer == 1 || turns_done > 0) ptx::named_sync(1 + consumer, 256);
  };
  auto turn_end = [&] {
    if constexpr (C::kPingPong)
      if (consumer == 0 || turns_done < turns_total - 1) ptx::named_arrive(2 - consumer, 256);
    ++turns_done;
  };

  uint32_t ring = 0;
  uint32_t local = 0;
  for (int tile = static_cast<int>(blockIdx.x); tile < p.tiles; tile += static_cast<int>(gridDim.x), ++local) {
    const int head = tile / p.m_blocks;
    const int m0 = (tile % p.m_blocks) * C::kBlockM;
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
    float s[kS];
    uint32_t pf[kS / 2];
    ptx::mbar_wait(bar(B::kQFull), local & 1u);
    if constexpr (C::kQInRegisters) {
      load_q();
      release(B::kQEmpty);  // the next tile's Q may land now
    }

    if constexpr (!C::kOverlap) {
      for (int j = 0; j < kv_tiles; ++j, ++ring) {
        const uint32_t stage = ring % C::kStages, phase = (ring / C::kStages) & 1u;
        const bool last = j == kv_tiles - 1;
        ptx::mbar_wait(bar(B::kKFull + static_cast<int>(stage)), phase);
        issue_qk(s, stage);
        ptx::wgmma_wait<0>();
        ptx::fence_registers(s);
        release(B::kKEmpty + static_cast<int>(stage));
        if (last) release(B::kQEmpty);
        float alpha[2];
        softmax(s, row_max, row_sum, alpha, last);
        rescale(o, alpha);
        pack(pf, s);
        ptx::mbar_wait(bar(B::kVFull + static_cast<int>(stage)), phase);
        issue_pv(o, pf, stage);
        ptx::wgmma_wait<0>();
        ptx::fence_registers(o);
        ptx::fence_registers(pf);
        release(B::kVEmpty + static_cast<int>(stage));
      }
    } else {
      // Prologue: S_0 and its softmax alone.
      uint32_t stage = ring % C::kStages, phase = (ring / C::kStages) & 1u;
      ptx::mbar_wait(bar(B::kKFull + static_cast<int>(stage)), phase);
      issue_qk(s, stage);
      ptx::wgmma_wait<0>();
      ptx::fence_registers(s);
      release(B::kKEmpty + static_cast<int>(stage));
      if (!C::kQInRegisters && kv_tiles == 1) release(B::kQEmpty);
      {
        float alpha[2];
        softmax(s, row_max, row_sum, alpha, kv_tiles == 1);
      }
      pack(pf, s);
      uint32_t v_stage = stage, v_phase = phase;  // the V tile that P belongs to
      ++ring;
      for (int j = 1; j < kv_tiles; ++j, ++ring) {
        stage = ring % C::kStages;
        phase = (ring / C::kStages) & 1u;
        const bool last = j == kv_tiles - 1;
        ptx::mbar_wait(bar(B::kKFull + static_cast<int>(stage)), phase);
        turn_begin();
        issue_qk(s, stage);
        ptx::mbar_wait(bar(B::kVFull + static_cast<int>(v_stage)), v_phase);
        issue_pv(o, pf, v_stage);
        turn_end();
        ptx::wgmma_wait<1>();  // S_j is done; P_{j−1}·V_{j−1} may still run
        ptx::fence_registers(s);
        release(B::kKEmpty + static_cast<int>(stage));
        if (!C::kQInRegisters && last) release(B::kQEmpty);
        float alpha[2];
        softmax(s, row_max, row_sum, alpha, last);
        ptx::wgmma_wait<0>();
        ptx::fence_registers(o);
        ptx::fence_registers(pf);
        release(B::kVEmpty + static_cast<int>(v_stage));
        rescale(o, alpha);
        pack(pf, s);
        v_stage = stage;
        v_phase = phase;
      }
      ptx::mbar_wait(bar(B::kVFull + static_cast<int>(v_stage)), v_phase);
      issue_pv(o, pf, v_stage);
      ptx::wgmma_wait<0>();
      ptx::fence_registers(o);
      ptx::fence_registers(pf);
      release(B::kVEmpty + static_cast<int>(v_stage));
    }

    if constexpr (C::kStoreTma) {
      // Epilogue through shared memory: this consumer's 64 rows as two [64][128 B] blocks
      // in the 128-byte swizzle (16-byte chunk index XOR row % 8: a warp's 4-byte stores
      // hit 32 distinct banks), then one thread stores both with TMA (rows past q_len are
      // clipped by the tensor map). The buffer is reused on the next tile once the TMA unit
      // has read it (bulk_wait_read before the first write).
      const uint32_t o_tile = o_smem + static_cast<uint32_t>(consumer) * 2 * C::kQHalfBytes;
      if (tid == 0) ptx::bulk_wait_read();
      ptx::named_sync(3 + consumer, 128);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = row_sum[h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inverse = 1.0f / sum;
        const uint32_t row = static_cast<uint32_t>(warp * 16 + (lane >> 2) + 8 * h);
#pragma unroll
        for (int j = 0; j < kHeadDim / 8; ++j) {
          const uint32_t chunk = static_cast<uint32_t>(j % 8), half = static_cast<uint32_t>(j / 8);
          const uint32_t address = o_tile + half * C::kQHalfBytes + row * 128 + ((chunk ^ (row & 7u)) << 4) +
                                   static_cast<uint32_t>(lane & 3) * 4;
          ptx::st_shared(address, ptx::pack_bf16x2(o[4 * j + 2 * h] * inverse, o[4 * j + 2 * h + 1] * inverse));
        }
      }
      ptx::fence_proxy_async();
      ptx::named_sync(3 + consumer, 128);
      if (tid == 0) {
#pragma unroll
        for (int half = 0; half < 2; ++half)
          ptx::tma_store(&p.o_map, o_tile + static_cast<uint32_t>(half) * C::kQHalfBytes, 64 * half, head,
                         m0 + consumer * 64);
        ptx::bulk_commit();
      }
    } else {
      // Epilogue: O / rowsum -> bf16, straight from the accumulators (a quad writes 16
      // contiguous bytes of a row per 8-column chunk; O is 1/(2·kv_len/64) of the traffic).
      const int row0 = m0 + consumer * 64 + warp * 16 + (lane >> 2);
      __nv_bfloat16* out = p.out + int64_t{head} * kHeadDim + 2 * (lane & 3);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = row_sum[h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inverse = 1.0f / sum;
        const int row = row0 + 8 * h;
        if (row < p.q_len) {
          __nv_bfloat16* dst = out + int64_t{row} * p.out_token_stride;
#pragma unroll
          for (int j = 0; j < kHeadDim / 8; ++j)
            *reinterpret_cast<uint32_t*>(dst + 8 * j) =
                ptx::pack_bf16x2(o[4 * j + 2 * h] * inverse, o[4 * j + 2 * h + 1] * inverse);
        }
      }
    }
  }
  // The last TMA store must have read shared memory before the CTA exits.
  if constexpr (C::kStoreTma)
    if (tid == 0) ptx::bulk_wait_read();
}
#endif  // WANRT_SM90_KERNEL

template <class C>
__global__ void __launch_bounds__(C::kThreads, 1) sm90_attention_kernel(const __grid_constant__ Sm90Params p) {
#ifdef WANRT_SM90_KERNEL
  using B = BarrierSlots<C>;
  extern __shared__ unsigned char smem[];
  __shared__ uint64_t barrier_storage[B::kCount];
  // The 128-byte swizzle repeats every 1024 bytes, and TMA and wgmma both apply it to
  // absolute shared addresses: every tile starts on a 1024-byte boundary.
  const uint32_t base = (ptx::shared_address(smem) + 1023u) & ~1023u;
  const uint32_t q_smem = base, kv_smem = base + C::kQBytes;
  const uint32_t bars = ptx::shared_address(barrier_storage);
  const int warpgroup = static_cast<int>(threadIdx.x) / 128;
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
  __syncthreads();  // the last block-wide barrier: the producer's idle warps exit below
  if (warpgroup == 0) {
    if constexpr (C::kRegisterSplit) ptx::release_registers<C::kProducerRegisters>();
    if (threadIdx.x == 0) run_producer<C>(p, q_smem, kv_smem, bars);
    return;
  }
  if constexpr (C::kRegisterSplit) ptx::claim_registers<C::kConsumerRegisters>();
  run_consumer<C>(p, warpgroup - 1, q_smem, kv_smem, kv_smem + C::kStages * C::kStageBytes, bars);
#else
  __trap();  // never launched: the host takes this kernel only on an sm_90 GPU
#endif
}

}  // namespace wanrt::sm90
