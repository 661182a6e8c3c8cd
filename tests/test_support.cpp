#include "test_support.h"

#include "core/error.h"

#include <cmath>
#include <cstring>
#include <cstdlib>
#include <filesystem>

#include <unistd.h>

namespace wanrt::testing {

namespace fs = std::filesystem;

std::optional<std::string> golden_dir(std::string* skip_reason) {
  skip_reason->clear();
  if (const char* env = std::getenv("WANRT_GOLDEN_DIR"); env && *env) {
    if (fs::is_directory(env)) return std::string(env);
    return std::nullopt;  // named but missing: the caller fails
  }
  const fs::path fallback = fs::path(WANRT_SOURCE_DIR) / ".." / "shared" / "golden";
  if (fs::is_directory(fallback)) return fs::canonical(fallback).string();
  *skip_reason =
      "SKIPPED: no golden data (set WANRT_GOLDEN_DIR or put shared/golden beside the repo)";
  return std::nullopt;
}

uint64_t test_seed() {
  if (const char* env = std::getenv("WANRT_TEST_SEED"); env && *env)
    return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

Tensor random_normal(Shape shape, std::mt19937_64& rng, float stddev) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  std::normal_distribution<float> dist(0.0f, stddev);
  for (float& v : t.floats()) v = dist(rng);
  return t;
}

Tensor random_uniform(Shape shape, std::mt19937_64& rng, float lo, float hi) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (float& v : t.floats()) v = dist(rng);
  return t;
}

Tensor poisoned(Shape shape) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  for (float& v : t.floats()) v = std::nanf("");
  return t;
}

double relative_error(const Tensor& actual, const Tensor& expected) {
  const Tensor a = actual.to(DType::F32);
  const Tensor b = expected.to(DType::F32);
  EXPECT_EQ(shape_str(a.shape()), shape_str(b.shape()));
  if (a.numel() != b.numel()) return INFINITY;
  double diff = 0, norm = 0;
  auto av = a.floats();
  auto bv = b.floats();
  for (size_t i = 0; i < av.size(); ++i) {
    if (std::isnan(av[i]) || std::isnan(bv[i])) return INFINITY;
    const double d = static_cast<double>(av[i]) - bv[i];
    diff += d * d;
    norm += static_cast<double>(bv[i]) * bv[i];
  }
  if (norm == 0) return diff == 0 ? 0 : INFINITY;
  return std::sqrt(diff / norm);
}

std::string temp_dir() {
  static const fs::path root = [] {
    fs::path p = fs::temp_directory_path() / ("wanrt-test-" + std::to_string(::getpid()) + "-" +
                                              std::to_string(std::random_device{}()));
    fs::create_directories(p);
    static struct Cleanup {
      fs::path path;
      ~Cleanup() {
        std::error_code ec;
        fs::remove_all(path, ec);
      }
    } cleanup{p};
    return p;
  }();
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = root / (info ? std::string(info->test_suite_name()) + "." + info->name() : "misc");
  fs::create_directories(dir);
  return dir.string();
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected a wanrt::Error";
  return {};
}

::testing::AssertionResult bitwise_equal(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape() || actual.dtype() != expected.dtype())
    return ::testing::AssertionFailure() << actual.describe() << " vs " << expected.describe();
  WANRT_CHECK(actual.device() == Device::Host && expected.device() == Device::Host &&
                  actual.is_contiguous() && expected.is_contiguous(),
              "bitwise_equal compares contiguous host tensors, got ", actual.describe(), " and ",
              expected.describe());
  if (std::memcmp(actual.raw(), expected.raw(), actual.nbytes()) == 0) return ::testing::AssertionSuccess();
  if (actual.dtype() == DType::F32) {
    const auto a = actual.floats(), e = expected.floats();
    for (size_t i = 0; i < a.size(); ++i)
      if (std::memcmp(&a[i], &e[i], sizeof(float)) != 0)
        return ::testing::AssertionFailure()
               << "first difference at element " << i << ": " << a[i] << " vs " << e[i]
               << " (relative error of the whole tensor " << relative_error(actual, expected) << ")";
  }
  const auto* a = static_cast<const unsigned char*>(actual.raw());
  const auto* e = static_cast<const unsigned char*>(expected.raw());
  size_t i = 0;
  while (a[i] == e[i]) ++i;
  return ::testing::AssertionFailure() << "first difference at byte " << i << " of " << actual.describe();
}

}  // namespace wanrt::testing
