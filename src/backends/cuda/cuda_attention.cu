// CudaOps::attention: softmax(scale·q·kᵀ + bias, keys < kv_len) · v for q [Lq, H, d] and
// k, v [Lk, H, d] in the engine's token-major layout (no transposes around the kernel), BF16
// output, F32 online softmax. Two kernels:
//
// Flash kernel (head_dim 64 and 128, no bias): FlashAttention-2's schedule written for
// mma.sync. A thread block owns block_m query rows of one head; each warp owns 16 or 32 of
// them. Q is loaded once; K/V tiles of block_n keys stream through a cp.async ring of 2–3
// shared-memory stages, stored with an XOR swizzle of the 16-byte chunks of each row (chunk
// c of row r sits at c ^ (r mod 8)) so that ldmatrix reads and cp.async writes are free of
// bank conflicts. S = Q·Kᵀ and O += P·V run on the tensor cores (m16n8k16 bf16, F32
// accumulators); the softmax runs on S in registers in the exp2 domain with scale·log2(e)
// folded into one FFMA per score; P is packed to bf16 in registers — the S accumulator
// layout is the A-fragment layout of the next mma — so it never touches shared memory.
// Keys ≥ kv_len are never read: their shared-memory rows are zero-filled by cp.async and
// their scores set to −inf, so masked keys may hold anything (even NaN). Query rows ≥ Lq
// are zero-filled and not stored. The grid is (query tiles, heads), query tiles fastest, so
// the blocks resident at one time share one head's K/V in L2.
//   FLOPs: 4·H·Lq·kv_len·d (two GEMMs); exp2: H·Lq·kv_len.
//   Bytes from HBM: (2·Lq + 2·kv_len)·H·d·2 (Q in, O out, K/V once while one head's K/V stays
//   in L2: 2·75,600·128·2 B = 39 MB per head at 720p < 50 MB L2); K/V traffic from L2:
//   ⌈Lq/block_m⌉·2·kv_len·H·d·2.
// Why mma.sync and not wgmma: this is the portable kernel (sm_80 and up); the Hopper
// wgmma/TMA kernel is separate work. With mma.sync the B operand (K, then V) is re-read from
// shared memory by every warp, 16·8·2 bytes per m16n8k16 for a 16-row warp; that read, not
// the tensor cores, bounds a warp tile of 16 rows near 2048 FLOP/clock/SM, so a warp tile
// of 32 rows (two m16 tiles sharing each K/V fragment) halves it. bench/bench_attention.cpp
// measures every tiling below; the first of each head dim is the fastest measured on an H100.
//
// Generic kernel (any head_dim ≤ 512, the bias case, negative scale): F32 math from F32 or
// BF16 inputs. A block of 128 threads owns 16 query rows of one head and streams 32-key
// tiles through shared memory (converted to F32); 8 threads share each query row's scores,
// and each thread accumulates up to 4 output columns of all 16 rows in registers. The score
// matrix is never materialised beyond one 16×32 tile. Used by umT5 (head_dim 64 with the
// relative-position bias, L ≤ 512) and the VAE's single-head mid-block attention.
//   FLOPs: 4·H·Lq·kv_len·d; bytes: (Lq + 2·⌈Lq/16⌉·kv_len)·H·d·(2 or 4) + bias H·Lq·kv_len·4.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backends/cuda/cuda_attention.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFullWarp = 0xffffffffu;

// ---------------------------------------------------------------------------------------------
// Flash kernel
// ---------------------------------------------------------------------------------------------

struct FlashParams {
  const __nv_bfloat16* q;
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  __nv_bfloat16* out;            // same layout as q
  int64_t q_token_stride;        // elements from one token to the next: heads·head_dim
  int64_t kv_token_stride;
  int q_len;
  int kv_len;                    // keys attended (the mask), ≤ the keys present
  int heads;
  float scale_log2;              // scale·log2(e): exp(scale·(s − m)) = exp2(s·scale_log2 − m·scale_log2)
};

template <int kHeadDim_, int kWarps_, int kRowTilesPerWarp_, int kBlockN_, int kStages_,
          bool kQInRegisters_, int kMinBlocksPerSm_>
