#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/mapped_file.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Tensors are handed out as views of the file's bytes, so the host must share its byte order.
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the limit the reference reader enforces
constexpr size_t kLengthPrefixBytes = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

// Parses `text` as a JSON object. nlohmann keeps the last of two equal keys silently, which
// would hide a tensor listed twice, so a callback rejects a key repeated within one object.
json parse_json_object(std::string_view text, const std::string& name, std::string_view what) {
  std::vector<std::set<std::string>> open_objects;
  const json::parser_callback_t reject_repeated_keys = [&](int, json::parse_event_t event,
                                                           json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second)
        fail(name, ": ", what, ": name '", key, "' appears twice in the same JSON object");
    }
    return true;
  };
  json parsed;
  try {
    parsed = json::parse(text.begin(), text.end(), reject_repeated_keys);
  } catch (const json::exception& error) {
    fail(name, ": ", what, " is not valid JSON (", error.what(), ")");
  }
  WANRT_CHECK(parsed.is_object(), name, ": ", what, " is not a JSON object but a JSON ",
              parsed.type_name());
  return parsed;
}

// A JSON integer >= 0; nullopt for negative numbers, fractions and anything not a number.
std::optional<uint64_t> as_unsigned(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0)
    return static_cast<uint64_t>(value.get<int64_t>());
  return std::nullopt;
}

// One header entry, validated against itself and the size of the data section.
struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

std::string offsets_str(uint64_t begin, uint64_t end) {
  return str_cat("[", begin, ", ", end, ")");
}

TensorEntry parse_entry(const std::string& file, const std::string& tensor_name,
                        const json& value, uint64_t data_bytes) {
  const std::string where = str_cat(file, ": tensor '", tensor_name, "': ");
  WANRT_CHECK(value.is_object(), where, "entry is a JSON ", value.type_name(),
              ", not an object {\"dtype\", \"shape\", \"data_offsets\"}");
  TensorEntry entry;
  entry.name = tensor_name;

  const auto dtype = value.find("dtype");
  WANRT_CHECK(dtype != value.end(), where, "no \"dtype\"");
  WANRT_CHECK(dtype->is_string(), where, "dtype is a JSON ", dtype->type_name(), ", not a string");
  const auto& dtype_text = dtype->get_ref<const std::string&>();
  const std::optional<DType> known = dtype_from_name(dtype_text);
  WANRT_CHECK(known.has_value(), where, "unknown or unsupported dtype '", dtype_text, "'");
  entry.dtype = *known;

  const auto shape = value.find("shape");
  WANRT_CHECK(shape != value.end(), where, "no \"shape\"");
  WANRT_CHECK(shape->is_array(), where, "shape ", shape->dump(), " is not an array");
  // Count elements in 64 bits without overflow; a zero dimension empties the tensor however
  // large the others are.
  uint64_t numel = 1;
  bool has_zero = false;
  bool overflows = false;
  for (const json& dim : *shape) {
    const std::optional<uint64_t> extent = as_unsigned(dim);
    WANRT_CHECK(extent && *extent <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                where, "shape ", shape->dump(), " holds ", dim.dump(),
                ", not an integer in [0, 2^63)");
    entry.shape.push_back(static_cast<int64_t>(*extent));
    if (*extent == 0) {
      has_zero = true;
    } else if (numel > std::numeric_limits<uint64_t>::max() / *extent) {
      overflows = true;
    } else {
      numel *= *extent;
    }
  }
  const uint64_t element_bytes = dtype_size(entry.dtype);
  if (has_zero) numel = 0;
  WANRT_CHECK(!overflows || has_zero, where, "shape ", shape->dump(), " has too many elements");
  WANRT_CHECK(numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / element_bytes,
              where, "shape ", shape->dump(), " has too many elements");
  const uint64_t needed_bytes = numel * element_bytes;

  const auto offsets = value.find("data_offsets");
  WANRT_CHECK(offsets != value.end(), where, "no \"data_offsets\"");
  WANRT_CHECK(offsets->is_array() && offsets->size() == 2, where, "data_offsets ", offsets->dump(),
              " is not an array [begin, end]");
  const std::optional<uint64_t> begin = as_unsigned((*offsets)[0]);
  const std::optional<uint64_t> end = as_unsigned((*offsets)[1]);
  WANRT_CHECK(begin && end, where, "data_offsets ", offsets->dump(),
              " are not non-negative integers");
  WANRT_CHECK(*begin <= *end, where, "data_offsets ", offsets_str(*begin, *end),
              " begin after they end");
  entry.begin = *begin;
  entry.end = *end;
  const std::string description = str_cat(dtype_name(entry.dtype), shape_str(entry.shape));
  WANRT_CHECK(*end - *begin == needed_bytes, where, "data_offsets ", offsets_str(*begin, *end),
              " hold ", *end - *begin, " bytes but ", description, " needs ", needed_bytes);
  WANRT_CHECK(*end <= data_bytes, where, "data_offsets ", offsets_str(*begin, *end),
              " are out of range: the data section holds ", data_bytes,
              " bytes (is the file truncated?)");
  return entry;
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const json& value) {
  std::map<std::string, std::string> metadata;
  if (value.is_null()) return metadata;  // the reference reader treats null as absent
  WANRT_CHECK(value.is_object(), file, ": __metadata__ is a JSON ", value.type_name(),
              ", not an object of strings");
  for (const auto& [key, text] : value.items()) {
    WANRT_CHECK(text.is_string(), file, ": __metadata__ value of '", key, "' is a JSON ",
                text.type_name(), " (", text.dump(), "), not a string");
    metadata.emplace(key, text.get<std::string>());
  }
  return metadata;
}

