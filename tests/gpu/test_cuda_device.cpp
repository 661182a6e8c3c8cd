// GPU tests skip, visibly, where there is no GPU (CI); they run on the GPU machine.
#include "test_support.h"

#ifdef WANRT_HAVE_CUDA
#include "backends/cuda/cuda_device.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA
#define WANRT_REQUIRE_GPU()                                                      \
  if (cuda::device_count() == 0) GTEST_SKIP() << "SKIPPED: no CUDA GPU on this machine"

TEST(CudaDevice, ReportsTheGpu) {
  WANRT_REQUIRE_GPU();
  const cuda::DeviceInfo info = cuda::device_info(0);
  std::printf("GPU 0: %s, sm_%d%d, %d SMs, %.1f GiB\n", info.name.c_str(), info.compute_major,
              info.compute_minor, info.multiprocessors, static_cast<double>(info.total_memory) / (1ull << 30));
  EXPECT_GT(info.multiprocessors, 0);
}

// Device bf16 rounding must equal the host's round-to-nearest-even bit for bit.
TEST(CudaDevice, Bf16ConversionMatchesHostBitForBit) {
  WANRT_REQUIRE_GPU();
  std::mt19937_64 rng(testing::test_seed());
  const Tensor host = testing::random_normal({1001, 37}, rng, 100.0f);
  const Tensor expected = host.to(DType::BF16);
  Tensor device_bf16 = cuda::convert_on_device(cuda::to_device(host), DType::BF16);
  const Tensor back = cuda::to_host(device_bf16);
  ASSERT_EQ(back.dtype(), DType::BF16);
  for (int64_t i = 0; i < host.numel(); ++i) ASSERT_EQ(back.data<uint16_t>()[i], expected.data<uint16_t>()[i]) << i;
  const Tensor widened = cuda::to_host(cuda::convert_on_device(device_bf16, DType::F32));
  EXPECT_EQ(testing::relative_error(widened, expected.to(DType::F32)), 0.0);
}

TEST(CudaDevice, OutOfMemoryIsAClearError) {
  WANRT_REQUIRE_GPU();
  try {
    cuda::device_empty(DType::F32, {int64_t{1} << 40});  // 4 TiB
    FAIL() << "allocation of 4 TiB succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
}
#else
TEST(CudaDevice, NotBuilt) { GTEST_SKIP() << "SKIPPED: wanrt was built without CUDA (nvcc not found)"; }
#endif

}  // namespace
}  // namespace wanrt
