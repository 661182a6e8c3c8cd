// Device memory as the timing summary reports it: how full the GPU got during a run.
// Host code that includes this header needs no CUDA headers.
//
// Two sources, because neither alone sees everything:
//   cudaMemGetInfo        everything in use on the device (our cudaMalloc'd weights, the
//                         stream-ordered pool's reservation, the CUDA context, other processes)
//                         at the moment it is asked;
//   the device's memory pool (where cudaMallocAsync takes activations from): the high-water
//                         mark of its reservation, which catches peaks inside a stage that a
//                         sample at the stage's end would miss.
// The tracker samples at moments the caller chooses (stage boundaries, after each step, with
// the device idle) and estimates the peak as
//   max over samples of (in use − pool reserved now) + pool reserved high-water mark,
// i.e. the memory outside the pool at its largest plus the pool at its largest: never below
// the true peak of what this process held, and equal to it while the pool keeps what it
// reserved (release threshold unlimited, as CudaOps sets it).
#pragma once

#include <cstddef>

namespace wanrt::cuda {

struct DeviceMemorySample {
  size_t total = 0;               // device memory
  size_t in_use = 0;              // total − free (cudaMemGetInfo), every process included
  size_t pool_reserved = 0;       // the device's current memory pool: reserved now
  size_t pool_reserved_high = 0;  // ... and its high-water mark since the last reset
};

// One sample of `device` (makes it current). Errors name the failing CUDA call.
DeviceMemorySample sample_device_memory(int device);
// Restarts the pool's high-water mark at its current reservation.
void reset_pool_high_water(int device);

class DeviceMemoryTracker {
 public:
  // Takes the baseline sample (what was in use before the run: context, other processes)
  // and restarts the pool's high-water mark.
  explicit DeviceMemoryTracker(int device);
  void sample();

  size_t total() const { return total_; }
  size_t baseline() const { return baseline_; }
  // The estimated peak of device memory in use (baseline included), see the header comment.
  size_t peak() const { return outside_pool_peak_ + pool_high_; }
  size_t pool_high() const { return pool_high_; }

 private:
  int device_;
  size_t total_ = 0, baseline_ = 0;
  size_t outside_pool_peak_ = 0, pool_high_ = 0;
};

}  // namespace wanrt::cuda
