// MagCache and offloading through the whole I2V pipeline on the golden tiny checkpoint
// (shared/golden/Wan2.2-I2V-tiny, case e2e/dpmpp_6steps_guide2_4): the calls the pipeline skips are
// exactly the ones the policy decides for the real schedule, and the summary counts them;
// MagCache that never skips and offloading both leave the video bit-identical; one pipeline
// object forgets the previous video; calibration writes a table MagCache can run on.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "pipeline/i2v_pipeline.h"
#include "schedulers/flow_schedule.h"
#include "schedulers/flow_scheduler.h"
#include "schedulers/magcache.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;
using testing::relative_error;

using testing::bitwise_equal;

// The golden case's request, with its injected noise.
struct GoldenCase {
  SafetensorsContents data;
  Tensor noise;
  I2VRequest request;
};

GoldenCase load_case(const std::string& golden, const std::string& name) {
  GoldenCase c;
  c.data = read_safetensors(golden + "/e2e/" + name + ".safetensors");
  const auto meta = nlohmann::json::parse(c.data.metadata.at("meta"));
  c.noise = c.data.tensors.get("noise").to(DType::F32);
  I2VRequest& r = c.request;
  r.image_path = golden + "/e2e/" + name + "_input.png";
  r.prompt_ids = meta.at("prompt_ids").get<std::vector<int64_t>>();
  r.negative_prompt_ids = meta.at("n_prompt_ids").get<std::vector<int64_t>>();
  r.max_area = meta.at("max_area").get<int64_t>();
  r.frame_num = meta.at("frames").get<int64_t>();
  r.solver = meta.at("solver").get<std::string>();
  r.steps = meta.at("steps").get<int>();
  r.shift = meta.at("shift").get<double>();
  r.guide_low = meta.at("guide").at(0).get<double>();
  r.guide_high = meta.at("guide").at(1).get<double>();
  return c;
}

// Which calls a run skipped, from the progress reports (call 2k cond, 2k + 1 uncond).
struct SkipRecord {
  std::vector<bool> skipped;
  DenoiseProgressFn callback() {
    return [this](const DenoiseProgress& p) {
      skipped.push_back(p.cond_skipped);
      skipped.push_back(p.uncond_skipped);
    };
  }
};

// The smaller golden case (5 frames, 6 dpm++ steps at shift 3: 2 high-noise steps), so the
// several videos below stay quick on the CPU.
constexpr const char* kCase = "dpmpp_6steps_guide2_4";
constexpr MagCacheSettings kE012K2R20{
    .threshold = 0.12, .max_skipped_calls = 2, .retention_ratio = 0.2};

TEST(MagCacheE2E, SkipsTheCallsThePolicyDecidesAndCountsThem) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const auto pipeline = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", *ops);
  GoldenCase c = load_case(golden, kCase);
  c.request.noise = &c.noise;

  // The schedule the pipeline must follow: the shipped table resampled to the case's steps,
  // split at the real schedule's first low-noise step.
  const int steps = c.request.steps;
  const auto scheduler = make_scheduler(c.request.solver, steps, c.request.shift);
  const int split = 2 * high_noise_step_count(scheduler->timesteps(), 0.9);
  EXPECT_EQ(split, 4);
  MagCachePolicy policy(load_default_mag_ratios(MagRatioTable::I2V_A14B), steps, split,
                        MagCacheMode::I2V, kE012K2R20);
  std::vector<bool> expected;
  for (int call = 0; call < 2 * steps; ++call) expected.push_back(policy.decide());
  const auto expected_skips = static_cast<int>(std::count(expected.begin(), expected.end(), true));
  ASSERT_GT(expected_skips, 0) << "this setting must skip here, or the test proves nothing";
  for (int call = 0; call < split; ++call)
    EXPECT_FALSE(expected[static_cast<size_t>(call)]) << "high-noise call " << call;

  const I2VResult full = pipeline->generate(c.request);
  EXPECT_EQ(full.dit_calls.computed, 2 * steps);
  EXPECT_EQ(full.dit_calls.skipped, 0);

  c.request.magcache = kE012K2R20;
  SkipRecord record;
  const I2VResult cached = pipeline->generate(c.request, record.callback());
  EXPECT_EQ(record.skipped, expected);
  EXPECT_EQ(cached.dit_calls.skipped, expected_skips);
  EXPECT_EQ(cached.dit_calls.computed, 2 * steps - expected_skips);
  for (float v : cached.latent.floats()) ASSERT_TRUE(std::isfinite(v));
  const double drift = relative_error(cached.latent, full.latent);
  const double golden_err = relative_error(cached.latent, c.data.tensors.get("final_latent"));
  std::printf(
      "  E012K2R20 at %d steps: %d of %d calls skipped; final latent vs full compute %.3e, "
      "vs golden %.3e\n",
      steps, expected_skips, 2 * steps, drift, golden_err);
  EXPECT_GT(drift, 0.0) << "skipped calls changed nothing: the cache was not used";
}