// The tensors must tile the data section exactly: no overlaps, no gaps, no trailing bytes.
void check_tiling(const std::string& file, std::vector<TensorEntry> entries, uint64_t data_bytes,
                  uint64_t header_bytes) {
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& entry : entries) {
    if (entry.begin < covered)
      fail(file, ": tensor '", entry.name, "' data_offsets ", offsets_str(entry.begin, entry.end),
           " overlap tensor '", previous->name, "' ",
           offsets_str(previous->begin, previous->end));
    if (entry.begin > covered)
      fail(file, ": gap of ", entry.begin - covered, " bytes in the data section: bytes ",
           offsets_str(covered, entry.begin), " before tensor '", entry.name,
           "' belong to no tensor");
    covered = entry.end;
    previous = &entry;
  }
  WANRT_CHECK(covered == data_bytes, file, ": ", data_bytes - covered,
              " trailing bytes after the last tensor's data: the file should be 8 + ",
              header_bytes, " + ", covered, " = ", kLengthPrefixBytes + header_bytes + covered,
              " bytes long but is ", kLengthPrefixBytes + header_bytes + data_bytes);
}

Tensor make_tensor(const TensorEntry& entry, const std::byte* data_section,
                   const std::shared_ptr<const void>& owner) {
  const std::byte* bytes = data_section + entry.begin;
  const size_t element_bytes = dtype_size(entry.dtype);
  if (reinterpret_cast<uintptr_t>(bytes) % element_bytes == 0)
    return Tensor::view(owner, bytes, entry.dtype, entry.shape);
  // Older writers do not align the data; typed loads from it would be undefined behaviour.
  Tensor copy = Tensor::empty(entry.dtype, entry.shape);
  std::memcpy(copy.raw_mut(), bytes, copy.nbytes());
  return copy;
}

// Writes all of `data` to `fd`, retrying short writes.
void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const auto* cursor = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd, cursor, std::min<size_t>(size, size_t{1} << 30));
    if (written < 0) {
      const int error = errno;
      if (error == EINTR) continue;
      fail(path, ": write failed (", std::strerror(error), ")");
    }
    cursor += written;
    size -= static_cast<size_t>(written);
  }
}

// A file beside the destination that becomes it on commit() and is deleted otherwise, so a
// failed write never leaves a partial file under the destination's name.
class TemporaryFile {
 public:
  explicit TemporaryFile(const std::string& destination) : destination_(destination) {
    static std::atomic<unsigned> counter{0};
    const fs::path target(destination);
    const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
      path_ = (folder / str_cat(".", target.filename().string(), ".tmp.", ::getpid(), ".",
                                counter++)).string();
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ < 0 && errno != EEXIST) break;
    }
    if (fd_ < 0) {
      const int error = errno;
      fail(destination, ": cannot create the temporary file ", path_, " (", std::strerror(error),
           ")");
    }
  }
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;

  void write(const void* data, size_t size) { write_all(fd_, data, size, destination_); }

  void commit() {
    // fsync before rename: otherwise a crash can leave the new name holding empty blocks.
    if (::fsync(fd_) != 0) fail(destination_, ": fsync failed (", std::strerror(errno), ")");
    const int closed = ::close(fd_);
    fd_ = -1;
    if (closed != 0) fail(destination_, ": close failed (", std::strerror(errno), ")");
    if (::rename(path_.c_str(), destination_.c_str()) != 0)
      fail(destination_, ": cannot rename ", path_, " into place (", std::strerror(errno), ")");
    committed_ = true;
  }

 private:
  std::string destination_;
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

