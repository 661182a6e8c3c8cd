// Internal to video_writer: the container back ends. Each writes `frames` ([3, F, H, W] F32)
// to `file_path` (a temporary chosen by write_video) and throws wanrt::Error naming
// `shown_path` (the destination the user asked for) on any failure.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace wanrt::video_detail {

void write_mp4_h264(const std::string& file_path, const std::string& shown_path,
                    const Tensor& frames, int fps, int crf);
void write_avi_mjpeg(const std::string& file_path, const std::string& shown_path,
                     const Tensor& frames, int fps, int quality);

}  // namespace wanrt::video_detail
