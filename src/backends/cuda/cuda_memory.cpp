// HostStaging: the pinned ring behind upload() and upload_weight() (see cuda_memory.h).
#include "backends/cuda/cuda_memory.h"

#include <algorithm>
#include <cstring>

#include "backends/cuda/cuda_check.h"

namespace wanrt {
namespace {

// Host memcpy is the slowest stage of a load (one core copies ~5-10 GB/s, and reading a
// memory-mapped checkpoint faults its pages in on the same thread), so a chunk is copied by
// all cores in 1 MiB pieces.
void parallel_copy(void* dst, const void* src, size_t bytes) {
  constexpr size_t kPiece = size_t{1} << 20;
  const auto pieces = static_cast<int64_t>((bytes + kPiece - 1) / kPiece);
  if (pieces <= 1) {
    if (bytes) std::memcpy(dst, src, bytes);
    return;
  }
#pragma omp parallel for schedule(dynamic)
  for (int64_t p = 0; p < pieces; ++p) {
    const size_t begin = static_cast<size_t>(p) * kPiece;
    std::memcpy(static_cast<std::byte*>(dst) + begin, static_cast<const std::byte*>(src) + begin,
                std::min(kPiece, bytes - begin));
  }
}

}  // namespace

HostStaging::~HostStaging() {
  // Destructors must not throw: errors here (a dead context at exit) are ignored.
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  for (Slot& slot : slots_) {
    if (slot.pinned_free) cudaEventSynchronize(slot.pinned_free);
    if (slot.scratch_free) cudaEventSynchronize(slot.scratch_free);
    if (slot.pinned) cudaFreeHost(slot.pinned);
    if (slot.pinned_free) cudaEventDestroy(slot.pinned_free);
    if (slot.scratch_free) cudaEventDestroy(slot.scratch_free);
  }
  if (handoff_) cudaEventDestroy(handoff_);
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
}

void HostStaging::ensure_allocated() {
  if (!slots_.empty()) return;
  // Pinned memory is allocated on first use only: a backend that never loads (tests of single
  // ops) does not pay the ~20 ms of pinning.
  std::vector<Slot> slots(kSlots);
  for (Slot& slot : slots) {
    WANRT_CHECK_CUDA(cudaHostAlloc(&slot.pinned, kSlotBytes, cudaHostAllocDefault));
    WANRT_CHECK_CUDA(cudaEventCreateWithFlags(&slot.pinned_free, cudaEventDisableTiming));
    WANRT_CHECK_CUDA(cudaEventCreateWithFlags(&slot.scratch_free, cudaEventDisableTiming));
  }
  WANRT_CHECK_CUDA(cudaEventCreateWithFlags(&handoff_, cudaEventDisableTiming));
  WANRT_CHECK_CUDA(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  slots_ = std::move(slots);
}

void HostStaging::fill_slot(size_t s, const void* src, size_t bytes) {
  WANRT_CHECK_CUDA(cudaEventSynchronize(slots_[s].pinned_free));
  parallel_copy(slots_[s].pinned, src, bytes);
}

void HostStaging::copy_to_device(const void* src, void* dst, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  ensure_allocated();
  for (size_t begin = 0; begin < bytes; begin += kSlotBytes) {
    const size_t n = std::min(kSlotBytes, bytes - begin);
    const size_t s = next_slot_;
    next_slot_ = (next_slot_ + 1) % kSlots;
    fill_slot(s, static_cast<const std::byte*>(src) + begin, n);
    WANRT_CHECK_CUDA(cudaMemcpyAsync(static_cast<std::byte*>(dst) + begin, slots_[s].pinned, n,
                                     cudaMemcpyHostToDevice, stream));
    WANRT_CHECK_CUDA(cudaEventRecord(slots_[s].pinned_free, stream));
  }
}

size_t HostStaging::scratch_bytes_for(DType from, DType to, size_t count) {
  if (from == to) return 0;
  return std::min(count * dtype_size(from), kSlots * kSlotBytes);
}

void HostStaging::stream_to_device(const void* src, DType from, void* dst, DType to, size_t count,
                                   void* scratch, cudaStream_t compute) {
  if (count == 0) return;
  ensure_allocated();
  const bool convert = from != to;
  WANRT_ASSERT(!convert || scratch != nullptr);
  const size_t in_size = dtype_size(from), out_size = dtype_size(to);
  const size_t chunk = kSlotBytes / in_size;  // elements per chunk
  const auto* in = static_cast<const std::byte*>(src);
  auto* out = static_cast<std::byte*>(dst);

  // `dst` and `scratch` were allocated on `compute`; the copy stream may write them only after.
  WANRT_CHECK_CUDA(cudaEventRecord(handoff_, compute));
  WANRT_CHECK_CUDA(cudaStreamWaitEvent(copy_stream_, handoff_, 0));
  size_t chunk_index = 0;
  for (size_t begin = 0; begin < count; begin += chunk, ++chunk_index) {
    const size_t n = std::min(chunk, count - begin);
    const size_t s = next_slot_;
    next_slot_ = (next_slot_ + 1) % kSlots;
    Slot& slot = slots_[s];
    fill_slot(s, in + begin * in_size, n * in_size);
    if (!convert) {
      WANRT_CHECK_CUDA(cudaMemcpyAsync(out + begin * out_size, slot.pinned, n * in_size,
                                       cudaMemcpyHostToDevice, copy_stream_));
      WANRT_CHECK_CUDA(cudaEventRecord(slot.pinned_free, copy_stream_));
      continue;
    }
    // Scratch slot j is rewritten only after the kernel that read it (kSlots chunks ago) ran.
    Slot& landing_slot = slots_[chunk_index % kSlots];
    void* landing = static_cast<std::byte*>(scratch) + (chunk_index % kSlots) * kSlotBytes;
    WANRT_CHECK_CUDA(cudaStreamWaitEvent(copy_stream_, landing_slot.scratch_free, 0));
    WANRT_CHECK_CUDA(cudaMemcpyAsync(landing, slot.pinned, n * in_size, cudaMemcpyHostToDevice,
                                     copy_stream_));
    WANRT_CHECK_CUDA(cudaEventRecord(slot.pinned_free, copy_stream_));
    WANRT_CHECK_CUDA(cudaStreamWaitEvent(compute, slot.pinned_free, 0));
    launch_convert(landing, from, out + begin * out_size, to, n, compute);
    WANRT_CHECK_CUDA(cudaEventRecord(landing_slot.scratch_free, compute));
  }
  if (!convert) {
    WANRT_CHECK_CUDA(cudaEventRecord(handoff_, copy_stream_));
    WANRT_CHECK_CUDA(cudaStreamWaitEvent(compute, handoff_, 0));
  }
}

}  // namespace wanrt
