#include "backends/cuda/cuda_memory_stats.h"

#include <algorithm>
#include <cstdint>

#include "backends/cuda/cuda_check.h"

namespace wanrt::cuda {

DeviceMemorySample sample_device_memory(int device) {
  WANRT_CHECK_CUDA(cudaSetDevice(device));
  DeviceMemorySample sample;
  size_t free_bytes = 0;
  WANRT_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &sample.total));
  sample.in_use = sample.total - free_bytes;
  cudaMemPool_t pool = nullptr;
  WANRT_CHECK_CUDA(cudaDeviceGetMemPool(&pool, device));
  uint64_t reserved = 0, reserved_high = 0;  // cuuint64_t values
  WANRT_CHECK_CUDA(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
  WANRT_CHECK_CUDA(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &reserved_high));
  sample.pool_reserved = static_cast<size_t>(reserved);
  sample.pool_reserved_high = static_cast<size_t>(reserved_high);
  return sample;
}

void reset_pool_high_water(int device) {
  WANRT_CHECK_CUDA(cudaSetDevice(device));
  cudaMemPool_t pool = nullptr;
  WANRT_CHECK_CUDA(cudaDeviceGetMemPool(&pool, device));
  // The attribute accepts only 0 (a cuuint64_t, i.e. 64 bits): restart at the current level.
  uint64_t zero = 0;
  WANRT_CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero));
}

DeviceMemoryTracker::DeviceMemoryTracker(int device) : device_(device) {
  reset_pool_high_water(device);
  const DeviceMemorySample first = sample_device_memory(device);
  total_ = first.total;
  baseline_ = first.in_use;
  outside_pool_peak_ = first.in_use - std::min(first.pool_reserved, first.in_use);
  pool_high_ = first.pool_reserved_high;
}

void DeviceMemoryTracker::sample() {
  const DeviceMemorySample now = sample_device_memory(device_);
  outside_pool_peak_ =
      std::max(outside_pool_peak_, now.in_use - std::min(now.pool_reserved, now.in_use));
  pool_high_ = std::max(pool_high_, now.pool_reserved_high);
}

}  // namespace wanrt::cuda
