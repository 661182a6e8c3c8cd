// CudaOps: construction, the stream and its memory pool, host<->device movement, embedding,
// collectives, and the argument check every CUDA op file shares.
//
// Memory. Every tensor comes from the device's stream-ordered pool (cudaMallocAsync on the
// backend's one stream) and goes back with cudaFreeAsync on that stream when its last view
// dies. With the pool's release threshold unlimited, freed blocks stay cached in the pool, so
// after the first DiT step an op's allocation is a pool lookup (~µs) rather than a cudaMalloc
// (~ms, and synchronising), and a whole forward can be captured as a CUDA graph. Freeing in
// stream order is what makes it safe to drop a tensor while queued kernels still read it.
//
// Loading. upload_weight() streams a (usually memory-mapped) checkpoint tensor through
// HostStaging's pinned ring and converts F32/F16 weights to BF16 on the GPU, chunk by chunk,
// so neither a host-side converted copy nor a full-size F32 device copy ever exists. Bytes per
// call: host n·in (read once), PCIe n·in, HBM n·(in + out) for converted tensors.
#include <chrono>
#include <cstdint>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_graph.h"
#include "backends/cuda/cuda_linear.h"
#include "backends/cuda/cuda_memory.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

bool is_device_float(DType dtype) { return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16; }

constexpr double kMiB = 1024.0 * 1024.0;

}  // namespace

const Tensor& expect_device_float(const Tensor& t, const char* what) {
  WANRT_CHECK(t.device() == Device::Cuda, "cuda backend: ", what, " ", t.describe(),
              " is in host memory; upload it first (ops.upload / ops.upload_weight)");
  WANRT_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, "cuda backend: ", what,
              " must be F32 or BF16, got ", t.describe());
  WANRT_CHECK(t.is_contiguous(), "cuda backend: ", what, " must be contiguous, got ", t.describe());
  WANRT_CHECK(t.defined(), "cuda backend: ", what, " is an undefined tensor");
  return t;
}

CudaOps::CudaOps(const CudaOptions& options, std::shared_ptr<Communicator> comm)
    : options_(options), device_(options.device),
      comm_(comm ? std::move(comm) : make_single_rank_communicator()) {
  const int count = cuda::device_count();
  WANRT_CHECK(count > 0, "CUDA backend: no CUDA GPU is visible to this process (asked for device ",
              device_, "); check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or run on the CPU backend");
  WANRT_CHECK(device_ >= 0 && device_ < count, "CUDA backend: GPU device ", device_,
              " does not exist; this machine has ", count, " visible GPU(s), numbered 0 to ", count - 1);
  WANRT_CHECK_CUDA(cudaSetDevice(device_));
  int pools_supported = 0;
  WANRT_CHECK_CUDA(cudaDeviceGetAttribute(&pools_supported, cudaDevAttrMemoryPoolsSupported, device_));
  WANRT_CHECK(pools_supported, "CUDA backend: GPU device ", device_, " (", cuda::device_info(device_).name,
              ") does not support stream-ordered memory pools (cudaMallocAsync); wanrt needs a driver "
              "and GPU that do (CUDA 11.2+, Pascal or newer)");

  cudaStream_t stream = nullptr;
  WANRT_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_owner_ = std::shared_ptr<CUstream_st>(stream, [](cudaStream_t s) { cudaStreamDestroy(s); });
  stream_ = stream;

  // Keep freed blocks cached in the pool for reuse instead of returning them to the driver at
  // every synchronisation (the default threshold is 0).
  cudaMemPool_t pool = nullptr;
  WANRT_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, device_));
  uint64_t threshold = UINT64_MAX;
  WANRT_CHECK_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));

  cublaslt_ = std::make_unique<CublasLtContext>();
  staging_ = std::make_unique<HostStaging>();
  graphs_ = cuda::graphs_enabled(options_.graphs);
  capture_state_ = std::make_shared<GraphCaptureState>();
}

CudaOps::~CudaOps() {
  // Queued work may still read tensors and staging buffers; errors cannot be thrown from here.
  if (stream_) cudaStreamSynchronize(stream_);
  staging_.reset();
  cublaslt_.reset();
}

std::unique_ptr<Ops> make_cuda_ops(const CudaOptions& options, std::shared_ptr<Communicator> comm) {
  return std::make_unique<CudaOps>(options, std::move(comm));
}

