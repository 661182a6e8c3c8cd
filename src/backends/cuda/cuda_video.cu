// Video ops of the CUDA backend (the VAE's): conv3d and conv3d_after through cuDNN,
// channel_rms_norm(_silu), upsample_nearest_2x, frames, concat_frames, transpose, and the F16
// activation and add the elementwise file routes here (cuda_video.h).
//
// conv3d, x [Cin, T, H, W] -> [Cout, T', H', W'] with a [Cout, Cin, kt, kh, kw] kernel:
//   FLOPs  2·Cout·Cin·kt·kh·kw·T'·H'·W' (1.83 TFLOP for the 720p decoder's 96-channel 3×3×3
//          conv over 4 frames); compute-bound on tensor cores in F16/BF16 (or TF32), on FMA
//          units in true F32.
//   bytes  (Cin·T·H·W + Cout·T'·H'·W')·s + the weight, plus one copy of the input (to NDHWC,
//          padded, converted) and one of the output (back to NCDHW, with the bias).
//   Measured on an H100 (bench_kernels, BF16, NDHWC): 497 TFLOP/s for 384 channels at 90×160,
//   456 for 192 at 360×640, 194 for 96 at 720×1280 (9.5 ms); TF32 about 100–200. F16 runs on
//   the same tensor-core paths as BF16 (cuDNN's pseudo-half configuration: F32 accumulation).
// It computes in CudaOptions::conv_dtype (F16 by default; cuda_ops.h says why): x and the
// weight are converted to it; with F32, TF32 tensor cores only with tf32_convolutions.
// conv3d_after(prefix, x) is conv3d over prefix's frames followed by x's (the VAE's causal
// cache in front of each chunk): the NDHWC copy below reads both in place, so the concatenation
// (a read and a write of every cached and new frame, 3 of the 13 tensor-sized passes around a
// 720p conv) and its buffer never exist.
// cuDNN pads symmetrically, so each axis's padding splits into the symmetric part, min(before,
// after), which cuDNN applies for free, and the excess (the causal time padding, the
// downsampler's bottom/right row), which a copy kernel materialises into a padded buffer. That
// copy is fused with the dtype conversion, so it costs nothing extra when x needs converting
// anyway; padding symmetrically and cropping the output instead would waste up to 2/T' of the
// FLOPs on frames that are thrown away, plus a copy of the output.
// The algorithm is chosen once per shape and dtype by timing the candidates on the real
// buffers (cudnnFindConvolutionForwardAlgorithmEx) and cached; inside a CUDA graph capture,
// where nothing can be timed, an uncached shape takes cuDNN's heuristic first choice.
// Layout: cuDNN gets the operands channels-last (NDHWC): x is transposed on the way in (fused
// with the padding, the prefix and the conversion, so it replaces those copies) and the output
// on the way out (fused with the bias, so it replaces that pass). cuDNN's kernels for the
// natural NCDHW layout were up to 9x slower at the VAE's 720p sizes on an H100 (see
// preferred_conv_layout()); WANRT_CONV_LAYOUT=ncdhw selects them, and a layout without a cuDNN
// algorithm falls back to the other.
//
// The other ops are HBM-bound copies, dtype preserving (F32, BF16 or F16):
//   channel_rms_norm     reads x once (a 32-position tile of all channels stays in shared
//                        memory between the sum of squares and the scaling), writes once;
//                        _silu applies SiLU before the write (one pass where the two ops
//                        took two: 2 of those 13 passes)
//   upsample_nearest_2x  reads n, writes 4n;  frames, concat_frames: cudaMemcpy2DAsync
//   transpose            32×32 tiles through shared memory: coalesced reads and writes
//   F16 activation, add  16-byte vectors per access, float32 arithmetic: n·(s_in + s_out)
//
// Tests: tests/gpu/test_cuda_ops_kernels.cpp; bench: bench/bench_kernels.cpp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#ifdef WANRT_HAVE_CUDNN
#include <cudnn.h>
#endif

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_kernel_utils.cuh"
#include "backends/cuda/cuda_ops_impl.h"
#include "backends/cuda/cuda_video.h"