// Spec §5.6 through the pipeline: 40 UniPC steps at shift 5 (split at call 30) on a one-frame,
// four-token video so 80 calls stay cheap.
TEST(MagCacheE2E, FortyStepSchedulesGiveTheSpecFullForwardCounts) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const auto pipeline = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", *ops);
  std::mt19937_64 rng(testing::test_seed());
  const Tensor image = testing::random_uniform({3, 32, 32}, rng, -1.0f, 1.0f);
  I2VRequest request;
  request.image = &image;
  request.prompt = "a cat";
  request.max_area = 32 * 32;
  request.frame_num = 1;
  request.steps = 40;
  request.shift = 5.0;
  request.seed = 3;

  struct Case {
    const char* name;
    MagCacheSettings settings;
    int full_forwards;  // spec §5.6
  };
  const Case cases[] = {{"E012K2R20", {0.12, 2, 0.2}, 58},
                        {"E012K2R10", {0.12, 2, 0.1}, 54},
                        {"E024K2R10", {0.24, 2, 0.1}, 51}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    request.magcache = c.settings;
    SkipRecord record;
    const I2VResult result = pipeline->generate(request, record.callback());
    EXPECT_EQ(result.dit_calls.computed, c.full_forwards);
    EXPECT_EQ(result.dit_calls.skipped, 80 - c.full_forwards);
    for (int call = 0; call < 30; ++call)
      EXPECT_FALSE(record.skipped.at(static_cast<size_t>(call))) << call;
    if (std::string(c.name) == "E012K2R20") {
      std::vector<int> skipped;
      for (size_t call = 0; call < record.skipped.size(); ++call)
        if (record.skipped[call]) skipped.push_back(static_cast<int>(call));
      EXPECT_EQ(skipped, (std::vector<int>{40, 41, 42, 43, 46, 47, 48, 49, 52, 53, 54,
                                           55, 58, 59, 60, 61, 64, 65, 68, 69, 72, 73}));
    }
  }
}

