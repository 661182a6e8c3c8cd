// Sigma/timestep schedules of Wan's two flow-matching solvers (spec §3.1, §3.3).
//
// Both are built in float64 exactly as numpy does it (linspace element k = k·step + start,
// then the shift σ' = s·σ / (1 + (s−1)·σ)); the integer timesteps fed to the DiT are the
// float64 σ'·1000 truncated toward zero, and the solvers use the float32 sigmas with a final
// 0 appended. Matching these roundings is what makes the timesteps bit-identical to Wan's.
//
// The solvers here step by index. Wan's locate the first step by searching its timestep and
// take the second match if t_0 repeats (only at very large step counts, where Wan's loop then
// runs past its schedule); such schedules are not meant to match Wan.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace wanrt {

inline constexpr int kNumTrainTimesteps = 1000;

struct FlowSchedule {
  std::vector<int64_t> timesteps;  // N integers, decreasing, fed to the DiT
  std::vector<float> sigmas;       // N + 1 float32 values, the last one 0
};

// FlowUniPCMultistepScheduler.set_timesteps(N, shift): σ̂ = linspace(σ_max, 0, N+1)[:N] with
// σ_max = fp32(0.999), so the first timestep is 999.
FlowSchedule unipc_schedule(int steps, double shift);

// get_sampling_sigmas(N, shift) as handed to FlowDPMSolverMultistepScheduler: σ̂ =
// linspace(1, 0, N+1)[:N], so σ_0 = 1 exactly and the first timestep is 1000.
FlowSchedule dpmpp_schedule(int steps, double shift);

// How many leading steps run the high-noise expert: the count of t >= boundary·1000
// (the pipeline's plain threshold on the integer timestep, spec §2.6). Timesteps decrease,
// so these are steps 0..count−1. boundary must lie in [0, 1].
int high_noise_step_count(std::span<const int64_t> timesteps, double boundary);

}  // namespace wanrt
