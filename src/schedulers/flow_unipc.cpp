#include "schedulers/flow_unipc.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"

namespace wanrt {
namespace {

// Log-SNR of a flow sigma, λ = log(1 − σ) − log(σ), in float32 like the reference.
float flow_lambda(float sigma) { return std::log(1.0f - sigma) - std::log(sigma); }

// The part shared by UniP and UniC: everything but r and ρ.
UniPCUpdate base_update(float sigma_t, float sigma_s0, int order) {
  UniPCUpdate update;
  update.order = order;
  if (sigma_t == 0.0f) {
    // λ(0) = +∞ would make h = +∞, expm1(−h) = −1 and the update x_t = m0 exactly; the
    // reference reaches this through IEEE infinities, we state it.
    update.returns_x0 = true;
    return update;
  }
  const float alpha_t = 1.0f - sigma_t;
  update.h = flow_lambda(sigma_t) - flow_lambda(sigma_s0);
  const float h_phi_1 = std::expm1(-update.h);  // bh2: B(h) = hφ₁ = expm1(−h)
  update.sample_ratio = sigma_t / sigma_s0;
  update.x0_coef = alpha_t * h_phi_1;
  update.bh_coef = alpha_t * h_phi_1;
  return update;
}

// Solves [[1, 1], [r, 1]]·ρ = b in float32 the way LAPACK's sgesv does (LU with partial
// pivoting, the multiplier formed with a reciprocal), as torch.linalg.solve does on the CPU.
void solve_corrector_weights(float r, float b1, float b2, float& rho0, float& rho1) {
  float a00 = 1.0f, a01 = 1.0f, a10 = r, a11 = 1.0f;
  float y0 = b1, y1 = b2;
  if (std::fabs(a10) > std::fabs(a00)) {
    std::swap(a00, a10);
    std::swap(a01, a11);
    std::swap(y0, y1);
  }
  const float multiplier = a10 * (1.0f / a00);
  const float u11 = a11 - multiplier * a01;
  y1 = y1 - multiplier * y0;
  rho1 = y1 / u11;
  rho0 = (y0 - rho1 * a01) / a00;
}

}  // namespace

int unipc_predictor_order(int k, int num_steps) {
  WANRT_ASSERT(k >= 0 && k < num_steps);
  if (k == 0 || k == num_steps - 1) return 1;
  return 2;
}

UniPCUpdate unipc_predictor_update(std::span<const float> sigmas, int k, int order) {
  WANRT_ASSERT(k >= 0 && static_cast<size_t>(k) + 1 < sigmas.size());
  WANRT_ASSERT(order == 1 || (order == 2 && k >= 1));
  const auto at = [&](int i) { return sigmas[static_cast<size_t>(i)]; };
  UniPCUpdate update = base_update(at(k + 1), at(k), order);
  if (order == 2 && !update.returns_x0) {
    update.r = (flow_lambda(at(k - 1)) - flow_lambda(at(k))) / update.h;
    update.rho_history = 0.5f;  // the reference's fixed order-2 predictor weight
  }
  return update;
}

UniPCUpdate unipc_corrector_update(std::span<const float> sigmas, int k, int order) {
  WANRT_ASSERT(k >= 1 && static_cast<size_t>(k) < sigmas.size());
  WANRT_ASSERT(order == 1 || (order == 2 && k >= 2));
  const auto at = [&](int i) { return sigmas[static_cast<size_t>(i)]; };
  UniPCUpdate update = base_update(at(k), at(k - 1), order);
  WANRT_ASSERT(!update.returns_x0);  // σ_k > 0 for every k < N
  if (order == 1) {
    update.rho_current = 0.5f;
    return update;
  }
  const float lambda_s0 = flow_lambda(at(k - 1));
  update.r = (flow_lambda(at(k - 2)) - lambda_s0) / update.h;
  // b_i = hφ_i·i!/B(h) with hφ_{i+1} = hφ_i/hh − 1/(i+1)!, hh = −h, starting from
  // hφ₁/hh − 1: the reference's recursion, evaluated in the same float32 order.
  const float hh = -update.h;
  const float b_h = std::expm1(hh);
  float h_phi_k = std::expm1(hh) / hh - 1.0f;
  const float b1 = h_phi_k / b_h;
  h_phi_k = h_phi_k / hh - 0.5f;
  const float b2 = h_phi_k * 2.0f / b_h;
  solve_corrector_weights(update.r, b1, b2, update.rho_history, update.rho_current);
  return update;
}

FlowUniPCScheduler::FlowUniPCScheduler(int steps, double shift)
    : FlowScheduler(unipc_schedule(steps, shift)) {}

void FlowUniPCScheduler::reset_impl() {
  x0_older_.clear();
  x0_previous_.clear();
  x0_current_.clear();
  last_sample_.clear();
  last_order_ = 0;
}

void FlowUniPCScheduler::step_impl(std::span<const float> velocity, std::span<float> x) {
  const int k = step_index();
  const size_t n = x.size();
  WANRT_CHECK(k == 0 || last_sample_.size() == n, "unipc scheduler: the sample has ", n,
              " elements at step ", k, " but ", last_sample_.size(),
              " before; call reset() between videos");
  const float sigma_k = sigmas()[static_cast<size_t>(k)];

  // 1. x0_k from the uncorrected sample; the history moves down one place (step 3).
  x0_older_.swap(x0_previous_);
  x0_previous_.swap(x0_current_);
  x0_current_.resize(n);
  for (size_t i = 0; i < n; ++i) x0_current_[i] = x[i] - sigma_k * velocity[i];
  const std::span<const float> m_this = x0_current_;
  const std::span<const float> m_prev = x0_previous_;
  const std::span<const float> m_older = x0_older_;

  // 2. UniC: correct x_k using x0_k, starting again from the corrected x_{k−1}.
  if (k > 0) {
    const UniPCUpdate c = unipc_corrector_update(sigmas(), k, last_order_);
    if (c.order == 1) {
      for (size_t i = 0; i < n; ++i) {
        const float base = c.sample_ratio * last_sample_[i] - c.x0_coef * m_prev[i];
        x[i] = base - c.bh_coef * (c.rho_current * (m_this[i] - m_prev[i]));
      }
    } else {
      // The reference's m0 is x0_{k−1} (m_prev) and its history entry x0_{k−2} (m_older).
      for (size_t i = 0; i < n; ++i) {
        const float base = c.sample_ratio * last_sample_[i] - c.x0_coef * m_prev[i];
        const float d1 = (m_older[i] - m_prev[i]) / c.r;
        const float correction = c.rho_history * d1 + c.rho_current * (m_this[i] - m_prev[i]);
        x[i] = base - c.bh_coef * correction;
      }
    }
  }

  // 4.–6. Order, then UniP from the corrected x_k.
  const int order = unipc_predictor_order(k, num_steps());
  last_sample_.assign(x.begin(), x.end());
  const UniPCUpdate p = unipc_predictor_update(sigmas(), k, order);
  if (p.returns_x0) {
    std::copy(m_this.begin(), m_this.end(), x.begin());
  } else if (p.order == 1) {
    for (size_t i = 0; i < n; ++i) x[i] = p.sample_ratio * x[i] - p.x0_coef * m_this[i];
  } else {
    for (size_t i = 0; i < n; ++i) {
      const float base = p.sample_ratio * x[i] - p.x0_coef * m_this[i];
      const float d1 = (m_prev[i] - m_this[i]) / p.r;
      x[i] = base - p.bh_coef * (p.rho_history * d1);
    }
  }
  last_order_ = order;
}

}  // namespace wanrt
