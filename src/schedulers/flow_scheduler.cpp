#include "schedulers/flow_scheduler.h"

#include "schedulers/flow_dpmpp.h"
#include "schedulers/flow_unipc.h"

namespace wanrt {

FlowScheduler::FlowScheduler(FlowSchedule schedule) : schedule_(std::move(schedule)) {
  WANRT_ASSERT(!schedule_.timesteps.empty());
  WANRT_ASSERT(schedule_.sigmas.size() == schedule_.timesteps.size() + 1);
}

int64_t FlowScheduler::current_timestep() const {
  WANRT_CHECK(step_index_ < num_steps(), name(), " scheduler: all ", num_steps(),
              " steps are done; call reset() before sampling another video");
  return schedule_.timesteps[static_cast<size_t>(step_index_)];
}

void FlowScheduler::step(const Tensor& velocity, Tensor& sample) {
  WANRT_CHECK(step_index_ < num_steps(), name(), " scheduler: step() called ", step_index_ + 1,
              " times for a schedule of ", num_steps(),
              " steps; call reset() before sampling another video");
  for (const Tensor* tensor : {&velocity, static_cast<const Tensor*>(&sample)}) {
    WANRT_CHECK(tensor->device() == Device::Host && tensor->dtype() == DType::F32 &&
                    tensor->is_contiguous() && tensor->defined(),
                name(), " scheduler: tensors must be contiguous host F32, got ",
                tensor->describe());
  }
  WANRT_CHECK(velocity.shape() == sample.shape(), name(), " scheduler: velocity ",
              velocity.describe(), " and sample ", sample.describe(), " differ in shape");
  step_impl(velocity.floats(), sample.floats());
  ++step_index_;
}

void FlowScheduler::reset() {
  step_index_ = 0;
  reset_impl();
}

std::unique_ptr<FlowScheduler> make_scheduler(std::string_view solver, int steps, double shift) {
  if (solver == "unipc") return std::make_unique<FlowUniPCScheduler>(steps, shift);
  if (solver == "dpm++") return std::make_unique<FlowDpmppScheduler>(steps, shift);
  fail("unknown sample solver '", solver, "' (--sample_solver): expected 'unipc' or 'dpm++'");
}

}  // namespace wanrt
