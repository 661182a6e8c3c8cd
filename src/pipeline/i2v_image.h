// The I2V input image: the output-size rule and the bicubic resize (spec §2.2).
//
// Size rule, as WanI2V.generate computes it (float64, ar = h0 / w0):
//   lat_h = 2·⌊√(max_area·ar) / 16⌋,  lat_w = 2·⌊√(max_area / ar) / 16⌋,
//   output h = 8·lat_h, w = 8·lat_w (always multiples of 16).
// Resize: torch.nn.functional.interpolate(mode="bicubic", align_corners=False, no antialias)
// on CPU in float32: cubic convolution with A = −0.75, source coordinate
// (dst + 0.5)·(in / out) − 0.5 not clamped, the four taps clamped to the border, output not
// clamped (it may overshoot [−1, 1]). Arithmetic follows torch's float32 operation order.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace wanrt {

struct I2vSize {
  int64_t lat_h = 0;  // latent grid (VAE stride 8); even, so it splits into 2×2 patches
  int64_t lat_w = 0;
  int64_t height() const { return 8 * lat_h; }
  int64_t width() const { return 8 * lat_w; }
};

// The reference's default max_area (--size 1280*720).
inline constexpr int64_t kDefaultMaxArea = 1280 * 720;

// Output size for an image of `image_h`×`image_w` pixels. An aspect ratio so extreme that one
// side would get no 2×2 patch is an error saying so.
I2vSize i2v_output_size(int64_t image_h, int64_t image_w, int64_t max_area);

// Bicubic resize of host F32 [C, H, W] (any C) to [C, out_h, out_w].
Tensor resize_bicubic(const Tensor& image, int64_t out_h, int64_t out_w);

// read_image(path) ([3, h0, w0] in [−1, 1]) resized to the size rule's (h, w).
Tensor load_i2v_image(const std::string& path, int64_t max_area, I2vSize* size = nullptr);

}  // namespace wanrt
