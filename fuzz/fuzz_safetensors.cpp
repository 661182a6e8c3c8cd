// libFuzzer target: arbitrary bytes through the in-memory safetensors parser. wanrt::Error is
// the expected answer to bad input; any other exception, a crash or a sanitizer report is a
// finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    // No owner: the input outlives the parsed contents, which die at the end of this call.
    const wanrt::SafetensorsContents contents = wanrt::parse_safetensors(bytes, "fuzz input", nullptr);
    // Read every byte of every tensor so AddressSanitizer sees a view that strays outside the
    // input (copies of misaligned tensors are checked the same way).
    size_t total_bytes = 0;
    unsigned checksum = 0;
    for (const auto& name : contents.tensors.names()) {
      const wanrt::Tensor& tensor = contents.tensors.get(name);
      const auto* tensor_bytes = static_cast<const unsigned char*>(tensor.raw());
      for (size_t i = 0; i < tensor.nbytes(); ++i) checksum += tensor_bytes[i];
      total_bytes += tensor.nbytes();
    }
    // Accepted tensors tile the data section, so together they never exceed the input.
    if (total_bytes > size) std::abort();
    volatile unsigned sink = checksum;
    (void)sink;
  } catch (const wanrt::Error&) {
  }
  return 0;
}
