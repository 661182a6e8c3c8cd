// FlowDPMSolverMultistepScheduler as Wan configures it (spec §3.3): DPM-Solver++ of order 2,
// midpoint variant, no corrector; first order at step 0 (warm-up) and at the final step
// (final_sigmas_type "zero"). Scalars in float32 and tensor operations in the reference's
// float32 operation order, as for UniPC.
//
// Three places where the reference relies on IEEE infinities are stated explicitly here:
//   σ_0 = 1 (α_0 = 0, λ_0 = −∞): step 0 gives x_1 = σ_1·x_0 + α_1·x0_0;
//   step 1 then has h₀ = +∞, so D₁ = 0 and the update is the first-order one;
//   σ_N = 0 (λ_N = +∞): the last step returns x0_{N−1} exactly.
#pragma once

#include <span>
#include <vector>

#include "schedulers/flow_scheduler.h"

namespace wanrt {

// The scalars of one update from σ_s0 = σ_k to σ_t = σ_{k+1}:
//   x_t = sample_ratio·x − x0_coef·m0 − (0.5·x0_coef)·(inv_r0·(m0 − m1))   (order 2)
//   x_t = sample_ratio·x − x0_coef·m0                                       (order 1)
struct DpmppUpdate {
  int order = 1;
  bool returns_x0 = false;  // σ_t = 0
  float sample_ratio = 0;   // σ_t / σ_s0
  float x0_coef = 0;        // α_t·(e^{−h} − 1)
  float inv_r0 = 0;         // 1 / r₀ with r₀ = (λ_s0 − λ_s1) / h (order 2)
};

// The update of step k of n (orders and edge cases included).
DpmppUpdate dpmpp_update(std::span<const float> sigmas, int k);

class FlowDpmppScheduler final : public FlowScheduler {
 public:
  FlowDpmppScheduler(int steps, double shift);
  std::string_view name() const override { return "dpm++"; }

 private:
  void step_impl(std::span<const float> velocity, std::span<float> sample) override;
  void reset_impl() override;

  std::vector<float> x0_previous_;  // m1 = x0_{k−1}
  std::vector<float> x0_current_;   // m0 = x0_k
};

}  // namespace wanrt
