// The op interface: the only thing model code (DiT, T5, VAE) calls to compute.
//
// Each backend implements every op with the same meaning. The CPU backend (backends/cpu) is
// the float32 reference; the CUDA backend (backends/cuda) is the fast path, free to keep
// activations in bf16 where the reference precision map (spec §6) allows. Model code never
// looks inside a tensor it got from an op: it only passes tensors back to ops, uploads host
// inputs and downloads results.
//
// Layout conventions: a "token matrix" is [rows, features] row-major. Attention tensors are
// [tokens, heads, head_dim]. Video tensors are [C, T, H, W] (batch 1 everywhere).
//
// Sequence parallelism lives behind two collectives (Ulysses all-to-alls) and one all-gather,
// so the DiT reads the same on one GPU or eight: with a group of size 1 they are identities.
//
// Weight-only quantization (core/quantize.h) is one op and one more kind of weight: a model
// turns a checkpoint matrix into a quantized weight with quantize_weight() instead of
// upload_weight(), and passes it to linear() like any other weight. A quantized weight is a
// row-scaled tensor (core/tensor.h): I8 or F8_E4M3 codes [out, in] plus an F32 scale per output
// row, both in backend memory, meaning W = s ⊙ W_q. Model code therefore chooses the format once,
// at load, and its forward never looks at a dtype. Activations stay float (bf16 on the GPU).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/tensor.h"

namespace wanrt {

class Communicator;

enum class Activation : uint8_t { None, Silu, GeluTanh };

struct LinearOptions {
  Activation activation = Activation::None;  // applied after the bias
  // Compute in true float32 even on a reduced-precision backend (the time MLP and the head
  // run in fp32 in the reference, spec §6). The CPU backend always computes in float32.
  bool full_precision = false;
};

// Zero padding and strides of a 3-D convolution over [C, T, H, W]. Time padding is causal in
// the Wan VAE (front only); the spatial padding may be asymmetric (downsampling pads only the
// bottom/right edge).
struct Conv3dOptions {
  int64_t stride_t = 1, stride_h = 1, stride_w = 1;
  int64_t pad_t_front = 0, pad_t_back = 0;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};

struct AttentionOptions {
  float scale = 1.0f;       // multiplies q·k before the softmax
  int64_t kv_len = -1;      // keys/values at index >= kv_len are masked out; -1 = none masked
  const Tensor* bias = nullptr;  // optional additive bias [heads, Lq, Lk] (T5 relative positions)
};

// A recorded region of ops (graph_capture()): replay() queues the same work again, on the same
// tensors, in one launch.
class OpGraph {
 public:
  virtual ~OpGraph() = default;
  virtual void replay() = 0;
};

// Recording a region of ops once and replaying it (CUDA graphs), an optional capability of a
// backend: Ops::graph_capture() returns null where it is missing (the CPU backend), and the
// caller then runs the region's ops directly. What a replay reads and writes is fixed at
// capture: the addresses of the tensors the region touched. So a caller captures a region that
// reads its inputs from buffers it keeps (static buffers), copies each call's inputs into them
// with copy_(), and reads the result from a buffer it keeps too; a value computed on the host
// inside the region (a scalar, a table) would be replayed as captured, so none may be.
class GraphCapture {
 public:
  virtual ~GraphCapture() = default;
  // Records the ops `region` queues, without running them (a replay runs them). Tensors the
  // region creates and drops are the graph's own memory, reused by every replay; the region
  // must drop every tensor it creates (its results go into tensors created before it, with
  // copy_), else capture fails. A tensor created before it whose last reference the region
  // drops stays alive as long as the graph (a replay may read it). A region that cannot be
  // recorded (an op synchronises, copies from pageable host memory) is an error.
  virtual std::unique_ptr<OpGraph> capture(const std::function<void()>& region) = 0;
  // dst ← src, the same shape and dtype, both backend tensors; queued like any op.
  virtual void copy_(Tensor& dst, const Tensor& src) = 0;
};

// Keeping weights in page-locked host memory while they are not needed, and bringing them
// back to the device overlapped with work (--offload_model), an optional capability of a
// backend whose weights live in device memory: Ops::weight_parking() returns null where it is
// missing (the CPU backend, whose weights are host memory already).
//
// Why page-locked: the copy engines read it directly at PCIe speed (~50 GB/s on an H100 host)
// while the GPU computes, where a copy from pageable memory (a memory-mapped checkpoint) goes
// through the host CPU and blocks it. Why tickets: an expert brought in block by block can
// start its first forward when its first block has arrived; each block's ops wait, on the
// device, for that block's copies only (the host never blocks). Why copies start only when
// awaited: the copy engine serves copies in order, so a whole expert queued ahead of a forward
// would also delay that forward's own small uploads (its latent, its text) by the whole copy.
class WeightParking {
 public:
  virtual ~WeightParking() = default;
  // A copy of a backend tensor in page-locked host memory, bit for bit (same dtype and shape;
  // a row-scaled tensor keeps its scales). Returns when the copy is complete. Fails with a
  // clear error when the host cannot lock that much memory.
  virtual Tensor park(const Tensor& weight) = 0;
  // What upload_weight(host), or quantize_weight(host, *codes), would put in backend memory,
  // built on the host straight into page-locked memory: the same bytes, with no device work.
  // Unlike every other call of the backend, safe on a thread other than the one that queues
  // ops, so that an idle expert can be parked while the device computes.
  virtual Tensor park_checkpoint_weight(const Tensor& host, std::optional<DType> codes) = 0;
  // A new backend tensor that will hold a parked tensor's bytes. Its copy runs on a copy engine,
  // under later ops, once a ticket that covers it (or the ticket just before that one) is
  // awaited; no op may read the tensor before a ticket covering it has been awaited.
  virtual Tensor unpark(const Tensor& parked) = 0;
  // A ticket for every unpark() since the previous ticket.
  virtual uint64_t arrival() = 0;
  // Starts the copies of `ticket` and of the ticket after it (where not started yet), and makes
  // ops queued after this call wait, on the device (the host does not block), until the copies
  // of `ticket` and of every earlier ticket are complete. Awaiting a ticket already awaited costs
  // nothing, so a captured graph never holds such a wait.
  virtual void await(uint64_t ticket) = 0;
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual std::string name() const = 0;
  // Graph capture where the backend supports it and it is switched on; null otherwise.
  virtual GraphCapture* graph_capture() { return nullptr; }
  // Parking weights in host memory where the backend supports it; null otherwise.
  virtual WeightParking* weight_parking() { return nullptr; }

