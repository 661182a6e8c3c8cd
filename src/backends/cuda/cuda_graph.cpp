// GraphCapture for CudaOps: stream capture of a region of ops into a CUDA graph, replayed with
// one cudaGraphLaunch.
//
// Why graphs: a DiT forward queues ~1,350 kernels and copies; eagerly, each costs the host a
// few microseconds to launch and the GPU a small gap between kernels. A replay queues them all
// at once with the gaps of a graph. The forward's kernels are long (milliseconds at 480p and
// 720p) and the host already runs ahead of the GPU, so there is little to win. Measured on an
// H100 (bench_dit --graph both, 40 blocks, bf16, 2 warm-ups + 3 timed runs): 480p forward
// 2.650 s eager vs 2.666 s replayed, 720p 10.498 s vs 10.494 s, i.e. no gain beyond noise (the
// replay adds an x0 copy in and a float32 copy out, < 1 ms); capturing takes 25 ms (480p) and
// 37 ms (720p), once per expert and size. What graphs buy here is a forward with no host work
// between the kernels, not speed.
//
// Memory: every op allocates its result with cudaMallocAsync on stream(); under capture those
// become the graph's memory nodes (alloc and free). CUDA gives a graph's allocations fixed
// virtual addresses and backs them from its graph memory pool, reused by every replay, so a
// replay allocates nothing and the region needs no separate activation plan. The price is a
// second pool: memory the eager pool caches is not available to graphs. capture() therefore
// returns the eager pool's cached blocks to the driver first (after a sync; capture happens
// once per expert and shape). The graph pool held 3.96 GB at 480p and 9.36 GB at 720p (the
// blocks' activations), about what the eager pool grows by for the same forward (5.2 / 10.0 GB).
// Pre-planned buffers (an arena the ops allocate from) would need a planning pass through the
// op interface and gain nothing over this: CUDA already gives the graph fixed addresses.
//
// Capture mode: thread-local (cudaStreamCaptureModeThreadLocal): this thread may not call
// unsafe APIs (a synchronising call, a pageable copy) while capturing, which turns a host
// sync hidden in an op into an error at capture instead of a silently wrong graph; other
// threads (the host staging threads of weight uploads) are unaffected.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_graph.h"
#include "backends/cuda/cuda_ops_impl.h"

