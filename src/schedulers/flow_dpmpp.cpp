#include "schedulers/flow_dpmpp.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"

namespace wanrt {
namespace {

float flow_lambda(float sigma) { return std::log(1.0f - sigma) - std::log(sigma); }

}  // namespace

DpmppUpdate dpmpp_update(std::span<const float> sigmas, int k) {
  WANRT_ASSERT(k >= 0 && static_cast<size_t>(k) + 1 < sigmas.size());
  const int num_steps = static_cast<int>(sigmas.size()) - 1;
  const auto at = [&](int i) { return sigmas[static_cast<size_t>(i)]; };
  const float sigma_t = at(k + 1), sigma_s0 = at(k);
  const float alpha_t = 1.0f - sigma_t, alpha_s0 = 1.0f - sigma_s0;

  DpmppUpdate update;
  if (sigma_t == 0.0f) {
    update.returns_x0 = true;
    return update;
  }
  update.sample_ratio = sigma_t / sigma_s0;
  if (alpha_s0 == 0.0f) {
    update.x0_coef = -alpha_t;  // λ_s0 = −∞: h = +∞ and e^{−h} − 1 = −1
    return update;
  }
  const float lambda_s0 = flow_lambda(sigma_s0);
  const float h = flow_lambda(sigma_t) - lambda_s0;
  update.x0_coef = alpha_t * (std::exp(-h) - 1.0f);
  // Second order needs a previous x0, and not the final step (which returned above); after a
  // step from σ = 1 the previous λ is −∞, r₀ = +∞ and D₁ = 0: first order.
  const bool has_history = k >= 1 && 1.0f - at(k - 1) != 0.0f;
  if (!has_history || k == num_steps - 1) return update;
  update.order = 2;
  const float h0 = lambda_s0 - flow_lambda(at(k - 1));
  update.inv_r0 = 1.0f / (h0 / h);
  return update;
}

FlowDpmppScheduler::FlowDpmppScheduler(int steps, double shift)
    : FlowScheduler(dpmpp_schedule(steps, shift)) {}

void FlowDpmppScheduler::reset_impl() {
  x0_previous_.clear();
  x0_current_.clear();
}

void FlowDpmppScheduler::step_impl(std::span<const float> velocity, std::span<float> x) {
  const int k = step_index();
  const size_t n = x.size();
  WANRT_CHECK(k == 0 || x0_current_.size() == n, "dpm++ scheduler: the sample has ", n,
              " elements at step ", k, " but ", x0_current_.size(),
              " before; call reset() between videos");
  const float sigma_k = sigmas()[static_cast<size_t>(k)];
  x0_previous_.swap(x0_current_);
  x0_current_.resize(n);
  for (size_t i = 0; i < n; ++i) x0_current_[i] = x[i] - sigma_k * velocity[i];
  const std::span<const float> m0 = x0_current_;
  const std::span<const float> m1 = x0_previous_;

  const DpmppUpdate u = dpmpp_update(sigmas(), k);
  if (u.returns_x0) {
    std::copy(m0.begin(), m0.end(), x.begin());
  } else if (u.order == 1) {
    for (size_t i = 0; i < n; ++i) x[i] = u.sample_ratio * x[i] - u.x0_coef * m0[i];
  } else {
    const float half_x0_coef = 0.5f * u.x0_coef;
    for (size_t i = 0; i < n; ++i) {
      const float d1 = u.inv_r0 * (m0[i] - m1[i]);
      x[i] = u.sample_ratio * x[i] - u.x0_coef * m0[i] - half_x0_coef * d1;
    }
  }
}

}  // namespace wanrt
