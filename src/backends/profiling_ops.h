// ProfilingOps: an Ops decorator that forwards every op to another backend and, while enabled,
// measures it: wall time, calls, FLOPs and bytes, per op, per category and (for the ops whose
// speed depends on their shape: linear, attention, conv3d) per shape.
//
//   ProfilingOps profiled(*cuda_ops, [] { cuda::synchronize(); });
//   profiled.set_enabled(true);
//   model.forward(profiled, inputs);
//   BreakdownOptions options;
//   options.peak_tflops = 989;  // H100 SXM dense bf16
//   profiled.print_breakdown(std::cout, options);
//
// Timing is honest because `sync` runs before and after every timed op: the GPU's queue is
// drained before the clock starts and the op has finished when it stops. That serialises the
// backend (no overlap of host launches with GPU work, one sync per op), which costs a few
// microseconds per op: negligible against the DiT's millisecond GEMMs and attention, visible
// on tiny elementwise ops. So time a run with profiling disabled for the total, and a second
// run enabled for the breakdown. Disabled, every op is a plain forward call.
//
// What is counted (one multiply-add = 2 FLOP):
//   gemm         linear: 2·N·M·K
//   attention    4·H·Lq·Lk·d (QKᵀ and PV; Lk = kv_len when keys are masked)
//   video        conv3d: 2·Cout·Cin·kt·kh·kw·(output voxels); the other video ops move bytes
//   norm, elementwise, rope (rope_, rms_norm_rope), layout, collective: bytes only (memory-bound)
//   memory       upload, upload_weight, download: the host-side bytes; zeros: bytes written
// Bytes are the sizes of the op's tensor operands and result in their actual dtypes: a lower
// bound on what the kernel moves (no re-reads), so GB/s is a lower bound too.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>

#include "backends/ops.h"

namespace wanrt {

enum class OpCategory : uint8_t {
  Gemm,
  Attention,
  Norm,
  Elementwise,
  Rope,
  Layout,
  Video,
  Memory,
  Collective,
};
inline constexpr int kOpCategoryCount = 9;
const char* op_category_name(OpCategory category);

struct OpStats {
  int64_t calls = 0;
  double seconds = 0;
  double flops = 0;  // double: sums over a video reach 5e17
  double bytes = 0;
  OpStats& operator+=(const OpStats& other);
  double tflops_per_second() const { return seconds > 0 ? flops / seconds * 1e-12 : 0; }
  double gigabytes_per_second() const { return seconds > 0 ? bytes / seconds * 1e-9 : 0; }
};

struct BreakdownOptions {
  std::string title;             // first line of the table; empty: none
  double peak_tflops = 0;        // a hardware peak (989 = H100 SXM dense bf16); 0: no column
  // Measured ceilings (e.g. cuBLAS at these shapes, cuDNN SDPA), in TFLOP/s; 0: no value.
  std::array<double, kOpCategoryCount> ceiling_tflops{};
  double wall_seconds = 0;       // the caller's wall time of the profiled run; > 0 adds a
                                 // row for the time spent outside ops (host work)
  bool per_shape = true;         // add the per-shape table (linear, attention, conv3d)
  bool per_op = true;            // add the per-op table
  size_t max_rows = 30;          // per-op and per-shape tables: the slowest rows, then one
                                 // line for the rest (the VAE has dozens of conv shapes)
};

class ProfilingOps final : public Ops {
 public:
  // `inner` must outlive this object. `sync` blocks until every op queued on `inner` has
  // finished (cudaDeviceSynchronize for the CUDA backend; a no-op for the CPU backend, whose
  // ops finish before they return). Starts disabled.
  ProfilingOps(Ops& inner, std::function<void()> sync);

  void set_enabled(bool enabled) { enabled_ = enabled; }
  bool enabled() const { return enabled_; }
  void reset();  // forgets every measurement

  OpStats category(OpCategory category) const;
  OpStats total() const;  // every category
  // Keyed by op name ("linear", "rope_", ...).
  const std::map<std::string, OpStats>& by_op() const { return by_op_; }
  // Keyed by op and shape ("linear N=75600 K=5120 M=5120", "attention Lq=... Lk=... H=40 d=128").
  const std::map<std::string, OpStats>& by_shape() const { return by_shape_; }
  OpCategory category_of(const std::string& op) const;  // for an op name of by_op()

  // Tables: by category (time, %, TFLOP/s, % of peak and of the measured ceiling, GB/s), then
  // optionally by op and by shape, each sorted by time.
  void print_breakdown(std::ostream& out, const BreakdownOptions& options = {}) const;

  // ---- Ops ----
  std::string name() const override { return inner_.name(); }

  Tensor upload(const Tensor& host) override;
  Tensor upload_weight(const Tensor& host) override;
  Tensor quantize_weight(const Tensor& host, DType codes) override;
  Tensor download(const Tensor& tensor) override;
  Tensor zeros(Shape shape) override;

  Tensor linear(const Tensor& x, const Tensor& weight, const Tensor* bias,
                const LinearOptions& options) override;
  Tensor layer_norm(const Tensor& x, float eps, const Tensor* weight, const Tensor* bias) override;
  Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps,
                             bool full_precision) override;
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
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }

 private:
  // What one call costs, computed before it runs (only when enabled).
  struct Cost {
    double flops = 0;
    double input_bytes = 0;
    std::string shape_key;  // empty: not tracked per shape
  };
  // Runs `call` (returning a Tensor, or void for the in-place ops) and, when enabled, times
  // it between two syncs and records it with the bytes of its result added (unless
  // !count_output). `cost` is evaluated only when enabled.
  template <typename Call, typename CostFn>
  auto measure(const char* op, OpCategory category, CostFn&& cost, Call&& call,
               bool count_output = true);
  void record(const char* op, OpCategory category, double seconds, const Cost& cost,
              double output_bytes);
  // conv3d and conv3d_after: times `call` and records it as "conv3d" with its FLOPs.
  template <typename Call>
  Tensor measure_conv(double input_bytes, const Tensor& weight, const Tensor* bias,
                      const Conv3dOptions& options, Call&& call);

  Ops& inner_;
  std::function<void()> sync_;
  bool enabled_ = false;
  std::map<std::string, OpStats> by_op_;
  std::map<std::string, OpStats> by_shape_;
  std::map<std::string, OpCategory> op_category_;
};

}  // namespace wanrt
