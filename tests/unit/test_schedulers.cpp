// Properties of the flow schedules and solvers that need no golden files: the schedules and
// scalars printed in spec §3, consistency with the Euler step, exactness on straight paths,
// the final step, and argument checking.
#include <cmath>
#include <string>
#include <vector>

#include "schedulers/flow_dpmpp.h"
#include "schedulers/flow_schedule.h"
#include "schedulers/flow_scheduler.h"
#include "schedulers/flow_unipc.h"
#include "test_support.h"

namespace wanrt {
namespace {

using testing::random_normal;
using testing::relative_error;

// Spec §3.2: I2V default, 40 steps, shift 5.
TEST(FlowSchedule, UniPCDefaultI2VScheduleMatchesSpec) {
  const FlowSchedule schedule = unipc_schedule(40, 5.0);
  const std::vector<int64_t> expected = {
      999, 994, 989, 983, 978, 972, 965, 959, 952, 944, 937, 929, 920, 911,
      902, 892, 882, 870, 859, 846, 833, 818, 803, 786, 768, 749, 728, 706,
      681, 654, 624, 591, 555, 514, 468, 416, 356, 288, 208, 113};
  EXPECT_EQ(schedule.timesteps, expected);
  ASSERT_EQ(schedule.sigmas.size(), 41u);
  // A few σ_k of the spec's table (printed with 9 digits).
  EXPECT_NEAR(schedule.sigmas[0], 0.999799848, 1e-8);
  EXPECT_NEAR(schedule.sigmas[14], 0.902526855, 1e-8);
  EXPECT_NEAR(schedule.sigmas[15], 0.892601848, 1e-8);
  EXPECT_NEAR(schedule.sigmas[39], 0.11353305, 1e-8);
  EXPECT_EQ(schedule.sigmas[40], 0.0f);
  EXPECT_EQ(high_noise_step_count(schedule.timesteps, 0.9), 15);
}

TEST(FlowSchedule, UniPCShift3AndT2VBoundaryMatchSpec) {
  const FlowSchedule shift3 = unipc_schedule(40, 3.0);
  const std::vector<int64_t> expected = {
      999, 991, 982, 973, 963, 954, 944, 933, 922, 911, 899, 887, 874, 861,
      847, 832, 817, 801, 785, 767, 749, 730, 710, 688, 666, 642, 617, 590,
      562, 531, 499, 465, 428, 388, 345, 299, 249, 195, 136, 71};
  EXPECT_EQ(shift3.timesteps, expected);
  EXPECT_EQ(high_noise_step_count(shift3.timesteps, 0.9), 10);
  EXPECT_EQ(high_noise_step_count(unipc_schedule(40, 12.0).timesteps, 0.875), 26);
}

TEST(FlowSchedule, DpmppScheduleStartsAt1000AndMatchesSpec) {
  const FlowSchedule schedule = dpmpp_schedule(40, 5.0);
  const std::vector<int64_t> expected = {
      1000, 994, 989, 984, 978, 972, 965, 959, 952, 945, 937, 929, 921, 912,
      902,  892, 882, 871, 859, 846, 833, 818, 803, 787, 769, 750, 729, 706,
      681,  654, 625, 592, 555, 514, 468, 416, 357, 288, 208, 113};
  EXPECT_EQ(schedule.timesteps, expected);
  EXPECT_EQ(schedule.sigmas.front(), 1.0f);
  EXPECT_EQ(schedule.sigmas.back(), 0.0f);
  EXPECT_EQ(high_noise_step_count(schedule.timesteps, 0.9), 15);
  for (int steps : {1, 2, 7, 50}) EXPECT_EQ(dpmpp_schedule(steps, 3.0).timesteps[0], 1000);
}

TEST(FlowSchedule, HighNoiseCountEdges) {
  const std::vector<int64_t> timesteps = {1000, 900, 899, 10};
  EXPECT_EQ(high_noise_step_count(timesteps, 0.9), 2);
  EXPECT_EQ(high_noise_step_count(timesteps, 0.0), 4);
  EXPECT_EQ(high_noise_step_count(timesteps, 1.0), 1);
  EXPECT_THROW(high_noise_step_count(timesteps, 1.5), Error);
  EXPECT_THROW(high_noise_step_count(timesteps, std::nan("")), Error);
}

// Spec §3.2 "reference scalars" (float64 on the fp32 sigmas; ours are float32 like Wan's).
TEST(FlowUniPC, CoefficientsMatchSpecReferenceScalars) {
  const FlowSchedule schedule = unipc_schedule(40, 5.0);
  const std::span<const float> sigmas = schedule.sigmas;
  const double tolerance = 5e-6;

  const UniPCUpdate p0 = unipc_predictor_update(sigmas, 0, unipc_predictor_order(0, 40));
  EXPECT_EQ(p0.order, 1);
  EXPECT_NEAR(p0.h, 3.282489, tolerance);
  EXPECT_NEAR(p0.sample_ratio, 0.994894, tolerance);
  EXPECT_NEAR(-p0.x0_coef, 0.005106, tolerance);

  const UniPCUpdate p1 = unipc_predictor_update(sigmas, 1, unipc_predictor_order(1, 40));
  EXPECT_EQ(p1.order, 2);
  EXPECT_NEAR(p1.h, 0.699687, tolerance);
  EXPECT_NEAR(p1.r, -4.691370, tolerance);
  EXPECT_EQ(p1.rho_history, 0.5f);

  const UniPCUpdate c2 = unipc_corrector_update(sigmas, 2, 2);
  EXPECT_NEAR(c2.h, 0.699687, tolerance);
  EXPECT_NEAR(c2.r, -4.691370, tolerance);
  EXPECT_NEAR(c2.rho_history, 0.029048, tolerance);
  EXPECT_NEAR(c2.rho_current, 0.528789, tolerance);

  const UniPCUpdate c20 = unipc_corrector_update(sigmas, 20, 2);
  EXPECT_NEAR(c20.rho_history, 0.083115, tolerance);
  EXPECT_NEAR(c20.rho_current, 0.425215, tolerance);

  EXPECT_NEAR(unipc_predictor_update(sigmas, 38, 2).h, 0.719096, tolerance);
  const UniPCUpdate p39 = unipc_predictor_update(sigmas, 39, unipc_predictor_order(39, 40));
  EXPECT_EQ(p39.order, 1);
  EXPECT_TRUE(p39.returns_x0);

  EXPECT_EQ(unipc_corrector_update(sigmas, 1, 1).rho_current, 0.5f);
}

TEST(FlowUniPC, PredictorOrdersAreWarmupTwoThenFinalOne) {
  std::vector<int> orders;
  for (int k = 0; k < 40; ++k) orders.push_back(unipc_predictor_order(k, 40));
  std::vector<int> expected(40, 2);
  expected.front() = expected.back() = 1;
  EXPECT_EQ(orders, expected);
  EXPECT_EQ(unipc_predictor_order(0, 1), 1);
}

TEST(FlowDpmpp, OrdersAndEdgeCases) {
  const FlowSchedule schedule = dpmpp_schedule(10, 5.0);
  const DpmppUpdate first = dpmpp_update(schedule.sigmas, 0);
  EXPECT_EQ(first.order, 1);
  EXPECT_EQ(first.sample_ratio, schedule.sigmas[1]);          // σ_1 / 1
  EXPECT_EQ(first.x0_coef, -(1.0f - schedule.sigmas[1]));     // −α_1
  EXPECT_EQ(dpmpp_update(schedule.sigmas, 1).order, 1);       // h₀ = +∞ after σ_0 = 1
  for (int k = 2; k < 9; ++k) EXPECT_EQ(dpmpp_update(schedule.sigmas, k).order, 2) << k;
  EXPECT_TRUE(dpmpp_update(schedule.sigmas, 9).returns_x0);
}

// A first-order step of either solver is, in exact arithmetic, the Euler flow step.
TEST(FlowSchedulers, FirstStepEqualsEulerStep) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const char* solver : {"unipc", "dpm++"}) {
    for (auto [steps, shift] : {std::pair{40, 5.0}, {10, 3.0}, {4, 1.0}, {50, 12.0}}) {
      auto scheduler = make_scheduler(solver, steps, shift);
      const Tensor velocity = random_normal({16, 3, 5, 7}, rng);
      Tensor sample = random_normal({16, 3, 5, 7}, rng);
      Tensor euler = sample.clone();
      const double dsigma =
          static_cast<double>(scheduler->sigmas()[1]) - scheduler->sigmas()[0];
      for (size_t i = 0; i < euler.floats().size(); ++i)
        euler.floats()[i] = static_cast<float>(euler.floats()[i] + dsigma * velocity.floats()[i]);
      scheduler->step(velocity, sample);
      const double error = relative_error(sample, euler);
      EXPECT_LE(error, 2e-6) << solver << " steps " << steps << " shift " << shift;
    }
  }
}