TEST(MagCacheE2E, NeverSkippingMagCacheAndOffloadingLeaveTheVideoUnchanged) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const auto pipeline = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", *ops);
  std::vector<std::string> messages;
  I2VPipelineOptions offload_options;
  offload_options.offload = true;
  offload_options.log = [&](const std::string& m) { messages.push_back(m); };
  const auto offloading = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", *ops, offload_options);
  GoldenCase c = load_case(golden, kCase);
  c.request.noise = &c.noise;

  const I2VResult plain = pipeline->generate(c.request);
  EXPECT_LE(relative_error(plain.latent, c.data.tensors.get("final_latent")), 1e-4);
  c.request.magcache =
      MagCacheSettings{.threshold = 0.0, .max_skipped_calls = 2, .retention_ratio = 0.0};
  const I2VResult never_skips = pipeline->generate(c.request);
  EXPECT_EQ(never_skips.dit_calls.skipped, 0);
  EXPECT_TRUE(bitwise_equal(never_skips.latent, plain.latent));

  c.request.magcache.reset();
  for (int video = 0; video < 2; ++video) {  // the second video brings the high-noise expert back
    messages.clear();
    const I2VResult offloaded = offloading->generate(c.request);
    EXPECT_TRUE(bitwise_equal(offloaded.latent, plain.latent)) << "video " << video;
    EXPECT_TRUE(bitwise_equal(offloaded.video, plain.video)) << "video " << video;
    std::string log;
    for (const std::string& m : messages) log += m + "\n";
    EXPECT_NE(log.find("T5 encoder freed"), std::string::npos) << log;
    EXPECT_NE(log.find("low-noise expert brought to the device"), std::string::npos) << log;
    EXPECT_EQ(log.find("high-noise expert brought") != std::string::npos, video == 1) << log;
    if (video == 1) {
      EXPECT_NE(log.find("T5 encoder brought back"), std::string::npos) << log;
    }
    EXPECT_GT(offloaded.times.offload, 0.0);
  }
}

TEST(MagCacheE2E, OnePipelineForgetsThePreviousVideo) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const auto pipeline = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", *ops);
  GoldenCase c = load_case(golden, kCase);
  c.request.magcache = kE012K2R20;
  std::mt19937_64 rng(testing::test_seed());
  const Tensor other_noise = testing::random_normal(c.noise.shape(), rng);

  c.request.noise = &c.noise;
  const I2VResult first = pipeline->generate(c.request);  // fresh pipeline
  c.request.noise = &other_noise;
  const I2VResult between = pipeline->generate(c.request);  // leaves residuals and counters behind
  c.request.noise = &c.noise;
  const I2VResult again = pipeline->generate(c.request);
  EXPECT_TRUE(bitwise_equal(again.latent, first.latent));
  EXPECT_EQ(again.dit_calls.skipped, first.dit_calls.skipped);
  EXPECT_EQ(between.dit_calls.skipped,
            first.dit_calls.skipped);  // the schedule is data-independent
  EXPECT_GT(first.dit_calls.skipped, 0);
  EXPECT_GT(relative_error(between.latent, first.latent), 1e-3);
}

TEST(MagCacheE2E, CalibrationWritesATableMagCacheRunsOn) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const auto pipeline = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", *ops);
  GoldenCase c = load_case(golden, kCase);
  c.request.noise = &c.noise;
  c.request.calibrate_magcache = true;
  const I2VResult calibration = pipeline->generate(c.request);
  EXPECT_EQ(calibration.dit_calls.computed, 2 * c.request.steps);
  ASSERT_EQ(calibration.measured_mag_ratios.size(), static_cast<size_t>(2 * c.request.steps - 2));
  for (double r : calibration.measured_mag_ratios) EXPECT_TRUE(std::isfinite(r) && r > 0) << r;
  // Calibration only measures: the video is the plain one.
  EXPECT_LE(relative_error(calibration.latent, c.data.tensors.get("final_latent")), 1e-4);

  const std::string path = testing::temp_dir() + "/tiny.json";
  save_mag_ratios(path, calibration.measured_mag_ratios, "tiny", "test");
  c.request.calibrate_magcache = false;
  c.request.magcache =
      MagCacheSettings{.threshold = 10.0, .max_skipped_calls = 1, .retention_ratio = 0.0};
  c.request.magcache_ratios = load_mag_ratios(path);
  const I2VResult cached = pipeline->generate(c.request);
  // Threshold 10 and K 1 over a low-noise phase with no retention: every other low-noise call of
  // each branch is skipped, whatever the ratios.
  EXPECT_GT(cached.dit_calls.skipped, 0);

  c.request.calibrate_magcache = true;  // with MagCache on: refused before any work
  EXPECT_THROW(pipeline->generate(c.request), Error);
}

}  // namespace
}  // namespace wanrt
