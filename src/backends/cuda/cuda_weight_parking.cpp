// WeightParking on CUDA (ops.h): weights kept in page-locked host memory while --offload_model
// leaves them off the GPU, and brought back on a copy stream of their own so that the copies
// run under the compute of the op stream.
//
//   park:    device tensor --D2H on the op stream, waited for--> cudaHostAlloc'd host tensor
//   unpark:  host tensor --H2D on the copy stream--> a new pool tensor; an event per tensor
//   arrival: an event on the copy stream after every copy queued so far (a ticket)
//   await:   the op stream waits for that event (cudaStreamWaitEvent: no host block)
//
// Ordering. An unparked tensor's memory comes from the op stream's pool (CudaOps::empty), where
// it may have belonged, a moment ago in stream order, to a tensor that queued kernels still
// read (the expert just dropped). So before its copy the copy stream waits for the op stream's
// current point (an event recorded right after the allocation). The other way round, dropping an
// unparked tensor frees its memory on the op stream, which must not happen while its copy still
// writes there: the tensor's owner makes the op stream wait for the tensor's own copy event
// before the free is queued (a no-op on the device once that copy is done, as it is after an
// await).
//
// Bytes per call: park n (D2H, PCIe) and n host bytes locked; unpark n (H2D, PCIe), nothing
// else. Locking host memory (cudaHostAlloc) is the slow part of park, ~GB/s of the driver's
// page pinning; an expert is parked once, at load.
#include <cstdint>
#include <map>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// Page-locked host memory of `bytes`, released with cudaFreeHost when the last view dies.
std::shared_ptr<void> lock_host_memory(size_t bytes, const Tensor& weight) {
  void* memory = nullptr;
  const cudaError_t status = cudaHostAlloc(&memory, bytes, cudaHostAllocDefault);
  if (status != cudaSuccess) {
    cudaGetLastError();
    fail("--offload_model: could not lock ", static_cast<double>(bytes) / kMiB,
         " MiB of host memory (page-locked, for the copy engines) to park ", weight.describe(), " (",
         cudaGetErrorName(status), "). An offloaded expert needs as much host memory as its weights "
         "take on the GPU: free host memory, or run with --offload_model False on a GPU that holds "
         "both experts");
  }
  return std::shared_ptr<void>(memory, [](void* p) {
    if (cudaFreeHost(p) != cudaSuccess) cudaGetLastError();
  });
}

}  // namespace

CudaWeightParking::CudaWeightParking(CudaOps& ops) : ops_(ops) {
  cudaStream_t stream = nullptr;
  WANRT_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  copy_stream_owner_ = std::shared_ptr<CUstream_st>(stream, [](cudaStream_t s) { cudaStreamDestroy(s); });
  copy_stream_ = stream;
  WANRT_CHECK_CUDA(cudaEventCreateWithFlags(&handoff_, cudaEventDisableTiming));
}

CudaWeightParking::~CudaWeightParking() {
  // Copies may still be in flight into tensors that outlive this object; they hold their own
  // events, and the stream is destroyed by its last owner.
  cudaStreamSynchronize(copy_stream_);
  for (auto& [ticket, event] : pending_) cudaEventDestroy(event);
  cudaEventDestroy(handoff_);
}

Tensor CudaWeightParking::park_bytes(const Tensor& weight) {
  WANRT_CHECK(weight.device() == Device::Cuda && weight.is_contiguous(),
              "weight parking: park() takes a contiguous device tensor, got ", weight.describe(),
              weight.device() == Device::Host ? " in host memory" : "");
  const size_t bytes = weight.nbytes();
  std::shared_ptr<void> host = bytes ? lock_host_memory(bytes, weight) : nullptr;
  if (bytes) {
    WANRT_CHECK_CUDA(cudaMemcpyAsync(host.get(), weight.raw(), bytes, cudaMemcpyDeviceToHost, ops_.stream()));
    WANRT_CHECK_CUDA(cudaStreamSynchronize(ops_.stream()));
  }
  stats_.parked_bytes += bytes;
  void* data = host.get();
  return Tensor::view(std::move(host), data, weight.dtype(), weight.shape(), Device::Host);
}

