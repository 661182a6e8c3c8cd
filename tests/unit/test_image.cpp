// Image decoding against files written here with libpng / libjpeg directly (every PNG colour
// type and depth PIL's convert('RGB') handles, JPEG RGB / gray / CMYK), format detection by
// content, and errors for missing, truncated, corrupt and foreign files.
#include <gtest/gtest.h>

#include <csetjmp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "io/image.h"
#include "test_support.h"

#ifdef WANRT_HAVE_JPEG
#include <jpeglib.h>
#endif
#ifdef WANRT_HAVE_PNG
#include <png.h>
#endif

namespace wanrt {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> random_bytes(size_t count, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> out(count);
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  return out;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Runs `body`, expects a wanrt::Error whose message names `path`, returns the message.
template <typename Body>
std::string expect_error_naming(const std::string& path, Body body) {
  try {
    body();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
    return error.what();
  }
  ADD_FAILURE() << "no error for " << path;
  return {};
}

#ifdef WANRT_HAVE_PNG

struct PngSpec {
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;
  std::vector<uint8_t> palette_alpha;  // tRNS for palette images
};

PngSpec png_spec(int color_type, int bit_depth) {
  PngSpec spec;
  spec.color_type = color_type;
  spec.bit_depth = bit_depth;
  return spec;
}

// Writes packed rows (exactly as PNG stores them) with libpng, independently of wanrt.
void write_test_png(const std::string& path, int width, int height, const PngSpec& spec,
                    std::vector<uint8_t>& packed_rows) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  ASSERT_EQ(setjmp(png_jmpbuf(png)), 0);
  png_init_io(png, file);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height),
               spec.bit_depth, spec.color_type,
               spec.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!spec.palette.empty())
    png_set_PLTE(png, info, spec.palette.data(), static_cast<int>(spec.palette.size()));
  if (!spec.palette_alpha.empty())
    png_set_tRNS(png, info, spec.palette_alpha.data(), static_cast<int>(spec.palette_alpha.size()),
                 nullptr);
  png_write_info(png, info);
  const size_t row_bytes = packed_rows.size() / static_cast<size_t>(height);
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (int y = 0; y < height; ++y) rows[static_cast<size_t>(y)] = packed_rows.data() + row_bytes * static_cast<size_t>(y);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(file);
}

class PngDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
    dir_ = testing::temp_dir();
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::string dir_;
  const int width_ = 13, height_ = 7;  // odd sizes catch stride mistakes
};

TEST_F(PngDecode, Rgb8RoundTripIsExactAndTensorIsScaledToMinusOneOne) {
  SCOPED_TRACE(seed_);
  auto pixels = random_bytes(static_cast<size_t>(width_ * height_ * 3), rng_);
  const std::string path = dir_ + "/rgb8.png";
  write_test_png(path, width_, height_, {}, pixels);
  const RgbImage image = decode_image_file(path);
  EXPECT_EQ(image.width, width_);
  EXPECT_EQ(image.height, height_);
  EXPECT_EQ(image.pixels, pixels);

  const Tensor tensor = read_image(path);
  ASSERT_EQ(shape_str(tensor.shape()), shape_str({3, height_, width_}));
  const float* values = tensor.data<float>();
  for (int c = 0; c < 3; ++c)
    for (int p = 0; p < width_ * height_; ++p) {
      const float expected = (static_cast<float>(pixels[static_cast<size_t>(p * 3 + c)]) / 255.0f - 0.5f) / 0.5f;
      ASSERT_EQ(values[c * width_ * height_ + p], expected) << "channel " << c << " pixel " << p;
    }
  EXPECT_EQ((0.0f / 255.0f - 0.5f) / 0.5f, -1.0f);
  EXPECT_EQ((255.0f / 255.0f - 0.5f) / 0.5f, 1.0f);
}

