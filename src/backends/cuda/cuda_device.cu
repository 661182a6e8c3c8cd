#include <cuda_bf16.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_device.h"

namespace wanrt::cuda {
namespace {

__global__ void f32_to_bf16_kernel(const float* in, __nv_bfloat16* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void bf16_to_f32_kernel(const __nv_bfloat16* in, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    out[i] = __bfloat162float(in[i]);
}

unsigned grid_for(int64_t n) {
  constexpr int64_t kThreads = 256, kMaxBlocks = 65535;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)));
}

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

DeviceInfo device_info(int index) {
  cudaDeviceProp prop{};
  WANRT_CHECK_CUDA(cudaGetDeviceProperties(&prop, index));
  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  WANRT_CHECK_CUDA(cudaSetDevice(index));
  WANRT_CHECK_CUDA(cudaMemGetInfo(&info.free_memory, &info.total_memory));
  return info;
}

Tensor device_empty(DType dtype, Shape shape) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* memory = nullptr;
  if (bytes > 0) {
    const cudaError_t status = cudaMalloc(&memory, bytes);
    if (status != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      fail("GPU out of memory: asked for ", bytes / (1 << 20), " MiB for ", dtype_name(dtype),
           shape_str(shape), ", ", free_bytes / (1 << 20), " MiB free of ", total_bytes / (1 << 20),
           " MiB (try --offload_model True, --quantize int8, or a smaller --size)");
    }
  }
  std::shared_ptr<void> owner(memory, [](void* p) { if (p) cudaFree(p); });
  return Tensor::view(std::move(owner), memory, dtype, std::move(shape), Device::Cuda);
}

Tensor to_device(const Tensor& host) {
  WANRT_CHECK(host.device() == Device::Host && host.is_contiguous(), "to_device needs a contiguous host tensor, got ", host.describe());
  Tensor out = device_empty(host.dtype(), host.shape());
  if (host.nbytes()) WANRT_CHECK_CUDA(cudaMemcpy(out.raw_mut(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice));
  return out;
}

Tensor to_host(const Tensor& device) {
  WANRT_CHECK(device.device() == Device::Cuda, "to_host needs a device tensor, got ", device.describe());
  Tensor out = Tensor::empty(device.dtype(), device.shape());
  if (device.nbytes()) WANRT_CHECK_CUDA(cudaMemcpy(out.raw_mut(), device.raw(), device.nbytes(), cudaMemcpyDeviceToHost));
  return out;
}

Tensor convert_on_device(const Tensor& in, DType to) {
  WANRT_CHECK(in.device() == Device::Cuda, "convert_on_device needs a device tensor, got ", in.describe());
  const int64_t n = in.numel();
  Tensor out = device_empty(to, in.shape());
  if (n == 0) return out;
  if (in.dtype() == DType::F32 && to == DType::BF16) {
    f32_to_bf16_kernel<<<grid_for(n), 256>>>(static_cast<const float*>(in.raw()), static_cast<__nv_bfloat16*>(out.raw_mut()), n);
  } else if (in.dtype() == DType::BF16 && to == DType::F32) {
    bf16_to_f32_kernel<<<grid_for(n), 256>>>(static_cast<const __nv_bfloat16*>(in.raw()), static_cast<float*>(out.raw_mut()), n);
  } else {
    fail("convert_on_device: ", dtype_name(in.dtype()), " -> ", dtype_name(to), " is not supported");
  }
  WANRT_CHECK_LAUNCH();
  return out;
}

void synchronize() { WANRT_CHECK_CUDA(cudaDeviceSynchronize()); }

}  // namespace wanrt::cuda
