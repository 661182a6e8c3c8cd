// WeightParking on CUDA (ops.h): weights kept in page-locked host memory while --offload_model
// leaves them off the GPU, and brought back on a copy stream of their own so that the copies
// run under the compute of the op stream.
//
//   park                    device tensor --D2H on the op stream, waited for--> page-locked host
//   park_checkpoint_weight  checkpoint tensor --converted/quantized on the host--> page-locked
//                           host (no device work: safe on a background thread)
//   unpark                  a new pool tensor; its copy is recorded, not yet started
//   arrival                 closes a group of copies: an event on the op stream after their
//                           allocations, and a ticket
//   await(t)                starts the copies of groups ≤ t + 1 on the copy stream (each group
//                           after its allocation event, then its own "done" event), and makes the
//                           op stream wait for group t's "done" (cudaStreamWaitEvent: no host block)
//
// Why copies start only when awaited: a copy engine serves copies in order, across streams. An
// expert's 28.6 GB queued at the switch would sit ahead of the first forward's own uploads (its
// latent, its text, host-built tables), and that forward would wait for the whole expert
// (measured: +0.50 s on a 2.6 s forward at 480p, the full copy time). Started one group ahead
// of the blocks that read them, the copies go out while the blocks run, and what an upload may
// find ahead of it is at most two groups (~30 ms).
//
// Ordering. An unparked tensor's memory comes from the op stream's pool (CudaOps::empty), where
// it may have belonged, a moment ago in stream order, to a tensor that queued kernels still
// read (the expert just dropped); so a group's copies wait for its allocation event. The other
// way round, dropping an unparked tensor frees its memory on the op stream, which must not
// happen while its copy still writes there: the owner makes the op stream wait for the copy's
// group, or, when the copy never started, cancels it.
//
// Bytes per call: park n (D2H) and n host bytes locked; park_checkpoint_weight reads the
// checkpoint tensor once and writes n locked bytes; unpark n (H2D). Locking host memory
// (cudaHostAlloc) is the slow part of parking: ~1.3 GB/s on the H100 host, so the pipeline
// parks experts from the checkpoint on a background thread while the device denoises.
#include <cstdint>
#include <cstring>
#include <map>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"
#include "core/quantize.h"

namespace wanrt {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// A page-locked host tensor of `dtype` and `shape` (uninitialised), released with cudaFreeHost
// when its last view dies. Portable: pinned for every context, whatever thread allocates it.
Tensor locked_host_tensor(DType dtype, const Shape& shape, const std::string& what) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* memory = nullptr;
  if (bytes > 0) {
    const cudaError_t status = cudaHostAlloc(&memory, bytes, cudaHostAllocPortable);
    if (status != cudaSuccess) {
      cudaGetLastError();
      fail("--offload_model: could not lock ", static_cast<double>(bytes) / kMiB,
           " MiB of host memory (page-locked, for the copy engines) to park ", what, " (",
           cudaGetErrorName(status), "). An offloaded expert needs as much host memory as its weights "
           "take on the GPU: free host memory, or run with --offload_model False on a GPU that holds "
           "both experts");
    }
  }
  std::shared_ptr<void> owner(memory, [](void* p) {
    if (p && cudaFreeHost(p) != cudaSuccess) cudaGetLastError();
  });
  return Tensor::view(std::move(owner), memory, dtype, shape, Device::Host);
}

// `source`'s bytes (host, contiguous) in a new page-locked tensor.
Tensor locked_copy(const Tensor& source, const std::string& what) {
  Tensor locked = locked_host_tensor(source.dtype(), source.shape(), what);
  if (source.nbytes()) std::memcpy(locked.raw_mut(), source.raw(), source.nbytes());
  return locked;
}

}  // namespace

