// CUDA graphs for the CUDA backend (CudaOps's GraphCapture, cuda_graph.cpp); host code that
// includes this header needs no CUDA headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace wanrt {

// The allocator's side of graph capture (CudaOps::empty and its deleters). During capture
// cudaMallocAsync records an allocation node and cudaFreeAsync a free node, and a free node may
// only free what the graph allocated: freeing an earlier allocation fails (invalid value). So
// while a region records, a tensor created before it whose last reference the region drops is
// not freed but kept, and the graph frees it when it is destroyed (its kernels may read it at
// every replay). Tensors the region creates are counted: one still alive when the region ends
// would escape the graph (its memory is reallocated at every replay), which capture refuses.
struct GraphCaptureState {
  std::mutex mutex;
  bool capturing = false;
  int64_t graph_tensors_alive = 0;
  std::vector<void*> kept;
  size_t kept_bytes = 0;

  // At allocation: whether this allocation belongs to the graph being recorded.
  bool allocate();
  // At free: true when the free is deferred (kept for the graph); false to free it now.
  bool release(void* memory, size_t bytes, bool graph_allocation);
};

}  // namespace wanrt

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
