#include "pipeline/i2v_image.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "io/image.h"

namespace wanrt {
namespace {

constexpr int64_t kVaeStride = 8;
constexpr int64_t kPatch = 2;

// One latent side: round(sqrt(x) // vae_stride // patch * patch) in Python's float64 terms.
int64_t latent_side(double area_times_ratio) {
  const double side = std::sqrt(area_times_ratio);
  return static_cast<int64_t>(std::floor(std::floor(side / kVaeStride) / kPatch) * kPatch);
}

// Per output index along one axis: the four source indices (clamped) and their weights,
// as torch's HelperInterpCubic::compute_indices_weights computes them in float32.
struct CubicTaps {
  std::array<int64_t, 4> index;
  std::array<float, 4> weight;
};

float cubic_near(float x, float a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }      // |x| <= 1
float cubic_far(float x, float a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }  // 1 < |x| < 2

std::vector<CubicTaps> cubic_taps(int64_t in_size, int64_t out_size) {
  constexpr float kA = -0.75f;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  std::vector<CubicTaps> taps(static_cast<size_t>(out_size));
  for (int64_t o = 0; o < out_size; ++o) {
    // Not clamped at 0 (cubic mode): near the border the coordinate may be negative.
    const float source = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    const int64_t base = std::min(static_cast<int64_t>(std::floor(source)), in_size - 1);
    const float t = std::min(std::max(source - static_cast<float>(base), 0.0f), 1.0f);
    CubicTaps& tap = taps[static_cast<size_t>(o)];
    tap.weight = {cubic_far(t + 1.0f, kA), cubic_near(t, kA), cubic_near(1.0f - t, kA),
                  cubic_far((1.0f - t) + 1.0f, kA)};
    for (int64_t j = 0; j < 4; ++j)
      tap.index[static_cast<size_t>(j)] = std::clamp<int64_t>(base - 1 + j, 0, in_size - 1);
  }
  return taps;
}

}  // namespace

I2vSize i2v_output_size(int64_t image_h, int64_t image_w, int64_t max_area) {
  WANRT_CHECK(image_h > 0 && image_w > 0, "input image has an empty size ", image_w, "x", image_h);
  WANRT_CHECK(max_area > 0, "max_area (the --size area) must be positive, got ", max_area);
  const double aspect_ratio = static_cast<double>(image_h) / static_cast<double>(image_w);
  I2vSize size;
  size.lat_h = latent_side(static_cast<double>(max_area) * aspect_ratio);
  size.lat_w = latent_side(static_cast<double>(max_area) / aspect_ratio);
  WANRT_CHECK(size.lat_h >= kPatch && size.lat_w >= kPatch, "input image ", image_w, "x",
              image_h, " (W×H) at max_area ", max_area, " gives a latent of ", size.lat_w, "x",
              size.lat_h, " (W×H); at least ", kPatch, "x", kPatch,
              " is needed: use a less extreme aspect ratio or a larger --size");
  return size;
}

Tensor resize_bicubic(const Tensor& image, int64_t out_h, int64_t out_w) {
  WANRT_CHECK(image.dim() == 3 && image.dtype() == DType::F32 && image.device() == Device::Host,
              "resize_bicubic expects a host F32 [C, H, W] tensor, got ", image.describe());
  WANRT_CHECK(out_h > 0 && out_w > 0, "resize_bicubic: bad target size ", out_h, "x", out_w);
  const int64_t channels = image.size(0), in_h = image.size(1), in_w = image.size(2);
  WANRT_CHECK(in_h > 0 && in_w > 0, "resize_bicubic: empty input ", image.describe());
  const Tensor source = image.is_contiguous() ? image : image.clone();
  const float* in = source.data<float>();
  const std::vector<CubicTaps> rows = cubic_taps(in_h, out_h);
  const std::vector<CubicTaps> cols = cubic_taps(in_w, out_w);
  Tensor result = Tensor::empty(DType::F32, {channels, out_h, out_w});
  float* out = result.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    const float* plane = in + c * in_h * in_w;
    for (int64_t y = 0; y < out_h; ++y) {
      const CubicTaps& row = rows[static_cast<size_t>(y)];
      for (int64_t x = 0; x < out_w; ++x) {
        const CubicTaps& col = cols[static_cast<size_t>(x)];
        // torch's Interpolate<2>: the outer (height) sum of inner (width) sums, in this order.
        // Against the golden file this lands within ~3e-7 relative, not bit for bit: torch's
        // CPU kernels are built for AVX2 with FMA contraction, which plain C++ does not do.
        float value = 0.0f;
        for (size_t i = 0; i < 4; ++i) {
          const float* line = plane + row.index[i] * in_w;
          float inner = line[col.index[0]] * col.weight[0];
          for (size_t j = 1; j < 4; ++j) inner += line[col.index[j]] * col.weight[j];
          value = i == 0 ? inner * row.weight[0] : value + inner * row.weight[i];
        }
        out[(c * out_h + y) * out_w + x] = value;
      }
    }
  }
  return result;
}

Tensor load_i2v_image(const std::string& path, int64_t max_area, I2vSize* size) {
  const Tensor image = read_image(path);
  const I2vSize target = i2v_output_size(image.size(1), image.size(2), max_area);
  if (size) *size = target;
  return resize_bicubic(image, target.height(), target.width());
}

}  // namespace wanrt
