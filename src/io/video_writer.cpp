#include "io/video_writer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "io/image.h"
#include "io/staged_output.h"
#include "io/video_encoders.h"

namespace wanrt {

namespace fs = std::filesystem;

uint8_t video_value_to_u8(float value) {
  if (std::isnan(value)) return 0;  // torch's cast of NaN is undefined; black is the honest pick
  // The same float32 steps as save_video: clamp, make_grid's (x - (-1)) / 2, × 255, truncate.
  const float clamped = std::min(std::max(value, -1.0f), 1.0f);
  const float unit = (clamped + 1.0f) / 2.0f;
  return static_cast<uint8_t>(unit * 255.0f);
}

void video_frame_rgb8(const Tensor& frames, int64_t index, std::vector<uint8_t>& rgb) {
  WANRT_CHECK(frames.dim() == 4 && frames.size(0) == 3 && frames.dtype() == DType::F32 &&
                  frames.device() == Device::Host && frames.is_contiguous(),
              "video frames must be a contiguous host F32 [3, F, H, W] tensor, got ",
              frames.describe());
  const int64_t count = frames.size(1), plane = frames.size(2) * frames.size(3);
  WANRT_CHECK(index >= 0 && index < count, "frame ", index, " out of range for ", frames.describe());
  rgb.resize(static_cast<size_t>(plane * 3));
  const float* values = frames.data<float>();
  for (int64_t c = 0; c < 3; ++c) {
    const float* channel = values + (c * count + index) * plane;
    for (int64_t p = 0; p < plane; ++p)
      rgb[static_cast<size_t>(p * 3 + c)] = video_value_to_u8(channel[p]);
  }
}

namespace video_detail {
namespace {

// Little-endian RIFF building blocks.
void put_u32(std::vector<uint8_t>& out, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<uint8_t>(value >> shift));
}
void put_u16(std::vector<uint8_t>& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value));
  out.push_back(static_cast<uint8_t>(value >> 8));
}
void put_fourcc(std::vector<uint8_t>& out, const char (&code)[5]) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(code[i]));
}
void set_u32_at(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}
void set_u32(std::vector<uint8_t>& out, size_t offset, uint32_t value) {
  set_u32_at(out.data() + offset, value);
}

constexpr uint32_t kAviHasIndex = 0x10;      // AVIF_HASINDEX
constexpr uint32_t kIndexKeyFrame = 0x10;    // AVIIF_KEYFRAME: every MJPEG frame stands alone
constexpr uint32_t kStrhSize = 56, kAvihSize = 56, kStrfSize = 40;

struct AviLayout {
  size_t riff_size_at = 0, avih_max_bytes_at = 0, avih_buffer_at = 0, strh_buffer_at = 0,
         movi_size_at = 0, movi_type_at = 0;
};

// RIFF 'AVI ' { LIST hdrl { avih, LIST strl { strh, strf } }, LIST movi { ... } ... }: every
// size that depends on the frames is written as 0 and patched once they are known.
std::vector<uint8_t> avi_header(int64_t frame_count, int64_t width, int64_t height, int fps,
                                AviLayout* layout) {
  std::vector<uint8_t> h;
  h.reserve(256);  // the header is 224 bytes
  const auto w32 = static_cast<uint32_t>(width), h32 = static_cast<uint32_t>(height);
  put_fourcc(h, "RIFF");
  layout->riff_size_at = h.size();
  put_u32(h, 0);
  put_fourcc(h, "AVI ");
  const uint32_t strl_size = 4 + (8 + kStrhSize) + (8 + kStrfSize);
  put_fourcc(h, "LIST");
  put_u32(h, 4 + (8 + kAvihSize) + (8 + strl_size));
  put_fourcc(h, "hdrl");

  put_fourcc(h, "avih");
  put_u32(h, kAvihSize);
  put_u32(h, static_cast<uint32_t>(std::lround(1e6 / fps)));  // dwMicroSecPerFrame
  layout->avih_max_bytes_at = h.size();
  put_u32(h, 0);                                    // dwMaxBytesPerSec
  put_u32(h, 0);                                    // dwPaddingGranularity
  put_u32(h, kAviHasIndex);                         // dwFlags
  put_u32(h, static_cast<uint32_t>(frame_count));   // dwTotalFrames
  put_u32(h, 0);                                    // dwInitialFrames
  put_u32(h, 1);                                    // dwStreams
  layout->avih_buffer_at = h.size();
  put_u32(h, 0);                                    // dwSuggestedBufferSize
  put_u32(h, w32);
  put_u32(h, h32);
  for (int i = 0; i < 4; ++i) put_u32(h, 0);        // dwReserved

  put_fourcc(h, "LIST");
  put_u32(h, strl_size);
  put_fourcc(h, "strl");
  put_fourcc(h, "strh");
  put_u32(h, kStrhSize);
  put_fourcc(h, "vids");
  put_fourcc(h, "MJPG");
  put_u32(h, 0);                                    // dwFlags
  put_u16(h, 0);                                    // wPriority
  put_u16(h, 0);                                    // wLanguage
  put_u32(h, 0);                                    // dwInitialFrames
  put_u32(h, 1);                                    // dwScale
  put_u32(h, static_cast<uint32_t>(fps));           // dwRate: fps = rate / scale
  put_u32(h, 0);                                    // dwStart
  put_u32(h, static_cast<uint32_t>(frame_count));   // dwLength
  layout->strh_buffer_at = h.size();
  put_u32(h, 0);                                    // dwSuggestedBufferSize
  put_u32(h, 0xffffffffu);                          // dwQuality: default
  put_u32(h, 0);                                    // dwSampleSize: variable
  put_u16(h, 0);                                    // rcFrame left, top, right, bottom
  put_u16(h, 0);
  put_u16(h, static_cast<uint16_t>(width));
  put_u16(h, static_cast<uint16_t>(height));

  put_fourcc(h, "strf");                            // BITMAPINFOHEADER
  put_u32(h, kStrfSize);
  put_u32(h, kStrfSize);                            // biSize
  put_u32(h, w32);
  put_u32(h, h32);
  put_u16(h, 1);                                    // biPlanes
  put_u16(h, 24);                                   // biBitCount
  put_fourcc(h, "MJPG");                            // biCompression
  put_u32(h, static_cast<uint32_t>(width * height * 3));  // biSizeImage
  for (int i = 0; i < 4; ++i) put_u32(h, 0);        // resolution and palette: unused

  put_fourcc(h, "LIST");
  layout->movi_size_at = h.size();
  put_u32(h, 0);
  layout->movi_type_at = h.size();
  put_fourcc(h, "movi");
  return h;
}

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

}  // namespace