Tensor CudaWeightParking::park(const Tensor& weight) {
  Tensor codes = park_bytes(weight);
  return weight.is_row_scaled() ? Tensor::with_row_scale(std::move(codes), park_bytes(weight.row_scale()))
                                : codes;
}

Tensor CudaWeightParking::unpark_bytes(const Tensor& parked) {
  WANRT_CHECK(parked.device() == Device::Host && parked.is_contiguous(),
              "weight parking: unpark() takes a parked (host) tensor, got ", parked.describe(),
              parked.device() == Device::Cuda ? " already on the device" : "");
  Tensor device = ops_.empty(parked.dtype(), parked.shape());
  const size_t bytes = parked.nbytes();
  if (bytes == 0) return device;
  WANRT_CHECK_CUDA(cudaEventRecord(handoff_, ops_.stream()));
  WANRT_CHECK_CUDA(cudaStreamWaitEvent(copy_stream_, handoff_, 0));
  WANRT_CHECK_CUDA(cudaMemcpyAsync(device.raw_mut(), parked.raw(), bytes, cudaMemcpyHostToDevice, copy_stream_));
  cudaEvent_t copied = nullptr;
  WANRT_CHECK_CUDA(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
  WANRT_CHECK_CUDA(cudaEventRecord(copied, copy_stream_));
  stats_.unparked_bytes += bytes;
  // The owner keeps `device` (whose deleter frees on the op stream) and the host tensor (the
  // copy reads it) until the op stream has been told to wait for the copy.
  void* data = device.raw_mut();
  std::shared_ptr<void> owner(data, [device, host = parked, copied, stream = ops_.stream()](void*) mutable {
    if (cudaStreamWaitEvent(stream, copied, 0) != cudaSuccess) cudaGetLastError();
    cudaEventDestroy(copied);
    device = Tensor();  // queues the free after the wait
    host = Tensor();
  });
  return Tensor::view(std::move(owner), data, parked.dtype(), parked.shape(), Device::Cuda);
}

Tensor CudaWeightParking::unpark(const Tensor& parked) {
  Tensor codes = unpark_bytes(parked);
  return parked.is_row_scaled() ? Tensor::with_row_scale(std::move(codes), unpark_bytes(parked.row_scale()))
                                : codes;
}

uint64_t CudaWeightParking::arrival() {
  cudaEvent_t event = nullptr;
  WANRT_CHECK_CUDA(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  WANRT_CHECK_CUDA(cudaEventRecord(event, copy_stream_));
  pending_[++issued_] = event;
  return issued_;
}

void CudaWeightParking::await(uint64_t ticket) {
  WANRT_CHECK(ticket <= issued_, "weight parking: ticket ", ticket, " was never issued (last: ", issued_, ")");
  if (ticket <= awaited_) return;  // the op stream already waits for a later point
  const auto it = pending_.find(ticket);
  WANRT_CHECK(it != pending_.end(), "weight parking: ticket ", ticket, " is unknown");
  WANRT_CHECK_CUDA(cudaStreamWaitEvent(ops_.stream(), it->second, 0));
  awaited_ = ticket;
  // Events of this ticket and every earlier one are no longer needed (an event may be
  // destroyed while its work is pending; the wait above already holds it).
  for (auto done = pending_.begin(); done != pending_.end() && done->first <= ticket;) {
    cudaEventDestroy(done->second);
    done = pending_.erase(done);
  }
}

WeightParking* CudaOps::weight_parking() {
  if (!parking_) parking_ = std::make_unique<CudaWeightParking>(*this);
  return parking_.get();
}

}  // namespace wanrt
