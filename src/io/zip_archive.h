// A minimal ZIP container layer for PyTorch .pth files: a read-only directory over a byte span
// (the memory-mapped file) and a streaming writer of stored, aligned entries.
//
// Reading: the end-of-central-directory record is found by scanning back from the end, the
// ZIP64 locator and record are honoured (torch always writes them), central-directory ZIP64
// extra fields (tag 0x0001) replace 32-bit fields that read 0xFFFFFFFF, and each entry's data
// offset is taken from its *local* header (whose extra field may differ from the central one).
// Only stored entries can be read; every offset and size is checked against the span, so a
// malformed file is a wanrt::Error naming the archive, never an out-of-bounds read.
//
// Writing follows torch.save: stored entries, general-purpose flag bit 3 with a data descriptor
// after each entry, an 'FB' padding extra field so that every entry's data starts on an
// `alignment` boundary, and ZIP64 end records always.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wanrt {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;         // 0 = stored; anything else cannot be read here
  uint16_t flags = 0;          // general-purpose bit flags (bit 0 = encrypted)
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;    // first byte of the entry's (possibly compressed) data
};

class ZipArchive {
 public:
  // Parses the directory of the ZIP held in `bytes`. `label` (usually the file path) starts
  // every error message. The span must outlive the archive.
  static ZipArchive parse(std::span<const std::byte> bytes, std::string label);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry called `name` exactly, or nullptr.
  const ZipEntry* find(std::string_view name) const;
  // The bytes of a stored entry; a compressed or encrypted entry is an error naming it.
  std::span<const std::byte> data(const ZipEntry& entry) const;
  const std::string& label() const { return label_; }

 private:
  std::span<const std::byte> bytes_;
  std::string label_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
};

// CRC-32 (IEEE 802.3, as ZIP uses), continued from `crc` (0 to start).
uint32_t zip_crc32(std::span<const std::byte> data, uint32_t crc = 0);

struct ZipWriterOptions {
  uint64_t alignment = 64;    // data of every entry starts on a multiple of this (power of 2)
  // Emit ZIP64 extra fields and saturated 32-bit fields for every entry and the end record even
  // when nothing needs them, so tests can exercise the ZIP64 reading path on small files.
  bool force_zip64 = false;
};

// Writes stored entries to `out` one by one; finish() writes the central directory and end
// records. Sizes and offsets past 4 GiB get ZIP64 fields automatically.
class ZipWriter {
 public:
  explicit ZipWriter(std::ostream& out, ZipWriterOptions options = {});
  // Writes one entry whose data is the concatenation of `chunks`.
  void add(const std::string& name, std::span<const std::span<const std::byte>> chunks);
  void add(const std::string& name, std::span<const std::byte> data);
  void add(const std::string& name, std::string_view text);
  void finish();

 private:
  void put(const void* data, size_t size);
  struct Written {
    std::string name;
    uint32_t crc32;
    uint64_t size;
    uint64_t local_header_offset;
  };
  std::ostream& out_;
  ZipWriterOptions options_;
  uint64_t offset_ = 0;
  std::vector<Written> written_;
  bool finished_ = false;
};

}  // namespace wanrt
