// Video ops of the float32 reference (the VAE's): 3-D convolution as im2col + sgemm, the
// channel RMS norm, nearest upsampling, frame slicing.
//
// conv3d: FLOPs 2·Cout·Cin·kt·kh·kw·T'·H'·W'. The im2col buffer is built for a band of output
// rows at a time so memory stays bounded (about 64 MB) at any resolution.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_ops.h"

namespace wanrt {
namespace {

int64_t conv_out_size(int64_t in, int64_t pad_before, int64_t pad_after, int64_t kernel,
                      int64_t stride, const char* axis) {
  const int64_t padded = in + pad_before + pad_after;
  WANRT_CHECK(padded >= kernel && stride >= 1, "conv3d: ", axis, " of ", in, " (padded ", padded,
              ") is smaller than the kernel ", kernel);
  return (padded - kernel) / stride + 1;
}

}  // namespace

Tensor CpuOps::conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                      const Conv3dOptions& o) {
  expect_f32(x, "conv3d input");
  expect_f32(weight, "conv3d weight");
  WANRT_CHECK(x.dim() == 4 && weight.dim() == 5 && weight.size(1) == x.size(0),
              "conv3d: input ", x.describe(), " does not match weight ", weight.describe(),
              " (expected [Cin, T, H, W] and [Cout, Cin, kt, kh, kw])");
  const int64_t cin = x.size(0), t_in = x.size(1), h_in = x.size(2), w_in = x.size(3);
  const int64_t cout = weight.size(0), kt = weight.size(2), kh = weight.size(3), kw = weight.size(4);
  const int64_t t_out = conv_out_size(t_in, o.pad_t_front, o.pad_t_back, kt, o.stride_t, "time");
  const int64_t h_out = conv_out_size(h_in, o.pad_top, o.pad_bottom, kh, o.stride_h, "height");
  const int64_t w_out = conv_out_size(w_in, o.pad_left, o.pad_right, kw, o.stride_w, "width");
  const float* b = nullptr;
  if (bias) {
    expect_f32(*bias, "conv3d bias");
    WANRT_CHECK(bias->numel() == cout, "conv3d: bias ", bias->describe(), " for ", cout, " outputs");
    b = bias->data<float>();
  }
  const int64_t patch = cin * kt * kh * kw;
  const int64_t band_rows = std::max<int64_t>(1, std::min<int64_t>(h_out, (16 << 20) / std::max<int64_t>(1, patch * w_out)));
  Tensor out = Tensor::empty(DType::F32, {cout, t_out, h_out, w_out});
  std::vector<float> columns(static_cast<size_t>(patch * band_rows * w_out));
  std::vector<float> result(static_cast<size_t>(cout * band_rows * w_out));
  const float* in = x.data<float>();
  for (int64_t t = 0; t < t_out; ++t) {
    for (int64_t row0 = 0; row0 < h_out; row0 += band_rows) {
      const int64_t rows = std::min(band_rows, h_out - row0);
      const int64_t pixels = rows * w_out;
      // columns[p, pixel]: the input value under kernel tap p for output pixel `pixel`.
#pragma omp parallel for schedule(static)
      for (int64_t p = 0; p < patch; ++p) {
        const int64_t c = p / (kt * kh * kw), dt = (p / (kh * kw)) % kt, dh = (p / kw) % kh, dw = p % kw;
        const int64_t ti = t * o.stride_t + dt - o.pad_t_front;
        float* col = columns.data() + p * pixels;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t hi = (row0 + r) * o.stride_h + dh - o.pad_top;
          for (int64_t wo = 0; wo < w_out; ++wo) {
            const int64_t wi = wo * o.stride_w + dw - o.pad_left;
            const bool inside = ti >= 0 && ti < t_in && hi >= 0 && hi < h_in && wi >= 0 && wi < w_in;
            col[r * w_out + wo] = inside ? in[((c * t_in + ti) * h_in + hi) * w_in + wi] : 0.0f;
          }
        }
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(cout),
                  static_cast<int>(pixels), static_cast<int>(patch), 1.0f, weight.data<float>(),
                  static_cast<int>(patch), columns.data(), static_cast<int>(pixels), 0.0f,
                  result.data(), static_cast<int>(pixels));
      for (int64_t co = 0; co < cout; ++co) {
        float* dst = out.data<float>() + ((co * t_out + t) * h_out + row0) * w_out;
        const float* src = result.data() + co * pixels;
        const float add = b ? b[co] : 0.0f;
        for (int64_t i = 0; i < pixels; ++i) dst[i] = src[i] + add;
      }
    }
  }
  return out;
}

