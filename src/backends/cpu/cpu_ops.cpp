// CpuOps: construction, memory movement and the shared argument check.
#include "backends/cpu/cpu_ops.h"

#include "core/quantize.h"

namespace wanrt {

const Tensor& expect_f32(const Tensor& t, const char* what) {
  WANRT_CHECK(t.device() == Device::Host && t.dtype() == DType::F32 && t.is_contiguous(),
              "cpu backend: ", what, " must be a contiguous host F32 tensor, got ", t.describe());
  return t;
}

CpuOps::CpuOps(std::shared_ptr<Communicator> comm)
    : comm_(comm ? std::move(comm) : make_single_rank_communicator()) {}

std::unique_ptr<Ops> make_cpu_ops(std::shared_ptr<Communicator> comm) {
  return std::make_unique<CpuOps>(std::move(comm));
}

// The reference computes in float32 everywhere: inputs of any float dtype are widened exactly.
Tensor CpuOps::upload(const Tensor& host) {
  WANRT_CHECK(host.device() == Device::Host, "cpu backend: upload of a device tensor ",
              host.describe());
  return host.to(DType::F32);
}

Tensor CpuOps::upload_weight(const Tensor& host) { return upload(host); }

// The codes stay codes on the CPU too (one byte per element), so the reference holds exactly
// what a GPU holds; linear dequantizes them per call.
Tensor CpuOps::quantize_weight(const Tensor& host, DType codes) {
  WANRT_CHECK(host.device() == Device::Host, "cpu backend: quantize_weight of a device tensor ",
              host.describe());
  quantization_code_max(codes);  // checks that `codes` is I8 or F8_E4M3
  WANRT_CHECK(host.dim() == 2, "cpu backend: quantize_weight expects a matrix [out, in], got ",
              host.describe());
  if (host.is_row_scaled()) {
    WANRT_CHECK(host.dtype() == codes, "cpu backend: quantize_weight to ", dtype_name(codes),
                " of a weight already quantized to ", dtype_name(host.dtype()),
                " (re-quantizing quantized codes would compound the error; quantize the float "
                "checkpoint instead)");
    return host.clone();
  }
  return quantize_rows(host, codes);
}

Tensor CpuOps::download(const Tensor& tensor) { return upload(tensor); }

Tensor CpuOps::zeros(Shape shape) { return Tensor::zeros(DType::F32, std::move(shape)); }

int CpuOps::rank() const { return comm_->rank(); }
int CpuOps::world_size() const { return comm_->world_size(); }

}  // namespace wanrt