void write_avi_mjpeg(const std::string& file_path, const std::string& shown_path,
                     const Tensor& frames, int fps, int quality) {
  const int64_t frame_count = frames.size(1), height = frames.size(2), width = frames.size(3);
  WANRT_CHECK(width <= 32767 && height <= 32767, "cannot write AVI ", shown_path, ": ", width,
              "x", height, " exceeds the AVI frame rectangle's limit of 32767");
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(file_path.c_str(), "wb"));
  WANRT_CHECK(file, "cannot write video ", shown_path, ": ", std::strerror(errno));
  auto write_bytes = [&](const void* data, size_t size) {
    WANRT_CHECK(std::fwrite(data, 1, size, file.get()) == size, "cannot write video ",
                shown_path, ": ", std::strerror(errno));
  };

  AviLayout layout;
  std::vector<uint8_t> header = avi_header(frame_count, width, height, fps, &layout);
  write_bytes(header.data(), header.size());

  std::vector<uint8_t> index;  // idx1 entries, offsets relative to the 'movi' fourcc
  index.reserve(static_cast<size_t>(frame_count) * 16);
  uint64_t movi_bytes = 4;     // the 'movi' fourcc itself
  uint32_t largest_chunk = 0;
  std::vector<uint8_t> rgb;
  for (int64_t f = 0; f < frame_count; ++f) {
    video_frame_rgb8(frames, f, rgb);
    const std::vector<uint8_t> jpeg = encode_jpeg(rgb, width, height, quality);
    const auto size = static_cast<uint32_t>(jpeg.size());
    uint8_t chunk_header[8] = {'0', '0', 'd', 'c'};
    set_u32_at(chunk_header + 4, size);
    put_fourcc(index, "00dc");
    put_u32(index, kIndexKeyFrame);
    put_u32(index, static_cast<uint32_t>(movi_bytes));
    put_u32(index, size);
    write_bytes(chunk_header, sizeof(chunk_header));
    write_bytes(jpeg.data(), jpeg.size());
    if (size % 2 != 0) write_bytes("\0", 1);  // RIFF chunks are padded to even length
    movi_bytes += 8 + size + size % 2;
    largest_chunk = std::max(largest_chunk, size);
    WANRT_CHECK(movi_bytes < (1ULL << 31), "cannot write AVI ", shown_path,
                ": the video exceeds the 2 GiB an AVI 1.0 file can index; write MP4 instead");
  }
  uint8_t index_header[8] = {'i', 'd', 'x', '1'};
  set_u32_at(index_header + 4, static_cast<uint32_t>(index.size()));
  write_bytes(index_header, sizeof(index_header));
  write_bytes(index.data(), index.size());

  // Patch the sizes now known, by rewriting the whole (small) header.
  const uint64_t file_size = header.size() - 4 + movi_bytes + 8 + index.size();
  set_u32(header, layout.riff_size_at, static_cast<uint32_t>(file_size - 8));
  set_u32(header, layout.movi_size_at, static_cast<uint32_t>(movi_bytes));
  set_u32(header, layout.avih_max_bytes_at, static_cast<uint32_t>(
                                                std::min<uint64_t>(uint64_t{largest_chunk} * static_cast<uint64_t>(fps), 0xffffffffu)));
  set_u32(header, layout.avih_buffer_at, largest_chunk + 8);
  set_u32(header, layout.strh_buffer_at, largest_chunk + 8);
  WANRT_CHECK(std::fseek(file.get(), 0, SEEK_SET) == 0, "cannot write video ", shown_path, ": ",
              std::strerror(errno));
  write_bytes(header.data(), header.size());
  std::FILE* raw = file.release();
  const bool flushed = std::fflush(raw) == 0;
  const bool closed = std::fclose(raw) == 0;
  WANRT_CHECK(flushed && closed, "cannot write video ", shown_path, ": ", std::strerror(errno));
}

}  // namespace video_detail

