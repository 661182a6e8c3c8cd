// libFuzzer target: arbitrary text through the *.safetensors.index.json parser. wanrt::Error
// is the expected answer to bad input; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const wanrt::SafetensorsIndex index = wanrt::parse_safetensors_index(text, "fuzz index");
    // An accepted index names at least one tensor, each in a shard with a non-empty name.
    if (index.weight_map.empty()) std::abort();
    for (const auto& [tensor, shard] : index.weight_map)
      if (shard.empty()) std::abort();
  } catch (const wanrt::Error&) {
  }
  return 0;
}