CudaWeightParking::CudaWeightParking(CudaOps& ops) : ops_(ops), device_(ops.device()) {
  cudaStream_t stream = nullptr;
  WANRT_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  copy_stream_owner_ = std::shared_ptr<CUstream_st>(stream, [](cudaStream_t s) { cudaStreamDestroy(s); });
  copy_stream_ = stream;
}

CudaWeightParking::~CudaWeightParking() {
  // Issued copies may still be in flight into tensors that outlive this object; wait for them.
  // Copies never started are dropped (their tensors' owners see them cancelled or never issued).
  cudaStreamSynchronize(copy_stream_);
  for (auto& [ticket, group] : groups_) {
    if (group.allocated) cudaEventDestroy(group.allocated);
    for (const auto& copy : group.copies) copy->cancelled = true;
  }
  for (const auto& copy : open_) copy->cancelled = true;
}

Tensor CudaWeightParking::park(const Tensor& weight) {
  auto park_plain = [&](const Tensor& device) {
    WANRT_CHECK(device.device() == Device::Cuda && device.is_contiguous(),
                "weight parking: park() takes a contiguous device tensor, got ", device.describe(),
                device.device() == Device::Host ? " in host memory" : "");
    Tensor host = locked_host_tensor(device.dtype(), device.shape(), device.describe());
    if (host.nbytes()) {
      WANRT_CHECK_CUDA(cudaMemcpyAsync(host.raw_mut(), device.raw(), host.nbytes(), cudaMemcpyDeviceToHost, ops_.stream()));
      WANRT_CHECK_CUDA(cudaStreamSynchronize(ops_.stream()));
    }
    stats_.parked_bytes += host.nbytes();
    return host;
  };
  Tensor codes = park_plain(weight);
  return weight.is_row_scaled() ? Tensor::with_row_scale(std::move(codes), park_plain(weight.row_scale())) : codes;
}

Tensor CudaWeightParking::park_checkpoint_weight(const Tensor& host, std::optional<DType> codes) {
  WANRT_CHECK(host.device() == Device::Host, "weight parking: park_checkpoint_weight() takes a host "
              "(checkpoint) tensor, got ", host.describe(), " on the device");
  // This thread may not be the one that made the device current (a background parker).
  WANRT_CHECK_CUDA(cudaSetDevice(device_));
  const std::string what = host.describe();
  Tensor parked;
  if (codes) {
    // quantize_weight's codes are quantize_rows' by contract (ops.h), so the host computes them.
    const Tensor quantized = host.is_row_scaled() ? host : quantize_rows(host, *codes, what);
    WANRT_CHECK(quantized.dtype() == *codes, "weight parking: ", what, " holds ", dtype_name(quantized.dtype()),
                " codes, not ", dtype_name(*codes), " (re-quantizing quantized codes would compound the error)");
    parked = Tensor::with_row_scale(locked_copy(quantized, what), locked_copy(quantized.row_scale(), what));
  } else {
    WANRT_CHECK(dtype_is_float(host.dtype()) && !host.is_row_scaled(), "weight parking: ", what,
                " is not a float checkpoint tensor");
    // upload_weight's conversion (round to nearest even) happens here on the host instead: the
    // same bits.
    const DType format = ops_.weight_format(host);
    parked = locked_host_tensor(format, host.shape(), what);
    const Tensor converted = host.dtype() == format && host.is_contiguous() ? host : host.to(format);
    if (parked.nbytes()) std::memcpy(parked.raw_mut(), converted.raw(), parked.nbytes());
  }
  stats_.parked_bytes += parked.nbytes() + (parked.is_row_scaled() ? parked.row_scale().nbytes() : 0);
  return parked;
}

