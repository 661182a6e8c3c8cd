// CudaOps: the class behind make_cuda_ops(). Its op families live in separate files:
//   cuda_ops.cpp          construction, streams and handles, memory, embedding, collectives
//   cuda_linear.cpp       linear through cuBLASLt (epilogues, algorithm cache per shape)
//   cuda_layout.cu        patchify, unpatchify, pad_rows, concat_rows, rows
//   cuda_norms.cu         layer_norm, layer_norm_modulate, rms_norm, rms_norm_rope
//   cuda_elementwise.cu   activation, add, mul, add_gated_, rope_
//   cuda_attention.cu     flash attention (bf16 tensor cores, online softmax, key-length mask)
//   cuda_video.cu         conv3d, conv3d_after, channel_rms_norm(_silu), upsample_nearest_2x,
//                         frames, concat_frames, transpose; F16 activation/add (cuda_video.h)
//   cuda_gemm_attention.cu  attention for long sequences of other head dims (cuBLAS GEMMs)
//   cuda_quant.cu         quantize_weight (int8 / fp8 weight-only quantization; linear takes the
//                         quantized weights in cuda_linear.cpp)
//   cuda_graph.cpp        graph_capture: capture, replay, copy_ (CUDA graphs)
//   cuda_weight_parking.cpp  weight_parking: weights in page-locked host memory and back, on a
//                         copy stream (--offload_model)
// All work is queued on one stream (`stream()`); ops never synchronise except download().
// Device memory comes from the stream-ordered pool (cudaMallocAsync / cudaFreeAsync on that
// stream, release threshold unlimited), so per-op allocations cost nothing after the first
// step and a whole forward can be captured as a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "backends/cuda/cuda_ops.h"

namespace wanrt {

class CublasLtContext;  // cuda_linear.h
struct GraphCaptureState;  // cuda_graph.h: what the allocator must know while a graph records
class HostStaging;      // cuda_memory.h: the pinned ring that host->device copies go through

// Cumulative upload_weight() traffic, for load-speed reports (GB/s = host_bytes / seconds).
struct LoadStats {
  int64_t tensors = 0;
  uint64_t host_bytes = 0;    // read from the host tensors, in their (checkpoint) dtype
  uint64_t device_bytes = 0;  // written to the GPU (BF16 matrices, F32 vectors)
  // Host wall time inside upload_weight(). The last few chunks may still be in flight when a
  // call returns; a caller timing one upload synchronises first (download() does).
  double seconds = 0;
};

class CudaOps;

// Bytes moved by weight parking, for offload reports.
struct ParkingStats {
  std::atomic<uint64_t> parked_bytes{0};  // into page-locked host memory (park*, any thread)
};

// WeightParking (ops.h) on CUDA; see cuda_weight_parking.cpp.
class CudaWeightParking final : public WeightParking {
 public:
  explicit CudaWeightParking(CudaOps& ops);
  ~CudaWeightParking() override;
  CudaWeightParking(const CudaWeightParking&) = delete;
  CudaWeightParking& operator=(const CudaWeightParking&) = delete;
  Tensor park(const Tensor& weight) override;
  Tensor park_checkpoint_weight(const Tensor& host, std::optional<DType> codes) override;
  Tensor unpark(const Tensor& parked) override;
  uint64_t arrival() override;
  void await(uint64_t ticket) override;
  const ParkingStats& stats() const { return stats_; }

  // One unparked tensor's copy, shared by the group that issues it and the tensor's owner
  // (whose free must follow the copy, or cancel it when it never started).
  struct Copy {
    void* dst = nullptr;
    Tensor src;  // the parked tensor (kept alive until the copy has run)
    size_t bytes = 0;
    bool issued = false, cancelled = false;
    std::shared_ptr<cudaEvent_t> done;  // the group's event, once issued
  };

 private:
  struct Group {
    std::vector<std::shared_ptr<Copy>> copies;
    cudaEvent_t allocated = nullptr;  // op stream: after the group's allocations
    std::shared_ptr<cudaEvent_t> done;  // copy stream: after the group's copies, once issued
  };
  Tensor unpark_bytes(const Tensor& parked);  // one plain tensor (codes or scales)
  void issue_through(uint64_t ticket);
  CudaOps& ops_;
  int device_ = 0;
  cudaStream_t copy_stream_ = nullptr;
  std::shared_ptr<CUstream_st> copy_stream_owner_;
  std::vector<std::shared_ptr<Copy>> open_;  // unpark()s since the last ticket
  std::map<uint64_t, Group> groups_;         // tickets not yet awaited
  uint64_t tickets_ = 0, issued_ = 0, awaited_ = 0;
  ParkingStats stats_;
};

class CudaOps final : public Ops, public GraphCapture {
 public:
  CudaOps(const CudaOptions& options, std::shared_ptr<Communicator> comm);
  const CudaOptions& options() const { return options_; }
  ~CudaOps() override;
  std::string name() const override { return "cuda"; }
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }

