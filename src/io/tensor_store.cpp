#include "io/tensor_store.h"

#include <set>

namespace wanrt {

void TensorStore::add(const std::string& name, Tensor tensor, const std::string& file) {
  if (const auto found = entries_.find(name); found != entries_.end()) {
    if (found->second.file == file)
      fail(file, ": tensor '", name, "' appears twice");
    fail("tensor '", name, "' appears in both ", found->second.file, " and ", file);
  }
  entries_.emplace(name, Entry{std::move(tensor), file});
}

void TensorStore::merge(TensorStore&& other) {
  // Check every name before moving any, so a failed merge leaves both stores as they were.
  for (const auto& [name, entry] : other.entries_) {
    if (const auto found = entries_.find(name); found != entries_.end())
      fail("tensor '", name, "' appears in both ", found->second.file, " and ", entry.file);
  }
  entries_.merge(other.entries_);
  other.entries_.clear();
}

const Tensor& TensorStore::get(const std::string& name) const {
  const auto found = entries_.find(name);
  if (found == entries_.end()) {
    if (entries_.empty()) fail("no tensor '", name, "': no checkpoint tensors were loaded");
    fail("no tensor '", name, "' among the ", entries_.size(), " tensors read from ", sources());
  }
  return found->second.tensor;
}

const Tensor& TensorStore::get(const std::string& name, const Shape& expected_shape) const {
  const Tensor& tensor = get(name);
  WANRT_CHECK(tensor.shape() == expected_shape, file_of(name), ": tensor '", name,
              "' has shape ", shape_str(tensor.shape()), " (", tensor.describe(),
              ") but the model expects ", shape_str(expected_shape));
  return tensor;
}

const std::string& TensorStore::file_of(const std::string& name) const {
  get(name);  // the same error for a missing name
  return entries_.at(name).file;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> result;
  result.reserve(entries_.size());
  for (const auto& entry : entries_) result.push_back(entry.first);
  return result;
}

int64_t TensorStore::total_params() const {
  int64_t total = 0;
  for (const auto& entry : entries_) total += entry.second.tensor.numel();
  return total;
}

size_t TensorStore::total_bytes() const {
  size_t total = 0;
  for (const auto& entry : entries_) total += entry.second.tensor.nbytes();
  return total;
}

std::string TensorStore::sources() const {
  std::set<std::string> files;
  for (const auto& entry : entries_) files.insert(entry.second.file);
  std::string joined;
  for (const auto& file : files) {
    if (!joined.empty()) joined += ", ";
    joined += file;
  }
  return joined;
}

}  // namespace wanrt
