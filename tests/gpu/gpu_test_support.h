// Helpers for GPU tests: skip visibly without a GPU, run an op on both backends.
#pragma once

#include "test_support.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"

// Skips the calling test (with a message in the output) where no CUDA GPU is present.
#define WANRT_REQUIRE_GPU()                                                       \
  do {                                                                            \
    if (::wanrt::cuda::device_count() == 0)                                       \
      GTEST_SKIP() << "SKIPPED: no CUDA GPU on this machine";                     \
  } while (0)
#endif
