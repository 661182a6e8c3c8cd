// Host->device transfer machinery and the element kernels that memory ops share (internal to
// the CUDA backend; model code never sees it).
//
// HostStaging is a small ring of pinned host buffers. A checkpoint tensor is usually a view
// into a memory-mapped file (pageable, possibly not yet read from disk), and the DMA engines
// can only read pinned memory: a plain cudaMemcpy from pageable memory copies through a driver
// buffer one piece at a time and blocks. Here host threads fill slot s+1 (that memcpy is also
// what pages the file in) while a copy engine moves slot s, and for weights that change dtype
// the conversion kernel of slot s-1 runs on the compute stream at the same time:
//
//   host:        memcpy→pinned[0]  memcpy→pinned[1]  memcpy→pinned[2]  (wait slot 0) ...
//   copy stream:                  H2D pinned[0]→scratch[0]  H2D [1]→[1] ...
//   compute:                                     convert scratch[0]→weight  convert [1] ...
//
// so the load runs at the slowest of host memcpy, PCIe and HBM instead of their sum.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace wanrt {

class HostStaging {
 public:
  static constexpr size_t kSlots = 3;
  static constexpr size_t kSlotBytes = size_t{64} << 20;

  HostStaging() = default;
  ~HostStaging();
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // Copies `bytes` of pageable host memory to device memory `dst`, ordered on `stream` (the
  // bytes of `src` are consumed when this returns; the copy itself may still be in flight).
  void copy_to_device(const void* src, void* dst, size_t bytes, cudaStream_t stream);

  // Moves `count` host elements of dtype `from` (F32, F16 or BF16) into device memory `dst` as
  // dtype `to` (F32, F16 or BF16). Same dtype: straight H2D copies into `dst`. Otherwise each
  // chunk lands in `scratch` (scratch_bytes_for() bytes of device memory allocated on `compute`)
  // and a kernel on `compute` converts it into place. `dst` and `scratch` must have been
  // allocated on `compute`; `dst` is ready for work queued on `compute` after this returns.
  void stream_to_device(const void* src, DType from, void* dst, DType to, size_t count,
                        void* scratch, cudaStream_t compute);
  static size_t scratch_bytes_for(DType from, DType to, size_t count);

 private:
  struct Slot {
    void* pinned = nullptr;
    cudaEvent_t pinned_free = nullptr;   // recorded after the H2D copy that reads `pinned`
    cudaEvent_t scratch_free = nullptr;  // recorded after the kernel that reads scratch slot
  };
  void ensure_allocated();
  // Waits until slot `s`'s pinned buffer may be overwritten, then fills it from `src`.
  void fill_slot(size_t s, const void* src, size_t bytes);

  std::vector<Slot> slots_;
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t handoff_ = nullptr;  // one-off orderings between the compute and copy streams
  size_t next_slot_ = 0;
};

// Elementwise dtype conversion (F32/F16/BF16 in any pair, round to nearest even), `n` elements.
// Bytes: n·(in + out); HBM-bound. `in` may be any device-accessible memory.
void launch_convert(const void* in, DType from, void* out, DType to, size_t n, cudaStream_t stream);

// out[i, :] = table[ids[i], :] for a [vocab, dim] table of `element_bytes`-sized elements;
// ids are device int64 values already checked to lie in [0, vocab).
void launch_gather_rows(const void* table, const int64_t* ids, void* out, int64_t rows,
                        int64_t dim, size_t element_bytes, cudaStream_t stream);

}  // namespace wanrt
