// libFuzzer target: any bytes given to the image decoder must give an image or a wanrt::Error,
// never a crash, a hang, an exit() from libjpeg/libpng, or a huge allocation.
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const wanrt::RgbImage image = wanrt::decode_image_bytes(std::span<const uint8_t>(data, size), "fuzz");
    if (image.pixels.size() != static_cast<size_t>(image.width * image.height * 3)) __builtin_trap();
  } catch (const wanrt::Error&) {
  }
  return 0;
}