struct FlashConfig {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kRowTilesPerWarp = kRowTilesPerWarp_;  // m16 tiles per warp
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  static constexpr bool kQInRegisters = kQInRegisters_;
  static constexpr int kMinBlocksPerSm = kMinBlocksPerSm_;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = kWarps * 16 * kRowTilesPerWarp;
  static constexpr int kRowBytes = kHeadDim * 2;
  static constexpr int kChunksPerRow = kHeadDim / 8;  // 16-byte chunks
  static constexpr int kQTileBytes = kBlockM * kRowBytes;
  static constexpr int kKvTileBytes = kBlockN * kRowBytes;
  static constexpr int kSmemBytes = kQTileBytes + kStages * 2 * kKvTileBytes;
  static_assert(kHeadDim % 64 == 0, "the swizzle permutes groups of 8 chunks: rows of ≥ 64 bf16");
  static_assert(kBlockN % 16 == 0 && kStages >= 2, "tiles are whole k16 steps; ≥ 2 stages");
  static_assert((kBlockN * kChunksPerRow) % kThreads == 0 && (kBlockM * kChunksPerRow) % kThreads == 0,
                "every thread copies the same number of chunks");
  static FlashTiling tiling() {
    return {kHeadDim, kBlockM, kBlockN, kWarps, kStages, kQInRegisters};
  }
};

// cp.async, ldmatrix and bf16 mma.sync need sm_80. The build also runs a pass for the
// compiler's default (older) architecture; there the flash kernel is an empty stub.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define WANRT_FLASH_UNSUPPORTED_ARCH 1
#endif

#ifndef WANRT_FLASH_UNSUPPORTED_ARCH
// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled tile.
template <int kRowBytes>
__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
  return static_cast<uint32_t>(row * kRowBytes + ((chunk ^ (row & 7)) << 4));
}

// This lane's ldmatrix row in a swizzled tile, at the four even chunk pairs of a group of 8
// chunks: chunk 2c + lane_chunk of row + 16·n sits at at[c % 4] + 128·(c / 4) + 16·n·row bytes
// (the XOR touches only the low 3 bits of the chunk, and row steps of 16 keep row mod 8), so
// every ldmatrix address is one of four registers plus an immediate.
template <int kRowBytes>
struct LaneOffsets {
  uint32_t at[4];
  __device__ __forceinline__ LaneOffsets(int row, int lane_chunk) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      at[j] = static_cast<uint32_t>(row * kRowBytes + (((2 * j + lane_chunk) ^ (row & 7)) << 4));
  }
  // Chunk pair c (chunks 2c, 2c + 1) of m16/k16 step n.
  __device__ __forceinline__ uint32_t operator()(int n, int c) const {
    return at[c % 4] + static_cast<uint32_t>(128 * (c / 4) + 16 * n * kRowBytes);
  }
};

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; `valid` false writes zeros and reads nothing.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// c += a·b for one m16n8k16 tile: a row-major 16×16, b "col-major" 16×8 (k contiguous per n).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float exp2_approx(float x) {  // ex2.approx(−inf) = +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);  // .x = low half
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// Rows [row0, row0 + kRows) of one head into a swizzled tile; rows ≥ row_end become zeros.
// Thread tid copies chunk tid % chunks_per_row of rows tid / chunks_per_row + i·rows_per_pass,
// so its chunk, its swizzle and its address steps are the same for every i.
template <class C, int kRows>
__device__ __forceinline__ void load_rows(uint32_t tile, const __nv_bfloat16* head_base, int row0,
                                          int row_end, int64_t token_stride, int tid) {
  constexpr int kRowsPerPass = C::kThreads / C::kChunksPerRow;
  static_assert(kRowsPerPass % 8 == 0, "the swizzle must repeat from pass to pass");
  const int r = tid / C::kChunksPerRow, chunk = tid % C::kChunksPerRow;
  const uint32_t dst = tile + swizzled<C::kRowBytes>(r, chunk);
  const __nv_bfloat16* src = head_base + int64_t{row0 + r} * token_stride + chunk * 8;
#pragma unroll
  for (int i = 0; i < kRows / kRowsPerPass; ++i) {
    const bool valid = row0 + r + i * kRowsPerPass < row_end;
    cp_async_16(dst + i * kRowsPerPass * C::kRowBytes,
                valid ? src + i * kRowsPerPass * token_stride : head_base, valid);
  }
}
#endif  // WANRT_FLASH_UNSUPPORTED_ARCH

