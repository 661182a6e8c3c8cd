#include "schedulers/flow_schedule.h"

#include <cmath>

#include "core/error.h"

namespace wanrt {
namespace {

void check_arguments(int steps, double shift) {
  WANRT_CHECK(steps >= 1, "sampling steps must be at least 1, got ", steps);
  WANRT_CHECK(std::isfinite(shift) && shift > 0, "sample shift must be a positive number, got ",
              shift);
}

// numpy.linspace(start, 0, steps + 1)[:steps]: element k is k·step + start.
std::vector<double> linspace_to_zero_without_endpoint(double start, int steps) {
  const double step = (0.0 - start) / static_cast<double>(steps);
  std::vector<double> values(static_cast<size_t>(steps));
  for (int k = 0; k < steps; ++k) values[static_cast<size_t>(k)] = k * step + start;
  return values;
}

FlowSchedule shifted_schedule(std::vector<double> sigmas, double shift, int steps) {
  FlowSchedule schedule;
  schedule.timesteps.reserve(sigmas.size());
  schedule.sigmas.reserve(sigmas.size() + 1);
  for (double sigma : sigmas) {
    // Same operation order as numpy: (shift·σ) / (1 + (shift − 1)·σ).
    const double shifted = shift * sigma / (1.0 + (shift - 1.0) * sigma);
    schedule.timesteps.push_back(static_cast<int64_t>(shifted * kNumTrainTimesteps));
    schedule.sigmas.push_back(static_cast<float>(shifted));
  }
  schedule.sigmas.push_back(0.0f);
  // The solvers divide by σ_k and by differences of log-SNRs of neighbouring sigmas, so two
  // float32 sigmas that coincide (too many steps for the shift) would divide by zero.
  for (size_t k = 0; k + 1 < schedule.sigmas.size(); ++k)
    WANRT_CHECK(schedule.sigmas[k] > schedule.sigmas[k + 1],
                "sample shift ", shift, " with ", steps,
                " steps gives equal float32 sigmas at steps ", k, " and ", k + 1,
                "; use fewer steps or a smaller shift");
  return schedule;
}

}  // namespace

FlowSchedule unipc_schedule(int steps, double shift) {
  check_arguments(steps, shift);
  // The training sigmas are 1 − linspace(1, 1/1000, 1000) reversed, stored as float32: the
  // largest is fp32(0.999), not 1, which is why UniPC starts at t = 999.
  const double sigma_max = static_cast<double>(static_cast<float>(1.0 - 1.0 / kNumTrainTimesteps));
  FlowSchedule schedule =
      shifted_schedule(linspace_to_zero_without_endpoint(sigma_max, steps), shift, steps);
  WANRT_CHECK(schedule.sigmas.front() < 1.0f, "sample shift ", shift,
              " is too large for the unipc solver: the first sigma rounds to 1 in float32");
  return schedule;
}

FlowSchedule dpmpp_schedule(int steps, double shift) {
  check_arguments(steps, shift);
  // set_timesteps re-applies the shift formula with the config shift 1, an exact identity.
  return shifted_schedule(linspace_to_zero_without_endpoint(1.0, steps), shift, steps);
}

int high_noise_step_count(std::span<const int64_t> timesteps, double boundary) {
  WANRT_CHECK(std::isfinite(boundary) && boundary >= 0 && boundary <= 1,
              "expert boundary must lie in [0, 1], got ", boundary);
  const double threshold = boundary * kNumTrainTimesteps;
  int count = 0;
  for (int64_t t : timesteps)
    if (static_cast<double>(t) >= threshold) ++count;
  return count;
}

}  // namespace wanrt