TEST_F(PngDecode, WritePngRoundTripsExactly) {
  SCOPED_TRACE(seed_);
  const auto pixels = random_bytes(static_cast<size_t>(width_ * height_ * 3), rng_);
  const std::string path = dir_ + "/written.png";
  write_png(path, pixels, width_, height_);
  EXPECT_EQ(decode_image_file(path).pixels, pixels);
  // Overwriting an existing file works and leaves nothing else behind.
  const auto other = random_bytes(pixels.size(), rng_);
  write_png(path, other, width_, height_);
  EXPECT_EQ(decode_image_file(path).pixels, other);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(PngDecode, AlphaIsDroppedNotComposited) {
  SCOPED_TRACE(seed_);
  auto rgba = random_bytes(static_cast<size_t>(width_ * height_ * 4), rng_);
  write_test_png(dir_ + "/rgba.png", width_, height_, png_spec(PNG_COLOR_TYPE_RGB_ALPHA, 8), rgba);
  const RgbImage image = decode_image_file(dir_ + "/rgba.png");
  for (int p = 0; p < width_ * height_; ++p)
    for (int c = 0; c < 3; ++c)
      ASSERT_EQ(image.pixels[static_cast<size_t>(p * 3 + c)], rgba[static_cast<size_t>(p * 4 + c)]);
}

TEST_F(PngDecode, GrayAndGrayAlphaBecomeEqualChannels) {
  SCOPED_TRACE(seed_);
  for (const int color_type : {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA}) {
    const int channels = color_type == PNG_COLOR_TYPE_GRAY ? 1 : 2;
    auto gray = random_bytes(static_cast<size_t>(width_ * height_ * channels), rng_);
    const std::string path = dir_ + "/gray" + std::to_string(channels) + ".png";
    write_test_png(path, width_, height_, png_spec(color_type, 8), gray);
    const RgbImage image = decode_image_file(path);
    for (int p = 0; p < width_ * height_; ++p)
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(image.pixels[static_cast<size_t>(p * 3 + c)], gray[static_cast<size_t>(p * channels)]);
  }
}

TEST_F(PngDecode, LowBitGrayIsScaledToFullRange) {
  SCOPED_TRACE(seed_);
  for (const int bits : {1, 2, 4}) {
    const int levels = (1 << bits) - 1;
    std::uniform_int_distribution<int> level(0, levels);
    std::vector<int> samples(static_cast<size_t>(width_ * height_));
    for (int& s : samples) s = level(rng_);
    const size_t row_bytes = static_cast<size_t>((width_ * bits + 7) / 8);
    std::vector<uint8_t> packed(row_bytes * static_cast<size_t>(height_), 0);
    for (int y = 0; y < height_; ++y)
      for (int x = 0; x < width_; ++x) {
        const int bit = x * bits;  // most significant bits first
        packed[static_cast<size_t>(y) * row_bytes + static_cast<size_t>(bit / 8)] |=
            static_cast<uint8_t>(samples[static_cast<size_t>(y * width_ + x)] << (8 - bits - bit % 8));
      }
    const std::string path = dir_ + "/gray" + std::to_string(bits) + "bit.png";
    write_test_png(path, width_, height_, png_spec(PNG_COLOR_TYPE_GRAY, bits), packed);
    const RgbImage image = decode_image_file(path);
    for (int p = 0; p < width_ * height_; ++p)
      ASSERT_EQ(image.pixels[static_cast<size_t>(p * 3)], samples[static_cast<size_t>(p)] * 255 / levels)
          << bits << "-bit pixel " << p;
  }
}

TEST_F(PngDecode, PaletteIsLookedUpAndTransparencyIgnored) {
  SCOPED_TRACE(seed_);
  for (const int bits : {4, 8}) {
    PngSpec spec = png_spec(PNG_COLOR_TYPE_PALETTE, bits);
    const int entries = 1 << bits;
    for (int i = 0; i < entries; ++i) {
      const auto rgb = random_bytes(3, rng_);
      spec.palette.push_back(png_color{rgb[0], rgb[1], rgb[2]});
    }
    spec.palette_alpha = random_bytes(static_cast<size_t>(entries), rng_);
    std::uniform_int_distribution<int> entry(0, entries - 1);
    std::vector<int> indices(static_cast<size_t>(width_ * height_));
    for (int& i : indices) i = entry(rng_);
    const size_t row_bytes = static_cast<size_t>((width_ * bits + 7) / 8);
    std::vector<uint8_t> packed(row_bytes * static_cast<size_t>(height_), 0);
    for (int y = 0; y < height_; ++y)
      for (int x = 0; x < width_; ++x) {
        const int bit = x * bits;
        packed[static_cast<size_t>(y) * row_bytes + static_cast<size_t>(bit / 8)] |=
            static_cast<uint8_t>(indices[static_cast<size_t>(y * width_ + x)] << (8 - bits - bit % 8));
      }
    const std::string path = dir_ + "/palette" + std::to_string(bits) + ".png";
    write_test_png(path, width_, height_, spec, packed);
    const RgbImage image = decode_image_file(path);
    for (int p = 0; p < width_ * height_; ++p) {
      const png_color& colour = spec.palette[static_cast<size_t>(indices[static_cast<size_t>(p)])];
      ASSERT_EQ(image.pixels[static_cast<size_t>(p * 3 + 0)], colour.red);
      ASSERT_EQ(image.pixels[static_cast<size_t>(p * 3 + 1)], colour.green);
      ASSERT_EQ(image.pixels[static_cast<size_t>(p * 3 + 2)], colour.blue);
    }
  }
}

TEST_F(PngDecode, SixteenBitKeepsTheHighByte) {
  SCOPED_TRACE(seed_);
  for (const int color_type : {PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_RGB_ALPHA}) {
    const int channels = color_type == PNG_COLOR_TYPE_RGB ? 3 : color_type == PNG_COLOR_TYPE_GRAY ? 1 : 4;
    auto big_endian = random_bytes(static_cast<size_t>(width_ * height_ * channels * 2), rng_);
    const std::string path = dir_ + "/sixteen" + std::to_string(channels) + ".png";
    write_test_png(path, width_, height_, png_spec(color_type, 16), big_endian);
    const RgbImage image = decode_image_file(path);
    for (int p = 0; p < width_ * height_; ++p)
      for (int c = 0; c < 3; ++c) {
        const int source_channel = channels == 1 ? 0 : c;
        ASSERT_EQ(image.pixels[static_cast<size_t>(p * 3 + c)],
                  big_endian[static_cast<size_t>((p * channels + source_channel) * 2)]);
      }
  }
}

TEST_F(PngDecode, InterlacedDecodesExactly) {
  SCOPED_TRACE(seed_);
  auto pixels = random_bytes(static_cast<size_t>(width_ * height_ * 3), rng_);
  PngSpec spec;
  spec.interlaced = true;
  write_test_png(dir_ + "/adam7.png", width_, height_, spec, pixels);
  EXPECT_EQ(decode_image_file(dir_ + "/adam7.png").pixels, pixels);
}

TEST_F(PngDecode, TruncatedAndCorruptFilesAreErrorsNamingTheFile) {
  SCOPED_TRACE(seed_);
  auto pixels = random_bytes(static_cast<size_t>(40 * 30 * 3), rng_);
  const std::string good = dir_ + "/good.png";
  write_test_png(good, 40, 30, {}, pixels);
  const auto bytes = file_bytes(good);
  for (const size_t keep : {size_t{8}, size_t{20}, size_t{40}, bytes.size() / 2, bytes.size() - 17}) {
    const std::string path = dir_ + "/truncated_" + std::to_string(keep) + ".png";
    put_file(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    expect_error_naming(path, [&] { decode_image_file(path); });
  }
  // Only the IEND chunk missing: every pixel is there, so the image is accepted.
  const std::string no_end = dir_ + "/no_iend.png";
  put_file(no_end, std::vector<uint8_t>(bytes.begin(), bytes.end() - 12));
  EXPECT_EQ(decode_image_file(no_end).pixels, pixels);
  // A flipped byte inside the image data breaks IDAT's CRC (a critical chunk: fatal).
  auto corrupt = bytes;
  corrupt[bytes.size() / 2] ^= 0x5a;
  const std::string path = dir_ + "/corrupt.png";
  put_file(path, corrupt);
  expect_error_naming(path, [&] { decode_image_file(path); });
}

#endif  // WANRT_HAVE_PNG

#ifdef WANRT_HAVE_JPEG

// Encodes with libjpeg directly: 4:4:4 at quality 100 unless told otherwise.
std::vector<uint8_t> encode_test_jpeg(const std::vector<uint8_t>& samples, int width, int height,
                                      J_COLOR_SPACE space, int components) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr errors;
  cinfo.err = jpeg_std_error(&errors);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = components;
  cinfo.in_color_space = space;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 100, TRUE);
  for (int c = 0; c < cinfo.num_components; ++c) {
    cinfo.comp_info[c].h_samp_factor = 1;
    cinfo.comp_info[c].v_samp_factor = 1;
  }
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(samples.data()) +
                   static_cast<size_t>(cinfo.next_scanline) * static_cast<size_t>(width * components);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out(buffer, buffer + size);
  std::free(buffer);
  return out;
}

