// MagCache decision logic against the schedules of spec §5.6 (simulated there from the §5.3
// algorithm and the §5.4 I2V-A14B table), the §5.3 interpolation example, and the table
// loader's error handling.
#include <cmath>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "schedulers/flow_schedule.h"
#include "schedulers/magcache.h"
#include "test_support.h"

namespace wanrt {
namespace {

// The split call of I2V-A14B at 40 steps, shift 5, from the real UniPC timestep list.
int i2v_split_call() {
  return 2 * high_noise_step_count(unipc_schedule(40, 5.0).timesteps, 0.9);
}

std::vector<int> skipped_calls(MagCachePolicy& policy) {
  std::vector<int> skipped;
  for (int call = 0; call < policy.num_calls(); ++call) {
    EXPECT_EQ(policy.next_call(), call);
    if (policy.decide()) skipped.push_back(call);
  }
  return skipped;
}

MagCachePolicy i2v_policy(double threshold, int k, double retention) {
  return MagCachePolicy(load_default_mag_ratios(MagRatioTable::I2V_A14B), 40, i2v_split_call(),
                        MagCacheMode::I2V, {threshold, k, retention});
}

TEST(MagCache, SplitCallComesFromTheRealSchedule) { EXPECT_EQ(i2v_split_call(), 30); }

TEST(MagCache, I2VSkipSchedulesMatchSpec) {
  struct Case {
    const char* name;
    double threshold;
    double retention;
    std::vector<int> skipped;  // spec §5.6
  };
  const std::vector<Case> cases = {
      {"E012K2R20", 0.12, 0.2,
       {40, 41, 42, 43, 46, 47, 48, 49, 52, 53, 54, 55, 58, 59, 60, 61, 64, 65, 68, 69, 72, 73}},
      {"E012K2R10", 0.12, 0.1,
       {35, 36, 37, 38, 41, 42, 43, 44, 47, 48, 49, 50, 53,
        54, 55, 56, 59, 60, 61, 62, 65, 66, 69, 70, 73, 74}},
      {"E024K2R10", 0.24, 0.1,
       {35, 36, 37, 38, 41, 42, 43, 44, 47, 48, 49, 50, 53, 54, 55,
        56, 59, 60, 61, 62, 65, 66, 67, 68, 71, 72, 73, 76, 77}},
  };
  const std::vector<int> full_forwards = {58, 54, 51};
  for (size_t i = 0; i < cases.size(); ++i) {
    MagCachePolicy policy = i2v_policy(cases[i].threshold, 2, cases[i].retention);
    const std::vector<int> skipped = skipped_calls(policy);
    EXPECT_EQ(skipped, cases[i].skipped) << cases[i].name;
    EXPECT_EQ(80 - static_cast<int>(skipped.size()), full_forwards[i]) << cases[i].name;
  }
}

TEST(MagCache, I2VFullForwardCountsMatchSpec) {
  MagCachePolicy readme_example = i2v_policy(0.06, 2, 0.1);  // E006K2R10
  EXPECT_EQ(80 - skipped_calls(readme_example).size(), 59u);
  MagCachePolicy script_defaults = i2v_policy(0.04, 2, 0.2);  // E004K2R20
  EXPECT_EQ(80 - skipped_calls(script_defaults).size(), 66u);
}

TEST(MagCache, HighNoisePhaseIsNeverSkippedInI2VMode) {
  for (double threshold : {0.04, 0.12, 10.0}) {
    MagCachePolicy policy = i2v_policy(threshold, 100, 0.0);
    for (int call : skipped_calls(policy)) EXPECT_GE(call, 30) << threshold;
  }
}

TEST(MagCache, StateResetsBetweenVideos) {
  MagCachePolicy policy = i2v_policy(0.12, 2, 0.2);
  const std::vector<int> first = skipped_calls(policy);
  EXPECT_EQ(policy.next_call(), 0);  // reset by itself after call 79
  EXPECT_EQ(skipped_calls(policy), first);
  // An explicit reset in the middle of a video starts the schedule over.
  for (int call = 0; call < 45; ++call) policy.decide();
  policy.reset();
  EXPECT_EQ(skipped_calls(policy), first);
}

TEST(MagCache, TwentyStepCondIndexMapMatchesSpec) {
  const std::vector<int> expected = {0,  2,  4,  6,  8,  10, 12, 14, 16, 18,
                                     21, 23, 25, 27, 29, 31, 33, 35, 37, 39};
  EXPECT_EQ(nearest_interp_indices(40, 20), expected);
  EXPECT_EQ(nearest_interp_indices(40, 1), std::vector<int>{39});
  EXPECT_EQ(nearest_interp_indices(40, 40)[39], 39);
  // Round half to even: 3 entries → 5: i·0.5 = 0, 0.5, 1, 1.5, 2 → 0, 0, 1, 2, 2.
  EXPECT_EQ(nearest_interp_indices(3, 5), (std::vector<int>{0, 0, 1, 2, 2}));

  // Through the table: a synthetic table whose value names its padded position.
  std::vector<double> calibrated(78);
  for (size_t j = 0; j < calibrated.size(); ++j) calibrated[j] = 2.0 + static_cast<double>(j);
  const std::vector<double> ratios = mag_ratios_for_steps(calibrated, 20);
  ASSERT_EQ(ratios.size(), 40u);
  for (size_t i = 0; i < expected.size(); ++i) {
    const double padded_cond = expected[i] == 0 ? 1.0 : 2.0 * expected[i];  // 2·idx − 2 + 2
    EXPECT_EQ(ratios[2 * i], padded_cond) << i;
    EXPECT_EQ(ratios[2 * i + 1], expected[i] == 0 ? 1.0 : padded_cond + 1) << i;
  }
  // 40 steps: the padded table as is.
  const std::vector<double> same = mag_ratios_for_steps(calibrated, 40);
  ASSERT_EQ(same.size(), 80u);
  EXPECT_EQ(same[0], 1.0);
  EXPECT_EQ(same[1], 1.0);
  EXPECT_EQ(same[2], 2.0);
  EXPECT_EQ(same[79], 79.0);
}

TEST(MagCache, ShippedTablesLoad) {
  EXPECT_EQ(load_default_mag_ratios(MagRatioTable::I2V_A14B).size(), 78u);
  EXPECT_EQ(load_default_mag_ratios(MagRatioTable::T2V_A14B).size(), 78u);
  EXPECT_EQ(load_default_mag_ratios(MagRatioTable::TI2V_5B_T2V).size(), 98u);
  EXPECT_EQ(load_default_mag_ratios(MagRatioTable::TI2V_5B_I2V).size(), 98u);
  // Spot checks against spec §5.4: the expert-switch dips.
  EXPECT_EQ(load_default_mag_ratios(MagRatioTable::I2V_A14B)[28], 0.91076);
  EXPECT_EQ(load_default_mag_ratios(MagRatioTable::T2V_A14B)[51], 0.65252);
  EXPECT_EQ(load_default_mag_ratios(MagRatioTable::TI2V_5B_I2V)[97], 0.96616);
}

TEST(MagCache, GatingModes) {
  const std::vector<double> flat(78, 1.0);  // never accumulates error: skips up to K in a row
  // t2v: a share R of each expert's calls is computed (calls < int(30·0.2) = 6, and
  // 30 ≤ call ≤ 50·0.2 + 30 = 40).
  MagCachePolicy t2v(flat, 40, 30, MagCacheMode::T2V, {0.5, 1000, 0.2});
  std::vector<int> computed;
  for (int call = 0; call < 80; ++call)
    if (!t2v.decide()) computed.push_back(call);
  EXPECT_EQ(computed, (std::vector<int>{0, 1, 2, 3, 4, 5, 30, 31, 32, 33, 34, 35, 36, 37, 38,
                                        39, 40}));
  // ti2v: calls < int(80·0.25) = 20 are computed.
  MagCachePolicy ti2v(flat, 40, 0, MagCacheMode::TI2V, {0.5, 1000, 0.25});
  computed.clear();
  for (int call = 0; call < 80; ++call)
    if (!ti2v.decide()) computed.push_back(call);
  EXPECT_EQ(computed.size(), 20u);
  EXPECT_EQ(computed.back(), 19);
  // No residual yet for a branch: computed even when cache-eligible (the reference crashes).
  MagCachePolicy eager(flat, 40, 0, MagCacheMode::TI2V, {0.5, 1000, 0.0});
  EXPECT_FALSE(eager.decide());
  EXPECT_FALSE(eager.decide());
  EXPECT_TRUE(eager.decide());
  EXPECT_EQ(parse_magcache_mode("t2v"), MagCacheMode::T2V);
  EXPECT_THROW(parse_magcache_mode("flf2v"), Error);
}

TEST(MagCache, InvalidPolicyArgumentsAreErrors) {
  const std::vector<double> table(78, 0.99);
  const MagCacheSettings ok{0.1, 2, 0.2};
  EXPECT_THROW(MagCachePolicy(table, 0, 0, MagCacheMode::I2V, ok), Error);
  EXPECT_THROW(MagCachePolicy(table, 40, 31, MagCacheMode::I2V, ok), Error);  // odd split
  EXPECT_THROW(MagCachePolicy(table, 40, 82, MagCacheMode::I2V, ok), Error);
  EXPECT_THROW(MagCachePolicy(table, 40, 30, MagCacheMode::I2V, {-0.1, 2, 0.2}), Error);
  EXPECT_THROW(MagCachePolicy(table, 40, 30, MagCacheMode::I2V, {0.1, -1, 0.2}), Error);
  EXPECT_THROW(MagCachePolicy(table, 40, 30, MagCacheMode::I2V, {0.1, 2, 1.5}), Error);
  EXPECT_THROW(MagCachePolicy(std::vector<double>(77, 1.0), 40, 30, MagCacheMode::I2V, ok),
               Error);
}

TEST(MagCache, LoaderReportsBadFiles) {
  const std::string dir = testing::temp_dir();
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << text;
    return path;
  };
  auto expect_error = [](const std::string& path, const std::string& fragment) {
    try {
      load_mag_ratios(path);
      ADD_FAILURE() << path << ": no error";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      EXPECT_NE(message.find(fragment), std::string::npos) << message;
    }
  };
  expect_error(dir + "/missing.json", "cannot open");
  expect_error(write("broken.json", "{\"ratios\": [0.9, "), "not valid JSON");
  expect_error(write("no_ratios.json", "{\"values\": [0.9, 0.9]}"), "\"ratios\"");
  expect_error(write("text.json", "{\"ratios\": [0.9, \"x\"]}"), "entry 1");
  expect_error(write("negative.json", "{\"ratios\": [0.9, -0.9]}"), "positive");
  expect_error(write("odd.json", "{\"ratios\": [0.9, 0.9, 0.9]}"), "even");
  expect_error(write("steps.json", "{\"calibrated_steps\": 3, \"ratios\": [0.9, 0.9]}"),
               "calibrated_steps");
  EXPECT_EQ(load_mag_ratios(write("good.json", "{\"calibrated_steps\": 2, \"ratios\": [0.5, 2]}")),
            (std::vector<double>{0.5, 2.0}));
}

TEST(MagCache, SavedTablesLoadBack) {
  const std::string path = testing::temp_dir() + "/calibrated.json";
  std::mt19937_64 rng(testing::test_seed());
  std::uniform_real_distribution<double> ratio(0.5, 1.5);
  std::vector<double> ratios(22);  // 12 steps
  for (double& r : ratios) r = ratio(rng);
  save_mag_ratios(path, ratios, "test \"model\"", "a unit test");
  const std::vector<double> loaded = load_mag_ratios(path);  // also checks calibrated_steps
  ASSERT_EQ(loaded.size(), ratios.size());
  for (size_t j = 0; j < ratios.size(); ++j) EXPECT_NEAR(loaded[j], ratios[j], 5e-7) << j;
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"calibrated_steps\": 12"), std::string::npos) << text;
  EXPECT_NE(text.find("\"model\": \"test \\\"model\\\"\""), std::string::npos) << text;
  // A saved table drives a policy like the shipped ones.
  MagCachePolicy policy(loaded, 12, 6, MagCacheMode::I2V, {0.12, 2, 0.2});
  EXPECT_EQ(policy.num_calls(), 24);

  EXPECT_THROW(save_mag_ratios(path, {0.9, 0.9, 0.9}, "m", "s"), Error);  // odd count
  EXPECT_THROW(save_mag_ratios(path, {}, "m", "s"), Error);
  EXPECT_THROW(save_mag_ratios(path, {0.9, -1.0}, "m", "s"), Error);
  EXPECT_THROW(save_mag_ratios(path, {0.9, std::nan("")}, "m", "s"), Error);
  EXPECT_THROW(save_mag_ratios(testing::temp_dir() + "/no/such/folder.json", {0.9, 0.9}, "m", "s"),
               Error);
}

}  // namespace
}  // namespace wanrt
