#include "io/image.h"

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "io/staged_output.h"

#ifdef WANRT_HAVE_JPEG
#include <jpeglib.h>
#include <jerror.h>  // the JWRN_* message codes
#endif
#ifdef WANRT_HAVE_PNG
#include <png.h>
#endif

namespace wanrt {
namespace {

// PIL refuses images above twice its MAX_IMAGE_PIXELS (a decompression-bomb guard); so do we,
// so a hostile header cannot make us allocate gigabytes.
constexpr int64_t kMaxImagePixels = 2 * (1024LL * 1024 * 1024 / 4 / 3);

// Called between setjmp and the decoder's cleanup, so it reports instead of throwing.
[[maybe_unused]] bool dimensions_ok(int64_t width, int64_t height, char* message, size_t capacity) {
  if (width > 0 && height > 0 && width * height <= kMaxImagePixels) return true;
  std::snprintf(message, capacity, "size %lldx%lld is empty or above the limit of %lld pixels",
                static_cast<long long>(width), static_cast<long long>(height),
                static_cast<long long>(kMaxImagePixels));
  return false;
}

std::vector<uint8_t> read_whole_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  WANRT_CHECK(fs::exists(status), "image file ", path, " does not exist");
  WANRT_CHECK(!fs::is_directory(status), "image path ", path, " is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  WANRT_CHECK(in.good(), "cannot open image file ", path, ": ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  WANRT_CHECK(!in.bad(), "error while reading image file ", path);
  return bytes;
}

#ifdef WANRT_HAVE_JPEG

// libjpeg reports fatal errors through error_exit, which must not return: we longjmp back to
// the frame that called setjmp (the libjpeg example's pattern; C++ exceptions must not cross
// libjpeg's C frames). The message is formatted before the jump.
struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  // Set once every scanline is decoded: what follows (a missing EOI, trailing junk) cannot
  // change the pixels, so it is not worth refusing the image for. Volatile: it is written
  // after setjmp and read after the longjmp, in the same frame.
  volatile bool pixels_complete = false;
};

[[noreturn]] void on_jpeg_error(j_common_ptr cinfo) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, manager->message);
  std::longjmp(manager->jump, 1);
}

// Warnings (level -1) that mean pixels are missing or wrong: libjpeg would fill them with grey
// and carry on; PIL raises "image file is truncated", so do we. Running out of bytes alone
// (JWRN_JPEG_EOF) is not such a sign: the entropy decoder reads ahead, so a file that lacks
// only its end-of-image marker warns too, and a real truncation also brings JWRN_HIT_MARKER
// when the missing bits are needed. Harmless warnings (extraneous bytes) pass silently.
void on_jpeg_message(j_common_ptr cinfo, int level) {
  if (level != -1) return;
  if (reinterpret_cast<JpegErrorManager*>(cinfo->err)->pixels_complete) return;
  const int code = cinfo->err->msg_code;
  if (code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE || code == JWRN_MUST_RESYNC)
    on_jpeg_error(cinfo);
}