namespace wanrt {
namespace {

using kernels::bf16;
using half = __half;

// Element conversions for the three storage dtypes of the video ops (F32, BF16, F16); the
// shared kernel helpers know only F32 and BF16.
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ half from_f32<half>(float v) { return __float2half_rn(v); }

// N elements of T at p (N·sizeof(T) of 2, 4, 8 or 16 bytes, p aligned to that) in one access.
template <int kBytes> struct RawBytes;
template <> struct RawBytes<2> { using type = uint16_t; };
template <> struct RawBytes<4> { using type = uint32_t; };
template <> struct RawBytes<8> { using type = uint2; };
template <> struct RawBytes<16> { using type = uint4; };
template <typename T, int N>
__device__ __forceinline__ void load_elements(const T* p, float (&out)[N]) {
  using Raw = typename RawBytes<N * sizeof(T)>::type;
  const Raw raw = *reinterpret_cast<const Raw*>(p);
  T elements[N];
  memcpy(elements, &raw, sizeof raw);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_f32(elements[i]);
}
template <typename T, int N>
__device__ __forceinline__ void store_elements(T* p, const float (&in)[N]) {
  using Raw = typename RawBytes<N * sizeof(T)>::type;
  T elements[N];
#pragma unroll
  for (int i = 0; i < N; ++i) elements[i] = from_f32<T>(in[i]);
  Raw raw;
  memcpy(&raw, elements, sizeof raw);
  *reinterpret_cast<Raw*>(p) = raw;
}

// Calls f(float{}), f(bf16{}) or f(half{}) for a video tensor's dtype.
template <typename F>
decltype(auto) dispatch_video(DType dtype, F&& f) {
  switch (dtype) {
    case DType::F32: return f(float{});
    case DType::BF16: return f(bf16{});
    case DType::F16: return f(half{});
    default: fail("cuda backend: expected an F32, BF16 or F16 tensor, got ", dtype_name(dtype));
  }
}

template <typename T>
const T* typed(const Tensor& t) {
  return static_cast<const T*>(t.raw());
}
template <typename T>
T* typed_mut(Tensor& t) {
  return static_cast<T*>(t.raw_mut());
}

// Zero padding of a [C, T, H, W] video by (front, back) amounts per axis.
struct Padding {
  int64_t t_front = 0, t_back = 0, h_front = 0, h_back = 0, w_front = 0, w_back = 0;
  bool any() const { return t_front || t_back || h_front || h_back || w_front || w_back; }
};

// Position s of the padded grid [Tp, Hp, Wp] -> position in the unpadded [T, H, W] grid, or -1
// in the zero border. Inactive: the identity.
struct PadMap {
  bool active = false;
  int64_t hp = 0, wp = 0;
  int64_t t = 0, h = 0, w = 0;
  int64_t t_front = 0, h_front = 0, w_front = 0;
  __device__ int64_t source(int64_t s) const {
    if (!active) return s;
    const int64_t plane = hp * wp;
    const int64_t tt = s / plane - t_front, rest = s % plane;
    const int64_t hh = rest / wp - h_front, ww = rest % wp - w_front;
    if (tt < 0 || tt >= t || hh < 0 || hh >= h || ww < 0 || ww >= w) return -1;
    return (tt * h + hh) * w + ww;
  }
};

constexpr int kTile = 32, kTileRows = 8;

// The rows of a transpose's source A [R, S_in]: one matrix, or two side by side (row r is row
// r of `first` [R, first_count] followed by row r of `second` [R, second_count]; the causal
// cache in front of a chunk, read in place by conv3d_after).
template <typename Tin>
struct SourceRows {
  const Tin* first = nullptr;
  int64_t first_count = 0;
  const Tin* second = nullptr;
  int64_t second_count = 0;
  __device__ float at(int64_t r, int64_t s) const {
    return s < first_count ? to_f32(first[r * first_count + s]) : to_f32(second[r * second_count + (s - first_count)]);
  }
};

// Per batch: B[s, r] = A[r, map(s)] (0 where map(s) = -1) + bias[s] (bias optional), for A
// [R, S_in] and B [S, R]. A 32×32 tile goes through shared memory so reads run along A's rows
// and writes along B's. Grid: x = tiles (flattened, S-major), y = batch (one-part sources
// only).
template <typename Tin, typename Tout>
__global__ void transpose_kernel(SourceRows<Tin> a, Tout* b, int64_t r_count, int64_t s_count, int64_t s_tiles,
                                 PadMap map, const float* bias) {
  __shared__ float tile[kTile][kTile + 1];  // +1: no bank conflicts on the transposed read
  a.first += blockIdx.y * r_count * a.first_count;
  b += blockIdx.y * s_count * r_count;
  const int64_t s0 = (blockIdx.x % s_tiles) * kTile, r0 = (blockIdx.x / s_tiles) * kTile;
  const int64_t s = s0 + threadIdx.x;
  const int64_t source = s < s_count ? map.source(s) : -1;
#pragma unroll
  for (int k = 0; k < kTile; k += kTileRows) {
    const int64_t r = r0 + threadIdx.y + k;
    tile[threadIdx.y + k][threadIdx.x] = (r < r_count && source >= 0) ? a.at(r, source) : 0.0f;
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < kTile; k += kTileRows) {
    const int64_t s_out = s0 + threadIdx.y + k, r = r0 + threadIdx.x;
    if (s_out < s_count && r < r_count)
      b[s_out * r_count + r] = from_f32<Tout>(tile[threadIdx.x][threadIdx.y + k] + (bias ? bias[s_out] : 0.0f));
  }
}

template <typename Tin, typename Tout>
void launch_transpose(const SourceRows<Tin>& a, Tout* b, int64_t batches, int64_t r_count, int64_t s_count,
                      const PadMap& map, const float* bias, cudaStream_t stream) {
  if (batches == 0 || r_count == 0 || s_count == 0) return;
  WANRT_ASSERT(batches == 1 || a.second == nullptr);
  const int64_t s_tiles = (s_count + kTile - 1) / kTile, r_tiles = (r_count + kTile - 1) / kTile;
  WANRT_CHECK(s_tiles * r_tiles <= int64_t{0x7fffffff} && batches <= 65535,
              "cuda backend: transpose of ", batches, " x [", r_count, ", ", s_count, "] is too large");
  transpose_kernel<Tin, Tout><<<dim3(static_cast<unsigned>(s_tiles * r_tiles), static_cast<unsigned>(batches)),
                                dim3(kTile, kTileRows), 0, stream>>>(a, b, r_count, s_count, s_tiles, map, bias);
  WANRT_CHECK_LAUNCH();
}

// One matrix A [R, S_in] as a transpose source.
template <typename Tin>
SourceRows<Tin> rows_of(const Tin* a, int64_t s_in_count) {
  return {a, s_in_count, nullptr, 0};
}

// out [C, Tp, Hp, Wp] = x [C, T, H, W] placed at (t_front, h_front, w_front) in zeros, converted.
// Grid: x over Wp, y over Hp, z over the C·Tp planes (looping where there are more than 65535).
template <typename Tin, typename Tout>
__global__ void pad_convert_kernel(const Tin* x, Tout* out, int64_t planes, int64_t tp, int64_t hp,
                                   int64_t wp, int64_t t, int64_t h, int64_t w, Padding pad) {
  const int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x, i = blockIdx.y;
  if (j >= wp) return;
  for (int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const int64_t c = plane / tp, tt = plane % tp - pad.t_front;
    const int64_t hh = i - pad.h_front, ww = j - pad.w_front;
    const bool inside = tt >= 0 && tt < t && hh >= 0 && hh < h && ww >= 0 && ww < w;
    out[(plane * hp + i) * wp + j] =
        from_f32<Tout>(inside ? to_f32(x[((c * t + tt) * h + hh) * w + ww]) : 0.0f);
  }
}

// y[c, p] += bias[c] in place, kVec positions per thread. Grid: y over channels, x over positions.
template <typename T, int kVec>
__global__ void channel_bias_kernel(T* y, const float* bias, int64_t channels, int64_t vectors) {
  for (int64_t c = blockIdx.y; c < channels; c += gridDim.y) {
    const float add = bias[c];
    T* row = y + c * vectors * kVec;
    for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors; v += int64_t{gridDim.x} * blockDim.x) {
      float values[kVec];
      load_elements<T, kVec>(row + v * kVec, values);
#pragma unroll
      for (int k = 0; k < kVec; ++k) values[k] += add;
      store_elements<T, kVec>(row + v * kVec, values);
    }
  }
}

// x [C, P]: out[c, p] = x[c, p] · √C / max(‖x[:, p]‖₂, 1e-12) · gamma[c]. A block owns 32
// positions (threadIdx.x) and strides over the channels with 8 rows of threads (threadIdx.y);
// kCached keeps the 32 × C tile in shared memory so x is read from HBM once.
// kSilu applies SiLU to the result (channel_rms_norm_silu: one pass instead of two).
template <typename T, bool kCached, bool kSilu>
__global__ void channel_rms_norm_kernel(const T* x, const float* gamma, T* out, int64_t channels,
                                        int64_t positions, float root_c) {
  extern __shared__ float cache[];  // [channels][32] when kCached
  __shared__ float partial[kTileRows][kTile];
  const int64_t p = blockIdx.x * int64_t{kTile} + threadIdx.x;
  const bool valid = p < positions;
  float squares = 0.0f;
  for (int64_t c = threadIdx.y; c < channels; c += kTileRows) {
    const float v = valid ? to_f32(x[c * positions + p]) : 0.0f;
    squares += v * v;
    if constexpr (kCached) cache[c * kTile + threadIdx.x] = v;
  }
  partial[threadIdx.y][threadIdx.x] = squares;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int k = 0; k < kTileRows; ++k) total += partial[k][threadIdx.x];
  // The reference clamps the L2 norm (not the mean square): an all-zero vector maps to 0.
  const float scale = root_c / fmaxf(sqrtf(total), 1e-12f);
  if (!valid) return;
  for (int64_t c = threadIdx.y; c < channels; c += kTileRows) {
    const float v = kCached ? cache[c * kTile + threadIdx.x] : to_f32(x[c * positions + p]);
    const float y = v * scale * gamma[c];
    out[c * positions + p] = from_f32<T>(kSilu ? y / (1.0f + expf(-y)) : y);
  }
}