  // ---- memory ----
  // A host tensor (any float dtype) into backend memory as an activation.
  virtual Tensor upload(const Tensor& host) = 0;
  // A checkpoint tensor into backend memory in the backend's weight format (a quantized host
  // tensor arrives dequantized: Tensor::to gives the values it means).
  virtual Tensor upload_weight(const Tensor& host) = 0;
  // A checkpoint matrix [out, in] into backend memory as a weight-only quantized weight for
  // linear(): `codes` is I8 or F8_E4M3, one F32 scale per output row, computed exactly as
  // quantize_rows (core/quantize.h) does, so every backend holds the same codes. A host tensor
  // that is already quantized (read from a quantized checkpoint) is moved as it is, with no
  // re-quantization; its codes must then be of dtype `codes`.
  virtual Tensor quantize_weight(const Tensor& host, DType codes) = 0;
  // A backend tensor back to a contiguous host float32 tensor.
  virtual Tensor download(const Tensor& tensor) = 0;
  virtual Tensor zeros(Shape shape) = 0;  // float32 activation

  // ---- dense algebra ----
  // y = act(x · weightᵀ + bias): x [N, K], weight [M, K], bias [M] or null -> [N, M].
  // `weight` may be quantized (from quantize_weight): y = act(x · (s ⊙ W_q)ᵀ + bias), the same
  // as with the float weight s ⊙ W_q. The CPU backend computes exactly that in float32; a GPU
  // backend may also round x to its GEMM input format (bf16, or fp8 with per-token scales).
  virtual Tensor linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                        const LinearOptions& options = {}) = 0;