// The final step returns x0 = x − σ_{N−1}·v bit-exactly (σ_N = 0 is special-cased).
TEST(FlowSchedulers, FinalStepReturnsX0Exactly) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const char* solver : {"unipc", "dpm++"}) {
    for (int steps : {1, 2, 3, 12}) {
      auto scheduler = make_scheduler(solver, steps, 5.0);
      Tensor sample = random_normal({2, 3, 4, 5}, rng);
      for (int k = 0; k < steps; ++k) {
        const Tensor velocity = random_normal({2, 3, 4, 5}, rng);
        const Tensor before = sample.clone();
        scheduler->step(velocity, sample);
        if (k + 1 < steps) continue;
        const float sigma = scheduler->sigmas()[static_cast<size_t>(k)];
        size_t mismatches = 0;
        for (size_t i = 0; i < sample.floats().size(); ++i)
          mismatches += sample.floats()[i] != before.floats()[i] - sigma * velocity.floats()[i];
        EXPECT_EQ(mismatches, 0u) << solver << " with " << steps << " steps";
      }
    }
  }
}

// On a straight flow path x_σ = (1−σ)·x0 + σ·noise with the true velocity noise − x0, every
// x0 prediction is exact, so both multistep solvers must land on x0.
TEST(FlowSchedulers, StraightPathEndsAtItsCleanSample) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Tensor clean = random_normal({4, 3, 8, 8}, rng);
  const Tensor noise = random_normal({4, 3, 8, 8}, rng);
  Tensor velocity = Tensor::empty(DType::F32, clean.shape());
  for (size_t i = 0; i < velocity.floats().size(); ++i)
    velocity.floats()[i] = noise.floats()[i] - clean.floats()[i];
  for (const char* solver : {"unipc", "dpm++"}) {
    for (int steps : {4, 40}) {
      auto scheduler = make_scheduler(solver, steps, 5.0);
      const double sigma0 = scheduler->sigmas()[0];
      Tensor sample = Tensor::empty(DType::F32, clean.shape());
      for (size_t i = 0; i < sample.floats().size(); ++i)
        sample.floats()[i] =
            static_cast<float>((1 - sigma0) * clean.floats()[i] + sigma0 * noise.floats()[i]);
      for (int k = 0; k < steps; ++k) {
        scheduler->step(velocity, sample);
        // Between steps the sample stays on the path.
        const double sigma = scheduler->sigmas()[static_cast<size_t>(k + 1)];
        Tensor on_path = Tensor::empty(DType::F32, clean.shape());
        for (size_t i = 0; i < on_path.floats().size(); ++i)
          on_path.floats()[i] =
              static_cast<float>((1 - sigma) * clean.floats()[i] + sigma * noise.floats()[i]);
        EXPECT_LE(relative_error(sample, on_path), 1e-5) << solver << " step " << k;
      }
      EXPECT_LE(relative_error(sample, clean), 1e-5) << solver << " " << steps << " steps";
    }
  }
}