// [planes, H, W] -> [planes, 2H, 2W]: each input pixel becomes a 2×2 block (two 2-element
// stores). Grid: x over W, y over H, z over planes (looping past 65535).
template <typename T>
__global__ void upsample_kernel(const T* x, T* out, int64_t planes, int64_t h, int64_t w) {
  const int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x, i = blockIdx.y;
  if (j >= w) return;
  for (int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const float v = to_f32(x[(plane * h + i) * w + j]);
    const float pair[2] = {v, v};
    T* top = out + (plane * 2 * h + 2 * i) * 2 * w + 2 * j;
    store_elements<T, 2>(top, pair);
    store_elements<T, 2>(top + 2 * w, pair);
  }
}

// ---- activation and add for F16 operands (half_activation, half_add) ----

struct SiluFn {
  __device__ float operator()(float x) const { return x / (1.0f + expf(-x)); }
};
struct GeluTanhFn {
  __device__ float operator()(float x) const {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
  }
};
struct IdentityFn {
  __device__ float operator()(float x) const { return x; }
};

constexpr int kElementwiseThreads = 256;

// out[i] = op(x[i]) over `vectors` groups of kVec elements (grid-stride).
template <typename T, int kVec, typename Op>
__global__ void half_unary_kernel(const T* x, T* out, int64_t vectors, Op op) {
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors; v += int64_t{gridDim.x} * blockDim.x) {
    float values[kVec];
    load_elements<T, kVec>(x + v * kVec, values);
#pragma unroll
    for (int i = 0; i < kVec; ++i) values[i] = op(values[i]);
    store_elements<T, kVec>(out + v * kVec, values);
  }
}

// out[i] = a[i] + b[i], or + b[i % features] when kBroadcast (features a multiple of kVec).
template <typename Ta, typename Tb, typename Tout, int kVec, bool kBroadcast>
__global__ void half_add_kernel(const Ta* a, const Tb* b, Tout* out, int64_t vectors, int64_t features) {
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors; v += int64_t{gridDim.x} * blockDim.x) {
    float lhs[kVec], rhs[kVec];
    load_elements<Ta, kVec>(a + v * kVec, lhs);
    load_elements<Tb, kVec>(b + (kBroadcast ? (v * kVec) % features : v * kVec), rhs);
#pragma unroll
    for (int i = 0; i < kVec; ++i) lhs[i] += rhs[i];
    store_elements<Tout, kVec>(out + v * kVec, lhs);
  }
}

dim3 plane_grid(int64_t width, int64_t height, int64_t planes, int threads) {
  WANRT_CHECK(height <= 65535, "cuda backend: video height ", height, " exceeds 65535");
  return dim3(static_cast<unsigned>((width + threads - 1) / threads), static_cast<unsigned>(height),
              static_cast<unsigned>(std::min<int64_t>(planes, 65535)));
}

const float* float_vector(CudaOps& ops, const Tensor& v, int64_t n, const char* what, Tensor& keep_alive) {
  expect_device_float(v, what);
  WANRT_CHECK(v.numel() == n, "cuda backend: ", what, " ", v.describe(), " has ", v.numel(),
              " elements, expected ", n);
  keep_alive = ops.as_dtype(v, DType::F32);
  return static_cast<const float*>(keep_alive.raw());
}

int64_t conv_out_size(int64_t in, int64_t pad_before, int64_t pad_after, int64_t kernel, int64_t stride,
                      const char* axis) {
  WANRT_CHECK(pad_before >= 0 && pad_after >= 0 && stride >= 1, "conv3d: ", axis,
              " padding must be >= 0 and stride >= 1, got pads ", pad_before, ", ", pad_after,
              " and stride ", stride);
  const int64_t padded = in + pad_before + pad_after;
  WANRT_CHECK(padded >= kernel, "conv3d: ", axis, " of ", in, " (padded ", padded,
              ") is smaller than the kernel ", kernel);
  return (padded - kernel) / stride + 1;
}

// Sizes of one convolution, its padding split into cuDNN's symmetric part and the excess.
struct ConvGeometry {
  int64_t cin, t_in, h_in, w_in, cout, kt, kh, kw, t_out, h_out, w_out;
  int64_t sym_t, sym_h, sym_w;  // padding cuDNN applies (both sides)
  Padding extra;                // padding materialised by the copy kernel
  int64_t tp, hp, wp;           // sizes of the input cuDNN sees
  int64_t stride_t, stride_h, stride_w;
};