Tensor CudaWeightParking::unpark_bytes(const Tensor& parked) {
  WANRT_CHECK(parked.device() == Device::Host && parked.is_contiguous(),
              "weight parking: unpark() takes a parked (host) tensor, got ", parked.describe(),
              parked.device() == Device::Cuda ? " already on the device" : "");
  Tensor device = ops_.empty(parked.dtype(), parked.shape());
  if (parked.nbytes() == 0) return device;
  auto copy = std::make_shared<Copy>();
  copy->dst = device.raw_mut();
  copy->src = parked;
  copy->bytes = parked.nbytes();
  open_.push_back(copy);
  // The owner keeps `device` (whose deleter frees on the op stream) until the op stream has been
  // told to wait for the copy, or the copy is cancelled.
  void* data = device.raw_mut();
  std::shared_ptr<void> owner(data, [device, copy, stream = ops_.stream()](void*) mutable {
    if (copy->issued) {
      if (cudaStreamWaitEvent(stream, *copy->done, 0) != cudaSuccess) cudaGetLastError();
    } else {
      copy->cancelled = true;
    }
    copy->src = Tensor();
    device = Tensor();  // queues the free (after the wait)
  });
  return Tensor::view(std::move(owner), data, parked.dtype(), parked.shape(), Device::Cuda);
}

Tensor CudaWeightParking::unpark(const Tensor& parked) {
  Tensor codes = unpark_bytes(parked);
  return parked.is_row_scaled() ? Tensor::with_row_scale(std::move(codes), unpark_bytes(parked.row_scale())) : codes;
}

uint64_t CudaWeightParking::arrival() {
  Group group;
  group.copies = std::move(open_);
  open_.clear();
  WANRT_CHECK_CUDA(cudaEventCreateWithFlags(&group.allocated, cudaEventDisableTiming));
  WANRT_CHECK_CUDA(cudaEventRecord(group.allocated, ops_.stream()));
  groups_.emplace(++tickets_, std::move(group));
  return tickets_;
}

void CudaWeightParking::issue_through(uint64_t ticket) {
  for (auto it = groups_.upper_bound(issued_); it != groups_.end() && it->first <= ticket; ++it) {
    Group& group = it->second;
    WANRT_CHECK_CUDA(cudaStreamWaitEvent(copy_stream_, group.allocated, 0));
    for (const auto& copy : group.copies) {
      if (copy->cancelled) continue;
      WANRT_CHECK_CUDA(cudaMemcpyAsync(copy->dst, copy->src.raw(), copy->bytes, cudaMemcpyHostToDevice, copy_stream_));
    }
    // One event per group, shared by its tensors' owners and destroyed with the last of them.
    auto* event = new cudaEvent_t(nullptr);
    WANRT_CHECK_CUDA(cudaEventCreateWithFlags(event, cudaEventDisableTiming));
    group.done = std::shared_ptr<cudaEvent_t>(event, [](cudaEvent_t* e) {
      cudaEventDestroy(*e);
      delete e;
    });
    WANRT_CHECK_CUDA(cudaEventRecord(*group.done, copy_stream_));
    for (const auto& copy : group.copies) {
      copy->issued = true;
      copy->done = group.done;
    }
    issued_ = it->first;
  }
}

void CudaWeightParking::await(uint64_t ticket) {
  WANRT_CHECK(ticket >= 1 && ticket <= tickets_, "weight parking: ticket ", ticket,
              " was never issued (last: ", tickets_, ")");
  if (ticket <= awaited_) return;  // the op stream already waits for a later point
  issue_through(std::min(ticket + 1, tickets_));
  WANRT_CHECK_CUDA(cudaStreamWaitEvent(ops_.stream(), *groups_.at(ticket).done, 0));
  awaited_ = ticket;
  // Groups up to this ticket are done with (their copies hold their own "done" events).
  for (auto it = groups_.begin(); it != groups_.end() && it->first <= ticket;) {
    cudaEventDestroy(it->second.allocated);
    it = groups_.erase(it);
  }
}

WeightParking* CudaOps::weight_parking() {
  if (!parking_) parking_ = std::make_unique<CudaWeightParking>(*this);
  return parking_.get();
}

}  // namespace wanrt
