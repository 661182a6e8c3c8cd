// TensorStore: the name -> tensor table every checkpoint reader produces (safetensors, sharded
// safetensors, PyTorch .pth). Tensors are zero-copy views into memory-mapped files wherever
// the bytes are suitably aligned, so opening a 57 GB expert costs page-table entries only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace wanrt {

class TensorStore {
 public:
  // Adds `tensor` read from `file`; a name already present is an error naming both files.
  void add(const std::string& name, Tensor tensor, const std::string& file);
  // Moves every tensor of `other` into this store (same duplicate rule).
  void merge(TensorStore&& other);

  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // The tensor called `name`; a missing name is an error that says which files were read.
  const Tensor& get(const std::string& name) const;
  // As get(), and checks the shape: an error names the tensor, its file, expected and actual.
  const Tensor& get(const std::string& name, const Shape& expected_shape) const;
  const std::string& file_of(const std::string& name) const;

  std::vector<std::string> names() const;  // sorted
  size_t size() const { return entries_.size(); }
  int64_t total_params() const;
  size_t total_bytes() const;
  // Human-readable list of the files the tensors came from ("a.safetensors, b.safetensors").
  std::string sources() const;

 private:
  struct Entry {
    Tensor tensor;
    std::string file;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace wanrt