TEST(FlowSchedulers, ResetReplaysTheSameTrajectory) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Tensor start = random_normal({3, 4, 5}, rng);
  std::vector<Tensor> velocities;
  for (int k = 0; k < 6; ++k) velocities.push_back(random_normal({3, 4, 5}, rng));
  for (const char* solver : {"unipc", "dpm++"}) {
    auto scheduler = make_scheduler(solver, 6, 5.0);
    std::vector<float> first_run;
    for (int run = 0; run < 2; ++run) {
      Tensor sample = start.clone();
      EXPECT_EQ(scheduler->step_index(), 0);
      for (const Tensor& v : velocities) {
        EXPECT_EQ(scheduler->current_timestep(),
                  scheduler->timesteps()[static_cast<size_t>(scheduler->step_index())]);
        scheduler->step(v, sample);
      }
      EXPECT_THROW(scheduler->step(velocities[0], sample), Error) << "step after the last";
      const std::span<const float> values = sample.floats();
      if (run == 0) first_run.assign(values.begin(), values.end());
      else EXPECT_EQ(std::vector<float>(values.begin(), values.end()), first_run) << solver;
      scheduler->reset();
    }
  }
}

TEST(FlowSchedulers, InvalidArgumentsAreErrors) {
  auto expect_error = [](auto&& call, const std::string& fragment) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error([] { make_scheduler("euler", 40, 5.0); }, "euler");
  expect_error([] { make_scheduler("unipc", 0, 5.0); }, "steps");
  expect_error([] { make_scheduler("dpm++", -3, 5.0); }, "steps");
  expect_error([] { make_scheduler("unipc", 40, 0.0); }, "shift");
  expect_error([] { make_scheduler("dpm++", 40, -1.0); }, "shift");
  expect_error([] { make_scheduler("unipc", 40, std::nan("")); }, "shift");
  expect_error([] { make_scheduler("unipc", 40, 1e12); }, "shift");

  auto scheduler = make_scheduler("unipc", 4, 5.0);
  Tensor sample = Tensor::zeros(DType::F32, {2, 3});
  expect_error([&] { scheduler->step(Tensor::zeros(DType::F32, {3, 2}), sample); }, "shape");
  expect_error([&] { scheduler->step(Tensor::zeros(DType::BF16, {2, 3}), sample); }, "F32");
  scheduler->step(Tensor::zeros(DType::F32, {2, 3}), sample);
  Tensor bigger = Tensor::zeros(DType::F32, {4, 3});
  expect_error([&] { scheduler->step(Tensor::zeros(DType::F32, {4, 3}), bigger); }, "reset");
}

}  // namespace
}  // namespace wanrt
