// Error checks for CUDA runtime and library calls: each names the expression, the file:line
// and the decoded status, and throws wanrt::Error (a GPU fault is reported, never ignored).
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define WANRT_CHECK_CUDA(expr)                                                              \
  do {                                                                                      \
    const cudaError_t wanrt_status = (expr);                                                \
    if (wanrt_status != cudaSuccess)                                                        \
      ::wanrt::fail("CUDA error ", cudaGetErrorName(wanrt_status), " (",                    \
                    cudaGetErrorString(wanrt_status), ") in ", #expr, " at ", __FILE__, ":", \
                    __LINE__);                                                              \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define WANRT_CHECK_LAUNCH() WANRT_CHECK_CUDA(cudaGetLastError())