SafetensorsContents parse_safetensors(std::span<const std::byte> bytes, const std::string& name,
                                      std::shared_ptr<const void> owner) {
  WANRT_CHECK(bytes.size() >= kLengthPrefixBytes, name, ": file is ", bytes.size(),
              " bytes: truncated, too short for the 8-byte header length");
  uint64_t header_bytes = 0;
  for (size_t i = kLengthPrefixBytes; i-- > 0;)
    header_bytes = (header_bytes << 8) | std::to_integer<uint64_t>(bytes[i]);
  WANRT_CHECK(header_bytes <= kMaxHeaderBytes, name, ": header length ", header_bytes,
              " is too large (the limit is ", kMaxHeaderBytes, " bytes); not a safetensors file?");
  const uint64_t after_prefix = bytes.size() - kLengthPrefixBytes;
  WANRT_CHECK(header_bytes <= after_prefix, name, ": header length ", header_bytes,
              " runs past the end of the file (", bytes.size(), " bytes; truncated?)");

  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data()) + kLengthPrefixBytes,
                                     header_bytes);
  const json header = parse_json_object(header_text, name, "header");
  const uint64_t data_bytes = after_prefix - header_bytes;
  const std::byte* data_section = bytes.data() + kLengthPrefixBytes + header_bytes;

  SafetensorsContents contents;
  std::vector<TensorEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      contents.metadata = parse_metadata(name, value);
      continue;
    }
    entries.push_back(parse_entry(name, key, value, data_bytes));
  }
  check_tiling(name, entries, data_bytes, header_bytes);
  for (const TensorEntry& entry : entries)
    contents.tensors.add(entry.name, make_tensor(entry, data_section, owner), name);
  return contents;
}

SafetensorsContents read_safetensors(const std::string& path) {
  const std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  return parse_safetensors(file->bytes(), path, file);
}

SafetensorsIndex parse_safetensors_index(std::string_view text, const std::string& name) {
  const json index = parse_json_object(text, name, "index");
  const auto weight_map = index.find("weight_map");
  WANRT_CHECK(weight_map != index.end(), name,
              ": no \"weight_map\" (is this a *.safetensors.index.json?)");
  WANRT_CHECK(weight_map->is_object(), name, ": weight_map is a JSON ", weight_map->type_name(),
              ", not an object {tensor: shard file}");
  WANRT_CHECK(!weight_map->empty(), name, ": weight_map is empty: the index names no tensors");

  SafetensorsIndex result;
  for (const auto& [tensor, shard] : weight_map->items()) {
    WANRT_CHECK(shard.is_string(), name, ": weight_map assigns tensor '", tensor, "' to ",
                shard.dump(), ", not to a shard file name");
    const auto& shard_name = shard.get_ref<const std::string&>();
    const fs::path shard_path(shard_name);
    // Shards live beside the index; a path that leaves its folder is not a checkpoint's.
    const bool escapes = shard_path.is_absolute() ||
                         std::any_of(shard_path.begin(), shard_path.end(),
                                     [](const fs::path& part) { return part == ".."; });
    WANRT_CHECK(!shard_name.empty() && !escapes, name, ": weight_map assigns tensor '", tensor,
                "' to shard '", shard_name, "', which is not a file name beside the index");
    result.weight_map.emplace(tensor, shard_name);
  }

  if (const auto metadata = index.find("metadata"); metadata != index.end() && !metadata->is_null()) {
    WANRT_CHECK(metadata->is_object(), name, ": metadata is a JSON ", metadata->type_name(),
                ", not an object");
    if (const auto total = metadata->find("total_size"); total != metadata->end()) {
      // Some writers store the byte count as a float; accept it when it is a whole number.
      std::optional<uint64_t> bytes = as_unsigned(*total);
      if (!bytes && total->is_number_float()) {
        const double value = total->get<double>();
        if (value >= 0 && value < 0x1p63 && std::floor(value) == value)
          bytes = static_cast<uint64_t>(value);
      }
      WANRT_CHECK(bytes.has_value(), name, ": metadata.total_size ", total->dump(),
                  " is not a byte count");
      result.total_size = bytes;
    }
  }
  return result;
}