// `frames` input frames (x's, plus a prefix's for conv3d_after) of x's channels and size.
ConvGeometry conv_geometry(const Tensor& x, int64_t frames, const Tensor& weight, const Conv3dOptions& o) {
  ConvGeometry g{};
  g.cin = x.size(0), g.t_in = frames, g.h_in = x.size(2), g.w_in = x.size(3);
  g.cout = weight.size(0), g.kt = weight.size(2), g.kh = weight.size(3), g.kw = weight.size(4);
  g.t_out = conv_out_size(g.t_in, o.pad_t_front, o.pad_t_back, g.kt, o.stride_t, "time");
  g.h_out = conv_out_size(g.h_in, o.pad_top, o.pad_bottom, g.kh, o.stride_h, "height");
  g.w_out = conv_out_size(g.w_in, o.pad_left, o.pad_right, g.kw, o.stride_w, "width");
  g.sym_t = std::min(o.pad_t_front, o.pad_t_back);
  g.sym_h = std::min(o.pad_top, o.pad_bottom);
  g.sym_w = std::min(o.pad_left, o.pad_right);
  g.extra = {o.pad_t_front - g.sym_t, o.pad_t_back - g.sym_t, o.pad_top - g.sym_h,
             o.pad_bottom - g.sym_h,  o.pad_left - g.sym_w,  o.pad_right - g.sym_w};
  g.tp = g.t_in + g.extra.t_front + g.extra.t_back;
  g.hp = g.h_in + g.extra.h_front + g.extra.h_back;
  g.wp = g.w_in + g.extra.w_front + g.extra.w_back;
  g.stride_t = o.stride_t, g.stride_h = o.stride_h, g.stride_w = o.stride_w;
  return g;
}

// The layout cuDNN sees. NDHWC is the default: measured on an H100 (bench_kernels), cuDNN's
// NCDHW kernels fall off a cliff at the VAE's high resolutions (88 ms against 9.5 ms in BF16 for
// 96 channels at 720p, 126 ms against 9.3 ms in TF32 for 192 channels at 360p) and are never
// much faster (0.14 against 0.17 ms on the small time conv). WANRT_CONV_LAYOUT=ncdhw (or ndhwc)
// picks the layout tried first; a layout for which cuDNN has no algorithm (F32 NDHWC with 3
// output channels, for one) falls back to the other.
enum class ConvLayout { Ncdhw, Ndhwc };

ConvLayout preferred_conv_layout() {
  const char* env = std::getenv("WANRT_CONV_LAYOUT");
  if (env && *env) {
    const std::string value = env;
    WANRT_CHECK(value == "ncdhw" || value == "ndhwc", "WANRT_CONV_LAYOUT must be ncdhw or ndhwc, got '", value, "'");
    return value == "ncdhw" ? ConvLayout::Ncdhw : ConvLayout::Ndhwc;
  }
  return ConvLayout::Ndhwc;
}

#ifdef WANRT_HAVE_CUDNN

#define WANRT_CHECK_CUDNN(expr)                                                                 \
  do {                                                                                          \
    const cudnnStatus_t wanrt_cudnn_status = (expr);                                            \
    if (wanrt_cudnn_status != CUDNN_STATUS_SUCCESS)                                             \
      ::wanrt::fail("cuDNN error ", cudnnGetErrorString(wanrt_cudnn_status), " in ", #expr,   \
                    " at ", __FILE__, ":", __LINE__);                                           \
  } while (0)

// One cuDNN handle per device and thread (a handle must not be used by two threads at once);
// it is pointed at the caller's stream before each use.
cudnnHandle_t cudnn_handle() {
  struct Handles {
    std::map<int, cudnnHandle_t> by_device;
    ~Handles() {
      for (auto& [device, handle] : by_device) cudnnDestroy(handle);
    }
  };
  thread_local Handles handles;
  int device = 0;
  WANRT_CHECK_CUDA(cudaGetDevice(&device));
  auto [it, inserted] = handles.by_device.try_emplace(device, nullptr);
  if (inserted) {
    const cudnnStatus_t status = cudnnCreate(&it->second);
    if (status != CUDNN_STATUS_SUCCESS) {
      handles.by_device.erase(it);
      fail("cuDNN could not start (", cudnnGetErrorString(status),
           "): check that libcudnn 9 matches the CUDA driver");
    }
  }
  return it->second;
}