Tensor CudaOps::empty(DType dtype, Shape shape) {
  for (int64_t d : shape) WANRT_CHECK(d >= 0, "cuda backend: negative dimension in shape ", shape_str(shape));
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* memory = nullptr;
  if (bytes > 0) {
    cudaError_t status = cudaMallocAsync(&memory, bytes, stream_);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      // The pool may be holding freed blocks that do not fit this request: hand them back to
      // the driver (after pending frees complete) and try once more.
      cudaMemPool_t pool = nullptr;
      if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess &&
          cudaStreamSynchronize(stream_) == cudaSuccess && cudaMemPoolTrimTo(pool, 0) == cudaSuccess)
        status = cudaMallocAsync(&memory, bytes, stream_);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      uint64_t pool_used = 0;
      cudaMemPool_t pool = nullptr;
      if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess)
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &pool_used);
      cudaGetLastError();
      fail("GPU out of memory on cuda:", device_, ": asked for ", static_cast<double>(bytes) / kMiB, " MiB (",
           bytes, " bytes) for ", dtype_name(dtype), shape_str(shape), "; ",
           static_cast<double>(free_bytes) / kMiB, " MiB free of ", static_cast<double>(total_bytes) / kMiB,
           " MiB, wanrt's tensors hold ", static_cast<double>(pool_used) / kMiB, " MiB (",
           cudaGetErrorName(status), "). Try --quantize int8, --offload_model True, or a smaller --size");
    }
  }
  // The deleter holds the stream, so a tensor may outlive this CudaOps. Errors are ignored (at
  // process exit the context may already be gone) and cleared, so that a later op's launch
  // check does not report them as its own. Under graph capture see GraphCaptureState.
  const bool graph_allocation = memory && capture_state_->allocate();
  std::shared_ptr<void> owner(memory, [stream = stream_owner_, state = capture_state_, bytes,
                                       graph_allocation](void* p) {
    if (!p || state->release(p, bytes, graph_allocation)) return;
    if (cudaFreeAsync(p, stream.get()) != cudaSuccess) cudaGetLastError();
  });
  return Tensor::view(std::move(owner), memory, dtype, std::move(shape), Device::Cuda);
}

Tensor CudaOps::as_dtype(const Tensor& t, DType dtype) {
  WANRT_CHECK(t.device() == Device::Cuda && t.is_contiguous() && is_device_float(t.dtype()),
              "cuda backend: as_dtype needs a contiguous device F32/F16/BF16 tensor, got ", t.describe());
  WANRT_CHECK(is_device_float(dtype), "cuda backend: as_dtype to ", dtype_name(dtype),
              " is not supported (F32, F16, BF16)");
  if (t.dtype() == dtype) return t;
  Tensor out = empty(dtype, t.shape());
  launch_convert(t.raw(), t.dtype(), out.raw_mut(), dtype, static_cast<size_t>(t.numel()), stream_);
  return out;
}

Tensor CudaOps::upload(const Tensor& host) {
  WANRT_CHECK(host.device() == Device::Host, "cuda backend: upload of ", host.describe(),
              ", which is already on the GPU");
  WANRT_CHECK(dtype_is_float(host.dtype()), "cuda backend: upload needs a float tensor, got ", host.describe());
  // Activations are small (latents, conditioning, tables): widen on the host, copy exactly.
  const Tensor f32 = host.dtype() == DType::F32 && host.is_contiguous() ? host : host.to(DType::F32);
  Tensor out = empty(DType::F32, f32.shape());
  staging_->copy_to_device(f32.raw(), out.raw_mut(), f32.nbytes(), stream_);
  return out;
}

