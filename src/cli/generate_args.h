// Checks and conversions of `wanrt generate` flag values, kept apart from the command so each
// rule (size, frame count, guide scale, booleans, output paths) reads on its own. Every
// failure is a wanrt::Error whose message starts with the flag it is about.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "core/quantize.h"

namespace wanrt::cli {

// The sizes I2V-A14B supports in the official generate.py (SUPPORTED_SIZES["i2v-A14B"]).
inline constexpr const char* kTrainedI2vSizes[] = {"720*1280", "1280*720", "480*832", "832*480"};

struct SizeArg {
  int64_t width = 0;
  int64_t height = 0;
  bool trained = false;  // one of kTrainedI2vSizes
};
// "W*H" (also "WxH"), both sides positive multiples of 16.
SizeArg parse_size(const std::string& text);

// The official frame-count rule: 4n + 1 (1, 5, 9, ..., 81, ...).
void check_frame_num(int64_t frame_num);

struct GuideScale {
  double low_noise = 3.5;   // CFG scale of the low-noise expert
  double high_noise = 3.5;  // and of the high-noise expert
};
// One value g (both experts) or a "low,high" pair; finite and non-negative.
GuideScale parse_guide_scale(const std::string& text);

// generate.py's str2bool: yes/true/t/y/1 and no/false/f/n/0, any case.
bool parse_str2bool(const std::string& flag, const std::string& text);

// --quantize {False,True,int8,fp8}: the str2bool spellings (True means int8), or int8 / fp8,
// any case. `flag` names the flag in the error.
Quantization parse_quantize(const std::string& flag, const std::string& text);

std::string trim(std::string_view text);

// The reference's default --save_file:
//   {task}_{size}_{ulysses_size}_{prompt with ' ' and '/' as '_', first 50 characters}_{%Y%m%d_%H%M%S}.mp4
std::string default_save_file(const std::string& task, const std::string& size,
                              int64_t ulysses_size, const std::string& prompt,
                              const std::tm& local_time);

// For a file the command will write: its folder must exist and be writable, and the path must
// not name a folder. Checked before any heavy work, so a typo costs nothing.
void check_output_path(const std::string& flag, const std::string& path);

// "850 ms", "12.3 s", "4 min 05 s", "1 h 02 min".
std::string format_duration(double seconds);

}  // namespace wanrt::cli
