// Tensor: a typed, shaped view of memory on the host or on a GPU.
//
// A Tensor does not own bytes directly: it shares ownership of whatever keeps them alive
// (a heap buffer, a memory-mapped checkpoint, a device allocation) through `owner_`, so a
// view into a 57 GB mapped checkpoint costs nothing and keeps the mapping alive.
// Shapes are outermost-first (PyTorch order); strides are in elements.
//
// A tensor may be *row-scaled* (a weight-only quantized matrix, core/quantize.h): its elements
// are codes (I8 or F8_E4M3) and it carries one F32 scale per row, on the same device, so that
// element [r, ...] means scale[r] · code[r, ...]. The scale travels with the codes through every
// view (reshape keeps the rows, slice_rows slices the scale too), and to() of a float dtype
// returns the values the codes mean, so a row-scaled tensor is never mistaken for its raw codes.
// Ops that take one say so (Ops::linear's weight); every other op sees a non-F32 dtype and
// refuses it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace wanrt {

enum class Device : uint8_t { Host, Cuda };

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "[16, 3, 6, 8]"
int64_t shape_numel(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // A new contiguous host tensor; bytes are uninitialised.
  static Tensor empty(DType dtype, Shape shape);
  static Tensor zeros(DType dtype, Shape shape);
  // A host F32 tensor holding `values` (copied).
  static Tensor from_floats(std::span<const float> values, Shape shape);
  // A zero-copy view of `data`, kept alive by `owner`.
  static Tensor view(std::shared_ptr<const void> owner, const void* data, DType dtype, Shape shape,
                     Device device = Device::Host);
  // `codes` (I8 or F8_E4M3, contiguous, at least 1-D) with `scale` (F32 [codes.size(0)],
  // contiguous, same device) attached as its per-row scale.
  static Tensor with_row_scale(Tensor codes, Tensor scale);

  bool defined() const { return data_ != nullptr || numel() == 0; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  // Row-scaled (quantized) tensors: the F32 [rows] scale; row_scale() throws when there is none.
  bool is_row_scaled() const { return row_scale_ != nullptr; }
  const Tensor& row_scale() const;

  const void* raw() const { return data_; }
  void* raw_mut() { return data_; }
  // Typed host access; checks the dtype against T.
  template <typename T>
  const T* data() const {
    check_access(sizeof(T));
    return static_cast<const T*>(data_);
  }
  template <typename T>
  T* data() {
    check_access(sizeof(T));
    return static_cast<T*>(data_);
  }
  // Float32 host data as a span (contiguous F32 only).
  std::span<const float> floats() const;
  std::span<float> floats();

  // Same bytes, new shape (contiguous only; numel must match; a row-scaled tensor must keep
  // its rows).
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the outermost axis, sharing memory (and the rows' scales).
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // A contiguous host copy converted to `dtype` (rounding to nearest even when narrowing).
  // Row-scaled: to(the codes' dtype) copies codes and scales; to(a float dtype) gives the
  // dequantized values scale[r] · code (one rounding, from the exact double product).
  Tensor to(DType dtype) const;
  Tensor clone() const { return to(dtype_); }
  // Fills a host tensor with one float value (converted to the tensor's dtype).
  void fill(float value);

  std::string describe() const;  // "BF16[5120, 36, 1, 2, 2]", "I8[5120, 5120] row-scaled"

 private:
  void check_access(size_t element_size) const;

  std::shared_ptr<const void> owner_;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::Host;
  Shape shape_;
  Shape strides_;
  std::shared_ptr<const Tensor> row_scale_;  // set only for row-scaled (quantized) tensors
};

Shape contiguous_strides(const Shape& shape);

}  // namespace wanrt
