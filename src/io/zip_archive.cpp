#include "io/zip_archive.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "core/error.h"

namespace wanrt {
namespace {

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kEndSignature = 0x06054b50;
constexpr uint32_t kZip64EndSignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint32_t kDataDescriptorSignature = 0x08074b50;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kEndSize = 22;
constexpr uint64_t kZip64EndSize = 56;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint64_t kMaxCommentSize = 0xFFFF;
constexpr uint16_t kZip64ExtraTag = 0x0001;
constexpr uint16_t kSaturated16 = 0xFFFF;
constexpr uint32_t kSaturated32 = 0xFFFFFFFF;
// Bit 3: sizes and CRC follow the data in a descriptor; bit 11: names are UTF-8 (as torch sets).
constexpr uint16_t kWriterFlags = 0x0808;
constexpr uint16_t kVersionZip64 = 45;
constexpr uint16_t kVersionStored = 20;

// Bounds-checked little-endian field reads from the archive bytes.
class FieldReader {
 public:
  FieldReader(std::span<const std::byte> bytes, const std::string& label)
      : bytes_(bytes), label_(label) {}

  uint64_t size() const { return bytes_.size(); }
  bool fits(uint64_t at, uint64_t count) const {
    return at <= bytes_.size() && count <= bytes_.size() - at;
  }
  void require(uint64_t at, uint64_t count, const char* what) const {
    if (!fits(at, count))
      fail(label_, ": bad ZIP: ", what, " (", count, " bytes at offset ", at,
           ") runs past the end of the file (", bytes_.size(), " bytes)");
  }
  uint64_t read(uint64_t at, int width, const char* what) const {
    require(at, static_cast<uint64_t>(width), what);
    uint64_t value = 0;
    for (int i = width; i-- > 0;)
      value = (value << 8) | std::to_integer<uint64_t>(bytes_[at + static_cast<uint64_t>(i)]);
    return value;
  }
  uint16_t u16(uint64_t at, const char* what) const {
    return static_cast<uint16_t>(read(at, 2, what));
  }
  uint32_t u32(uint64_t at, const char* what) const {
    return static_cast<uint32_t>(read(at, 4, what));
  }
  uint64_t u64(uint64_t at, const char* what) const { return read(at, 8, what); }
  std::string_view text(uint64_t at, uint64_t count, const char* what) const {
    require(at, count, what);
    return {reinterpret_cast<const char*>(bytes_.data() + at), static_cast<size_t>(count)};
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& label_;
};

struct EndRecord {
  uint64_t entry_count = 0;
  uint64_t directory_size = 0;
  uint64_t directory_offset = 0;
  uint64_t directory_limit = 0;  // the directory must end at or before this offset
};

// Finds the classic end record (scanning back over a possible comment), then the ZIP64
// locator and record just before it, and returns the directory's position.
EndRecord read_end_records(const FieldReader& in, const std::string& label) {
  WANRT_CHECK(in.size() >= kEndSize, label, ": not a ZIP archive (only ", in.size(),
              " bytes: truncated or empty)");
  const uint64_t last = in.size() - kEndSize;
  const uint64_t first = last > kMaxCommentSize ? last - kMaxCommentSize : 0;
  uint64_t end_at = 0;
  bool found = false;
  for (uint64_t at = last + 1; at-- > first;) {
    if (in.u32(at, "end record") == kEndSignature &&
        at + kEndSize + in.u16(at + 20, "end record comment length") == in.size()) {
      end_at = at;
      found = true;
      break;
    }
  }
  WANRT_CHECK(found, label,
              ": not a ZIP archive (no end-of-central-directory record; the file is truncated or "
              "not a torch.save .pth file)");

  const uint16_t disk = in.u16(end_at + 4, "end record");
  const uint16_t directory_disk = in.u16(end_at + 6, "end record");
  const uint16_t entries_on_disk = in.u16(end_at + 8, "end record");
  const uint16_t entries_total = in.u16(end_at + 10, "end record");
  const uint32_t directory_size = in.u32(end_at + 12, "end record");
  const uint32_t directory_offset = in.u32(end_at + 16, "end record");
  WANRT_CHECK(disk == 0 && directory_disk == 0 && entries_on_disk == entries_total, label,
              ": multi-disk ZIP archives are not supported");

  EndRecord end;
  end.entry_count = entries_total;
  end.directory_size = directory_size;
  end.directory_offset = directory_offset;
  end.directory_limit = end_at;

  const bool has_locator = end_at >= kZip64LocatorSize &&
                           in.u32(end_at - kZip64LocatorSize, "ZIP64 locator") ==
                               kZip64LocatorSignature;
  if (!has_locator) {
    WANRT_CHECK(entries_total != kSaturated16 && directory_size != kSaturated32 &&
                    directory_offset != kSaturated32,
                label, ": bad ZIP: the end record defers to a ZIP64 record, but there is none");
    return end;
  }
  const uint64_t locator_at = end_at - kZip64LocatorSize;
  const uint64_t record_at = in.u64(locator_at + 8, "ZIP64 locator");
  const uint32_t disk_count = in.u32(locator_at + 16, "ZIP64 locator");
  WANRT_CHECK(disk_count <= 1, label, ": multi-disk ZIP archives are not supported");
  WANRT_CHECK(record_at <= locator_at && locator_at - record_at >= kZip64EndSize, label,
              ": bad ZIP: ZIP64 end record offset ", record_at,
              " does not leave room for the record before its locator at ", locator_at);
  WANRT_CHECK(in.u32(record_at, "ZIP64 end record") == kZip64EndSignature, label,
              ": bad ZIP: no ZIP64 end record at offset ", record_at, " named by its locator");
  const uint64_t zip64_disk = in.u32(record_at + 16, "ZIP64 end record");
  const uint64_t zip64_directory_disk = in.u32(record_at + 20, "ZIP64 end record");
  const uint64_t zip64_entries_on_disk = in.u64(record_at + 24, "ZIP64 end record");
  end.entry_count = in.u64(record_at + 32, "ZIP64 end record");
  end.directory_size = in.u64(record_at + 40, "ZIP64 end record");
  end.directory_offset = in.u64(record_at + 48, "ZIP64 end record");
  end.directory_limit = record_at;
  WANRT_CHECK(zip64_disk == 0 && zip64_directory_disk == 0 &&
                  zip64_entries_on_disk == end.entry_count,
              label, ": multi-disk ZIP archives are not supported");
  // A 32-bit field that is not saturated must agree with its ZIP64 counterpart.
  WANRT_CHECK((entries_total == kSaturated16 || entries_total == end.entry_count) &&
                  (directory_size == kSaturated32 || directory_size == end.directory_size) &&
                  (directory_offset == kSaturated32 || directory_offset == end.directory_offset),
              label, ": bad ZIP: the end record (", entries_total, " entries, directory of ",
              directory_size, " bytes at ", directory_offset, ") disagrees with the ZIP64 record (",
              end.entry_count, " entries, ", end.directory_size, " bytes at ",
              end.directory_offset, ")");
  return end;
}

// Replaces saturated 32-bit fields of a central header with the values of its ZIP64 extra
// field, which lists them in this fixed order, each present only when its field is saturated.
void apply_zip64_extra(const FieldReader& in, uint64_t extra_at, uint64_t extra_size,
                       ZipEntry& entry, bool need_usize, bool need_csize, bool need_offset,
                       const std::string& label) {
  const uint64_t extra_end = extra_at + extra_size;
  bool seen = false;
  for (uint64_t at = extra_at; at < extra_end;) {
    WANRT_CHECK(extra_end - at >= 4, label, ": bad ZIP: entry '", entry.name,
                "' has a truncated extra field");
    const uint16_t tag = in.u16(at, "extra field");
    const uint16_t size = in.u16(at + 2, "extra field");
    const uint64_t body = at + 4;
    WANRT_CHECK(size <= extra_end - body, label, ": bad ZIP: entry '", entry.name,
                "' has an extra field running past its header");
    if (tag == kZip64ExtraTag && !seen) {
      seen = true;
      uint64_t field = body;
      const auto take = [&](uint64_t& target, const char* what) {
        WANRT_CHECK(field + 8 <= body + size, label, ": bad ZIP: entry '", entry.name,
                    "' lacks the ZIP64 ", what, " its header defers to");
        target = in.u64(field, "ZIP64 extra field");
        field += 8;
      };
      if (need_usize) take(entry.uncompressed_size, "uncompressed size");
      if (need_csize) take(entry.compressed_size, "compressed size");
      if (need_offset) take(entry.local_header_offset, "local header offset");
    }
    at = body + size;
  }
  WANRT_CHECK(seen || !(need_usize || need_csize || need_offset), label, ": bad ZIP: entry '",
              entry.name, "' has saturated 32-bit fields but no ZIP64 extra field");
}

}  // namespace

ZipArchive ZipArchive::parse(std::span<const std::byte> bytes, std::string label) {
  ZipArchive archive;
  archive.bytes_ = bytes;
  archive.label_ = std::move(label);
  const std::string& name = archive.label_;
  const FieldReader in(bytes, name);
  const EndRecord end = read_end_records(in, name);

  WANRT_CHECK(end.directory_offset <= end.directory_limit &&
                  end.directory_size <= end.directory_limit - end.directory_offset,
              name, ": bad ZIP: central directory (", end.directory_size, " bytes at offset ",
              end.directory_offset, ") does not lie before the end records at offset ",
              end.directory_limit);
  WANRT_CHECK(end.entry_count <= end.directory_size / kCentralHeaderSize, name, ": bad ZIP: ",
              end.entry_count, " entries cannot fit in a central directory of ",
              end.directory_size, " bytes");
  const uint64_t directory_end = end.directory_offset + end.directory_size;

  archive.entries_.reserve(static_cast<size_t>(end.entry_count));
  uint64_t at = end.directory_offset;
  for (uint64_t index = 0; index < end.entry_count; ++index) {
    WANRT_CHECK(directory_end - at >= kCentralHeaderSize, name, ": bad ZIP: central directory "
                "entry ", index, " runs past the end of the directory");
    WANRT_CHECK(in.u32(at, "central header") == kCentralHeaderSignature, name,
                ": bad ZIP: no central directory header at offset ", at, " (entry ", index, ")");
    ZipEntry entry;
    entry.flags = in.u16(at + 8, "central header");
    entry.method = in.u16(at + 10, "central header");
    entry.crc32 = in.u32(at + 16, "central header");
    const uint32_t csize32 = in.u32(at + 20, "central header");
    const uint32_t usize32 = in.u32(at + 24, "central header");
    const uint64_t name_size = in.u16(at + 28, "central header");
    const uint64_t extra_size = in.u16(at + 30, "central header");
    const uint64_t comment_size = in.u16(at + 32, "central header");
    const uint32_t offset32 = in.u32(at + 42, "central header");
    const uint64_t variable_size = name_size + extra_size + comment_size;
    WANRT_CHECK(directory_end - at - kCentralHeaderSize >= variable_size, name,
                ": bad ZIP: the name or extra field of central directory entry ", index,
                " runs past the end of the directory");
    entry.name = std::string(in.text(at + kCentralHeaderSize, name_size, "entry name"));
    WANRT_CHECK(!entry.name.empty(), name, ": bad ZIP: entry ", index, " has an empty name");
    entry.compressed_size = csize32;
    entry.uncompressed_size = usize32;
    entry.local_header_offset = offset32;
    apply_zip64_extra(in, at + kCentralHeaderSize + name_size, extra_size, entry,
                      usize32 == kSaturated32, csize32 == kSaturated32, offset32 == kSaturated32,
                      name);
    at += kCentralHeaderSize + variable_size;

    // The data offset comes from the local header: its extra field (torch's alignment padding)
    // is not the central one.
    const uint64_t local = entry.local_header_offset;
    WANRT_CHECK(local <= end.directory_offset &&
                    end.directory_offset - local >= kLocalHeaderSize,
                name, ": bad ZIP: entry '", entry.name, "' has its local header at offset ",
                local, ", outside the data area (", end.directory_offset, " bytes)");
    WANRT_CHECK(in.u32(local, "local header") == kLocalHeaderSignature, name,
                ": bad ZIP: no local header at offset ", local, " for entry '", entry.name, "'");
    const uint64_t local_name_size = in.u16(local + 26, "local header");
    const uint64_t local_extra_size = in.u16(local + 28, "local header");
    entry.data_offset = local + kLocalHeaderSize + local_name_size + local_extra_size;
    WANRT_CHECK(entry.data_offset <= end.directory_offset &&
                    entry.compressed_size <= end.directory_offset - entry.data_offset,
                name, ": bad ZIP: the data of entry '", entry.name, "' (", entry.compressed_size,
                " bytes from offset ", entry.data_offset,
                ") runs past the end of the data area at offset ", end.directory_offset);
    WANRT_CHECK(in.text(local + kLocalHeaderSize, local_name_size, "local name") == entry.name,
                name, ": bad ZIP: the local header of entry '", entry.name,
                "' names a different entry");
    WANRT_CHECK(entry.method != 0 || entry.compressed_size == entry.uncompressed_size, name,
                ": bad ZIP: stored entry '", entry.name, "' has compressed size ",
                entry.compressed_size, " but uncompressed size ", entry.uncompressed_size);
    const bool inserted =
        archive.index_.emplace(entry.name, archive.entries_.size()).second;
    WANRT_CHECK(inserted, name, ": bad ZIP: entry '", entry.name, "' appears twice");
    archive.entries_.push_back(std::move(entry));
  }
  return archive;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const std::byte> ZipArchive::data(const ZipEntry& entry) const {
  WANRT_CHECK(entry.method == 0, label_, ": entry '", entry.name, "' is compressed (method ",
              entry.method, "); only stored entries can be read, as torch.save writes them");
  WANRT_CHECK((entry.flags & 1) == 0, label_, ": entry '", entry.name,
              "' is encrypted, which is not supported");
  return bytes_.subspan(static_cast<size_t>(entry.data_offset),
                        static_cast<size_t>(entry.compressed_size));
}

uint32_t zip_crc32(std::span<const std::byte> data, uint32_t crc) {
  static constexpr std::array<uint32_t, 256> kTable = [] {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return table;
  }();
  crc = ~crc;
  for (std::byte b : data) crc = kTable[(crc ^ std::to_integer<uint32_t>(b)) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// ---- writer ----

namespace {

// Little-endian field assembly for headers.
class HeaderBytes {
 public:
  HeaderBytes& u16(uint64_t value) { return put(value, 2); }
  HeaderBytes& u32(uint64_t value) { return put(value, 4); }
  HeaderBytes& u64(uint64_t value) { return put(value, 8); }
  HeaderBytes& text(std::string_view value) {
    bytes_.append(value);
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  HeaderBytes& put(uint64_t value, int width) {
    for (int i = 0; i < width; ++i) bytes_.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
    return *this;
  }
  std::string bytes_;
};

uint64_t saturate32(uint64_t value, bool force) {
  return force || value >= kSaturated32 ? kSaturated32 : value;
}

}  // namespace

ZipWriter::ZipWriter(std::ostream& out, ZipWriterOptions options)
    : out_(out), options_(options) {
  WANRT_ASSERT(options_.alignment >= 1 && (options_.alignment & (options_.alignment - 1)) == 0);
}

void ZipWriter::put(const void* data, size_t size) {
  out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  offset_ += size;
}

void ZipWriter::add(const std::string& name, std::span<const std::span<const std::byte>> chunks) {
  WANRT_ASSERT(!finished_);
  WANRT_CHECK(!name.empty() && name.size() <= 0xFFFF, "ZIP entry name of ", name.size(),
              " bytes is not allowed");
  uint64_t size = 0;
  for (const auto& chunk : chunks) size += chunk.size();
  const bool zip64 = options_.force_zip64 || size >= kSaturated32;

  const uint64_t header_offset = offset_;
  // ZIP64 local extra: tag, length, then zero sizes (they follow in the data descriptor).
  const uint64_t zip64_extra_size = zip64 ? 20 : 0;
  const uint64_t unpadded = header_offset + kLocalHeaderSize + name.size() + zip64_extra_size + 4;
  const uint64_t padding = (options_.alignment - unpadded % options_.alignment) % options_.alignment;
  WANRT_ASSERT(zip64_extra_size + 4 + padding <= 0xFFFF);
  HeaderBytes header;
  header.u32(kLocalHeaderSignature)
      .u16(zip64 ? kVersionZip64 : kVersionStored)
      .u16(kWriterFlags)
      .u16(0)   // stored
      .u16(0)   // time
      .u16(0)   // date
      .u32(0)   // CRC, in the descriptor
      .u32(zip64 ? kSaturated32 : 0)
      .u32(zip64 ? kSaturated32 : 0)
      .u16(name.size())
      .u16(zip64_extra_size + 4 + padding)
      .text(name);
  if (zip64) header.u16(kZip64ExtraTag).u16(16).u64(0).u64(0);
  // torch's alignment field: tag 'FB', then filler.
  header.text("FB").u16(padding).text(std::string(static_cast<size_t>(padding), 'Z'));
  put(header.bytes().data(), header.bytes().size());
  WANRT_ASSERT(offset_ % options_.alignment == 0);

  uint32_t crc = 0;
  for (const auto& chunk : chunks) {
    crc = zip_crc32(chunk, crc);
    if (!chunk.empty()) put(chunk.data(), chunk.size());
  }
  HeaderBytes descriptor;
  descriptor.u32(kDataDescriptorSignature).u32(crc);
  if (zip64)
    descriptor.u64(size).u64(size);
  else
    descriptor.u32(size).u32(size);
  put(descriptor.bytes().data(), descriptor.bytes().size());
  written_.push_back({name, crc, size, header_offset});
}

void ZipWriter::add(const std::string& name, std::span<const std::byte> data) {
  const std::span<const std::byte> chunks[] = {data};
  add(name, chunks);
}

void ZipWriter::add(const std::string& name, std::string_view text) {
  add(name, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

void ZipWriter::finish() {
  WANRT_ASSERT(!finished_);
  finished_ = true;
  const bool force = options_.force_zip64;
  const uint64_t directory_offset = offset_;
  for (const Written& entry : written_) {
    const bool zip64_size = force || entry.size >= kSaturated32;
    const bool zip64_offset = force || entry.local_header_offset >= kSaturated32;
    HeaderBytes extra;
    if (zip64_size || zip64_offset) {
      extra.u16(kZip64ExtraTag).u16((zip64_size ? 16 : 0) + (zip64_offset ? 8 : 0));
      if (zip64_size) extra.u64(entry.size).u64(entry.size);
      if (zip64_offset) extra.u64(entry.local_header_offset);
    }
    HeaderBytes header;
    header.u32(kCentralHeaderSignature)
        .u16(kVersionZip64)  // version made by
        .u16(zip64_size || zip64_offset ? kVersionZip64 : kVersionStored)
        .u16(kWriterFlags)
        .u16(0)
        .u16(0)
        .u16(0)
        .u32(entry.crc32)
        .u32(zip64_size ? kSaturated32 : entry.size)
        .u32(zip64_size ? kSaturated32 : entry.size)
        .u16(entry.name.size())
        .u16(extra.bytes().size())
        .u16(0)   // comment
        .u16(0)   // disk
        .u16(0)   // internal attributes
        .u32(0)   // external attributes
        .u32(zip64_offset ? kSaturated32 : entry.local_header_offset)
        .text(entry.name)
        .text(extra.bytes());
    put(header.bytes().data(), header.bytes().size());
  }
  const uint64_t directory_size = offset_ - directory_offset;
  const uint64_t count = written_.size();
  const uint64_t zip64_end_offset = offset_;
  HeaderBytes end;
  end.u32(kZip64EndSignature)
      .u64(kZip64EndSize - 12)
      .u16(kVersionZip64)
      .u16(kVersionZip64)
      .u32(0)
      .u32(0)
      .u64(count)
      .u64(count)
      .u64(directory_size)
      .u64(directory_offset);
  end.u32(kZip64LocatorSignature).u32(0).u64(zip64_end_offset).u32(1);
  const uint64_t count16 = force || count >= kSaturated16 ? kSaturated16 : count;
  end.u32(kEndSignature)
      .u16(0)
      .u16(0)
      .u16(count16)
      .u16(count16)
      .u32(saturate32(directory_size, force))
      .u32(saturate32(directory_offset, force))
      .u16(0);
  put(end.bytes().data(), end.bytes().size());
}

}  // namespace wanrt