// Smooth random content (a few random gradients) survives JPEG with small errors.
std::vector<uint8_t> smooth_image(int width, int height, int channels, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> coefficient(-1.0, 1.0);
  std::vector<uint8_t> out(static_cast<size_t>(width * height * channels));
  for (int c = 0; c < channels; ++c) {
    const double a = coefficient(rng), b = coefficient(rng), phase = coefficient(rng) * 3;
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) {
        const double v = 128 + 100 * std::sin(phase + a * x * 0.15 + b * y * 0.15);
        out[static_cast<size_t>((y * width + x) * channels + c)] = static_cast<uint8_t>(v);
      }
  }
  return out;
}

struct Difference {
  double mean = 0;
  int max = 0;
};
Difference compare(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  Difference d;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const int diff = std::abs(int{a[i]} - int{b[i]});
    d.mean += diff;
    d.max = std::max(d.max, diff);
  }
  d.mean /= static_cast<double>(std::max<size_t>(a.size(), 1));
  return d;
}

class JpegDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = testing::test_seed();
    rng_.seed(seed_);
    dir_ = testing::temp_dir();
  }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::string dir_;
};

TEST_F(JpegDecode, RandomRgbRoundTripIsClose) {
  SCOPED_TRACE(seed_);
  const int width = 37, height = 23;
  const auto pixels = random_bytes(static_cast<size_t>(width * height * 3), rng_);
  const std::string path = dir_ + "/noise.jpg";
  put_file(path, encode_test_jpeg(pixels, width, height, JCS_RGB, 3));
  const RgbImage image = decode_image_file(path);
  ASSERT_EQ(image.width, width);
  ASSERT_EQ(image.height, height);
  const Difference d = compare(image.pixels, pixels);
  EXPECT_LT(d.mean, 1.5);
  EXPECT_LE(d.max, 12);
}