// Pillow's cmyk2rgb on Adobe-inverted samples (JpegImagePlugin reads CMYK as "CMYK;I").
void cmyk_row_to_rgb(const uint8_t* cmyk, uint8_t* rgb, int64_t width) {
  auto muldiv255 = [](int a, int b) {
    const int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (int64_t x = 0; x < width; ++x, cmyk += 4, rgb += 3) {
    const int not_black = cmyk[3];  // 255 - k, where k = 255 - raw
    for (int c = 0; c < 3; ++c) {
      const int ink = 255 - cmyk[c];
      rgb[c] = static_cast<uint8_t>(std::clamp(not_black - muldiv255(ink, not_black), 0, 255));
    }
  }
}

// Returns false with `message` filled on a libjpeg error. Keeps only libjpeg state in this
// frame so the longjmp skips no destructor.
bool decode_jpeg_into(std::span<const uint8_t> bytes, RgbImage* image,
                      std::vector<uint8_t>* cmyk_row, char* message) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager errors;
  cinfo.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = on_jpeg_error;
  errors.base.emit_message = on_jpeg_message;
  if (setjmp(errors.jump)) {
    std::memcpy(message, errors.message, JMSG_LENGTH_MAX);
    const bool complete = errors.pixels_complete;
    jpeg_destroy_decompress(&cinfo);
    return complete;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  const bool is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  if (!is_cmyk && cinfo.num_components != 1 && cinfo.num_components != 3) {
    std::snprintf(message, JMSG_LENGTH_MAX, "unsupported JPEG with %d colour components",
                  cinfo.num_components);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;  // libjpeg expands gray to RGB itself
  jpeg_start_decompress(&cinfo);
  image->width = cinfo.output_width;
  image->height = cinfo.output_height;
  if (!dimensions_ok(image->width, image->height, message, JMSG_LENGTH_MAX)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  image->pixels.resize(static_cast<size_t>(image->width * image->height * 3));
  if (is_cmyk) cmyk_row->resize(static_cast<size_t>(image->width * 4));
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* rgb_row = image->pixels.data() +
                       static_cast<size_t>(cinfo.output_scanline) * static_cast<size_t>(image->width) * 3;
    JSAMPROW row = is_cmyk ? cmyk_row->data() : rgb_row;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (is_cmyk) cmyk_row_to_rgb(cmyk_row->data(), rgb_row, image->width);
  }
  errors.pixels_complete = true;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

RgbImage decode_jpeg(std::span<const uint8_t> bytes, const std::string& name) {
  RgbImage image;
  std::vector<uint8_t> cmyk_row;
  char message[JMSG_LENGTH_MAX] = {};
  if (!decode_jpeg_into(bytes, &image, &cmyk_row, message))
    fail("cannot decode JPEG image ", name, ": ", message, " (truncated or corrupt file?)");
  return image;
}

#endif  // WANRT_HAVE_JPEG

#ifdef WANRT_HAVE_PNG

struct PngMemoryReader {
  std::span<const uint8_t> bytes;
  size_t position = 0;
};

void read_png_bytes(png_structp png, png_bytep out, size_t count) {
  auto* reader = static_cast<PngMemoryReader*>(png_get_io_ptr(png));
  if (count > reader->bytes.size() - reader->position) png_error(png, "unexpected end of file");
  std::memcpy(out, reader->bytes.data() + reader->position, count);
  reader->position += count;
}

// libpng's default handlers print to stderr and (for errors) longjmp; we keep the text instead.
struct PngMessages {
  char error[256] = {};
  // Set once every row is decoded: a damaged or missing IEND after that cannot change the
  // pixels (PIL does not read past the image data either).
  bool pixels_complete = false;
};

[[noreturn]] void on_png_error(png_structp png, png_const_charp text) {
  auto* messages = static_cast<PngMessages*>(png_get_error_ptr(png));
  std::snprintf(messages->error, sizeof(messages->error), "%s", text);
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}  // ancillary-chunk problems: PIL ignores them too

// Drops alpha when present: PIL's convert('RGB') does not composite onto a background.
bool copy_rgb(const std::vector<uint8_t>& decoded, RgbImage* image) {
  const size_t pixels = static_cast<size_t>(image->width * image->height);
  const size_t channels = decoded.size() / pixels;  // 3 or 4
  for (size_t p = 0; p < pixels; ++p)
    std::memcpy(&image->pixels[p * 3], &decoded[p * channels], 3);
  return true;
}

// Same structure as decode_jpeg_into: libpng state only in the frame that calls setjmp.
bool decode_png_into(std::span<const uint8_t> bytes, RgbImage* image,
                     std::vector<uint8_t>* decoded, std::vector<png_bytep>* rows,
                     PngMessages* messages) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, messages, on_png_error,
                                           on_png_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  PngMemoryReader reader{bytes, 0};
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    if (messages->pixels_complete) return copy_rgb(*decoded, image);
    return false;
  }
  png_set_read_fn(png, &reader, read_png_bytes);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // may add alpha from tRNS
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_strip_16(png);  // keeps the high byte, as PIL's ;16B unpackers
  if (!(color_type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int64_t width = png_get_image_width(png, info);
  const int64_t height = png_get_image_height(png, info);
  if (!dimensions_ok(width, height, messages->error, sizeof(messages->error))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  const int channels = png_get_channels(png, info);  // 3, or 4 when alpha survives
  if (channels != 3 && channels != 4) png_error(png, "unexpected channel count after conversion");
  const size_t row_bytes = png_get_rowbytes(png, info);
  decoded->resize(row_bytes * static_cast<size_t>(height));
  rows->resize(static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y) (*rows)[static_cast<size_t>(y)] = decoded->data() + row_bytes * static_cast<size_t>(y);
  image->width = width;
  image->height = height;
  image->pixels.resize(static_cast<size_t>(width * height * 3));
  png_read_image(png, rows->data());
  messages->pixels_complete = true;
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return copy_rgb(*decoded, image);
}

RgbImage decode_png(std::span<const uint8_t> bytes, const std::string& name) {
  RgbImage image;
  std::vector<uint8_t> decoded;
  std::vector<png_bytep> rows;
  PngMessages messages;
  if (!decode_png_into(bytes, &image, &decoded, &rows, &messages))
    fail("cannot decode PNG image ", name, ": ",
         messages.error[0] ? messages.error : "libpng could not start",
         " (truncated or corrupt file?)");
  return image;
}

struct PngWriteState {
  std::FILE* file = nullptr;
  PngMessages messages;
};

bool encode_png_into(PngWriteState* state, std::span<const uint8_t> rgb, int64_t width,
                     int64_t height) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state->messages,
                                            on_png_error, on_png_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, state->file);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < height; ++y)
    png_write_row(png, rgb.data() + static_cast<size_t>(y * width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

#endif  // WANRT_HAVE_PNG

}  // namespace

bool have_jpeg_support() {
#ifdef WANRT_HAVE_JPEG
  return true;
#else
  return false;
#endif
}

bool have_png_support() {
#ifdef WANRT_HAVE_PNG
  return true;
#else
  return false;
#endif
}

ImageFormat sniff_image_format(std::span<const uint8_t> leading_bytes) {
  static constexpr uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (leading_bytes.size() >= 8 && std::equal(kPng, kPng + 8, leading_bytes.begin()))
    return ImageFormat::Png;
  if (leading_bytes.size() >= 3 && leading_bytes[0] == 0xff && leading_bytes[1] == 0xd8 &&
      leading_bytes[2] == 0xff)
    return ImageFormat::Jpeg;
  return ImageFormat::Unknown;
}

RgbImage decode_image_bytes(std::span<const uint8_t> bytes, const std::string& name) {
  WANRT_CHECK(!bytes.empty(), "image file ", name, " is empty");
  switch (sniff_image_format(bytes)) {
    case ImageFormat::Png:
#ifdef WANRT_HAVE_PNG
      return decode_png(bytes, name);
#else
      fail("image ", name, " is a PNG, but this wanrt was built without libpng (install libpng-dev and rebuild)");
#endif
    case ImageFormat::Jpeg:
#ifdef WANRT_HAVE_JPEG
      return decode_jpeg(bytes, name);
#else
      fail("image ", name, " is a JPEG, but this wanrt was built without libjpeg (install libjpeg-dev and rebuild)");
#endif
    case ImageFormat::Unknown:
      break;
  }
  fail("file ", name, " is not a JPEG or PNG image (unrecognised leading bytes; the format is "
       "detected from the content, not the extension)");
}

RgbImage decode_image_file(const std::string& path) {
  return decode_image_bytes(read_whole_file(path), path);
}

Tensor rgb_to_tensor(const RgbImage& image) {
  WANRT_CHECK(image.width > 0 && image.height > 0 &&
                  image.pixels.size() == static_cast<size_t>(image.width * image.height * 3),
              "rgb_to_tensor: ", image.width, "x", image.height, " image holds ",
              image.pixels.size(), " bytes");
  const int64_t plane = image.width * image.height;
  Tensor out = Tensor::empty(DType::F32, {3, image.height, image.width});
  float* values = out.data<float>();
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t c = 0; c < 3; ++c) {
      // Same float32 operations, in the same order, as to_tensor().sub_(0.5).div_(0.5).
      const float unit = static_cast<float>(image.pixels[static_cast<size_t>(p * 3 + c)]) / 255.0f;
      values[c * plane + p] = (unit - 0.5f) / 0.5f;
    }
  return out;
}

Tensor read_image(const std::string& path) { return rgb_to_tensor(decode_image_file(path)); }

void write_png(const std::string& path, std::span<const uint8_t> rgb, int64_t width,
               int64_t height) {
  WANRT_CHECK(width > 0 && height > 0 && width <= 0x7fffffff && height <= 0x7fffffff,
              "write_png ", path, ": bad size ", width, "x", height);
  WANRT_CHECK(rgb.size() == static_cast<size_t>(width * height * 3), "write_png ", path, ": ",
              rgb.size(), " bytes do not fill ", width, "x", height, " RGB");
#ifdef WANRT_HAVE_PNG
  StagedOutput output(path);
  PngWriteState state;
  state.file = std::fopen(output.temp_path().c_str(), "wb");
  WANRT_CHECK(state.file, "cannot write ", path, ": ", std::strerror(errno));
  const bool encoded = encode_png_into(&state, rgb, width, height);
  const bool flushed = std::fflush(state.file) == 0 && !std::ferror(state.file);
  const bool closed = std::fclose(state.file) == 0;
  WANRT_CHECK(encoded && flushed && closed, "cannot write ", path, ": ",
              state.messages.error[0] ? state.messages.error : std::strerror(errno));
  output.commit();
#else
  fail("cannot write ", path, ": this wanrt was built without libpng");
#endif
}

std::vector<uint8_t> encode_jpeg(std::span<const uint8_t> rgb, int64_t width, int64_t height,
                                 int quality) {
  WANRT_CHECK(width > 0 && height > 0 && width <= 65500 && height <= 65500,
              "encode_jpeg: size ", width, "x", height, " is outside JPEG's limit of 65500");
  WANRT_CHECK(rgb.size() == static_cast<size_t>(width * height * 3), "encode_jpeg: ",
              rgb.size(), " bytes do not fill ", width, "x", height, " RGB");
  WANRT_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality ", quality, " not in 1..100");
#ifdef WANRT_HAVE_JPEG
  jpeg_compress_struct cinfo;
  JpegErrorManager errors;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  cinfo.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = on_jpeg_error;
  if (setjmp(errors.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(buffer);
    fail("JPEG encoding failed: ", errors.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(rgb.data()) +
                   static_cast<size_t>(cinfo.next_scanline) * static_cast<size_t>(width) * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> encoded(buffer, buffer + size);
  std::free(buffer);
  return encoded;
#else
  fail("cannot encode JPEG: this wanrt was built without libjpeg");
#endif
}

}  // namespace wanrt
