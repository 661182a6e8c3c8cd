// The GPU at hand, device memory, and the dtype conversions that move weights onto it.
// Host code that includes this header needs no CUDA headers.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace wanrt::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0, free_memory = 0;
  bool is_hopper() const { return compute_major == 9; }
};

// Number of CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count();
DeviceInfo device_info(int index = 0);

// An uninitialised contiguous tensor in device memory (cudaMalloc; freed with the last view).
// Out of memory is an error that says how much was asked for and how much is free.
Tensor device_empty(DType dtype, Shape shape);
// Host <-> device copies of contiguous tensors, same dtype.
Tensor to_device(const Tensor& host);
Tensor to_host(const Tensor& device);
// Elementwise dtype conversion on the device (float32 <-> bf16, rounding to nearest even).
// Bytes: n·(in + out); no FLOPs to speak of: HBM-bound.
Tensor convert_on_device(const Tensor& device_tensor, DType to);
void synchronize();

}  // namespace wanrt::cuda
