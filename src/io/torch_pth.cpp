#include "io/torch_pth.h"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/mapped_file.h"
#include "io/zip_archive.h"

namespace wanrt {
namespace {

// Text of a record for an error message, cut short and without control bytes.
std::string printable(std::span<const std::byte> bytes) {
  constexpr size_t kMaxShown = 24;
  std::string text;
  for (size_t i = 0; i < bytes.size() && i < kMaxShown; ++i) {
    const auto c = std::to_integer<unsigned char>(bytes[i]);
    text.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (bytes.size() > kMaxShown) text += "...";
  return text;
}

// Reads one archive into a TensorStore; `prefix` is the top-level folder plus '/'.
class PthReader {
 public:
  PthReader(const ZipArchive& zip, const std::string& name, std::shared_ptr<const void> owner)
      : zip_(zip), name_(name), owner_(std::move(owner)) {}

  TensorStore read() {
    find_prefix();
    check_byteorder();
    const ZipEntry* pickle_entry = zip_.find(prefix_ + "data.pkl");
    WANRT_CHECK(pickle_entry, name_, ": not a torch.save archive (no ", prefix_,
                "data.pkl record)");
    const PickleDocument document =
        parse_pickle(zip_.data(*pickle_entry), str_cat(name_, ": ", prefix_, "data.pkl"));
    const PickleValue& state_dict = find_state_dict(document.root());
    TensorStore store;
    for (const auto& [key, value] : state_dict.entries) {
      WANRT_CHECK(key->kind == PickleValue::Kind::String, name_, ": a state dict key is a ",
                  pickle_kind_name(key->kind), ", not a string");
      const std::string& tensor_name = key->text;
      WANRT_CHECK(value->kind == PickleValue::Kind::Tensor, name_, ": state dict entry '",
                  tensor_name, "' is a ", pickle_kind_name(value->kind),
                  value->kind == PickleValue::Kind::Opaque ? " (" + value->text + ")" : "",
                  ", not a tensor");
      WANRT_CHECK(!store.contains(tensor_name), name_, ": tensor '", tensor_name,
                  "' appears twice in the state dict");
      store.add(tensor_name, build_tensor(tensor_name, *value), name_);
    }
    return store;
  }

 private:
  // torch names the folder after the saved file, or 'archive'; any name is valid.
  void find_prefix() {
    WANRT_CHECK(!zip_.entries().empty(), name_, ": not a torch.save archive (the ZIP is empty)");
    const std::string& first = zip_.entries().front().name;
    const size_t slash = first.find('/');
    WANRT_CHECK(slash != std::string::npos && slash > 0, name_,
                ": not a torch.save archive (the first entry '", first,
                "' is not inside a top-level folder)");
    prefix_ = first.substr(0, slash + 1);
  }

  void check_byteorder() const {
    const ZipEntry* entry = zip_.find(prefix_ + "byteorder");
    if (!entry) return;  // older torch: native order, which was little-endian everywhere
    const auto bytes = zip_.data(*entry);
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    WANRT_CHECK(text != "big", name_,
                ": the tensors are stored big-endian (byteorder 'big'), which is not supported; "
                "re-save the checkpoint on a little-endian machine");
    WANRT_CHECK(text == "little", name_, ": unknown byteorder record '", printable(bytes), "'");
  }

  // The dict of tensors: the top-level dict itself, or a dict nested under its only key
  // (a checkpoint saved as {'state_dict': {...}} or {'model': {...}}).
  const PickleValue& find_state_dict(const PickleValue& root) const {
    using Kind = PickleValue::Kind;
    WANRT_CHECK(root.kind == Kind::Dict, name_, ": data.pkl holds a ", pickle_kind_name(root.kind),
                root.kind == Kind::Opaque ? " (" + root.text + ")" : "",
                ", not a state dict");
    bool has_tensor = false;
    for (const auto& entry : root.entries) has_tensor = has_tensor || entry.second->kind == Kind::Tensor;
    if (has_tensor || root.entries.empty()) return root;
    if (root.entries.size() == 1 && root.entries[0].second->kind == Kind::Dict)
      return *root.entries[0].second;
    std::string keys;
    constexpr size_t kMaxKeysShown = 8;
    for (size_t i = 0; i < root.entries.size() && i < kMaxKeysShown; ++i) {
      const PickleValue* key = root.entries[i].first;
      keys += (i ? ", " : "") + (key->kind == Kind::String ? "'" + key->text + "'"
                                                           : std::string(pickle_kind_name(key->kind)));
    }
    if (root.entries.size() > kMaxKeysShown) keys += ", ...";
    fail(name_, ": data.pkl holds a dict without tensors (keys ", keys,
         "); only a plain state dict, or one nested under a single key, can be read");
  }

  Tensor build_tensor(const std::string& tensor_name, const PickleValue& spec) const {
    const PickleValue& storage = *spec.storage;
    const std::string record_name = prefix_ + "data/" + storage.text;
    const ZipEntry* record = zip_.find(record_name);
    WANRT_CHECK(record, name_, ": tensor '", tensor_name, "' uses storage '", storage.text,
                "', but the archive has no record ", record_name);
    const auto bytes = zip_.data(*record);
    const DType dtype = storage.dtype;
    const uint64_t itemsize = dtype_size(dtype);
    const uint64_t storage_numel = static_cast<uint64_t>(storage.storage_numel);
    WANRT_CHECK(bytes.size() % itemsize == 0 && bytes.size() / itemsize == storage_numel, name_,
                ": record ", record_name, " holds ", bytes.size(), " bytes, but its storage of ",
                storage_numel, " ", dtype_name(dtype), " elements needs ",
                storage_numel <= UINT64_MAX / itemsize ? str_cat(storage_numel * itemsize) : "more",
                " (tensor '", tensor_name, "')");

    const Shape& shape = spec.shape;
    const Shape& strides = spec.strides;
    const auto describe = [&] {
      return str_cat("tensor '", tensor_name, "' (", dtype_name(dtype), shape_str(shape),
                     ", strides ", shape_str(strides), ", storage offset ", spec.storage_offset,
                     ")");
    };
    // Element count and extent (1 + the largest element index the view touches).
    int64_t numel = 1;
    int64_t extent = 1;
    for (size_t axis = 0; axis < shape.size(); ++axis) {
      int64_t reach = 0;
      const bool overflow = __builtin_mul_overflow(numel, shape[axis], &numel) ||
                            (shape[axis] > 0 && (__builtin_mul_overflow(shape[axis] - 1, strides[axis], &reach) ||
                                                 __builtin_add_overflow(extent, reach, &extent)));
      WANRT_CHECK(!overflow, name_, ": ", describe(), " is too large");
    }
    if (numel == 0) {
      WANRT_CHECK(static_cast<uint64_t>(spec.storage_offset) <= storage_numel, name_, ": ",
                  describe(), " starts past the end of storage '", storage.text, "'");
      return Tensor::empty(dtype, shape);
    }
    const uint64_t offset = static_cast<uint64_t>(spec.storage_offset);
    WANRT_CHECK(offset <= storage_numel && static_cast<uint64_t>(extent) <= storage_numel - offset,
                name_, ": ", describe(), " reaches past the end of storage '", storage.text,
                "', which holds ", storage_numel, " elements");

    const std::byte* base = bytes.data() + offset * itemsize;
    const Shape dense = contiguous_strides(shape);
    bool contiguous = true;
    for (size_t axis = 0; axis < shape.size(); ++axis)
      contiguous = contiguous && (shape[axis] == 1 || strides[axis] == dense[axis]);
    // A view also needs natural alignment for typed access; torch's writer gives 64 bytes.
    const bool aligned = reinterpret_cast<uintptr_t>(base) % itemsize == 0;
    if (contiguous && aligned) return Tensor::view(owner_, base, dtype, shape);
    // A copy must not amplify the file: stride-0 broadcasts could otherwise ask for terabytes.
    WANRT_CHECK(static_cast<uint64_t>(numel) <= storage_numel, name_, ": ", describe(),
                " repeats elements of storage '", storage.text, "' (", numel, " elements from ",
                storage_numel, "); overlapping strides are not supported");
    return gather(base, itemsize, dtype, shape, strides);
  }

  // A contiguous copy of a strided (or misaligned) view.
  static Tensor gather(const std::byte* base, uint64_t itemsize, DType dtype, const Shape& shape,
                       const Shape& strides) {
    Tensor out = Tensor::empty(dtype, shape);
    auto* dst = static_cast<std::byte*>(out.raw_mut());
    const size_t rank = shape.size();
    if (rank == 0) {
      std::memcpy(dst, base, itemsize);
      return out;
    }
    std::vector<int64_t> index(rank, 0);
    const int64_t inner = shape[rank - 1];
    const int64_t inner_stride = strides[rank - 1];
    for (int64_t done = 0; done < out.numel(); done += inner) {
      int64_t source = 0;
      for (size_t axis = 0; axis + 1 < rank; ++axis) source += index[axis] * strides[axis];
      for (int64_t i = 0; i < inner; ++i) {
        std::memcpy(dst, base + static_cast<uint64_t>(source + i * inner_stride) * itemsize, itemsize);
        dst += itemsize;
      }
      for (size_t axis = rank - 1; axis-- > 0;) {  // odometer over the outer axes
        if (++index[axis] < shape[axis]) break;
        index[axis] = 0;
      }
    }
    return out;
  }

  const ZipArchive& zip_;
  const std::string& name_;
  std::shared_ptr<const void> owner_;
  std::string prefix_;
};

void write_archive(std::ostream& out, const std::vector<Tensor>& storages,
                   const std::vector<PickledTensor>& tensors, const PthWriteOptions& options,
                   const std::string& label) {
  const std::string& archive = options.archive_name;
  WANRT_CHECK(!archive.empty() && archive.find('/') == std::string::npos, label,
              ": archive name '", archive, "' must be non-empty and contain no '/'");
  std::vector<PickledStorage> pickled_storages;
  for (size_t i = 0; i < storages.size(); ++i) {
    const Tensor& storage = storages[i];
    WANRT_CHECK(storage.device() == Device::Host && storage.is_contiguous() && storage.defined(),
                label, ": storage ", i, " (", storage.describe(), ") must be a contiguous host tensor");
    pickled_storages.push_back({storage.dtype(), std::to_string(i), storage.numel()});
  }
  for (const PickledTensor& tensor : tensors) {
    WANRT_CHECK(tensor.storage < storages.size(), label, ": tensor '", tensor.name,
                "' names storage ", tensor.storage, " of ", storages.size());
    WANRT_CHECK(tensor.shape.size() == tensor.strides.size() && tensor.storage_offset >= 0, label,
                ": tensor '", tensor.name, "' has a bad shape, stride or offset");
    int64_t extent = tensor.storage_offset + 1;
    bool empty = false;
    for (size_t axis = 0; axis < tensor.shape.size(); ++axis) {
      WANRT_CHECK(tensor.shape[axis] >= 0 && tensor.strides[axis] >= 0, label, ": tensor '",
                  tensor.name, "' has a negative size or stride");
      empty = empty || tensor.shape[axis] == 0;
      if (tensor.shape[axis] > 0) extent += (tensor.shape[axis] - 1) * tensor.strides[axis];
    }
    WANRT_CHECK(empty || extent <= storages[tensor.storage].numel(), label, ": tensor '",
                tensor.name, "' reaches past the end of storage ", tensor.storage);
  }

  ZipWriterOptions zip_options;
  zip_options.force_zip64 = options.force_zip64;
  ZipWriter zip(out, zip_options);
  const std::string prefix = archive + "/";
  zip.add(prefix + "data.pkl", pickle_state_dict(pickled_storages, tensors));
  if (options.byteorder) zip.add(prefix + "byteorder", std::string_view(*options.byteorder));
  for (size_t i = 0; i < storages.size(); ++i) {
    const auto* data = static_cast<const std::byte*>(storages[i].raw());
    zip.add(prefix + "data/" + std::to_string(i),
            std::span<const std::byte>(data, storages[i].nbytes()));
  }
  zip.add(prefix + "version", std::string_view("3\n"));
  zip.finish();
}

}  // namespace

TensorStore parse_pth(std::span<const std::byte> bytes, const std::string& name,
                      std::shared_ptr<const void> owner) {
  const ZipArchive zip = ZipArchive::parse(bytes, name);
  return PthReader(zip, name, std::move(owner)).read();
}

TensorStore read_pth(const std::string& path) {
  const auto file = MappedFile::open(path);
  return parse_pth(file->bytes(), path, file);
}

std::vector<std::byte> encode_pth(const std::vector<Tensor>& storages,
                                  const std::vector<PickledTensor>& tensors,
                                  const PthWriteOptions& options) {
  std::ostringstream out(std::ios::binary);
  write_archive(out, storages, tensors, options, "encode_pth");
  const std::string bytes = out.str();
  const auto* begin = reinterpret_cast<const std::byte*>(bytes.data());
  return {begin, begin + bytes.size()};
}

void write_pth(const std::string& path, const std::vector<Tensor>& storages,
               const std::vector<PickledTensor>& tensors, const PthWriteOptions& options) {
  // Written beside the target and renamed over it, so readers never see a partial file.
  const std::string temp = str_cat(path, ".tmp-", ::getpid());
  try {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    WANRT_CHECK(out.is_open(), path, ": cannot create ", temp, " (", std::strerror(errno), ")");
    write_archive(out, storages, tensors, options, path);
    out.close();
    WANRT_CHECK(!out.fail(), path, ": writing ", temp, " failed (disk full?)");
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw;
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    fail(path, ": cannot rename ", temp, " into place (", error.message(), ")");
  }
}

void write_pth(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
               const std::string& archive_name) {
  std::vector<Tensor> storages;
  std::vector<PickledTensor> views;
  for (const auto& [name, tensor] : tensors) {
    views.push_back({name, storages.size(), 0, tensor.shape(), contiguous_strides(tensor.shape())});
    storages.push_back(tensor);
  }
  PthWriteOptions options;
  options.archive_name = archive_name;
  write_pth(path, storages, views, options);
}

}  // namespace wanrt
