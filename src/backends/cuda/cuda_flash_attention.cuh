// The flash-attention kernel behind CudaOps::attention (cuda_attention.cu launches it):
// softmax(scale·q·kᵀ, keys < kv_len)·v for bf16 q [Lq, H, d], k/v [Lk, H, d], d = 64 or 128.
//
// FlashAttention-2's schedule written for mma.sync. A thread block owns block_m query rows
// of one head; each warp owns 16 or 32 of them. Q is loaded once; K/V tiles of block_n keys stream through a cp.async ring of 2–3
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
// The O rescale by exp2(m_old − m_new) is skipped by a warp whose rows' maxima all stayed put
// (the factor is then exactly 1): after the first few tiles that is nearly every tile, and
// the rescale was a third of the softmax's arithmetic (+8% measured at 720p).
// Why mma.sync and not wgmma: this is the portable kernel (sm_80 and up); on sm_90 the
// Hopper wgmma/TMA kernel (cuda_attention_sm90.cuh) takes head_dim 128 instead. With
// mma.sync the B operand (K, then V) is re-read from shared memory by every warp, 16·8·2 bytes per m16n8k16
// for a 16-row warp; that read bounds a 16-row warp tile near 2048 FLOP/clock/SM, so the
// default gives each warp 32 rows (two m16 tiles share every K/V fragment) and re-reads Q
// from shared memory instead of holding it in registers (O 128 + S 64 F32 registers/thread).
// Measured on an H100 SXM (bench/bench_attention.cpp, best of 2 rounds, 2026-11-24), bf16,
// TFLOP/s = 4·H·Lq·Lk·d / time; PyTorch 2.11 SDPA in the same session for reference:
//   shape (H × Lq × Lk × d)          this kernel   SDPA flash (FA2)   SDPA cuDNN
//   40 × 75,600 × 75,600 × 128         382–384         357.5             597.3
//    5 × 75,600 × 75,600 × 128         362–377         358.8             593.8
//   40 × 32,760 × 32,760 × 128         383–395         362.7             583.0
//   40 × 75,600 × 512 × 128            315–334         330.8             569.2
//   80 × 32,760 × 32,760 × 64          336–343         329.0             429.3
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "backends/cuda/cuda_attention.h"

namespace wanrt::flash {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr unsigned kFullWarp = 0xffffffffu;

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

}  // namespace wanrt::flash