template <typename T, cudnnStatus_t (*kCreate)(T*), cudnnStatus_t (*kDestroy)(T)>
class Descriptor {
 public:
  Descriptor() { WANRT_CHECK_CUDNN(kCreate(&handle_)); }
  ~Descriptor() { kDestroy(handle_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  T get() const { return handle_; }

 private:
  T handle_{};
};
using TensorDescriptor = Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDescriptor = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvolutionDescriptor =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

// What cuDNN's choice depends on: device, dtype, math, layout, every size.
using ConvKey = std::tuple<int, int, bool, int, std::vector<int>>;
struct ConvPlan {
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};
std::mutex plan_mutex;
// nullopt: cuDNN has no algorithm for this key (remembered so the search is not repeated).
std::map<ConvKey, std::optional<ConvPlan>>& plan_cache() {
  static std::map<ConvKey, std::optional<ConvPlan>> plans;
  return plans;
}

// Workspace offered to the algorithm search: candidates that need more are skipped.
constexpr size_t kMaxWorkspace = size_t{1} << 30;

struct ConvCall {
  cudnnHandle_t handle;
  const TensorDescriptor& x_desc;
  const void* x;
  const FilterDescriptor& w_desc;
  const void* w;
  const ConvolutionDescriptor& conv_desc;
  const TensorDescriptor& y_desc;
  void* y;
};

// The fastest algorithm for `call`, or nullopt where cuDNN has none for it.
std::optional<ConvPlan> find_plan(CudaOps& ops, const ConvCall& call, cudnnMathType_t requested_math,
                                  bool allow_tensor_math) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  WANRT_CHECK_CUDA(cudaStreamIsCapturing(ops.stream(), &capture));
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int returned = 0;
  size_t offered = 0;
  if (capture != cudaStreamCaptureStatusNone) {
    // Nothing can be timed (or synchronised) inside a capture: the heuristic's ranking instead.
    WANRT_CHECK_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(call.handle, call.x_desc.get(), call.w_desc.get(),
                                                             call.conv_desc.get(), call.y_desc.get(),
                                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
    offered = kMaxWorkspace;
  } else {
    size_t free_bytes = 0, total_bytes = 0;
    WANRT_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
    offered = std::min(kMaxWorkspace, free_bytes / 4);
    Tensor workspace = ops.empty(DType::U8, {static_cast<int64_t>(offered)});
    const cudnnStatus_t status = cudnnFindConvolutionForwardAlgorithmEx(
        call.handle, call.x_desc.get(), call.x, call.w_desc.get(), call.w, call.conv_desc.get(), call.y_desc.get(),
        call.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf, workspace.raw_mut(), offered);
    if (status == CUDNN_STATUS_NOT_SUPPORTED) return std::nullopt;
    WANRT_CHECK_CUDNN(status);
  }
  // Results come fastest (or most promising) first. True F32 prefers a result cuDNN reports as
  // FMA-only; failing that, the first one runs with FMA math forced on the descriptor (the
  // tests hold F32 convolutions to 1e-5, which TF32 would miss).
  for (const bool strict : {true, false}) {
    for (int i = 0; i < returned; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > offered) continue;
      if (strict && !allow_tensor_math && perf[i].mathType != CUDNN_FMA_MATH) continue;
      ConvPlan plan;
      plan.algo = perf[i].algo;
      plan.math = allow_tensor_math ? perf[i].mathType : CUDNN_FMA_MATH;
      plan.workspace = perf[i].memory;
      return plan;
    }
  }
  return std::nullopt;
}

cudnnDataType_t cudnn_dtype(DType dtype) {
  switch (dtype) {
    case DType::F32: return CUDNN_DATA_FLOAT;
    case DType::BF16: return CUDNN_DATA_BFLOAT16;
    case DType::F16: return CUDNN_DATA_HALF;
    default: fail("conv3d: no cuDNN dtype for ", dtype_name(dtype));
  }
}

int narrow_to_int(int64_t v) {
  WANRT_CHECK(v <= int64_t{0x7fffffff}, "conv3d: size ", v, " exceeds cuDNN's 32-bit dimensions");
  return static_cast<int>(v);
}

// conv3d in one layout over the frames of `prefix` (may be null) followed by those of x;
// nullopt where cuDNN has no algorithm for it (nothing is left queued then but the operand
// copies).
std::optional<Tensor> conv3d_in_layout(CudaOps& ops, ConvLayout layout, const ConvGeometry& g, const Tensor* prefix,
                                       const Tensor& x, const Tensor& weight, const float* bias) {
  const DType dtype = ops.options().conv_dtype;
  const bool channels_last = layout == ConvLayout::Ndhwc;
  const cudaStream_t stream = ops.stream();

  // The key first: a layout known to have no algorithm costs nothing.
  int device = 0;
  WANRT_CHECK_CUDA(cudaGetDevice(&device));
  const int x_dims[5] = {1, narrow_to_int(g.cin), narrow_to_int(g.tp), narrow_to_int(g.hp), narrow_to_int(g.wp)};
  const int w_dims[5] = {narrow_to_int(g.cout), narrow_to_int(g.cin), narrow_to_int(g.kt), narrow_to_int(g.kh),
                         narrow_to_int(g.kw)};
  const int y_dims[5] = {1, narrow_to_int(g.cout), narrow_to_int(g.t_out), narrow_to_int(g.h_out),
                         narrow_to_int(g.w_out)};
  const int pads[3] = {narrow_to_int(g.sym_t), narrow_to_int(g.sym_h), narrow_to_int(g.sym_w)};
  const int strides[3] = {narrow_to_int(g.stride_t), narrow_to_int(g.stride_h), narrow_to_int(g.stride_w)};
  const int dilations[3] = {1, 1, 1};
  std::vector<int> sizes(std::begin(x_dims), std::end(x_dims));
  sizes.insert(sizes.end(), std::begin(w_dims), std::end(w_dims));
  sizes.insert(sizes.end(), std::begin(pads), std::end(pads));
  sizes.insert(sizes.end(), std::begin(strides), std::end(strides));
  const ConvKey key{device, static_cast<int>(dtype), ops.options().tf32_convolutions, static_cast<int>(layout), std::move(sizes)};
  std::optional<ConvPlan> plan;
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(plan_mutex);
    auto it = plan_cache().find(key);
    if (it != plan_cache().end()) {
      if (!it->second) return std::nullopt;
      plan = it->second;
      known = true;
    }
  }

  // Operands in the compute dtype and layout. The channels-last copy reads a prefix in place
  // (same dtype as x: conv3d_after makes sure); the NCDHW path joins them first.
  const Tensor input = prefix && !channels_last ? ops.concat_frames(*prefix, x) : x;
  WANRT_ASSERT(!prefix || !channels_last || prefix->dtype() == x.dtype());
  Tensor x_conv, w_conv;
  dispatch_video(input.dtype(), [&](auto x_tag) {
    dispatch_video(dtype, [&](auto conv_tag) {
      using Tin = decltype(x_tag);
      using Tc = decltype(conv_tag);
      if (channels_last) {
        // [Cin, T·H·W] -> [Tp·Hp·Wp, Cin], padded and converted on the way.
        x_conv = ops.empty(dtype, {g.tp, g.hp, g.wp, g.cin});
        const PadMap map{g.extra.any(), g.hp, g.wp, g.t_in, g.h_in, g.w_in, g.extra.t_front, g.extra.h_front,
                         g.extra.w_front};
        const int64_t plane = g.h_in * g.w_in;
        const SourceRows<Tin> rows =
            prefix ? SourceRows<Tin>{typed<Tin>(*prefix), prefix->size(1) * plane, typed<Tin>(x), x.size(1) * plane}
                   : rows_of(typed<Tin>(x), g.t_in * plane);
        launch_transpose<Tin, Tc>(rows, typed_mut<Tc>(x_conv), 1, g.cin, g.tp * g.hp * g.wp, map, nullptr, stream);
      } else if (g.extra.any()) {
        x_conv = ops.empty(dtype, {g.cin, g.tp, g.hp, g.wp});
        pad_convert_kernel<Tin, Tc><<<plane_grid(g.wp, g.hp, g.cin * g.tp, 128), 128, 0, stream>>>(
            typed<Tin>(input), typed_mut<Tc>(x_conv), g.cin * g.tp, g.tp, g.hp, g.wp, g.t_in, g.h_in, g.w_in, g.extra);
        WANRT_CHECK_LAUNCH();
      } else {
        x_conv = ops.as_dtype(input, dtype);
      }
    });
  });
  if (channels_last) {
    // [Cout, Cin, k] -> [Cout, k, Cin] (cuDNN's KDRSC filter layout), converted.
    w_conv = ops.empty(dtype, {g.cout, g.kt, g.kh, g.kw, g.cin});
    const int64_t taps = g.kt * g.kh * g.kw;
    dispatch_video(weight.dtype(), [&](auto w_tag) {
      dispatch_video(dtype, [&](auto conv_tag) {
        using Tw = decltype(w_tag);
        using Tc = decltype(conv_tag);
        launch_transpose<Tw, Tc>(rows_of(typed<Tw>(weight), taps), typed_mut<Tc>(w_conv), g.cout, g.cin, taps,
                                 PadMap{}, nullptr, stream);
      });
    });
  } else {
    w_conv = ops.as_dtype(weight, dtype);
  }

