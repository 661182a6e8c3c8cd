// CUDA graphs for the CUDA backend (CudaOps's GraphCapture, cuda_graph.cpp); host code that
// includes this header needs no CUDA headers.
#pragma once

#include <cstdint>

namespace wanrt::cuda {

// Whether graphs are on: `requested` (CudaOptions::graphs) unless the environment variable
// WANRT_CUDA_GRAPH is set: "0" turns them off, "1" on; any other value is an error.
bool graphs_enabled(bool requested);

// Device memory CUDA holds for the allocations inside captured graphs (their own pool, apart
// from the stream-ordered pool of eager ops), in bytes: reserved now, and the high-water mark.
struct GraphMemory {
  uint64_t reserved = 0, reserved_high = 0;
};
GraphMemory graph_memory(int device);

}  // namespace wanrt::cuda
