// The schedulers against trajectories recorded from Wan's own FlowUniPCMultistepScheduler and
// FlowDPMSolverMultistepScheduler (golden/scheduler/*.safetensors): each file feeds the
// recorded model outputs `preds` [S, ...] step by step from `latents[0]`; the timesteps, the
// sigmas and the latent after every step must match (README: 1e-6 absolute on
// timesteps/sigmas, 1e-5 relative on latents). Solver, steps and shift come from each file's
// `meta` JSON; every file in the folder is a case.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "schedulers/flow_scheduler.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;

constexpr double kScheduleTolerance = 1e-6;
constexpr double kLatentTolerance = 1e-5;

std::vector<std::string> golden_cases(const std::string& golden_root) {
  std::vector<std::string> files;
  const fs::path folder = fs::path(golden_root) / "scheduler";
  if (!fs::is_directory(folder)) return files;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

void check_case(const std::string& path) {
  SCOPED_TRACE(path);
  const SafetensorsContents file = read_safetensors(path);
  const auto meta_entry = file.metadata.find("meta");
  ASSERT_NE(meta_entry, file.metadata.end()) << "no 'meta' in __metadata__";
  const nlohmann::json meta = nlohmann::json::parse(meta_entry->second);
  const std::string solver = meta.at("solver").get<std::string>();
  const int steps = meta.at("steps").get<int>();
  const double shift = meta.at("shift").get<double>();

  const Tensor preds = file.tensors.get("preds").to(DType::F32);
  const Tensor latents = file.tensors.get("latents").to(DType::F32);
  const Tensor timesteps = file.tensors.get("timesteps").to(DType::F64);
  const Tensor sigmas = file.tensors.get("sigmas").to(DType::F64);
  ASSERT_EQ(preds.size(0), steps);
  ASSERT_EQ(latents.size(0), steps + 1);
  ASSERT_EQ(timesteps.numel(), steps);
  ASSERT_EQ(sigmas.numel(), steps + 1);

  auto scheduler = make_scheduler(solver, steps, shift);
  double worst_timestep = 0, worst_sigma = 0, worst_latent = 0;
  int worst_step = -1;
  for (int k = 0; k < steps; ++k) {
    const double t_error =
        std::fabs(static_cast<double>(scheduler->timesteps()[static_cast<size_t>(k)]) -
                  timesteps.data<double>()[k]);
    worst_timestep = std::max(worst_timestep, t_error);
    EXPECT_LE(t_error, kScheduleTolerance) << "timestep " << k;
  }
  for (int k = 0; k <= steps; ++k) {
    const double s_error = std::fabs(
        static_cast<double>(scheduler->sigmas()[static_cast<size_t>(k)]) - sigmas.data<double>()[k]);
    worst_sigma = std::max(worst_sigma, s_error);
    EXPECT_LE(s_error, kScheduleTolerance) << "sigma " << k;
  }

  Tensor sample = latents.slice_rows(0, 1).clone();
  const Shape one_step_shape = sample.shape();
  for (int k = 0; k < steps; ++k) {
    const Tensor velocity = preds.slice_rows(k, k + 1).clone();
    scheduler->step(velocity, sample);
    const Tensor expected = latents.slice_rows(k + 1, k + 2);
    const double error = testing::relative_error(sample, expected);
    if (error > worst_latent || worst_step < 0) {
      worst_latent = error;
      worst_step = k;
    }
    EXPECT_LE(error, kLatentTolerance) << "latent after step " << k;
  }
  std::printf("[ golden   ] %-34s %-5s steps %2d shift %4.1f: worst |dt| %.1e, |dsigma| %.2e, "
              "latent rel %.2e (step %d)\n",
              fs::path(path).filename().c_str(), solver.c_str(), steps, shift, worst_timestep,
              worst_sigma, worst_latent, worst_step);
}

TEST(SchedulersGolden, AllRecordedTrajectories) {
  WANRT_REQUIRE_GOLDEN(golden);
  const std::vector<std::string> cases = golden_cases(golden);
  ASSERT_FALSE(cases.empty()) << "no *.safetensors in " << golden << "/scheduler";
  for (const std::string& path : cases) check_case(path);
  std::printf("[ golden   ] %zu scheduler trajectories checked\n", cases.size());
}

}  // namespace
}  // namespace wanrt