  const cudnnTensorFormat_t format = channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  TensorDescriptor x_desc, y_desc;
  FilterDescriptor w_desc;
  ConvolutionDescriptor conv_desc;
  WANRT_CHECK_CUDNN(cudnnSetTensorNdDescriptorEx(x_desc.get(), format, cudnn_dtype(dtype), 5, x_dims));
  WANRT_CHECK_CUDNN(cudnnSetTensorNdDescriptorEx(y_desc.get(), format, cudnn_dtype(dtype), 5, y_dims));
  WANRT_CHECK_CUDNN(cudnnSetFilterNdDescriptor(w_desc.get(), cudnn_dtype(dtype), format, 5, w_dims));
  WANRT_CHECK_CUDNN(cudnnSetConvolutionNdDescriptor(conv_desc.get(), 3, pads, strides, dilations,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  int cudnn_y_dims[5] = {};
  WANRT_CHECK_CUDNN(cudnnGetConvolutionNdForwardOutputDim(conv_desc.get(), x_desc.get(), w_desc.get(), 5, cudnn_y_dims));
  for (int i = 0; i < 5; ++i) WANRT_ASSERT(cudnn_y_dims[i] == y_dims[i]);

  // Math: BF16 and F16 on tensor cores (F32 accumulation: the descriptor's compute type);
  // F32 on FMA units unless TF32 was asked for.
  const bool half_precision = dtype != DType::F32;
  const bool allow_tensor_math = half_precision || ops.options().tf32_convolutions;
  const cudnnMathType_t requested_math =
      half_precision ? CUDNN_TENSOR_OP_MATH : (ops.options().tf32_convolutions ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  WANRT_CHECK_CUDNN(cudnnSetConvolutionMathType(conv_desc.get(), requested_math));

  Tensor y = channels_last ? ops.empty(dtype, {g.t_out, g.h_out, g.w_out, g.cout})
                           : ops.empty(dtype, {g.cout, g.t_out, g.h_out, g.w_out});
  const cudnnHandle_t handle = cudnn_handle();
  WANRT_CHECK_CUDNN(cudnnSetStream(handle, stream));
  if (!known) {
    const ConvCall call{handle, x_desc, x_conv.raw(), w_desc, w_conv.raw(), conv_desc, y_desc, y.raw_mut()};
    plan = find_plan(ops, call, requested_math, allow_tensor_math);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    WANRT_CHECK_CUDA(cudaStreamIsCapturing(stream, &capture));
    std::lock_guard<std::mutex> lock(plan_mutex);
    if (capture == cudaStreamCaptureStatusNone) plan_cache().emplace(key, plan);
    if (!plan) return std::nullopt;
  }
  WANRT_CHECK_CUDNN(cudnnSetConvolutionMathType(conv_desc.get(), plan->math));
  Tensor workspace = ops.empty(DType::U8, {static_cast<int64_t>(plan->workspace)});
  const float alpha = 1.0f, beta = 0.0f;
  WANRT_CHECK_CUDNN(cudnnConvolutionForward(handle, &alpha, x_desc.get(), x_conv.raw(), w_desc.get(), w_conv.raw(),
                                            conv_desc.get(), plan->algo, workspace.raw_mut(), plan->workspace, &beta,
                                            y_desc.get(), y.raw_mut()));

  const int64_t positions = g.t_out * g.h_out * g.w_out;
  if (channels_last) {
    // [T'·H'·W', Cout] -> [Cout, T', H', W'] with the bias added on the way.
    Tensor out = ops.empty(dtype, {g.cout, g.t_out, g.h_out, g.w_out});
    dispatch_video(dtype, [&](auto tag) {
      using T = decltype(tag);
      launch_transpose<T, T>(rows_of(typed<T>(y), g.cout), typed_mut<T>(out), 1, positions, g.cout, PadMap{}, bias,
                             stream);
    });
    return out;
  }
  if (bias && positions > 0) {
    dispatch_video(dtype, [&](auto tag) {
      using T = decltype(tag);
      constexpr int kVec = 16 / sizeof(T);
      const dim3 grid(static_cast<unsigned>(std::min<int64_t>(64, (positions / kVec + 255) / 256 + 1)),
                      static_cast<unsigned>(std::min<int64_t>(g.cout, 65535)));
      if (positions % kVec == 0 && kernels::is_aligned(y.raw(), 16))
        channel_bias_kernel<T, kVec><<<grid, 256, 0, stream>>>(typed_mut<T>(y), bias, g.cout, positions / kVec);
      else
        channel_bias_kernel<T, 1><<<grid, 256, 0, stream>>>(typed_mut<T>(y), bias, g.cout, positions);
      WANRT_CHECK_LAUNCH();
    });
  }
  return y;
}

#endif  // WANRT_HAVE_CUDNN

}  // namespace

namespace {

// conv3d and conv3d_after: `prefix` (may be null) holds frames that come before x's.
Tensor run_conv3d(CudaOps& ops, const Tensor* prefix, const Tensor& x, const Tensor& weight, const Tensor* bias,
                  const Conv3dOptions& o) {
  expect_video_tensor(x, "conv3d input");
  expect_video_tensor(weight, "conv3d weight");
  WANRT_CHECK(x.dim() == 4 && weight.dim() == 5 && weight.size(1) == x.size(0), "conv3d: input ",
              x.describe(), " does not match weight ", weight.describe(),
              " (expected [Cin, T, H, W] and [Cout, Cin, kt, kh, kw])");
  if (prefix) {
    expect_video_tensor(*prefix, "conv3d prefix");
    WANRT_CHECK(prefix->dim() == 4 && prefix->size(0) == x.size(0) && prefix->size(2) == x.size(2) &&
                    prefix->size(3) == x.size(3),
                "conv3d_after: prefix ", prefix->describe(), " and input ", x.describe(), " differ past the time axis");
  }
  const int64_t frames = x.size(1) + (prefix ? prefix->size(1) : 0);
  const ConvGeometry geometry = conv_geometry(x, frames, weight, o);
  Tensor bias_f32;
  const float* b = bias ? float_vector(ops, *bias, geometry.cout, "conv3d bias", bias_f32) : nullptr;
  const DType dtype = ops.options().conv_dtype;
  WANRT_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16,
              "conv3d: CudaOptions::conv_dtype must be F32, BF16 or F16, got ", dtype_name(dtype));
#ifndef WANRT_HAVE_CUDNN
  (void)b;
  fail("conv3d on the GPU needs cuDNN 9, which was not found when wanrt was built: install it "
       "(libcudnn9-dev) and re-run cmake");
#else
  const ConvLayout first = preferred_conv_layout();
  const ConvLayout second = first == ConvLayout::Ndhwc ? ConvLayout::Ncdhw : ConvLayout::Ndhwc;
  for (const ConvLayout layout : {first, second})
    if (std::optional<Tensor> y = conv3d_in_layout(ops, layout, geometry, prefix, x, weight, b)) return *std::move(y);
  fail("conv3d: cuDNN has no algorithm for ", x.describe(), " (", frames, " frames) * ", weight.describe(), " in ",
       dtype_name(dtype), (ops.options().tf32_convolutions ? " (TF32)" : ""), " in either layout");
#endif
}

}  // namespace

Tensor CudaOps::conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias, const Conv3dOptions& o) {
  return run_conv3d(*this, nullptr, x, weight, bias, o);
}

