// FlowUniPCMultistepScheduler as Wan configures it (spec §3.1): UniPC with the B(h) = expm1(−h)
// variant ("bh2"), solver order 2, data (x0) prediction, a UniC corrector on every step but
// the first, order 1 at the first step (warm-up) and at the last (lower_order_final).
//
// The reference computes every scalar (σ, α, λ, h, B(h), r, ρ) as float32 CPU tensors and
// every tensor operation in float32, one rounding per operation. We repeat those scalar
// computations in float and apply them with the same operation order, so the trajectory
// stays within a few float32 roundings of Wan's over any number of steps.
#pragma once

#include <span>
#include <vector>

#include "schedulers/flow_scheduler.h"

namespace wanrt {

// The scalars of one UniP (predictor) or UniC (corrector) update from σ_s0 to σ_t.
//   base = sample_ratio·x − x0_coef·m0
//   D₁   = (m_prev − m0) / r                               (order 2 only)
//   predictor: x_t = base − bh_coef·(rho_history·D₁)       (order 2; order 1: x_t = base)
//   corrector: x_t = base − bh_coef·(rho_history·D₁ + rho_current·(x0_t − m0))
struct UniPCUpdate {
  int order = 1;
  bool returns_x0 = false;  // σ_t = 0: the update is exactly x_t = m0 (h = +∞, B(h) = −1)
  float sample_ratio = 0;   // σ_t / σ_s0
  float x0_coef = 0;        // α_t·hφ₁, hφ₁ = expm1(−h)
  float bh_coef = 0;        // α_t·B(h)
  float h = 0;              // λ(σ_t) − λ(σ_s0)
  float r = 0;              // (λ(σ_s1) − λ(σ_s0)) / h, negative (order 2)
  float rho_history = 0;    // predictor: 0.5; corrector: ρ₀ of the 2×2 solve (order 2)
  float rho_current = 0;    // corrector only: 0.5 (order 1) or ρ₁ (order 2)
};

// Predictor of step k (σ_s0 = σ_k → σ_t = σ_{k+1}); order 2 also uses σ_{k−1}.
UniPCUpdate unipc_predictor_update(std::span<const float> sigmas, int k, int order);
// Corrector applied at the start of step k ≥ 1 (σ_s0 = σ_{k−1} → σ_t = σ_k), with the order
// the predictor of step k−1 used; order 2 also uses σ_{k−2}.
UniPCUpdate unipc_corrector_update(std::span<const float> sigmas, int k, int order);
// Predictor order at step k of n: warm-up 1 at k = 0, 1 at the final step, else 2.
int unipc_predictor_order(int k, int num_steps);

class FlowUniPCScheduler final : public FlowScheduler {
 public:
  FlowUniPCScheduler(int steps, double shift);
  std::string_view name() const override { return "unipc"; }

 private:
  void step_impl(std::span<const float> velocity, std::span<float> sample) override;
  void reset_impl() override;

  // The x0 history: x0_{k−2}, x0_{k−1}, x0_k while step k runs (the corrector needs all three).
  std::vector<float> x0_older_;
  std::vector<float> x0_previous_;
  std::vector<float> x0_current_;
  std::vector<float> last_sample_;  // corrected x_{k−1}, the corrector's starting point
  int last_order_ = 0;              // predictor order of the previous step (0: none yet)
};

}  // namespace wanrt
