// Layout ops of the CUDA backend: the same meaning as their CPU twins (cpu_layout.cpp), any of
// F32/BF16 in, the same dtype out. No arithmetic: each is one pass over its bytes, so each is
// HBM-bound and is judged by bytes moved (E = element size):
//
//   patchify    [C, T, H, W] -> [T·(H/ph)·(W/pw), C·ph·pw]     reads and writes C·T·H·W·E
//   unpatchify  [≥T·h·w, ph·pw·C] -> [C, T, h·ph, w·pw]        reads and writes C·T·h·ph·w·pw·E
//   pad_rows    [R, ...] -> [rows, ...]                        reads R·F·E, writes rows·F·E
//   concat_rows [Ra, ...] ++ [Rb, ...]                          reads and writes (Ra + Rb)·F·E
//   rows        [begin, end) of [R, ...]                        reads and writes (end − begin)·F·E
//
// patchify and unpatchify are index permutations: one thread per output element, so writes
// are fully coalesced and reads come in runs of pw (patchify) or along W (unpatchify), which
// the L2 absorbs. Since nothing is computed, the kernels move raw 2- or 4-byte words and one
// instantiation per element size serves every dtype. The row ops are contiguous byte ranges:
// one cudaMemcpyAsync/cudaMemsetAsync per range, which the driver runs at HBM bandwidth.
#include <algorithm>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

unsigned blocks_for(int64_t n, int64_t threads) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + threads - 1) / threads, 1, 132 * 32));
}

// out[(f·gh + i)·gw + j][(c·ph + dh)·pw + dw] = video[c][f][i·ph + dh][j·pw + dw]
template <typename Word>
__global__ void patchify_kernel(const Word* video, Word* out, int64_t channels, int64_t frames, int64_t height,
                                int64_t width, int64_t ph, int64_t pw) {
  const int64_t gh = height / ph, gw = width / pw, features = channels * ph * pw;
  const int64_t total = frames * gh * gw * features;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < total; o += int64_t{gridDim.x} * blockDim.x) {
    const int64_t feature = o % features, token = o / features;
    const int64_t dw = feature % pw, dh = (feature / pw) % ph, c = feature / (pw * ph);
    const int64_t j = token % gw, i = (token / gw) % gh, f = token / (gw * gh);
    out[o] = video[((c * frames + f) * height + i * ph + dh) * width + j * pw + dw];
  }
}

// out[c][f][i·ph + dh][j·pw + dw] = tokens[(f·h + i)·w + j][(dh·pw + dw)·C + c]
template <typename Word>
__global__ void unpatchify_kernel(const Word* tokens, Word* out, int64_t channels, int64_t frames, int64_t h,
                                  int64_t w, int64_t ph, int64_t pw) {
  const int64_t out_h = h * ph, out_w = w * pw, features = ph * pw * channels;
  const int64_t total = channels * frames * out_h * out_w;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < total; o += int64_t{gridDim.x} * blockDim.x) {
    const int64_t x = o % out_w, y = (o / out_w) % out_h, f = (o / (out_w * out_h)) % frames;
    const int64_t c = o / (out_w * out_h * frames);
    const int64_t i = y / ph, dh = y % ph, j = x / pw, dw = x % pw;
    out[o] = tokens[((f * h + i) * w + j) * features + (dh * pw + dw) * channels + c];
  }
}

size_t row_bytes(const Tensor& t) { return t.size(0) == 0 ? 0 : t.nbytes() / static_cast<size_t>(t.size(0)); }

}  // namespace

Tensor CudaOps::patchify(const Tensor& video, int64_t ph, int64_t pw) {
  expect_device_float(video, "patchify input");
  WANRT_CHECK(ph > 0 && pw > 0 && video.dim() == 4 && video.size(2) % ph == 0 && video.size(3) % pw == 0,
              "patchify: ", video.describe(), " is not [C, T, H, W] with H % ", ph, " == 0 and W % ", pw, " == 0");
  const int64_t c = video.size(0), t = video.size(1), h = video.size(2), w = video.size(3);
  Tensor out = empty(video.dtype(), {t * (h / ph) * (w / pw), c * ph * pw});
  const int64_t n = out.numel();
  if (n == 0) return out;
  constexpr int64_t kThreads = 256;
  if (dtype_size(video.dtype()) == 4)
    patchify_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream_>>>(
        static_cast<const uint32_t*>(video.raw()), static_cast<uint32_t*>(out.raw_mut()), c, t, h, w, ph, pw);
  else
    patchify_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream_>>>(
        static_cast<const uint16_t*>(video.raw()), static_cast<uint16_t*>(out.raw_mut()), c, t, h, w, ph, pw);
  WANRT_CHECK_LAUNCH();
  return out;
}

