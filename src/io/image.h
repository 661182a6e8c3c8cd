// Still images: reading the I2V input (JPEG, PNG), writing PNG frames, encoding JPEG frames.
//
// Decoding follows what the reference does with PIL's Image.open(path).convert('RGB'):
// - the format is found from the file's first bytes, never from its extension;
// - grayscale becomes R = G = B; palette images are looked up; alpha is dropped (not
//   composited onto a background); 16-bit samples keep their high byte; 1/2/4-bit gray is
//   scaled to 0..255 by bit replication, as PIL's L;1/L;2/L;4 unpackers do;
// - CMYK and YCCK JPEGs use PIL's Adobe convention (inverted CMYK, then PIL's cmyk2rgb);
// - EXIF orientation is NOT applied (the reference does not apply it either);
// - PNG gamma and ICC profiles are ignored, as PIL ignores them.
// Known divergence: PIL turns a 16-bit *grayscale* PNG into RGB by clipping each sample to
// 255 (so almost every pixel becomes white); we keep the high byte like every other 16-bit
// case, which is what the picture means.
//
// Every error is a wanrt::Error naming the file: missing, unreadable, not an image,
// unsupported format, truncated or corrupt data. Decoders never print and never exit.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace wanrt {

enum class ImageFormat { Unknown, Png, Jpeg };

// The format that the leading bytes announce (8 bytes are enough).
ImageFormat sniff_image_format(std::span<const uint8_t> leading_bytes);

// 8-bit RGB, rows top to bottom, pixels interleaved (HWC).
struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3
};

// Decodes a JPEG or PNG file (see above for the colour rules).
RgbImage decode_image_file(const std::string& path);
// Decodes a JPEG or PNG held in memory; `name` is used in error messages.
RgbImage decode_image_bytes(std::span<const uint8_t> bytes, const std::string& name);

// The pipeline's input tensor: host F32 [3, H, W] in [-1, 1], computed in float32 exactly as
// the reference's TF.to_tensor(img).sub_(0.5).div_(0.5): (v / 255 - 0.5) / 0.5.
Tensor rgb_to_tensor(const RgbImage& image);
// decode_image_file() then rgb_to_tensor(): values in [-1, 1], not [0, 1].
Tensor read_image(const std::string& path);

// Writes 8-bit RGB (HWC, width * height * 3 bytes) as a PNG, atomically (temporary file in
// the same folder, renamed on success; an existing file survives a failure).
void write_png(const std::string& path, std::span<const uint8_t> rgb, int64_t width,
               int64_t height);
// Encodes 8-bit RGB (HWC) as a baseline JPEG with 4:2:0 chroma (quality 1..100).
std::vector<uint8_t> encode_jpeg(std::span<const uint8_t> rgb, int64_t width, int64_t height,
                                 int quality);

// True when this build can decode/encode the format (libjpeg / libpng found at configure time).
bool have_jpeg_support();
bool have_png_support();

}  // namespace wanrt
