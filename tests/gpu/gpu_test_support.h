// Helpers for GPU tests: skip visibly without a GPU, run an op on both backends.
#pragma once

#include "test_support.h"

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#include "backends/cuda/cuda_ops_impl.h"

// Skips the calling test (with a message in the output) where no CUDA GPU is present.
#define WANRT_REQUIRE_GPU()                                                       \
  do {                                                                            \
    if (::wanrt::cuda::device_count() == 0)                                       \
      GTEST_SKIP() << "SKIPPED: no CUDA GPU on this machine";                     \
  } while (0)

namespace wanrt::testing {

// What a device tensor of `dtype` holds for the host values `host`, as host F32.
inline Tensor rounded(const Tensor& host, DType dtype) { return host.to(dtype).to(DType::F32); }

// |host| elementwise, as host F32.
inline Tensor absolute(const Tensor& host) {
  Tensor out = host.to(DType::F32);
  for (float& v : out.floats()) v = std::abs(v);
  return out;
}

// max |actual − expected| / (|expected| + magnitude) over the elements. For a GEMM, magnitude
// is |x|·|w|ᵀ + |b|: rounding errors scale with the size of the terms summed, not with the
// sum, so this bound holds for a correct result even where the terms cancel (a norm-based
// relative error of a one-element output can be anything then). NaN gives +inf.
inline double scaled_max_error(const Tensor& actual, const Tensor& expected, const Tensor& magnitude) {
  EXPECT_EQ(actual.shape(), expected.shape());
  if (actual.shape() != expected.shape() || magnitude.numel() != expected.numel()) return INFINITY;
  double worst = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    const double a = actual.data<float>()[i], e = expected.data<float>()[i];
    if (std::isnan(a)) return INFINITY;
    const double scale = std::abs(e) + magnitude.data<float>()[i];
    worst = std::max(worst, scale == 0 ? std::abs(a - e) : std::abs(a - e) / scale);
  }
  return worst;
}

// The common fixture of the op tests that compare the CUDA backend with the CPU reference:
// skips without a GPU, seeds rng_ afresh each run (the seed is printed when a test fails, to
// reproduce it with WANRT_TEST_SEED), and holds a default CudaOps and the CPU backend.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WANRT_REQUIRE_GPU();
    seed_ = test_seed();
    rng_.seed(seed_);
    gpu_ = std::make_unique<CudaOps>(CudaOptions{}, nullptr);
  }
  void TearDown() override {
    if (HasFailure())
      std::fprintf(stderr, "reproduce with WANRT_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed_));
  }

  // Fills a pool block of `bytes` with NaN bits (0xFF.. is NaN in F32 and BF16) and frees it:
  // the stream-ordered pool hands the same block to the next allocation of that size (an op's
  // output, allocated first), so an element a kernel forgets to write shows as NaN.
  void poison_pool(size_t bytes) {
    if (bytes == 0) return;
    Tensor junk = gpu_->empty(DType::U8, {static_cast<int64_t>(bytes)});
    ASSERT_EQ(cudaMemsetAsync(junk.raw_mut(), 0xFF, bytes, gpu_->stream()), cudaSuccess);
  }
  // A device copy of host `t` in `dtype`.
  Tensor device(const Tensor& host, DType dtype) { return gpu_->as_dtype(gpu_->upload(host), dtype); }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::unique_ptr<CudaOps> gpu_;
  std::unique_ptr<Ops> cpu_ = make_cpu_ops();
};

}  // namespace wanrt::testing
#endif