Tensor CudaOps::unpatchify(const Tensor& tokens, int64_t channels, int64_t frames, int64_t h, int64_t w,
                           int64_t ph, int64_t pw) {
  expect_device_float(tokens, "unpatchify input");
  const int64_t features = ph * pw * channels;
  WANRT_CHECK(channels >= 0 && frames >= 0 && h >= 0 && w >= 0 && ph > 0 && pw > 0,
              "unpatchify: bad geometry C=", channels, " T=", frames, " h=", h, " w=", w, " patch ", ph, "x", pw);
  WANRT_CHECK(tokens.dim() == 2 && tokens.size(1) == features && tokens.size(0) >= frames * h * w,
              "unpatchify: ", tokens.describe(), " does not hold ", frames * h * w, " tokens of ", features,
              " features");
  Tensor out = empty(tokens.dtype(), {channels, frames, h * ph, w * pw});
  const int64_t n = out.numel();
  if (n == 0) return out;
  constexpr int64_t kThreads = 256;
  if (dtype_size(tokens.dtype()) == 4)
    unpatchify_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream_>>>(
        static_cast<const uint32_t*>(tokens.raw()), static_cast<uint32_t*>(out.raw_mut()), channels, frames, h, w,
        ph, pw);
  else
    unpatchify_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream_>>>(
        static_cast<const uint16_t*>(tokens.raw()), static_cast<uint16_t*>(out.raw_mut()), channels, frames, h, w,
        ph, pw);
  WANRT_CHECK_LAUNCH();
  return out;
}

Tensor CudaOps::pad_rows(const Tensor& x, int64_t rows) {
  expect_device_float(x, "pad_rows input");
  WANRT_CHECK(x.dim() >= 1 && rows >= x.size(0), "pad_rows: cannot pad ", x.describe(), " to ", rows, " rows");
  Shape shape = x.shape();
  shape[0] = rows;
  Tensor out = empty(x.dtype(), shape);
  if (x.nbytes())
    WANRT_CHECK_CUDA(cudaMemcpyAsync(out.raw_mut(), x.raw(), x.nbytes(), cudaMemcpyDeviceToDevice, stream_));
  if (out.nbytes() > x.nbytes())
    WANRT_CHECK_CUDA(cudaMemsetAsync(static_cast<char*>(out.raw_mut()) + x.nbytes(), 0, out.nbytes() - x.nbytes(),
                                     stream_));
  return out;
}

Tensor CudaOps::concat_rows(const Tensor& a, const Tensor& b) {
  expect_device_float(a, "concat lhs");
  expect_device_float(b, "concat rhs");
  WANRT_CHECK(a.dim() == b.dim() && a.dim() >= 1 && std::equal(a.shape().begin() + 1, a.shape().end(), b.shape().begin() + 1),
              "concat_rows: ", a.describe(), " and ", b.describe(), " differ past axis 0");
  // Mixed dtypes meet in F32 (exact for BF16), as the elementwise ops do.
  const DType dtype = a.dtype() == b.dtype() ? a.dtype() : DType::F32;
  const Tensor lhs = as_dtype(a, dtype), rhs = as_dtype(b, dtype);
  Shape shape = a.shape();
  shape[0] += b.size(0);
  Tensor out = empty(dtype, shape);
  if (lhs.nbytes())
    WANRT_CHECK_CUDA(cudaMemcpyAsync(out.raw_mut(), lhs.raw(), lhs.nbytes(), cudaMemcpyDeviceToDevice, stream_));
  if (rhs.nbytes())
    WANRT_CHECK_CUDA(cudaMemcpyAsync(static_cast<char*>(out.raw_mut()) + lhs.nbytes(), rhs.raw(), rhs.nbytes(),
                                     cudaMemcpyDeviceToDevice, stream_));
  return out;
}

Tensor CudaOps::rows(const Tensor& x, int64_t begin, int64_t end) {
  expect_device_float(x, "rows input");
  WANRT_CHECK(x.dim() >= 1 && 0 <= begin && begin <= end && end <= x.size(0), "rows [", begin, ", ", end,
              ") out of range for ", x.describe());
  Shape shape = x.shape();
  shape[0] = end - begin;
  Tensor out = empty(x.dtype(), shape);
  if (out.nbytes())
    WANRT_CHECK_CUDA(cudaMemcpyAsync(out.raw_mut(), static_cast<const char*>(x.raw()) + static_cast<size_t>(begin) * row_bytes(x),
                                     out.nbytes(), cudaMemcpyDeviceToDevice, stream_));
  return out;
}

}  // namespace wanrt
