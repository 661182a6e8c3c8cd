// Weight parking on CUDA (Ops::weight_parking, backends/cuda/cuda_weight_parking.cpp): the
// --offload_model path that keeps an idle expert in page-locked host memory and brings it back
// on a copy stream under the first step's compute.
//   - park → unpark gives the device bytes back bit for bit: bf16 and f32 weights, int8 and
//     fp8 row-scaled weights (codes and scales), odd sizes;
//   - an op queued after await() reads the arrived bytes, not what the memory held before: a
//     256 MiB copy (~5 ms of PCIe) into memory that held NaN a moment ago, read at once;
//   - a DiT expert parked and brought back (parked(), or loaded straight into host memory),
//     whose blocks are awaited one by one inside the forward, computes exactly what the
//     resident expert computes: eagerly, and as a CUDA graph captured after the arrival;
//   - a parked expert refuses to run, with an error that says what to do.
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "dit_test_support.h"
#include "gpu_test_support.h"

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include "model/dit.h"
#include "pipeline/dit_runner.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA
using testing::bitwise_equal;

// The raw bytes of a device tensor (codes only for a row-scaled one) as a host tensor of the
// same dtype and shape, without any conversion.
Tensor device_bytes(Ops& ops, const Tensor& device) {
  (void)ops.download(ops.zeros({1}));  // everything queued so far is done
  Tensor host = Tensor::empty(device.dtype(), device.shape());
  if (host.nbytes()) {
    EXPECT_EQ(cudaMemcpy(host.raw_mut(), device.raw(), host.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return host;
}

// A host tensor's bytes in a plain (not row-scaled) host tensor, for bitwise_equal.
Tensor host_bytes(const Tensor& host) {
  Tensor copy = Tensor::empty(host.dtype(), host.shape());
  std::memcpy(copy.raw_mut(), host.raw(), host.nbytes());
  return copy;
}

class CudaWeightParkingTest : public testing::GpuTest {
 protected:
  void SetUp() override {
    GpuTest::SetUp();
    if (IsSkipped()) return;
    ops_ = gpu_.get();
    parking_ = ops_->weight_parking();
  }
  Ops* ops_ = nullptr;
  WeightParking* parking_ = nullptr;
};

TEST_F(CudaWeightParkingTest, ParkAndUnparkGiveTheBytesBackBitForBit) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  ASSERT_NE(parking_, nullptr);
  const Tensor matrix = testing::random_normal({37, 129}, rng_);
  const Tensor vector = testing::random_normal({1001}, rng_);
  const std::pair<const char*, Tensor> weights[] = {
      {"bf16 matrix", ops_->upload_weight(matrix)},
      {"f32 vector", ops_->upload_weight(vector)},
      {"int8 row-scaled", ops_->quantize_weight(matrix, DType::I8)},
      {"fp8 row-scaled", ops_->quantize_weight(matrix, DType::F8_E4M3)},
  };
  for (const auto& [what, weight] : weights) {
    SCOPED_TRACE(what);
    const Tensor parked = parking_->park(weight);
    EXPECT_EQ(parked.device(), Device::Host);
    EXPECT_EQ(parked.is_row_scaled(), weight.is_row_scaled());
    EXPECT_TRUE(bitwise_equal(host_bytes(parked), device_bytes(*ops_, weight)));
    poison_pool(weight.nbytes());  // the memory the pool hands out next holds NaN
    const Tensor back = parking_->unpark(parked);
    parking_->await(parking_->arrival());
    EXPECT_EQ(back.device(), Device::Cuda);
    EXPECT_TRUE(bitwise_equal(device_bytes(*ops_, back), host_bytes(parked)));
    if (weight.is_row_scaled()) {
      ASSERT_TRUE(back.is_row_scaled());
      EXPECT_TRUE(bitwise_equal(device_bytes(*ops_, back.row_scale()), device_bytes(*ops_, weight.row_scale())));
    }
  }
}

TEST_F(CudaWeightParkingTest, OpsAfterAwaitReadTheArrivedBytes) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  const int64_t rows = 4096, cols = 16384;  // 256 MiB of float32: ~5 ms over PCIe
  const Tensor values = testing::random_uniform({rows, cols}, rng_, -2.0f, 2.0f);
  const Tensor parked = parking_->park(ops_->upload(values));
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    poison_pool(parked.nbytes());
    const Tensor back = parking_->unpark(parked);
    parking_->await(parking_->arrival());
    // add() queued right away: without the wait it would race the copy and read NaN.
    const Tensor sum = ops_->add(back, ops_->zeros({cols}));
    EXPECT_TRUE(bitwise_equal(ops_->download(sum), values));
  }
}

