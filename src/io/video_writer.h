// Saving the generated video (spec §2.7).
//
// Input: host F32 [3, F, H, W] (C, T, H, W), nominally in [−1, 1]. Each value becomes a byte as
// the reference's save_video does it in float32: clamp to [−1, 1], (x + 1) / 2, × 255, then
// truncation to uint8 (no rounding) — u8 = ⌊255·(x + 1)/2⌋ up to float32 rounding. NaN gives 0.
// Frames are RGB, F × H × W × 3.
//
// Containers:
// - MP4/H.264 through FFmpeg's libraries: libx264, crf 10, yuv420p (BT.601 limited range,
//   bicubic RGB→YUV as the ffmpeg program converts), as imageio's quality=8 writes it. Only in
//   builds with WANRT_HAVE_FFMPEG and when libx264 is present at run time; yuv420p also needs an
//   even width and height.
// - Motion-JPEG AVI through libjpeg (quality 95, 4:2:0): a plain RIFF AVI 1.0 with an idx1
//   index; needs no FFmpeg. Used when MP4 is not possible, when the path ends in .avi, or on
//   request.
// - A folder of PNG frames (frame_000000.png, ...), on request.
// The file is written beside its destination and renamed into place only when complete: a
// failure leaves no partial file and does not touch an existing one. The written path always
// carries the written format's extension: asking for out.mp4 where only AVI is possible gives
// out.avi, and the result (and the one log line) says so.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace wanrt {

enum class VideoContainer {
  Auto,       // from the extension: .avi → AVI; .mp4 or none → MP4, else AVI when MP4 is impossible
  Mp4,        // MP4 or an error
  Avi,        // Motion-JPEG AVI
  PngFrames,  // a folder: the path without its extension
};

struct VideoWriteOptions {
  VideoContainer container = VideoContainer::Auto;
  int h264_crf = 10;
  int mjpeg_quality = 95;
  bool log = true;  // one line on stderr saying what was written where
};

struct VideoWriteResult {
  std::string path;           // what was actually written
  VideoContainer container;   // Mp4, Avi or PngFrames
  std::string description;    // e.g. "MP4 (H.264 libx264 crf 10, yuv420p)"
  std::string fallback_reason;  // why MP4 was not written, when it was wanted; else empty
  int64_t frames = 0, width = 0, height = 0;
  int fps = 0;
};

VideoWriteResult write_video(const std::string& path, const Tensor& frames, int fps,
                             const VideoWriteOptions& options = {});

// One value as save_video turns it into a byte.
uint8_t video_value_to_u8(float value);
// Frame `index` of a [3, F, H, W] F32 tensor as 8-bit RGB, H × W × 3 (resizes `rgb`).
void video_frame_rgb8(const Tensor& frames, int64_t index, std::vector<uint8_t>& rgb);

// Empty when this process can write MP4/H.264 at this size; else the reason it cannot.
std::string mp4_unavailable_reason(int64_t width, int64_t height);

}  // namespace wanrt
