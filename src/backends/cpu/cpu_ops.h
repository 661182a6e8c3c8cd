// The float32 reference backend: plain loops (threads over rows where it pays) and BLAS sgemm
// for matmuls. It is the executable specification every faster backend is tested against, so
// it favours obviously-correct code over speed. Long reductions accumulate in double.
//
// The op families live in separate files: cpu_dense.cpp (linear, norms, elementwise),
// cpu_attention.cpp (RoPE, attention), cpu_layout.cpp (patchify, rows, collectives),
// cpu_video.cpp (convolutions and the VAE's ops).
#pragma once

#include <memory>

#include "backends/ops.h"
#include "parallel/communicator.h"

namespace wanrt {

class CpuOps final : public Ops {
 public:
  explicit CpuOps(std::shared_ptr<Communicator> comm);
  std::string name() const override { return "cpu"; }

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
  Tensor channel_rms_norm(const Tensor& x, const Tensor& gamma) override;
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
  std::shared_ptr<Communicator> comm_;
};

// Checks that `t` is a contiguous host F32 tensor (what every CPU op takes); `what` names the
// argument in the error.
const Tensor& expect_f32(const Tensor& t, const char* what);

}  // namespace wanrt