template <class C>
__global__ void __launch_bounds__(C::kThreads, C::kMinBlocksPerSm)
    flash_attention_kernel(const FlashParams p) {
#ifdef WANRT_FLASH_UNSUPPORTED_ARCH
  __trap();
#else
  constexpr int kMt = C::kRowTilesPerWarp;
  constexpr int kKSteps = C::kHeadDim / 16;     // k16 steps of Q·Kᵀ
  constexpr int kScoreTiles = C::kBlockN / 8;   // n8 tiles of S per m16 tile
  constexpr int kOutTiles = C::kHeadDim / 8;    // n8 tiles of O per m16 tile
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t q_tile = shared_address(smem);
  const uint32_t kv_ring = q_tile + C::kQTileBytes;  // stage s: K at +2s·tile, V after it

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int head = blockIdx.y;
  const int q_row0 = blockIdx.x * C::kBlockM;
  const __nv_bfloat16* q_head = p.q + int64_t{head} * C::kHeadDim;
  const __nv_bfloat16* k_head = p.k + int64_t{head} * C::kHeadDim;
  const __nv_bfloat16* v_head = p.v + int64_t{head} * C::kHeadDim;
  const int kv_tiles = (p.kv_len + C::kBlockN - 1) / C::kBlockN;

  auto stage_of = [&](int tile) { return kv_ring + (tile % C::kStages) * 2 * C::kKvTileBytes; };
  auto load_kv = [&](int tile) {
    const uint32_t stage = stage_of(tile);
    load_rows<C, C::kBlockN>(stage, k_head, tile * C::kBlockN, p.kv_len, p.kv_token_stride, tid);
    load_rows<C, C::kBlockN>(stage + C::kKvTileBytes, v_head, tile * C::kBlockN, p.kv_len,
                             p.kv_token_stride, tid);
  };

  // cp.async groups, oldest first: Q, K/V tiles 0 .. kStages−2, then one per loop iteration
  // (possibly empty, so that "tile t is complete" is always "≤ kStages−2 groups pending").
  load_rows<C, C::kBlockM>(q_tile, q_head, q_row0, p.q_len, p.q_token_stride, tid);
  cp_async_commit();
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < kv_tiles) load_kv(s);
    cp_async_commit();
  }

  // ldmatrix lane roles. A (Q, row-major): lanes 0–15 address rows 0–15 of the k-low chunk,
  // lanes 16–31 the k-high chunk. K (B operand, rows = keys): lanes 0–7 keys 0–7 k-low, 8–15
  // keys 0–7 k-high, 16–23 keys 8–15 k-low, 24–31 keys 8–15 k-high. V (B operand through
  // .trans, rows = keys): lanes 0–7 keys 0–7 of d-chunk 0, 8–15 keys 8–15 of chunk 0, 16–31
  // the same for d-chunk 1.
  const int warp_row0 = warp * 16 * kMt;
  const LaneOffsets<C::kRowBytes> a_at(warp_row0 + (lane & 15), lane >> 4);
  const LaneOffsets<C::kRowBytes> k_at((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
  const LaneOffsets<C::kRowBytes> v_at((lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);

  uint32_t q_frag[C::kQInRegisters ? kMt : 1][C::kQInRegisters ? kKSteps : 1][4];
  if constexpr (C::kQInRegisters) {
    cp_async_wait<C::kStages - 1>();  // the Q group
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks)
        ldmatrix_x4(q_frag[mt][ks], q_tile + a_at(mt, ks));
  }

  // Each thread holds rows g = lane/4 and g + 8 of each m16 tile ([h] = 0, 1), columns
  // 2·(lane%4) + {0, 1} of each n8 tile: the mma accumulator layout.
  float o[kMt][kOutTiles][4];
  float row_max[kMt][2], row_sum[kMt][2];
#pragma unroll
  for (int mt = 0; mt < kMt; ++mt) {
#pragma unroll
    for (int t = 0; t < kOutTiles; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][t][e] = 0.0f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_max[mt][h] = -INFINITY;
      row_sum[mt][h] = 0.0f;
    }
  }

  for (int tile = 0; tile < kv_tiles; ++tile) {
    cp_async_wait<C::kStages - 2>();  // this tile has landed (for this thread's copies) ...
    __syncthreads();                  // ... for everyone's, and the stage refilled below is free
    if (tile + C::kStages - 1 < kv_tiles) load_kv(tile + C::kStages - 1);
    cp_async_commit();
    const uint32_t k_tile = stage_of(tile), v_tile = k_tile + C::kKvTileBytes;

    // S = Q·Kᵀ (raw scores; the scale is applied inside the exponent).
    float s[kMt][kScoreTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
      for (int t = 0; t < kScoreTiles; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][t][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      uint32_t a[kMt][4];
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt) {
        if constexpr (C::kQInRegisters) {
#pragma unroll
          for (int e = 0; e < 4; ++e) a[mt][e] = q_frag[mt][ks][e];
        } else {
          ldmatrix_x4(a[mt], q_tile + a_at(mt, ks));
        }
      }
#pragma unroll
      for (int np = 0; np < kScoreTiles / 2; ++np) {
        uint32_t b[4];
        ldmatrix_x4(b, k_tile + k_at(np, ks));
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          mma_bf16(s[mt][2 * np], a[mt], b[0], b[1]);
          mma_bf16(s[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }

    // The last tile may run past kv_len: those columns get −inf (their K rows are zeros).
    if (tile == kv_tiles - 1 && p.kv_len % C::kBlockN != 0) {
      const int valid = p.kv_len - tile * C::kBlockN;
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
        for (int t = 0; t < kScoreTiles; ++t)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (t * 8 + 2 * (lane & 3) + (e & 1) >= valid) s[mt][t][e] = -INFINITY;
    }

    // Online softmax: new running max, rescale the running sum and O, P = exp2(...).
    float alpha[kMt][2];
    bool max_moved = false;
#pragma unroll
    for (int mt = 0; mt < kMt; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int t = 0; t < kScoreTiles; ++t)
          tile_max = fmaxf(tile_max, fmaxf(s[mt][t][2 * h], s[mt][t][2 * h + 1]));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullWarp, tile_max, 1));  // the row's quad
        tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullWarp, tile_max, 2));
        const float new_max = fmaxf(row_max[mt][h], tile_max);
        max_moved |= new_max != row_max[mt][h];
        // A row with no finite score yet keeps 0 as its offset, so −inf − offset stays −inf.
        const float offset = new_max == -INFINITY ? 0.0f : new_max * p.scale_log2;
        alpha[mt][h] = exp2_approx(row_max[mt][h] * p.scale_log2 - offset);
        row_max[mt][h] = new_max;
        float sum = 0.0f;
#pragma unroll
        for (int t = 0; t < kScoreTiles; ++t)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            s[mt][t][e] = exp2_approx(fmaf(s[mt][t][e], p.scale_log2, -offset));
            sum += s[mt][t][e];
          }
        row_sum[mt][h] = row_sum[mt][h] * alpha[mt][h] + sum;  // this thread's part; quad-summed at the end
      }
    }
    // Rescaling O is a third of the softmax's arithmetic; once the running maxima settle (after
    // a few tiles) no row of the warp moves and the factor is 1, so the warp skips it.
    if (__any_sync(kFullWarp, max_moved)) {
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
        for (int t = 0; t < kOutTiles; ++t)
#pragma unroll
          for (int e = 0; e < 4; ++e) o[mt][t][e] *= alpha[mt][e / 2];
    }

    // O += P·V, P packed to bf16 straight from the S accumulators (n8 tiles 2kk, 2kk+1 are
    // the A fragment of k16 step kk).