namespace {

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

void write_png_frames(const std::string& folder, const Tensor& frames) {
  std::error_code ec;
  fs::create_directory(folder, ec);
  WANRT_CHECK(!ec, "cannot create frame folder ", folder, ": ", ec.message());
  std::vector<uint8_t> rgb;
  for (int64_t f = 0; f < frames.size(1); ++f) {
    video_frame_rgb8(frames, f, rgb);
    char name[32];
    std::snprintf(name, sizeof(name), "frame_%06lld.png", static_cast<long long>(f));
    write_png((fs::path(folder) / name).string(), rgb, frames.size(3), frames.size(2));
  }
}

}  // namespace

VideoWriteResult write_video(const std::string& path, const Tensor& frames, int fps,
                             const VideoWriteOptions& options) {
  WANRT_CHECK(frames.dim() == 4 && frames.size(0) == 3 && frames.dtype() == DType::F32 &&
                  frames.device() == Device::Host,
              "write_video ", path, ": expected host F32 [3, F, H, W] frames, got ",
              frames.describe());
  WANRT_CHECK(frames.size(1) > 0 && frames.size(2) > 0 && frames.size(3) > 0, "write_video ",
              path, ": no frames to write (", frames.describe(), ")");
  WANRT_CHECK(fps >= 1 && fps <= 1000, "write_video ", path, ": fps ", fps, " not in 1..1000");
  const Tensor contiguous = frames.is_contiguous() ? frames : frames.clone();

  VideoWriteResult result;
  result.frames = frames.size(1);
  result.height = frames.size(2);
  result.width = frames.size(3);
  result.fps = fps;
  fs::path target(path);
  const std::string extension = lowercase(target.extension().string());
  result.container = options.container;
  if (options.container == VideoContainer::Auto) {
    if (extension == ".avi") {
      result.container = VideoContainer::Avi;
    } else if (extension == ".mp4" || extension.empty()) {
      result.fallback_reason = mp4_unavailable_reason(result.width, result.height);
      result.container = result.fallback_reason.empty() ? VideoContainer::Mp4 : VideoContainer::Avi;
    } else {
      fail("cannot write video ", path, ": unsupported extension '", extension,
           "' (use .mp4, .avi, or no extension)");
    }
  } else if (options.container == VideoContainer::Mp4) {
    const std::string reason = mp4_unavailable_reason(result.width, result.height);
    WANRT_CHECK(reason.empty(), "cannot write MP4 ", path, ": ", reason,
                " (write an .avi instead)");
  }

  if (result.container == VideoContainer::PngFrames) {
    if (extension == ".mp4" || extension == ".avi") target.replace_extension();
  } else {
    target.replace_extension(result.container == VideoContainer::Mp4 ? ".mp4" : ".avi");
  }
  result.path = target.string();

  StagedOutput staged(result.path);
  switch (result.container) {
    case VideoContainer::Mp4:
      video_detail::write_mp4_h264(staged.temp_path(), result.path, contiguous, fps,
                                   options.h264_crf);
      result.description = str_cat("MP4 (H.264 libx264 crf ", options.h264_crf, ", yuv420p)");
      break;
    case VideoContainer::Avi:
      video_detail::write_avi_mjpeg(staged.temp_path(), result.path, contiguous, fps,
                                    options.mjpeg_quality);
      result.description = str_cat("AVI (Motion-JPEG quality ", options.mjpeg_quality, ")");
      break;
    case VideoContainer::PngFrames:
      write_png_frames(staged.temp_path(), contiguous);
      result.description = "PNG frames";
      break;
    case VideoContainer::Auto:
      WANRT_ASSERT(false);
  }
  staged.commit();

  if (options.log) {
    std::string note;
    if (!result.fallback_reason.empty())
      note = str_cat("; MP4 not possible: ", result.fallback_reason);
    std::fprintf(stderr, "wanrt: wrote %s: %s, %lld frames %lldx%lld at %d fps%s\n",
                 result.path.c_str(), result.description.c_str(),
                 static_cast<long long>(result.frames), static_cast<long long>(result.width),
                 static_cast<long long>(result.height), fps, note.c_str());
  }
  return result;
}

}  // namespace wanrt
