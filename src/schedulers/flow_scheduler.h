// FlowScheduler: the solver that turns the DiT's (CFG-combined) velocity into the next latent.
//
// One object drives one video at a time: construct (or reset()), then call step() once per
// timestep in order. Tensors are host float32 and contiguous; the scheduler keeps its own
// history buffers, so the caller may reuse the velocity tensor between steps.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/tensor.h"
#include "schedulers/flow_schedule.h"

namespace wanrt {

class FlowScheduler {
 public:
  virtual ~FlowScheduler() = default;
  FlowScheduler(const FlowScheduler&) = delete;
  FlowScheduler& operator=(const FlowScheduler&) = delete;

  // "unipc" or "dpm++".
  virtual std::string_view name() const = 0;

  std::span<const int64_t> timesteps() const { return schedule_.timesteps; }
  std::span<const float> sigmas() const { return schedule_.sigmas; }  // num_steps() + 1 values
  int num_steps() const { return static_cast<int>(schedule_.timesteps.size()); }
  // The step the next step() call performs (0 after construction or reset()).
  int step_index() const { return step_index_; }
  // The timestep the model must be evaluated at for the next step().
  int64_t current_timestep() const;

  // Advances `sample` (x_k, updated in place to x_{k+1}) given the velocity v_k the model
  // predicted at timestep k. Calling it more than num_steps() times is an error.
  void step(const Tensor& velocity, Tensor& sample);

  // Forgets all history so the next step() is step 0 of a new video.
  void reset();

 protected:
  explicit FlowScheduler(FlowSchedule schedule);

  // One solver step on flat float32 data; step_index() is the k being performed.
  virtual void step_impl(std::span<const float> velocity, std::span<float> sample) = 0;
  virtual void reset_impl() = 0;

 private:
  FlowSchedule schedule_;
  int step_index_ = 0;
};

// A scheduler by its command-line name ("unipc" or "dpm++"), configured as Wan configures it.
std::unique_ptr<FlowScheduler> make_scheduler(std::string_view solver, int steps, double shift);

}  // namespace wanrt