TEST_F(JpegDecode, EncodeJpegRoundTripIsClose) {
  SCOPED_TRACE(seed_);
  const int width = 64, height = 48;
  const auto pixels = smooth_image(width, height, 3, rng_);
  const RgbImage image = decode_image_bytes(encode_jpeg(pixels, width, height, 95), "memory");
  const Difference d = compare(image.pixels, pixels);
  EXPECT_LT(d.mean, 2.5);
  EXPECT_LE(d.max, 32);  // 4:2:0 chroma: colour changes blur over two pixels
}

TEST_F(JpegDecode, GrayscaleBecomesEqualChannels) {
  SCOPED_TRACE(seed_);
  const int width = 32, height = 24;
  const auto gray = smooth_image(width, height, 1, rng_);
  const std::string path = dir_ + "/gray.jpg";
  put_file(path, encode_test_jpeg(gray, width, height, JCS_GRAYSCALE, 1));
  const RgbImage image = decode_image_file(path);
  std::vector<uint8_t> red(gray.size());
  for (size_t p = 0; p < gray.size(); ++p) {
    ASSERT_EQ(image.pixels[p * 3], image.pixels[p * 3 + 1]);
    ASSERT_EQ(image.pixels[p * 3], image.pixels[p * 3 + 2]);
    red[p] = image.pixels[p * 3];
  }
  EXPECT_LT(compare(red, gray).mean, 1.0);
}

TEST_F(JpegDecode, CmykFollowsPilsAdobeConvention) {
  SCOPED_TRACE(seed_);
  const int width = 32, height = 16;
  // Stored (Adobe, inverted) samples; PIL reads ink = 255 - stored, then
  // rgb = (255 - k) - (ink·(255 - k))/255, rounded as its MULDIV255.
  const auto stored = smooth_image(width, height, 4, rng_);
  const std::string path = dir_ + "/cmyk.jpg";
  put_file(path, encode_test_jpeg(stored, width, height, JCS_CMYK, 4));
  const RgbImage image = decode_image_file(path);
  std::vector<uint8_t> expected(static_cast<size_t>(width * height * 3));
  for (size_t p = 0; p < static_cast<size_t>(width * height); ++p) {
    const double not_black = stored[p * 4 + 3];
    for (size_t c = 0; c < 3; ++c)
      expected[p * 3 + c] = static_cast<uint8_t>(
          std::lround(not_black - (255.0 - stored[p * 4 + c]) * not_black / 255.0));
  }
  const Difference d = compare(image.pixels, expected);
  EXPECT_LT(d.mean, 1.5);
  EXPECT_LE(d.max, 10);
}