TensorStore read_safetensors_index(const std::string& index_path) {
  const std::shared_ptr<const MappedFile> file = MappedFile::open(index_path);
  const std::string_view text(reinterpret_cast<const char*>(file->data()), file->size());
  const SafetensorsIndex index = parse_safetensors_index(text, index_path);

  std::map<std::string, std::vector<std::string>> tensors_of_shard;
  for (const auto& [tensor, shard] : index.weight_map) tensors_of_shard[shard].push_back(tensor);

  const fs::path folder = fs::path(index_path).parent_path();
  TensorStore store;
  for (const auto& [shard, assigned] : tensors_of_shard) {
    const std::string shard_path = (folder / shard).string();
    WANRT_CHECK(fs::is_regular_file(shard_path), index_path, ": shard '", shard,
                "' is missing (no file ", shard_path, "); the index assigns it ", assigned.size(),
                " tensors, e.g. '", assigned.front(), "'");
    SafetensorsContents contents = read_safetensors(shard_path);
    for (const std::string& held : contents.tensors.names()) {
      const auto owner_shard = index.weight_map.find(held);
      WANRT_CHECK(owner_shard != index.weight_map.end(), shard_path, ": holds tensor '", held,
                  "', which the index ", index_path, " does not list");
      WANRT_CHECK(owner_shard->second == shard, shard_path, ": holds tensor '", held,
                  "', which the index ", index_path, " assigns to shard '", owner_shard->second,
                  "'");
    }
    for (const std::string& wanted : assigned)
      WANRT_CHECK(contents.tensors.contains(wanted), index_path, ": assigns tensor '", wanted,
                  "' to shard '", shard, "', but ", shard_path, " lacks it");
    store.merge(std::move(contents.tensors));
  }
  if (index.total_size)
    WANRT_CHECK(*index.total_size == store.total_bytes(), index_path, ": metadata.total_size is ",
                *index.total_size, " but the shards' tensors hold ", store.total_bytes(),
                " bytes");
  return store;
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& metadata_json = header[std::string(kMetadataKey)];
    metadata_json = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) metadata_json[key] = value;
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const std::string where = str_cat(path, ": tensor '", name, "' ");
    WANRT_CHECK(name != kMetadataKey, path, ": '", kMetadataKey,
                "' is reserved and cannot name a tensor");
    WANRT_CHECK(seen.insert(name).second, where, "is given twice");
    WANRT_CHECK(tensor.defined(), where, "is undefined");
    WANRT_CHECK(tensor.device() == Device::Host, where, tensor.describe(),
                " is on the GPU; copy it to the host first");
    WANRT_CHECK(tensor.is_contiguous(), where, tensor.describe(), " is not contiguous");
    const uint64_t end = offset + tensor.nbytes();
    header[name] = {{"dtype", std::string(dtype_name(tensor.dtype()))},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& error) {
    fail(path, ": cannot encode the header (", error.what(), ")");
  }
  // Pad with spaces so the data section starts 8-byte aligned, as current writers do.
  header_text.append((kLengthPrefixBytes - header_text.size() % kLengthPrefixBytes) %
                         kLengthPrefixBytes,
                     ' ');
  WANRT_CHECK(header_text.size() <= kMaxHeaderBytes, path, ": header of ", header_text.size(),
              " bytes exceeds the format's limit of ", kMaxHeaderBytes);

  std::array<unsigned char, kLengthPrefixBytes> length_prefix{};
  for (size_t i = 0; i < kLengthPrefixBytes; ++i)
    length_prefix[i] = static_cast<unsigned char>(header_text.size() >> (8 * i));

  TemporaryFile output(path);
  output.write(length_prefix.data(), length_prefix.size());
  output.write(header_text.data(), header_text.size());
  for (const auto& entry : tensors) output.write(entry.second.raw(), entry.second.nbytes());
  output.commit();
}

}  // namespace wanrt