Tensor CudaOps::upload_weight(const Tensor& host) {
  const auto start = std::chrono::steady_clock::now();
  WANRT_CHECK(host.device() == Device::Host, "cuda backend: upload_weight of ", host.describe(),
              ", which is already on the GPU");
  WANRT_CHECK(dtype_is_float(host.dtype()), "cuda backend: upload_weight needs a float tensor, got ",
              host.describe());
  // Matrices feed BF16 GEMMs; convolution kernels (3-D and more) compute in conv_dtype; vectors
  // (biases, norm gains, modulation) stay exact in F32.
  const DType target = weight_format(host);
  // F64 and FP8 checkpoints are rare: widen them on the host, then stream as F32.
  const Tensor source = is_device_float(host.dtype()) && host.is_contiguous() ? host : host.to(DType::F32);
  Tensor out = empty(target, host.shape());
  const auto count = static_cast<size_t>(source.numel());
  const size_t scratch_bytes = HostStaging::scratch_bytes_for(source.dtype(), target, count);
  // Scratch goes back to the pool (stream-ordered, after the last conversion) when this returns.
  Tensor scratch = empty(DType::U8, {static_cast<int64_t>(scratch_bytes)});
  staging_->stream_to_device(source.raw(), source.dtype(), out.raw_mut(), target, count,
                             scratch_bytes ? scratch.raw_mut() : nullptr, stream_);
  load_stats_.tensors += 1;
  load_stats_.host_bytes += host.nbytes();
  load_stats_.device_bytes += out.nbytes();
  load_stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

Tensor CudaOps::download(const Tensor& tensor) {
  WANRT_CHECK(tensor.device() == Device::Cuda, "cuda backend: download of ", tensor.describe(),
              ", which is already in host memory");
  const Tensor f32 = as_dtype(tensor, DType::F32);
  Tensor out = Tensor::empty(DType::F32, tensor.shape());
  if (out.nbytes())
    WANRT_CHECK_CUDA(cudaMemcpyAsync(out.raw_mut(), f32.raw(), out.nbytes(), cudaMemcpyDeviceToHost, stream_));
  // The one synchronising op: the host reads the result next, and any earlier asynchronous
  // kernel fault surfaces here rather than later.
  WANRT_CHECK_CUDA(cudaStreamSynchronize(stream_));
  return out;
}

Tensor CudaOps::zeros(Shape shape) {
  Tensor out = empty(DType::F32, std::move(shape));
  if (out.nbytes()) WANRT_CHECK_CUDA(cudaMemsetAsync(out.raw_mut(), 0, out.nbytes(), stream_));
  return out;
}

Tensor CudaOps::embedding(const Tensor& table, const Tensor& ids) {
  expect_device_float(table, "embedding table");
  WANRT_CHECK(table.dim() == 2, "cuda backend: embedding table must be 2-D, got ", table.describe());
  WANRT_CHECK(ids.device() == Device::Host && ids.dtype() == DType::I64 && ids.dim() == 1 && ids.is_contiguous(),
              "cuda backend: embedding ids must be a host I64 vector, got ", ids.describe());
  const int64_t vocab = table.size(0), dim = table.size(1), n = ids.size(0);
  const int64_t* id = ids.data<int64_t>();
  // Checked on the host, where the ids are: a bad id is an error, never an out-of-bounds read.
  for (int64_t i = 0; i < n; ++i)
    WANRT_CHECK(id[i] >= 0 && id[i] < vocab, "token id ", id[i], " at position ", i,
                " is outside the vocabulary of ", vocab);
  // The output keeps the table's dtype (a BF16 table gives BF16 rows, as the bf16 reference).
  Tensor out = empty(table.dtype(), {n, dim});
  if (n == 0) return out;
  Tensor device_ids = empty(DType::I64, {n});
  staging_->copy_to_device(id, device_ids.raw_mut(), ids.nbytes(), stream_);
  launch_gather_rows(table.raw(), static_cast<const int64_t*>(device_ids.raw()), out.raw_mut(), n, dim,
                     dtype_size(table.dtype()), stream_);
  return out;
}

// ---- collectives: identities on one GPU ----

namespace {
[[noreturn]] void multi_gpu_not_built(const char* op, int world) {
  fail("cuda backend: ", op, " over ", world,
       " GPUs needs multi-GPU (NCCL) communication, which is not built yet; run on one GPU");
}
}  // namespace

Tensor CudaOps::sequence_to_heads(const Tensor& x) {
  expect_device_float(x, "sequence_to_heads input");
  if (world_size() == 1) return x;
  multi_gpu_not_built("sequence_to_heads", world_size());
}

Tensor CudaOps::heads_to_sequence(const Tensor& x) {
  expect_device_float(x, "heads_to_sequence input");
  if (world_size() == 1) return x;
  multi_gpu_not_built("heads_to_sequence", world_size());
}

Tensor CudaOps::all_gather_rows(const Tensor& x) {
  expect_device_float(x, "all_gather_rows input");
  if (world_size() == 1) return x;
  multi_gpu_not_built("all_gather_rows", world_size());
}

int CudaOps::rank() const { return comm_->rank(); }
int CudaOps::world_size() const { return comm_->world_size(); }

}  // namespace wanrt