Tensor CudaOps::conv3d_after(const Tensor& prefix, const Tensor& x, const Tensor& weight, const Tensor* bias,
                             const Conv3dOptions& o) {
  // The in-place read needs one element type; mixed dtypes take the joined copy instead.
  if (prefix.dtype() != x.dtype()) return run_conv3d(*this, nullptr, concat_frames(prefix, x), weight, bias, o);
  return run_conv3d(*this, &prefix, x, weight, bias, o);
}

namespace {

template <bool kSilu>
Tensor run_channel_rms_norm(CudaOps& ops, const Tensor& x, const Tensor& gamma) {
  expect_video_tensor(x, "channel_rms_norm input");
  WANRT_CHECK(x.dim() >= 2, "channel_rms_norm needs [C, ...], got ", x.describe());
  const int64_t channels = x.size(0), positions = channels ? x.numel() / channels : 0;
  Tensor gamma_f32;
  const float* g = float_vector(ops, gamma, channels, "channel_rms_norm gamma", gamma_f32);
  Tensor out = ops.empty(x.dtype(), x.shape());
  if (x.numel() == 0) return out;
  const float root_c = std::sqrt(static_cast<float>(channels));
  const int64_t blocks = (positions + kTile - 1) / kTile;
  WANRT_CHECK(blocks <= int64_t{0x7fffffff}, "channel_rms_norm: ", x.describe(), " is too large");
  // Cache the tile in shared memory up to 128 KiB (1024 channels); wider inputs re-read x.
  constexpr int64_t kMaxCacheBytes = 128 << 10;
  const int64_t cache_bytes = channels * kTile * static_cast<int64_t>(sizeof(float));
  dispatch_video(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const dim3 block(kTile, kTileRows);
    if (cache_bytes <= kMaxCacheBytes) {
      WANRT_CHECK_CUDA(cudaFuncSetAttribute(channel_rms_norm_kernel<T, true, kSilu>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(cache_bytes)));
      channel_rms_norm_kernel<T, true, kSilu>
          <<<static_cast<unsigned>(blocks), block, static_cast<size_t>(cache_bytes), ops.stream()>>>(
              typed<T>(x), g, typed_mut<T>(out), channels, positions, root_c);
    } else {
      channel_rms_norm_kernel<T, false, kSilu><<<static_cast<unsigned>(blocks), block, 0, ops.stream()>>>(
          typed<T>(x), g, typed_mut<T>(out), channels, positions, root_c);
    }
    WANRT_CHECK_LAUNCH();
  });
  return out;
}

}  // namespace

Tensor CudaOps::channel_rms_norm(const Tensor& x, const Tensor& gamma) {
  return run_channel_rms_norm<false>(*this, x, gamma);
}

Tensor CudaOps::channel_rms_norm_silu(const Tensor& x, const Tensor& gamma) {
  return run_channel_rms_norm<true>(*this, x, gamma);
}

Tensor CudaOps::upsample_nearest_2x(const Tensor& x) {
  expect_video_tensor(x, "upsample input");
  WANRT_CHECK(x.dim() == 4, "upsample_nearest_2x needs [C, T, H, W], got ", x.describe());
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  Tensor out = empty(x.dtype(), {x.size(0), x.size(1), 2 * h, 2 * w});
  if (x.numel() == 0) return out;
  dispatch_video(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    WANRT_CHECK(kernels::is_aligned(out.raw(), 2 * sizeof(T)), "upsample_nearest_2x: misaligned output");
    upsample_kernel<T><<<plane_grid(w, h, planes, 128), 128, 0, stream_>>>(typed<T>(x), typed_mut<T>(out), planes, h, w);
    WANRT_CHECK_LAUNCH();
  });
  return out;
}

Tensor CudaOps::frames(const Tensor& x, int64_t begin, int64_t end) {
  expect_video_tensor(x, "frames input");
  WANRT_CHECK(x.dim() == 4 && 0 <= begin && begin <= end && end <= x.size(1), "frames [", begin, ", ", end,
              ") out of range for ", x.describe());
  const int64_t channels = x.size(0), frames_in = x.size(1), plane = x.size(2) * x.size(3);
  Tensor out = empty(x.dtype(), {channels, end - begin, x.size(2), x.size(3)});
  const size_t element = dtype_size(x.dtype());
  const size_t width = static_cast<size_t>((end - begin) * plane) * element;
  if (width && channels)
    WANRT_CHECK_CUDA(cudaMemcpy2DAsync(out.raw_mut(), width,
                                       static_cast<const char*>(x.raw()) + static_cast<size_t>(begin * plane) * element,
                                       static_cast<size_t>(frames_in * plane) * element, width,
                                       static_cast<size_t>(channels), cudaMemcpyDeviceToDevice, stream_));
  return out;
}

