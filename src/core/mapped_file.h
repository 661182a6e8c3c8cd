// A read-only memory map of a whole file. Checkpoint readers hand out zero-copy views into it;
// each view holds a shared_ptr to the MappedFile, so the mapping lives as long as any tensor.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace wanrt {

class MappedFile {
 public:
  // Throws wanrt::Error naming `path` if it is missing, unreadable or not a regular file.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  size_t size() const { return size_; }
  const std::byte* data() const { return data_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  MappedFile() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace wanrt