TEST_F(JpegDecode, TruncatedAndCorruptFilesAreErrorsNamingTheFile) {
  SCOPED_TRACE(seed_);
  const int width = 48, height = 40;
  const auto bytes = encode_test_jpeg(random_bytes(static_cast<size_t>(width * height * 3), rng_),
                                      width, height, JCS_RGB, 3);
  for (const size_t keep : {size_t{3}, size_t{100}, bytes.size() / 2, bytes.size() - 40}) {
    const std::string path = dir_ + "/truncated_" + std::to_string(keep) + ".jpg";
    put_file(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    expect_error_naming(path, [&] { decode_image_file(path); });
  }
  // Only the end-of-image marker missing: every pixel is there, so the image is accepted.
  const std::string no_eoi = dir_ + "/no_eoi.jpg";
  put_file(no_eoi, std::vector<uint8_t>(bytes.begin(), bytes.end() - 2));
  EXPECT_EQ(decode_image_file(no_eoi).pixels, decode_image_bytes(bytes, "complete").pixels);
  // Garbage in place of the entropy-coded data: the decoder must fail, not exit the process.
  auto corrupt = bytes;
  for (size_t i = bytes.size() / 3; i < bytes.size() - 2; ++i) corrupt[i] = 0xff;
  const std::string path = dir_ + "/corrupt.jpg";
  put_file(path, corrupt);
  expect_error_naming(path, [&] { decode_image_file(path); });
}

#endif  // WANRT_HAVE_JPEG

TEST(ImageFormat, DetectedFromContentNotExtension) {
  const auto seed = testing::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const std::string dir = testing::temp_dir();
  const auto pixels = random_bytes(9 * 5 * 3, rng);
  if (have_png_support()) {
    write_png(dir + "/really_png.jpg", pixels, 9, 5);
    EXPECT_EQ(decode_image_file(dir + "/really_png.jpg").pixels, pixels);
  }
  if (have_jpeg_support()) {
    put_file(dir + "/really_jpeg.png", encode_jpeg(pixels, 9, 5, 90));
    EXPECT_EQ(decode_image_file(dir + "/really_jpeg.png").width, 9);
  }
  EXPECT_EQ(sniff_image_format(std::vector<uint8_t>{0xff, 0xd8, 0xff, 0xe0}), ImageFormat::Jpeg);
  EXPECT_EQ(sniff_image_format(std::vector<uint8_t>{'G', 'I', 'F', '8', '9', 'a', 0, 0}),
            ImageFormat::Unknown);
}

TEST(ImageErrors, MissingEmptyFolderAndForeignFiles) {
  const std::string dir = testing::temp_dir();
  const std::string missing = dir + "/nope.png";
  EXPECT_NE(expect_error_naming(missing, [&] { read_image(missing); }).find("does not exist"),
            std::string::npos);
  expect_error_naming(dir, [&] { read_image(dir); });
  const std::string empty = dir + "/empty.png";
  put_file(empty, {});
  expect_error_naming(empty, [&] { read_image(empty); });
  const std::string text = dir + "/notes.jpg";
  put_file(text, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  EXPECT_NE(expect_error_naming(text, [&] { read_image(text); }).find("not a JPEG or PNG"),
            std::string::npos);
  const std::string gif = dir + "/anim.gif";
  put_file(gif, {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0});
  expect_error_naming(gif, [&] { read_image(gif); });
}

TEST(ImageErrors, WritePngFailuresLeaveNothingBehind) {
  const std::string dir = testing::temp_dir();
  const std::vector<uint8_t> pixels(4 * 4 * 3, 7);
  const std::string in_missing_folder = dir + "/no/such/folder/x.png";
  expect_error_naming(in_missing_folder, [&] { write_png(in_missing_folder, pixels, 4, 4); });
  // /proc refuses new files even to root, so this is an unwritable folder everywhere.
  expect_error_naming("/proc/wanrt_test.png", [&] { write_png("/proc/wanrt_test.png", pixels, 4, 4); });
  EXPECT_FALSE(fs::exists("/proc/wanrt_test.png"));
  // A folder in the way: the rename fails, the temporary is removed, the folder stays.
  fs::create_directories(dir + "/taken.png/inside");
  expect_error_naming(dir + "/taken.png", [&] { write_png(dir + "/taken.png", pixels, 4, 4); });
  EXPECT_TRUE(fs::is_directory(dir + "/taken.png/inside"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  EXPECT_THROW(write_png(dir + "/short.png", std::vector<uint8_t>(5), 4, 4), Error);
}

}  // namespace
}  // namespace wanrt