  // ---- normalisation (over the last axis, statistics in float32) ----
  // LayerNorm with biased variance; weight/bias optional (null = no affine).
  virtual Tensor layer_norm(const Tensor& x, float eps, const Tensor* weight,
                            const Tensor* bias) = 0;
  // LN(x)·(1 + scale) + shift, the DiT's adaptive LayerNorm; shift/scale are [features].
  // A reduced-precision backend may return it in bf16 (it feeds a GEMM); full_precision keeps
  // it in float32 (the head, which the reference runs in fp32, spec §6).
  virtual Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                     float eps, bool full_precision = false) = 0;
  // x · rsqrt(mean(x²) + eps) · weight.
  virtual Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) = 0;

  // ---- elementwise ----
  virtual Tensor activation(const Tensor& x, Activation act) = 0;
  // a + b, same shape, or b broadcast over rows when b is [features].
  virtual Tensor add(const Tensor& a, const Tensor& b) = 0;
  // a · b, same shape (T5's gated FFN).
  virtual Tensor mul(const Tensor& a, const Tensor& b) = 0;
  // x += y · gate in place (float32 residual stream); gate [features] or null for x += y.
  virtual void add_gated_(Tensor& x, const Tensor& y, const Tensor* gate) = 0;

  // ---- attention ----
  // In-place rotary embedding on x [L, heads, head_dim] for rows < table.size(0):
  // adjacent pairs (2k, 2k+1) rotate by the angle whose (cos, sin) is table[row, k, 0..1]
  // (table [rows, head_dim/2, 2], float32, shared by all heads). Later rows stay as they are.
  virtual void rope_(Tensor& x, const Tensor& table) = 0;
  // The DiT's q/k path as one op: rms_norm(x, weight, eps) over whole rows of x [L, D]
  // (D = heads·head_dim, the norm spans all heads as in the reference), viewed as
  // [L, heads, head_dim], then rope_ with `table` -> [L, heads, head_dim]. A fused backend
  // reads x once and writes the attention input once; it may return it in bf16.
  virtual Tensor rms_norm_rope(const Tensor& x, const Tensor& weight, float eps,
                               const Tensor& table, int64_t heads) = 0;
  // softmax(scale · q·kᵀ + bias, masked to kv_len) · v for q [Lq, H, d], k/v [Lk, H, d].
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionOptions& options) = 0;

  // Rows of `table` [vocab, D] picked by `ids` (host I64 [N]) -> [N, D]; an id out of range
  // is an error.
  virtual Tensor embedding(const Tensor& table, const Tensor& ids) = 0;

  // ---- video (the VAE) ----
  // x [Cin, T, H, W], weight [Cout, Cin, kt, kh, kw], bias [Cout] or null -> [Cout, T', H', W'].
  virtual Tensor conv3d(const Tensor& x, const Tensor& weight, const Tensor* bias,
                        const Conv3dOptions& options) = 0;
  // conv3d over the frames of `prefix` followed by those of x (a chunked causal conv: the
  // cached frames of the previous chunk, then this chunk), without the caller building the
  // concatenation; a backend may read both in place. Default: exactly that composition.
  virtual Tensor conv3d_after(const Tensor& prefix, const Tensor& x, const Tensor& weight,
                              const Tensor* bias, const Conv3dOptions& options) {
    return conv3d(concat_frames(prefix, x), weight, bias, options);
  }
  // x / max(‖x‖₂ over channels, 1e-12) · √C · gamma at every (t, h, w); x [C, T, H, W],
  // gamma [C] (the Wan VAE's RMS_norm).
  virtual Tensor channel_rms_norm(const Tensor& x, const Tensor& gamma) = 0;
  // SiLU(channel_rms_norm(x, gamma)), the pre-activation of the VAE's kernel-3 convs, as one
  // op so a backend can read x once and write once. Default: the two ops.
  virtual Tensor channel_rms_norm_silu(const Tensor& x, const Tensor& gamma) {
    return activation(channel_rms_norm(x, gamma), Activation::Silu);
  }
  // Nearest-neighbour ×2 upsampling of H and W: [C, T, H, W] -> [C, T, 2H, 2W].
  virtual Tensor upsample_nearest_2x(const Tensor& x) = 0;
  // Frames [begin, end) of x [C, T, H, W]; concatenation along T.
  virtual Tensor frames(const Tensor& x, int64_t begin, int64_t end) = 0;
  virtual Tensor concat_frames(const Tensor& a, const Tensor& b) = 0;
  // [R, C] -> [C, R] (2-D transpose of a contiguous matrix).
  virtual Tensor transpose(const Tensor& x) = 0;

  // ---- layout ----
  // [C, T, H, W] -> token matrix [T·(H/ph)·(W/pw), C·ph·pw]; feature index c·ph·pw + dh·pw + dw,
  // tokens frame-major then row then column (the Conv3d patch embedding as a GEMM).
  virtual Tensor patchify(const Tensor& video, int64_t ph, int64_t pw) = 0;
  // Inverse for the head: tokens [>= T·h·w, ph·pw·C] with feature (dh·pw + dw)·C + c
  // -> [C, T, h·ph, w·pw]. Rows past T·h·w (sequence padding) are ignored.
  virtual Tensor unpatchify(const Tensor& tokens, int64_t channels, int64_t frames, int64_t h,
                            int64_t w, int64_t ph, int64_t pw) = 0;
  // Rows of `x` followed by zero rows up to `rows` in total.
  virtual Tensor pad_rows(const Tensor& x, int64_t rows) = 0;
  // Concatenation along axis 0.
  virtual Tensor concat_rows(const Tensor& a, const Tensor& b) = 0;
  // Rows [begin, end) of x as a new tensor (callers may modify it in place).
  virtual Tensor rows(const Tensor& x, int64_t begin, int64_t end) = 0;

  // ---- sequence parallelism (identities when the group has one rank) ----
  // Ulysses all-to-all #1: this rank's tokens for all heads [S, H, d] -> all tokens for this
  // rank's heads [S·p, H/p, d].
  virtual Tensor sequence_to_heads(const Tensor& x) = 0;
  // All-to-all #2, the inverse: [S·p, H/p, d] -> [S, H, d].
  virtual Tensor heads_to_sequence(const Tensor& x) = 0;
  // Concatenates every rank's rows in rank order.
  virtual Tensor all_gather_rows(const Tensor& x) = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
};

// The float32 reference backend. `comm` may be null (a group of one).
std::unique_ptr<Ops> make_cpu_ops(std::shared_ptr<Communicator> comm = nullptr);

}  // namespace wanrt