Tensor CpuOps::channel_rms_norm(const Tensor& x, const Tensor& gamma) {
  expect_f32(x, "channel_rms_norm input");
  expect_f32(gamma, "channel_rms_norm gamma");
  WANRT_CHECK(x.dim() >= 2 && gamma.numel() == x.size(0), "channel_rms_norm: gamma ",
              gamma.describe(), " does not match ", x.size(0), " channels of ", x.describe());
  const int64_t channels = x.size(0), positions = x.numel() / channels;
  Tensor out = Tensor::empty(DType::F32, x.shape());
  const float* in = x.data<float>();
  const float* g = gamma.data<float>();
  float* o = out.data<float>();
  const double root_c = std::sqrt(static_cast<double>(channels));
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < positions; ++p) {
    double sq = 0;
    for (int64_t c = 0; c < channels; ++c) sq += static_cast<double>(in[c * positions + p]) * in[c * positions + p];
    // The reference clamps the L2 norm (not the mean square), so an all-zero vector maps to 0.
    const double scale = root_c / std::max(std::sqrt(sq), 1e-12);
    for (int64_t c = 0; c < channels; ++c)
      o[c * positions + p] = static_cast<float>(in[c * positions + p] * scale * g[c]);
  }
  return out;
}

Tensor CpuOps::upsample_nearest_2x(const Tensor& x) {
  expect_f32(x, "upsample input");
  WANRT_CHECK(x.dim() == 4, "upsample_nearest_2x needs [C, T, H, W], got ", x.describe());
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  Tensor out = Tensor::empty(DType::F32, {x.size(0), x.size(1), 2 * h, 2 * w});
  const float* in = x.data<float>();
  float* o = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < 2 * h; ++i)
      for (int64_t j = 0; j < 2 * w; ++j)
        o[(p * 2 * h + i) * 2 * w + j] = in[(p * h + i / 2) * w + j / 2];
  return out;
}

Tensor CpuOps::frames(const Tensor& x, int64_t begin, int64_t end) {
  expect_f32(x, "frames input");
  WANRT_CHECK(x.dim() == 4 && 0 <= begin && begin <= end && end <= x.size(1), "frames [", begin,
              ", ", end, ") out of range for ", x.describe());
  const int64_t channels = x.size(0), plane = x.size(2) * x.size(3);
  Tensor out = Tensor::empty(DType::F32, {channels, end - begin, x.size(2), x.size(3)});
  for (int64_t c = 0; c < channels; ++c)
    std::memcpy(out.data<float>() + c * (end - begin) * plane,
                x.data<float>() + (c * x.size(1) + begin) * plane,
                static_cast<size_t>((end - begin) * plane) * sizeof(float));
  return out;
}

Tensor CpuOps::concat_frames(const Tensor& a, const Tensor& b) {
  expect_f32(a, "concat_frames lhs");
  expect_f32(b, "concat_frames rhs");
  WANRT_CHECK(a.dim() == 4 && b.dim() == 4 && a.size(0) == b.size(0) && a.size(2) == b.size(2) &&
                  a.size(3) == b.size(3),
              "concat_frames: ", a.describe(), " and ", b.describe(), " differ past the time axis");
  const int64_t channels = a.size(0), plane = a.size(2) * a.size(3), ta = a.size(1), tb = b.size(1);
  Tensor out = Tensor::empty(DType::F32, {channels, ta + tb, a.size(2), a.size(3)});
  for (int64_t c = 0; c < channels; ++c) {
    float* dst = out.data<float>() + c * (ta + tb) * plane;
    std::memcpy(dst, a.data<float>() + c * ta * plane, static_cast<size_t>(ta * plane) * sizeof(float));
    std::memcpy(dst + ta * plane, b.data<float>() + c * tb * plane, static_cast<size_t>(tb * plane) * sizeof(float));
  }
  return out;
}

Tensor CpuOps::transpose(const Tensor& x) {
  expect_f32(x, "transpose input");
  WANRT_CHECK(x.dim() == 2, "transpose needs a 2-D tensor, got ", x.describe());
  const int64_t r_n = x.size(0), c_n = x.size(1);
  Tensor out = Tensor::empty(DType::F32, {c_n, r_n});
  const float* in = x.data<float>();
  float* o = out.data<float>();
  for (int64_t r = 0; r < r_n; ++r)
    for (int64_t c = 0; c < c_n; ++c) o[c * r_n + r] = in[r * c_n + c];
  return out;
}

}  // namespace wanrt
