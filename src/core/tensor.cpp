#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

namespace wanrt {
namespace {

// Host buffers are 64-byte aligned so SIMD loads and pinned-copy paths never straddle lines.
std::shared_ptr<void> allocate_host(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* memory = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!memory) fail("out of host memory: could not allocate ", bytes, " bytes");
  return std::shared_ptr<void>(memory, std::free);
}

}  // namespace

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  for (int64_t d : shape) WANRT_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(t.shape_);
  auto buffer = allocate_host(t.nbytes());
  t.data_ = buffer.get();
  t.owner_ = std::move(buffer);
  return t;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::from_floats(std::span<const float> values, Shape shape) {
  WANRT_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), "from_floats: ",
              values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(DType::F32, std::move(shape));
  if (!values.empty()) std::memcpy(t.data_, values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::view(std::shared_ptr<const void> owner, const void* data, DType dtype, Shape shape,
                    Device device) {
  Tensor t;
  t.owner_ = std::move(owner);
  t.data_ = const_cast<void*>(data);  // constness is the owner's business; views are read-mostly
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(t.shape_);
  return t;
}

Tensor Tensor::with_row_scale(Tensor codes, Tensor scale) {
  WANRT_CHECK(codes.dtype_ == DType::I8 || codes.dtype_ == DType::F8_E4M3,
              "row-scaled tensor: the codes must be I8 or F8_E4M3, got ", codes.describe());
  WANRT_CHECK(!codes.row_scale_, "row-scaled tensor: ", codes.describe(), " already has a scale");
  WANRT_CHECK(codes.dim() >= 1 && codes.is_contiguous(),
              "row-scaled tensor: the codes must be contiguous and at least 1-D, got ",
              codes.describe());
  WANRT_CHECK(scale.dtype_ == DType::F32 && scale.dim() == 1 && scale.is_contiguous() &&
                  scale.size(0) == codes.size(0),
              "row-scaled tensor: the scale of ", codes.describe(), " must be a contiguous F32[",
              codes.size(0), "], got ", scale.describe());
  WANRT_CHECK(!scale.row_scale_ && scale.device_ == codes.device_,
              "row-scaled tensor: the scale ", scale.describe(), " must be a plain tensor on the "
              "codes' device");
  codes.row_scale_ = std::make_shared<const Tensor>(std::move(scale));
  return codes;
}

const Tensor& Tensor::row_scale() const {
  WANRT_CHECK(row_scale_, describe(), " has no row scale (it is not a quantized tensor)");
  return *row_scale_;
}

int64_t Tensor::size(int64_t axis) const {
  if (axis < 0) axis += dim();
  WANRT_CHECK(axis >= 0 && axis < dim(), "axis ", axis, " out of range for ", describe());
  return shape_[static_cast<size_t>(axis)];
}

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

void Tensor::check_access(size_t element_size) const {
  WANRT_CHECK(device_ == Device::Host, "host access to a device tensor ", describe());
  WANRT_CHECK(element_size == dtype_size(dtype_), "typed access of size ", element_size, " to ",
              describe());
}

std::span<const float> Tensor::floats() const {
  WANRT_CHECK(dtype_ == DType::F32 && is_contiguous(), "expected a contiguous F32 tensor, got ",
              describe());
  return {data<float>(), static_cast<size_t>(numel())};
}

std::span<float> Tensor::floats() {
  WANRT_CHECK(dtype_ == DType::F32 && is_contiguous(), "expected a contiguous F32 tensor, got ",
              describe());
  return {data<float>(), static_cast<size_t>(numel())};
}

Tensor Tensor::reshape(Shape shape) const {
  WANRT_CHECK(is_contiguous(), "reshape of a non-contiguous tensor ", describe());
  WANRT_CHECK(shape_numel(shape) == numel(), "cannot reshape ", describe(), " to ",
              shape_str(shape));
  WANRT_CHECK(!row_scale_ || (!shape.empty() && shape[0] == shape_[0]), "cannot reshape ",
              describe(), " to ", shape_str(shape), ": its per-row scales need the rows kept");
  Tensor t = *this;
  t.shape_ = std::move(shape);
  t.strides_ = contiguous_strides(t.shape_);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  WANRT_CHECK(dim() >= 1 && is_contiguous(), "slice_rows needs a contiguous tensor, got ",
              describe());
  WANRT_CHECK(0 <= begin && begin <= end && end <= shape_[0], "rows [", begin, ", ", end,
              ") out of range for ", describe());
  Tensor t = *this;
  const size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<size_t>(shape_[0]);
  t.data_ = static_cast<char*>(data_) + static_cast<size_t>(begin) * row_bytes;
  t.shape_[0] = end - begin;
  if (row_scale_) t.row_scale_ = std::make_shared<const Tensor>(row_scale_->slice_rows(begin, end));
  return t;
}

Tensor Tensor::to(DType dtype) const {
  WANRT_CHECK(device_ == Device::Host, "Tensor::to on a device tensor ", describe());
  WANRT_CHECK(is_contiguous(), "Tensor::to on a non-contiguous tensor ", describe());
  Tensor out = empty(dtype, shape_);
  if (!row_scale_) {
    convert_elements(data_, dtype_, out.data_, dtype, static_cast<size_t>(numel()));
    return out;
  }
  if (dtype == dtype_) {  // a copy of the codes, with a copy of their scales
    std::memcpy(out.data_, data_, nbytes());
    out.row_scale_ = std::make_shared<const Tensor>(row_scale_->clone());
    return out;
  }
  WANRT_CHECK(dtype_is_float(dtype), "Tensor::to(", dtype_name(dtype), ") of ", describe(),
              ": a quantized tensor converts only to its codes' dtype or to a float dtype");
  // Dequantize row by row: the code widens exactly, the product is exact in double, and the
  // result rounds once to `dtype`.
  const int64_t rows = shape_[0], cols = rows == 0 ? 0 : numel() / rows;
  const float* scale = row_scale_->data<float>();
  const size_t code_bytes = dtype_size(dtype_), out_bytes = dtype_size(dtype);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> values(static_cast<size_t>(cols));
    convert_elements(static_cast<const char*>(data_) + static_cast<size_t>(r * cols) * code_bytes,
                     dtype_, values.data(), DType::F64, values.size());
    for (double& v : values) v *= static_cast<double>(scale[r]);
    convert_elements(values.data(), DType::F64,
                     static_cast<char*>(out.data_) + static_cast<size_t>(r * cols) * out_bytes,
                     dtype, values.size());
  }
  return out;
}

void Tensor::fill(float value) {
  WANRT_CHECK(device_ == Device::Host && is_contiguous(), "fill needs a contiguous host tensor");
  WANRT_CHECK(!row_scale_, "fill of a quantized tensor ", describe());
  for (int64_t i = 0; i < numel(); ++i)
    convert_elements(&value, DType::F32, static_cast<char*>(data_) + i * static_cast<int64_t>(dtype_size(dtype_)), dtype_, 1);
}

std::string Tensor::describe() const {
  return str_cat(dtype_name(dtype_), shape_str(shape_), row_scale_ ? " row-scaled" : "");
}

}  // namespace wanrt
