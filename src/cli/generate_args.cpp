#include "cli/generate_args.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace wanrt::cli {
namespace {

namespace fs = std::filesystem;

// Larger sides would overflow nothing here, but no model could run them either; a bound keeps
// W·H far from int64 overflow and turns a typo (an extra digit) into a clear error.
constexpr int64_t kMaxSide = 16384;

bool parse_int(std::string_view text, int64_t& value) {
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, value);
  return result.ec == std::errc() && result.ptr == end && !text.empty();
}

bool parse_double(const std::string& text, double& value) {
  const std::string trimmed = trim(text);
  if (trimmed.empty()) return false;
  size_t used = 0;
  try {
    value = std::stod(trimmed, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == trimmed.size();
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The first `count` UTF-8 characters of `text` (Python slices by character, not byte).
std::string utf8_prefix(const std::string& text, size_t count) {
  size_t bytes = 0;
  for (size_t characters = 0; bytes < text.size() && characters < count; ++characters) {
    ++bytes;
    while (bytes < text.size() && (static_cast<unsigned char>(text[bytes]) & 0xC0) == 0x80)
      ++bytes;  // continuation bytes belong to the character just counted
  }
  return text.substr(0, bytes);
}

}  // namespace

std::string trim(std::string_view text) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return std::string(text);
}

SizeArg parse_size(const std::string& text) {
  const size_t separator = text.find_first_of("*x");
  SizeArg size;
  const bool parsed = separator != std::string::npos &&
                      parse_int(std::string_view(text).substr(0, separator), size.width) &&
                      parse_int(std::string_view(text).substr(separator + 1), size.height);
  WANRT_CHECK(parsed, "--size '", text,
              "': expected WIDTH*HEIGHT, e.g. 1280*720 (the official sizes are 720*1280, "
              "1280*720, 480*832 and 832*480)");
  const bool in_range = size.width >= 16 && size.height >= 16 && size.width <= kMaxSide &&
                        size.height <= kMaxSide;
  WANRT_CHECK(in_range && size.width % 16 == 0 && size.height % 16 == 0, "--size '", text,
              "': width and height must be multiples of 16 between 16 and ", kMaxSide,
              " (the VAE stride 8 times the patch size 2), e.g. 1280*720 or 832*480");
  const std::string canonical = str_cat(size.width, "*", size.height);
  size.trained = std::any_of(std::begin(kTrainedI2vSizes), std::end(kTrainedI2vSizes),
                             [&](const char* trained) { return canonical == trained; });
  return size;
}

void check_frame_num(int64_t frame_num) {
  WANRT_CHECK(frame_num >= 1 && (frame_num - 1) % 4 == 0, "--frame_num ", frame_num,
              ": the frame count must be 4n+1 (1, 5, 9, ..., 81), because the VAE packs 4 "
              "frames into each latent frame after the first; the default is 81");
}

GuideScale parse_guide_scale(const std::string& text) {
  GuideScale scale;
  const size_t comma = text.find(',');
  bool parsed;
  if (comma == std::string::npos) {
    parsed = parse_double(text, scale.low_noise);
    scale.high_noise = scale.low_noise;
  } else {
    parsed = parse_double(text.substr(0, comma), scale.low_noise) &&
             parse_double(text.substr(comma + 1), scale.high_noise);
  }
  WANRT_CHECK(parsed, "--sample_guide_scale '", text,
              "': expected one number (both experts) or LOW,HIGH (the low-noise expert's "
              "scale, then the high-noise expert's), e.g. 3.5 or 3.5,3.5");
  for (const double value : {scale.low_noise, scale.high_noise})
    WANRT_CHECK(std::isfinite(value) && value >= 0, "--sample_guide_scale '", text,
                "': scales must be finite and not negative");
  return scale;
}

bool parse_str2bool(const std::string& flag, const std::string& text) {
  const std::string value = lower(trim(text));
  for (const char* yes : {"yes", "true", "t", "y", "1"})
    if (value == yes) return true;
  for (const char* no : {"no", "false", "f", "n", "0"})
    if (value == no) return false;
  fail(flag, " '", text, "': boolean value expected (True/False)");
}

Quantization parse_quantize(const std::string& flag, const std::string& text) {
  const std::string value = lower(trim(text));
  if (value == "int8") return Quantization::Int8;
  if (value == "fp8") return Quantization::Fp8;
  for (const char* yes : {"yes", "true", "t", "y", "1"})
    if (value == yes) return Quantization::Int8;
  for (const char* no : {"no", "false", "f", "n", "0"})
    if (value == no) return Quantization::None;
  fail(flag, " '", text, "': unknown quantization; choose False, True (= int8), int8 or fp8");
}

std::string default_save_file(const std::string& task, const std::string& size,
                              int64_t ulysses_size, const std::string& prompt,
                              const std::tm& local_time) {
  std::string formatted_prompt = prompt;
  std::replace(formatted_prompt.begin(), formatted_prompt.end(), ' ', '_');
  std::replace(formatted_prompt.begin(), formatted_prompt.end(), '/', '_');
  char time_text[32];
  std::strftime(time_text, sizeof time_text, "%Y%m%d_%H%M%S", &local_time);
  return str_cat(task, "_", size, "_", ulysses_size, "_", utf8_prefix(formatted_prompt, 50), "_",
                 time_text, ".mp4");
}

void check_output_path(const std::string& flag, const std::string& path) {
  WANRT_CHECK(!trim(path).empty(), flag, ": the path is empty");
  std::error_code ec;
  WANRT_CHECK(!fs::is_directory(path, ec), flag, " ", path,
              ": is a folder; give a file path inside it");
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  WANRT_CHECK(fs::exists(folder, ec), flag, " ", path, ": the folder ", folder.string(),
              " does not exist; create it first");
  WANRT_CHECK(fs::is_directory(folder, ec), flag, " ", path, ": ", folder.string(),
              " is not a folder");
  WANRT_CHECK(::access(folder.c_str(), W_OK) == 0, flag, " ", path, ": the folder ",
              folder.string(), " is not writable");
}

std::string format_duration(double seconds) {
  char text[48];
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 1) {
    std::snprintf(text, sizeof text, "%d ms", static_cast<int>(std::lround(seconds * 1000)));
  } else if (seconds < 60) {
    std::snprintf(text, sizeof text, "%.1f s", seconds);
  } else if (seconds < 3600) {
    const long total = std::lround(seconds);
    std::snprintf(text, sizeof text, "%ld min %02ld s", total / 60, total % 60);
  } else {
    const long minutes = std::lround(seconds / 60);
    std::snprintf(text, sizeof text, "%ld h %02ld min", minutes / 60, minutes % 60);
  }
  return text;
}

}  // namespace wanrt::cli