namespace wanrt {
namespace {

// Frees `memory` (eager allocations) on `stream`, clearing any error (see CudaOps::empty).
void free_on(const std::vector<void*>& memory, cudaStream_t stream) {
  for (void* p : memory)
    if (cudaFreeAsync(p, stream) != cudaSuccess) cudaGetLastError();
}

class CudaGraph final : public OpGraph {
 public:
  CudaGraph(cudaGraph_t graph, cudaGraphExec_t exec, std::shared_ptr<CUstream_st> stream,
            std::vector<void*> kept)
      : graph_(graph), exec_(exec), stream_(std::move(stream)), kept_(std::move(kept)) {}
  ~CudaGraph() override {
    // An executable graph still in flight is freed when it completes (cudaGraphExecDestroy);
    // the memory it reads is freed after it on its stream.
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    free_on(kept_, stream_.get());
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  void replay() override { WANRT_CHECK_CUDA(cudaGraphLaunch(exec_, stream_.get())); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  std::shared_ptr<CUstream_st> stream_;
  std::vector<void*> kept_;  // tensors made before capture that the region released
};

}  // namespace

bool GraphCaptureState::allocate() {
  const std::lock_guard<std::mutex> lock(mutex);
  if (capturing) ++graph_tensors_alive;
  return capturing;
}

bool GraphCaptureState::release(void* memory, size_t bytes, bool graph_allocation) {
  const std::lock_guard<std::mutex> lock(mutex);
  if (graph_allocation) {
    if (capturing) --graph_tensors_alive;
    return false;  // a free node while recording; after it, a plain free of graph memory
  }
  if (!capturing) return false;
  kept.push_back(memory);
  kept_bytes += bytes;
  return true;
}

namespace cuda {

bool graphs_enabled(bool requested) {
  const char* value = std::getenv("WANRT_CUDA_GRAPH");
  if (value == nullptr || *value == '\0') return requested;
  WANRT_CHECK(std::strcmp(value, "0") == 0 || std::strcmp(value, "1") == 0,
              "WANRT_CUDA_GRAPH=", value, ": set it to 0 (CUDA graphs off) or 1 (on)");
  return std::strcmp(value, "1") == 0;
}

GraphMemory graph_memory(int device) {
  GraphMemory memory;
  WANRT_CHECK_CUDA(cudaDeviceGetGraphMemAttribute(device, cudaGraphMemAttrReservedMemCurrent, &memory.reserved));
  WANRT_CHECK_CUDA(cudaDeviceGetGraphMemAttribute(device, cudaGraphMemAttrReservedMemHigh, &memory.reserved_high));
  return memory;
}

}  // namespace cuda

GraphCapture* CudaOps::graph_capture() { return graphs_ ? this : nullptr; }

std::unique_ptr<OpGraph> CudaOps::capture(const std::function<void()>& region) {
  WANRT_CHECK(graphs_, "cuda backend: graph capture is switched off (CudaOptions::graphs or "
              "WANRT_CUDA_GRAPH=0)");
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  WANRT_CHECK_CUDA(cudaStreamIsCapturing(stream_, &status));
  WANRT_CHECK(status == cudaStreamCaptureStatusNone, "cuda backend: capture() inside a capture");
  // The graph's memory comes from the graph pool: hand the eager pool's cached blocks back.
  WANRT_CHECK_CUDA(cudaStreamSynchronize(stream_));
  cudaMemPool_t pool = nullptr;
  WANRT_CHECK_CUDA(cudaDeviceGetDefaultMemPool(&pool, device_));
  WANRT_CHECK_CUDA(cudaMemPoolTrimTo(pool, 0));
  // And the graph pool's memory that no live graph holds (graphs of experts that are gone).
  WANRT_CHECK_CUDA(cudaDeviceGraphMemTrim(device_));

  // A stale error of an earlier call must not be blamed on the first op recorded.
  WANRT_CHECK_CUDA(cudaGetLastError());

  GraphCaptureState& state = *capture_state_;
  auto stop_recording = [&] {
    const std::lock_guard<std::mutex> lock(state.mutex);
    state.capturing = false;
    std::vector<void*> kept = std::move(state.kept);
    state.kept.clear();
    return kept;
  };
  {
    const std::lock_guard<std::mutex> lock(state.mutex);
    state.capturing = true;
    state.graph_tensors_alive = 0;
    state.kept.clear();
    state.kept_bytes = 0;
  }
  WANRT_CHECK_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    region();
  } catch (...) {
    // End the capture so the stream is usable again; the partial graph is discarded.
    const std::vector<void*> kept = stop_recording();
    if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    free_on(kept, stream_);
    throw;
  }
  const int64_t escaped = state.graph_tensors_alive;
  const size_t kept_bytes = state.kept_bytes;
  std::vector<void*> kept = stop_recording();
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  // An error an op left behind (a launch, a call whose status was not checked) spoils the graph.
  const cudaError_t pending = cudaGetLastError();
  if (ended != cudaSuccess || pending != cudaSuccess || escaped != 0) {
    if (ended == cudaSuccess && graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    free_on(kept, stream_);
    WANRT_CHECK(escaped == 0, "cuda backend: graph capture failed: ", escaped, " tensor(s) created "
                "in the captured region outlive it (an op caches memory it made); run with "
                "WANRT_CUDA_GRAPH=0 meanwhile");
    const cudaError_t error = ended != cudaSuccess ? ended : pending;
    fail("cuda backend: graph capture failed (", cudaGetErrorName(error), ": ",
         cudaGetErrorString(error), "): an op in the captured region synchronised, copied from "
         "pageable host memory or used another stream; run with WANRT_CUDA_GRAPH=0 meanwhile");
  }
  if (!kept.empty())
    std::fprintf(stderr, "wanrt: CUDA graph capture: the region released %zu tensor(s) (%.1f MB) "
                 "made before it; the graph keeps them alive\n", kept.size(),
                 static_cast<double>(kept_bytes) / 1e6);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  if (instantiated != cudaSuccess) {
    cudaGraphDestroy(graph);
    cudaGetLastError();
    free_on(kept, stream_);
    fail("cuda backend: instantiating the captured graph failed (", cudaGetErrorName(instantiated),
         ": ", cudaGetErrorString(instantiated), ")");
  }
  auto result = std::make_unique<CudaGraph>(graph, exec, stream_owner_, std::move(kept));
  // Map the graph's memory now, so that capture, not the first replay, pays for it.
  WANRT_CHECK_CUDA(cudaGraphUpload(exec, stream_));
  return result;
}

void CudaOps::copy_(Tensor& dst, const Tensor& src) {
  WANRT_CHECK(dst.device() == Device::Cuda && src.device() == Device::Cuda,
              "cuda backend: copy_ needs two device tensors, got ", dst.describe(), " <- ",
              src.describe());
  WANRT_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(),
              "cuda backend: copy_ needs the same shape and dtype, got ", dst.describe(), " <- ",
              src.describe());
  WANRT_CHECK(dst.is_contiguous() && src.is_contiguous(), "cuda backend: copy_ needs contiguous "
              "tensors, got ", dst.describe(), " <- ", src.describe());
  if (dst.nbytes() == 0 || dst.raw() == src.raw()) return;
  WANRT_CHECK_CUDA(cudaMemcpyAsync(dst.raw_mut(), src.raw(), dst.nbytes(), cudaMemcpyDeviceToDevice, stream_));
}

}  // namespace wanrt