  // Shared by every op file (implemented in cuda_ops.cpp):
  // an uninitialised contiguous device tensor from the stream-ordered pool, freed on stream()
  // when its last view dies;
  Tensor empty(DType dtype, Shape shape);
  // `t` itself when it already has `dtype` (F32/BF16/F16), else a converted copy (round to
  // nearest even), queued on stream().
  Tensor as_dtype(const Tensor& t, DType dtype);
  LoadStats load_stats() const { return load_stats_; }
  // The dtype upload_weight() gives a checkpoint tensor of this shape on the device.
  DType weight_format(const Tensor& host) const {
    return host.dim() >= 3 ? options_.conv_dtype : host.dim() == 2 ? DType::BF16 : DType::F32;
  }

  // GraphCapture (cuda_graph.cpp): this object where CudaOptions::graphs (and
  // WANRT_CUDA_GRAPH) allow, else null.
  GraphCapture* graph_capture() override;
  std::unique_ptr<OpGraph> capture(const std::function<void()>& region) override;
  void copy_(Tensor& dst, const Tensor& src) override;
  // WeightParking (cuda_weight_parking.cpp): created on first use.
  WeightParking* weight_parking() override;

  Tensor upload(const Tensor& host) override;
  Tensor upload_weight(const Tensor& host) override;
  Tensor quantize_weight(const Tensor& host, DType codes) override;
  Tensor download(const Tensor& tensor) override;
  Tensor zeros(Shape shape) override;

  Tensor linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                const LinearOptions& options) override;
  Tensor layer_norm(const Tensor& x, float eps, const Tensor* weight, const Tensor* bias) override;
  Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                             float eps, bool full_precision) override;
  Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) override;
  Tensor activation(const Tensor& x, Activation act) override;
  Tensor add(const Tensor& a, const Tensor& b) override;
  Tensor mul(const Tensor& a, const Tensor& b) override;
  void add_gated_(Tensor& x, const Tensor& y, const Tensor* gate) override;

  void rope_(Tensor& x, const Tensor& table) override;
  Tensor rms_norm_rope(const Tensor& x, const Tensor& weight, float eps, const Tensor& table,
                       int64_t heads) override;
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                   const AttentionOptions& options) override;
  Tensor embedding(const Tensor& table, const Tensor& ids) override;

  Tensor conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                const Conv3dOptions& options) override;
  Tensor conv3d_after(const Tensor& prefix, const Tensor& x, const Tensor& weight, const Tensor* bias,
                      const Conv3dOptions& options) override;
  Tensor channel_rms_norm(const Tensor& x, const Tensor& gamma) override;
  Tensor channel_rms_norm_silu(const Tensor& x, const Tensor& gamma) override;
  Tensor upsample_nearest_2x(const Tensor& x) override;
  Tensor frames(const Tensor& x, int64_t begin, int64_t end) override;
  Tensor concat_frames(const Tensor& a, const Tensor& b) override;
  Tensor transpose(const Tensor& x) override;

  Tensor patchify(const Tensor& video, int64_t ph, int64_t pw) override;
  Tensor unpatchify(const Tensor& tokens, int64_t channels, int64_t frames, int64_t h, int64_t w,
                    int64_t ph, int64_t pw) override;
  Tensor pad_rows(const Tensor& x, int64_t rows) override;
  Tensor concat_rows(const Tensor& a, const Tensor& b) override;
  Tensor rows(const Tensor& x, int64_t begin, int64_t end) override;

  Tensor sequence_to_heads(const Tensor& x) override;
  Tensor heads_to_sequence(const Tensor& x) override;
  Tensor all_gather_rows(const Tensor& x) override;
  int rank() const override;
  int world_size() const override;

 private:
  CudaOptions options_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<Communicator> comm_;
  std::unique_ptr<CublasLtContext> cublaslt_;
  // Owns stream_; every device tensor's deleter holds a copy, because it frees on stream_ and
  // may run after this object is gone.
  std::shared_ptr<CUstream_st> stream_owner_;
  std::unique_ptr<HostStaging> staging_;
  LoadStats load_stats_;
  bool graphs_ = true;  // options_.graphs unless WANRT_CUDA_GRAPH says otherwise
  // Shared with every tensor's deleter: during capture a free becomes a graph node, which is
  // valid only for memory the graph allocated (cuda_graph.cpp).
  std::shared_ptr<GraphCaptureState> capture_state_;
  // Last, so that it goes first: its destructor waits for its copy stream.
  std::unique_ptr<CudaWeightParking> parking_;
};

// Argument check shared by the CUDA op files: a contiguous device tensor of a float dtype
// (F32 or BF16); `what` names the argument in the error.
const Tensor& expect_device_float(const Tensor& t, const char* what);

}  // namespace wanrt
