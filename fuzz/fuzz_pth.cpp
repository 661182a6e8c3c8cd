// libFuzzer target: arbitrary bytes as a .pth file through the whole reader (ZIP directory,
// pickle machine, storage checks, tensor views and strided copies). Only wanrt::Error may
// escape; any crash, sanitizer report, leak or other exception is a bug.
// Seeds: fuzz/corpus/fuzz_pth/ (archives written by write_pth: plain, forced ZIP64, shared
// storage with offsets and strides).
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/torch_pth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const wanrt::TensorStore store = wanrt::parse_pth(bytes, "fuzz.pth", nullptr);
    // Touch every tensor's bytes so out-of-range views show up under ASan.
    volatile unsigned char sink = 0;
    for (const auto& name : store.names()) {
      const wanrt::Tensor& tensor = store.get(name);
      const auto* raw = static_cast<const unsigned char*>(tensor.raw());
      for (size_t i = 0; i < tensor.nbytes(); ++i) sink = static_cast<unsigned char>(sink ^ raw[i]);
    }
  } catch (const wanrt::Error&) {
  }
  return 0;
}