#pragma unroll
    for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
      uint32_t a[kMt][4];
#pragma unroll
      for (int mt = 0; mt < kMt; ++mt) {
        a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kOutTiles / 2; ++dp) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_tile + v_at(kk, dp));
#pragma unroll
        for (int mt = 0; mt < kMt; ++mt) {
          mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
          mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();  // only empty groups can remain; leave none behind

  // Epilogue: O / rowsum -> bf16, staged through this warp's own rows of the Q tile (no other
  // warp reads them) so that the global stores are whole 16-byte chunks.
  __syncwarp();
#pragma unroll
  for (int mt = 0; mt < kMt; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float sum = row_sum[mt][h];
      sum += __shfl_xor_sync(kFullWarp, sum, 1);
      sum += __shfl_xor_sync(kFullWarp, sum, 2);
      const float inverse = 1.0f / sum;
      const int row = warp_row0 + mt * 16 + (lane >> 2) + 8 * h;
#pragma unroll
      for (int t = 0; t < kOutTiles; ++t)
        *reinterpret_cast<uint32_t*>(smem + swizzled<C::kRowBytes>(row, t) + (lane & 3) * 4) =
            pack_bf16x2(o[mt][t][2 * h] * inverse, o[mt][t][2 * h + 1] * inverse);
    }
  __syncthreads();
  __nv_bfloat16* out_head = p.out + int64_t{head} * C::kHeadDim;
#pragma unroll
  for (int i = 0; i < C::kBlockM * C::kChunksPerRow / C::kThreads; ++i) {
    const int index = tid + i * C::kThreads;
    const int r = index / C::kChunksPerRow, chunk = index % C::kChunksPerRow;
    if (q_row0 + r < p.q_len)
      *reinterpret_cast<uint4*>(out_head + int64_t{q_row0 + r} * p.q_token_stride + chunk * 8) =
          *reinterpret_cast<const uint4*>(smem + swizzled<C::kRowBytes>(r, chunk));
  }
#endif  // WANRT_FLASH_UNSUPPORTED_ARCH
}

