// libFuzzer target: the prompt cleaning on arbitrary bytes. It must not crash, must terminate,
// and must return valid UTF-8 without leading/trailing or doubled ASCII spaces.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "text/text_clean.h"

namespace {

bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3
                        : (lead >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k)
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    i += length;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string cleaned = wanrt::clean_prompt_text(input);
  if (!is_valid_utf8(cleaned)) std::abort();
  if (!cleaned.empty() && (cleaned.front() == ' ' || cleaned.back() == ' ')) std::abort();
  if (cleaned.find("  ") != std::string::npos) std::abort();
  return 0;
}