TEST_F(CudaWeightParkingTest, RefusesWhatItCannotMove) {
  const Tensor host = testing::random_normal({8}, rng_);
  EXPECT_ERROR_MENTIONS(parking_->park(host), "device tensor");
  EXPECT_ERROR_MENTIONS(parking_->unpark(ops_->upload(host)), "already on the device");
  EXPECT_ERROR_MENTIONS(parking_->await(parking_->arrival() + 5), "never issued");
}

// The forward (eager, then through a DitRunner that captures the blocks as a graph on its
// second call) of `expert` equals `resident`'s, call for call, bit for bit.
void expect_same_forwards(Ops& ops, const WanModel& expert, const WanModel& resident,
                          const DitConfig& config, std::mt19937_64& rng) {
  DitRunner runner(ops);
  runner.begin_video();
  for (int call = 0; call < 4; ++call) {
    SCOPED_TRACE("call " + std::to_string(call));
    const testing::DitCall in = testing::random_dit_call(config, rng, 990.0 - 97.0 * call, 3, 10, 14, 37);
    const Tensor expected = resident.forward(ops, in.get());
    EXPECT_TRUE(bitwise_equal(runner.call(expert, in.get()), expected));
  }
  ASSERT_NE(runner.graphs(), nullptr);
  EXPECT_EQ(runner.graphs()->stats().captures, 1);
  EXPECT_TRUE(runner.graphs()->stats().failure.empty()) << runner.graphs()->stats().failure;
}

TEST_F(CudaWeightParkingTest, AnExpertBroughtBackComputesWhatTheResidentOneDoes) {
  SCOPED_TRACE("WANRT_TEST_SEED=" + std::to_string(seed_));
  const DitConfig config = testing::small_i2v_dit_config();
  const TensorStore weights = testing::random_dit_weights(config, rng_, 0.05f);
  for (const Quantization q : {Quantization::None, Quantization::Int8, Quantization::Fp8}) {
    SCOPED_TRACE(quantization_name(q));
    const WanModel resident = WanModel::load(config, weights, *ops_, {.quantize = q});
    const WanModel parked = resident.parked(*parking_);
    EXPECT_TRUE(parked.is_parked());
    EXPECT_ERROR_MENTIONS(parked.forward(*ops_, testing::random_dit_call(config, rng_, 500, 3, 10, 14, 37).get()),
                          "parked in host memory");
    {
      SCOPED_TRACE("parked()");
      const WanModel back = parked.unparked(*parking_);
      EXPECT_FALSE(back.is_parked());
      expect_same_forwards(*ops_, back, resident, config, rng_);
    }
    {
      SCOPED_TRACE("loaded straight into host memory");
      const WanModel loaded_parked = WanModel::load(config, weights, *ops_, {.quantize = q, .park = parking_});
      EXPECT_TRUE(loaded_parked.is_parked());
      expect_same_forwards(*ops_, loaded_parked.unparked(*parking_), resident, config, rng_);
    }
  }
}

#else
TEST(CudaWeightParking, NotBuilt) { GTEST_SKIP() << "SKIPPED: wanrt was built without CUDA (nvcc not found)"; }
#endif

}  // namespace
}  // namespace wanrt