template <class C>
void launch_flash(const FlashParams& p, cudaStream_t stream) {
  const auto kernel = flash_attention_kernel<C>;
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

// The compiled tilings, fastest measured first (bench/bench_attention.cpp), with registers
// and shared memory per block:
//   32-row warp tiles, Q re-read from shared memory (FlashAttention-2's choice): O 128 + S 64
//     F32 registers per thread; Q 32 KB + 2 stages × (K + V) 32 KB = 96 KB: 2 blocks/SM.
//   16-row warp tiles with Q in registers (32 regs): half the K/V reuse per shared-memory read.
// Template arguments: head_dim, warps, m16 tiles per warp, block_n, stages, Q in registers,
// minimum blocks per SM (the register budget).
const std::vector<FlashVariant>& flash_variants(int64_t head_dim) {
  static const std::vector<FlashVariant> d128 = {
      make_variant<FlashConfig<128, 4, 2, 64, 2, false, 2>>(),
      make_variant<FlashConfig<128, 8, 1, 64, 3, true, 1>>(),
      make_variant<FlashConfig<128, 8, 1, 128, 2, true, 1>>(),
      make_variant<FlashConfig<128, 4, 1, 64, 2, true, 2>>(),
      make_variant<FlashConfig<128, 8, 2, 64, 2, false, 1>>(),
  };
  static const std::vector<FlashVariant> d64 = {
      make_variant<FlashConfig<64, 4, 2, 64, 3, true, 2>>(),
      make_variant<FlashConfig<64, 8, 1, 128, 2, true, 1>>(),
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

Tensor CudaOps::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const AttentionOptions& options) {
  const AttentionShape shape = check_attention_args(q, k, v, options);
  const std::vector<FlashVariant>& variants = flash_variants(shape.head_dim);
  // The flash kernel folds the scale into exp2 after taking the row max of the raw scores,
  // which needs scale >= 0; biased and other-head-dim attention takes the generic kernel.
  const bool flash = !variants.empty() && !options.bias && options.scale >= 0.0f &&
                     flash_can_read(q) && flash_can_read(k) && flash_can_read(v);
  if (flash) return run_flash(*this, q, k, v, shape, options.scale, variants.front());
  return run_generic(*this, q, k, v, shape, options);
}

}  // namespace wanrt