Tensor CudaOps::concat_frames(const Tensor& a, const Tensor& b) {
  expect_video_tensor(a, "concat_frames lhs");
  expect_video_tensor(b, "concat_frames rhs");
  WANRT_CHECK(a.dim() == 4 && b.dim() == 4 && a.size(0) == b.size(0) && a.size(2) == b.size(2) &&
                  a.size(3) == b.size(3),
              "concat_frames: ", a.describe(), " and ", b.describe(), " differ past the time axis");
  // Mixed dtypes meet in the more precise one (the rule of the binary ops).
  const DType dtype = promoted_video_dtype(a.dtype(), b.dtype());
  const Tensor lhs = as_dtype(a, dtype), rhs = as_dtype(b, dtype);
  const int64_t channels = a.size(0), plane = a.size(2) * a.size(3), ta = a.size(1), tb = b.size(1);
  Tensor out = empty(dtype, {channels, ta + tb, a.size(2), a.size(3)});
  const size_t element = dtype_size(dtype);
  const size_t pitch = static_cast<size_t>((ta + tb) * plane) * element;
  const size_t width_a = static_cast<size_t>(ta * plane) * element, width_b = static_cast<size_t>(tb * plane) * element;
  char* dst = static_cast<char*>(out.raw_mut());
  if (width_a && channels)
    WANRT_CHECK_CUDA(cudaMemcpy2DAsync(dst, pitch, lhs.raw(), width_a, width_a, static_cast<size_t>(channels),
                                       cudaMemcpyDeviceToDevice, stream_));
  if (width_b && channels)
    WANRT_CHECK_CUDA(cudaMemcpy2DAsync(dst + width_a, pitch, rhs.raw(), width_b, width_b,
                                       static_cast<size_t>(channels), cudaMemcpyDeviceToDevice, stream_));
  return out;
}

Tensor CudaOps::transpose(const Tensor& x) {
  expect_video_tensor(x, "transpose input");
  WANRT_CHECK(x.dim() == 2, "transpose needs a 2-D tensor, got ", x.describe());
  const int64_t rows = x.size(0), cols = x.size(1);
  Tensor out = empty(x.dtype(), {cols, rows});
  dispatch_video(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    launch_transpose<T, T>(rows_of(typed<T>(x), cols), typed_mut<T>(out), 1, rows, cols, PadMap{}, nullptr, stream_);
  });
  return out;
}

const Tensor& expect_video_tensor(const Tensor& t, const char* what) {
  WANRT_CHECK(t.device() == Device::Cuda, "cuda backend: ", what, " ", t.describe(),
              " is in host memory; upload it first (ops.upload / ops.upload_weight)");
  WANRT_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16, "cuda backend: ", what,
              " must be F32, BF16 or F16, got ", t.describe());
  WANRT_CHECK(t.is_contiguous(), "cuda backend: ", what, " must be contiguous, got ", t.describe());
  WANRT_CHECK(t.defined(), "cuda backend: ", what, " is an undefined tensor");
  return t;
}

DType promoted_video_dtype(DType a, DType b) {
  if (a == DType::F32 || b == DType::F32) return DType::F32;
  if (a == DType::F16 || b == DType::F16) return DType::F16;
  return DType::BF16;
}

Tensor half_activation(CudaOps& ops, const Tensor& x, Activation act) {
  expect_video_tensor(x, "activation input");
  WANRT_CHECK(x.dtype() == DType::F16, "half_activation takes F16, got ", x.describe());
  Tensor out = ops.empty(DType::F16, x.shape());
  const int64_t n = x.numel();
  if (n == 0) return out;
  const auto launch = [&](auto op) {
    constexpr int kVec = 8;  // 16 bytes
    if (n % kVec == 0 && kernels::is_aligned(x.raw(), 16) && kernels::is_aligned(out.raw(), 16))
      half_unary_kernel<half, kVec><<<kernels::grid_stride_blocks(n / kVec, kElementwiseThreads), kElementwiseThreads,
                                      0, ops.stream()>>>(typed<half>(x), typed_mut<half>(out), n / kVec, op);
    else
      half_unary_kernel<half, 1><<<kernels::grid_stride_blocks(n, kElementwiseThreads), kElementwiseThreads, 0,
                                   ops.stream()>>>(typed<half>(x), typed_mut<half>(out), n, op);
    WANRT_CHECK_LAUNCH();
  };
  switch (act) {
    case Activation::None: launch(IdentityFn{}); break;
    case Activation::Silu: launch(SiluFn{}); break;
    case Activation::GeluTanh: launch(GeluTanhFn{}); break;
  }
  return out;
}

Tensor half_add(CudaOps& ops, const Tensor& a, const Tensor& b) {
  expect_video_tensor(a, "add lhs");
  expect_video_tensor(b, "add rhs");
  WANRT_CHECK(a.dtype() == DType::F16 || b.dtype() == DType::F16, "half_add takes an F16 operand, got ",
              a.describe(), " and ", b.describe());
  const bool broadcast = b.shape() != a.shape();
  const int64_t features = a.dim() ? a.size(-1) : 1;
  WANRT_CHECK(!broadcast || b.numel() == features, "cuda backend: add of ", a.describe(), " and ", b.describe(),
              ": shapes must match or the rhs be one row of ", features);
  Tensor out = ops.empty(promoted_video_dtype(a.dtype(), b.dtype()), a.shape());
  const int64_t n = a.numel();
  if (n == 0) return out;
  dispatch_video(a.dtype(), [&](auto a_tag) {
    dispatch_video(b.dtype(), [&](auto b_tag) {
      dispatch_video(out.dtype(), [&](auto out_tag) {
        using Ta = decltype(a_tag);
        using Tb = decltype(b_tag);
        using Tout = decltype(out_tag);
        // The widest vector of at most 16 bytes per operand that lengths and pointers allow.
        constexpr size_t kWidest = std::max({sizeof(Ta), sizeof(Tb), sizeof(Tout)});
        constexpr int kVec = static_cast<int>(16 / kWidest);
        const bool vector = n % kVec == 0 && (!broadcast || features % kVec == 0) &&
                            kernels::is_aligned(a.raw(), kVec * sizeof(Ta)) &&
                            kernels::is_aligned(b.raw(), kVec * sizeof(Tb)) &&
                            kernels::is_aligned(out.raw(), kVec * sizeof(Tout));
        const auto launch = [&](auto vec_tag, auto broadcast_tag) {
          constexpr int kV = decltype(vec_tag)::value;
          constexpr bool kB = decltype(broadcast_tag)::value;
          half_add_kernel<Ta, Tb, Tout, kV, kB><<<kernels::grid_stride_blocks(n / kV, kElementwiseThreads),
                                                  kElementwiseThreads, 0, ops.stream()>>>(
              typed<Ta>(a), typed<Tb>(b), typed_mut<Tout>(out), n / kV, features);
          WANRT_CHECK_LAUNCH();
        };
        using One = std::integral_constant<int, 1>;
        using Wide = std::integral_constant<int, kVec>;
        if (vector) {
          broadcast ? launch(Wide{}, std::true_type{}) : launch(Wide{}, std::false_type{});
        } else {
          broadcast ? launch(One{}, std::true_type{}) : launch(One{}, std::false_type{});
        }
      });
    });
  });
  return out;
}

}  // namespace wanrt
