// libFuzzer target: arbitrary bytes through the pickle machine alone (data.pkl of a .pth).
// Only wanrt::Error may escape. Seeds: fuzz/corpus/fuzz_pickle/ (pickles of state dicts as
// write_pth writes them).
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const wanrt::PickleDocument document = wanrt::parse_pickle(bytes, "fuzz.pkl");
    (void)document.root().kind;
  } catch (const wanrt::Error&) {
  }
  return 0;
}
