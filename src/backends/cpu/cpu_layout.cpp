// Layout ops and collectives of the float32 reference.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_ops.h"

namespace wanrt {

Tensor CpuOps::patchify(const Tensor& video, int64_t ph, int64_t pw) {
  expect_f32(video, "patchify input");
  WANRT_CHECK(video.dim() == 4 && video.size(2) % ph == 0 && video.size(3) % pw == 0,
              "patchify: ", video.describe(), " is not [C, T, H, W] with H % ", ph, " == 0 and W % ",
              pw, " == 0");
  const int64_t c_n = video.size(0), t_n = video.size(1), h_n = video.size(2), w_n = video.size(3);
  const int64_t gh = h_n / ph, gw = w_n / pw, features = c_n * ph * pw;
  Tensor out = Tensor::empty(DType::F32, {t_n * gh * gw, features});
  const float* in = video.data<float>();
  float* o = out.data<float>();
  for (int64_t f = 0; f < t_n; ++f)
    for (int64_t i = 0; i < gh; ++i)
      for (int64_t j = 0; j < gw; ++j) {
        float* token = o + ((f * gh + i) * gw + j) * features;
        for (int64_t c = 0; c < c_n; ++c)
          for (int64_t dh = 0; dh < ph; ++dh)
            for (int64_t dw = 0; dw < pw; ++dw)
              token[(c * ph + dh) * pw + dw] =
                  in[((c * t_n + f) * h_n + i * ph + dh) * w_n + j * pw + dw];
      }
  return out;
}

Tensor CpuOps::unpatchify(const Tensor& tokens, int64_t channels, int64_t frames, int64_t h,
                          int64_t w, int64_t ph, int64_t pw) {
  expect_f32(tokens, "unpatchify input");
  const int64_t features = ph * pw * channels;
  WANRT_CHECK(tokens.dim() == 2 && tokens.size(1) == features && tokens.size(0) >= frames * h * w,
              "unpatchify: ", tokens.describe(), " does not hold ", frames * h * w,
              " tokens of ", features, " features");
  Tensor out = Tensor::empty(DType::F32, {channels, frames, h * ph, w * pw});
  const float* in = tokens.data<float>();
  float* o = out.data<float>();
  const int64_t out_h = h * ph, out_w = w * pw;
  for (int64_t f = 0; f < frames; ++f)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        const float* token = in + ((f * h + i) * w + j) * features;
        for (int64_t dh = 0; dh < ph; ++dh)
          for (int64_t dw = 0; dw < pw; ++dw)
            for (int64_t c = 0; c < channels; ++c)
              o[((c * frames + f) * out_h + i * ph + dh) * out_w + j * pw + dw] =
                  token[(dh * pw + dw) * channels + c];
      }
  return out;
}

Tensor CpuOps::pad_rows(const Tensor& x, int64_t rows) {
  expect_f32(x, "pad_rows input");
  WANRT_CHECK(x.dim() >= 1 && rows >= x.size(0), "pad_rows: cannot pad ", x.describe(), " to ",
              rows, " rows");
  Shape shape = x.shape();
  shape[0] = rows;
  Tensor out = Tensor::zeros(DType::F32, shape);
  std::memcpy(out.raw_mut(), x.raw(), x.nbytes());
  return out;
}

Tensor CpuOps::concat_rows(const Tensor& a, const Tensor& b) {
  expect_f32(a, "concat lhs");
  expect_f32(b, "concat rhs");
  WANRT_CHECK(a.dim() == b.dim() && a.dim() >= 1 &&
                  std::equal(a.shape().begin() + 1, a.shape().end(), b.shape().begin() + 1),
              "concat_rows: ", a.describe(), " and ", b.describe(), " differ past axis 0");
  Shape shape = a.shape();
  shape[0] += b.size(0);
  Tensor out = Tensor::empty(DType::F32, shape);
  std::memcpy(out.raw_mut(), a.raw(), a.nbytes());
  std::memcpy(static_cast<char*>(out.raw_mut()) + a.nbytes(), b.raw(), b.nbytes());
  return out;
}

Tensor CpuOps::rows(const Tensor& x, int64_t begin, int64_t end) {
  return expect_f32(x, "rows input").slice_rows(begin, end).clone();
}

// Ulysses all-to-all #1. Send chunk j = my tokens for head group j, packed [S, H/p, d];
// received chunks arrive in rank order, which is exactly [p·S, H/p, d] = all tokens.
Tensor CpuOps::sequence_to_heads(const Tensor& x) {
  expect_f32(x, "sequence_to_heads input");
  const int64_t p = world_size();
  if (p == 1) return x;
  WANRT_CHECK(x.dim() == 3 && x.size(1) % p == 0, "sequence parallelism: ", x.size(1),
              " heads do not split over ", p, " ranks");
  const int64_t s = x.size(0), heads = x.size(1), d = x.size(2), group = heads / p;
  std::vector<float> send(static_cast<size_t>(x.numel()));
  for (int64_t j = 0; j < p; ++j)
    for (int64_t n = 0; n < s; ++n)
      std::memcpy(&send[static_cast<size_t>(((j * s + n) * group) * d)],
                  x.data<float>() + (n * heads + j * group) * d,
                  static_cast<size_t>(group * d) * sizeof(float));
  Tensor out = Tensor::empty(DType::F32, {s * p, group, d});
  comm_->all_to_all(send.data(), out.raw_mut(), static_cast<size_t>(s * group * d) * sizeof(float));
  return out;
}

// All-to-all #2: send my rows for rank j's tokens; chunk j received holds rank j's heads for my
// tokens, [S, H/p, d]; interleave them back to [S, H, d].
Tensor CpuOps::heads_to_sequence(const Tensor& x) {
  expect_f32(x, "heads_to_sequence input");
  const int64_t p = world_size();
  if (p == 1) return x;
  WANRT_CHECK(x.dim() == 3 && x.size(0) % p == 0, "sequence parallelism: ", x.size(0),
              " tokens do not split over ", p, " ranks");
  const int64_t s = x.size(0) / p, group = x.size(1), d = x.size(2);
  std::vector<float> recv(static_cast<size_t>(x.numel()));
  comm_->all_to_all(x.raw(), recv.data(), static_cast<size_t>(s * group * d) * sizeof(float));
  Tensor out = Tensor::empty(DType::F32, {s, group * p, d});
  for (int64_t j = 0; j < p; ++j)
    for (int64_t n = 0; n < s; ++n)
      std::memcpy(out.data<float>() + (n * group * p + j * group) * d,
                  &recv[static_cast<size_t>(((j * s + n) * group) * d)],
                  static_cast<size_t>(group * d) * sizeof(float));
  return out;
}

Tensor CpuOps::all_gather_rows(const Tensor& x) {
  expect_f32(x, "all_gather_rows input");
  const int64_t p = world_size();
  if (p == 1) return x;
  Shape shape = x.shape();
  shape[0] *= p;
  Tensor out = Tensor::empty(DType::F32, shape);
  comm_->all_gather(x.raw(), out.raw_mut(), x.nbytes());
  return out;
}

}  // namespace wanrt
