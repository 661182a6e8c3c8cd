// CpuOps: construction, memory movement and the shared argument check.
#include "backends/cpu/cpu_ops.h"

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

Tensor CpuOps::download(const Tensor& tensor) { return upload(tensor); }

Tensor CpuOps::zeros(Shape shape) { return Tensor::zeros(DType::F32, std::move(shape)); }

int CpuOps::rank() const { return comm_->rank(); }
int CpuOps::world_size() const { return comm_->world_size(); }

}  // namespace wanrt
