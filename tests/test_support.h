// Shared helpers for the test suites: the golden folder, random inputs, error metrics.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>

#include "core/tensor.h"

namespace wanrt::testing {

// The golden data folder, from WANRT_GOLDEN_DIR, else ../shared/golden beside the repo root.
// WANRT_GOLDEN_DIR naming a missing folder is a test failure; no folder at all (a user's
// clone) makes the calling test skip with a visible message. Use through the macro below.
std::optional<std::string> golden_dir(std::string* skip_reason);

#define WANRT_REQUIRE_GOLDEN(var)                                              \
  std::string var;                                                             \
  do {                                                                         \
    std::string wanrt_skip_reason;                                             \
    auto wanrt_dir = ::wanrt::testing::golden_dir(&wanrt_skip_reason);         \
    if (!wanrt_dir) {                                                          \
      if (!wanrt_skip_reason.empty()) GTEST_SKIP() << wanrt_skip_reason;       \
      FAIL() << "WANRT_GOLDEN_DIR names a folder that does not exist";         \
    }                                                                          \
    var = *wanrt_dir;                                                          \
  } while (0)

// A fresh seed per test run (printed on failure through SCOPED_TRACE by the caller), unless
// WANRT_TEST_SEED is set.
uint64_t test_seed();
// Host F32 tensor of N(0, stddev²) values.
Tensor random_normal(Shape shape, std::mt19937_64& rng, float stddev = 1.0f);
// Host F32 tensor of uniform values in [lo, hi).
Tensor random_uniform(Shape shape, std::mt19937_64& rng, float lo, float hi);
// A host F32 tensor full of NaN: outputs are poisoned with this before a kernel writes them.
Tensor poisoned(Shape shape);

// ‖a − b‖ / ‖b‖ over all elements, in double; NaN anywhere gives +inf.
double relative_error(const Tensor& actual, const Tensor& expected);
// Bit-for-bit equality of two host tensors (shape, dtype and bytes; NaN equals the same NaN).
// The failure message names the first differing element (F32) or byte, and the relative error.
::testing::AssertionResult bitwise_equal(const Tensor& actual, const Tensor& expected);
// A temporary folder unique to this test, removed at exit of the process.
std::string temp_dir();

// The message of the wanrt::Error that `action` throws; if it throws none, a test failure and
// "" (so a check on the message fails too).
std::string error_of(const std::function<void()>& action);

// EXPECTs `statement` to throw a wanrt::Error whose message contains `text`.
#define EXPECT_ERROR_MENTIONS(statement, text)                                                \
  do {                                                                                        \
    const std::string wanrt_message = ::wanrt::testing::error_of([&] { (void)(statement); }); \
    EXPECT_NE(wanrt_message.find(text), std::string::npos) << wanrt_message;                  \
  } while (0)

}  // namespace wanrt::testing
