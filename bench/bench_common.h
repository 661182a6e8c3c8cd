// What the benchmark programs share: flag parsing, the backend (CUDA, or the CPU reference for
// testing the programs themselves), device-memory measurement, timing and statistics.
// Header-only: each bench_*.cpp is one program (CMake builds every bench/*.cpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "backends/ops.h"
#include "core/error.h"

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_ops.h"
#endif

namespace wanrt::bench {

inline constexpr double kH100DenseBf16Tflops = 989.0;  // H100 SXM, dense bf16 tensor cores
inline constexpr double kGB = 1e9;

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- flags ----

// A tiny parser: --name, --name VALUE or --name=VALUE; every argument must be consumed, so a
// typo is an error instead of a silently ignored flag.
class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) args_.emplace_back(argv[i]);
    used_.assign(args_.size(), false);
  }

  bool flag(const std::string& name) {
    for (size_t i = 0; i < args_.size(); ++i)
      if (!used_[i] && args_[i] == name) return used_[i] = true;
    return false;
  }
  std::optional<std::string> value(const std::string& name) {
    std::optional<std::string> found;
    for (size_t i = 0; i < args_.size(); ++i) {
      if (used_[i]) continue;
      if (args_[i] == name) {
        WANRT_CHECK(i + 1 < args_.size(), name, ": needs a value");
        used_[i] = used_[i + 1] = true;
        found = args_[i + 1];
      } else if (args_[i].starts_with(name + "=")) {
        used_[i] = true;
        found = args_[i].substr(name.size() + 1);
      }
    }
    return found;  // the last one given wins
  }
  int64_t integer(const std::string& name, int64_t fallback, int64_t min_value) {
    const std::optional<std::string> text = value(name);
    if (!text) return fallback;
    size_t end = 0;
    int64_t parsed = 0;
    try {
      parsed = std::stoll(*text, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    WANRT_CHECK(end == text->size() && !text->empty(), name, " ", *text, ": not an integer");
    WANRT_CHECK(parsed >= min_value, name, " ", parsed, ": must be at least ", min_value);
    return parsed;
  }
  double number(const std::string& name, double fallback, double min_value) {
    const std::optional<std::string> text = value(name);
    if (!text) return fallback;
    size_t end = 0;
    double parsed = 0;
    try {
      parsed = std::stod(*text, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    WANRT_CHECK(end == text->size() && !text->empty() && std::isfinite(parsed), name, " ", *text,
                ": not a number");
    WANRT_CHECK(parsed >= min_value, name, " ", parsed, ": must be at least ", min_value);
    return parsed;
  }
  // After every flag was read: anything left is an error.
  void finish() const {
    for (size_t i = 0; i < args_.size(); ++i)
      WANRT_CHECK(used_[i], "unknown argument '", args_[i], "' (run with --help for the flags)");
  }

 private:
  std::vector<std::string> args_;
  std::vector<bool> used_;
};

// ---- the backend ----

struct Backend {
  std::unique_ptr<Ops> ops;
  std::function<void()> sync;  // waits for every queued op (ProfilingOps and the timers)
  std::string description;     // "cuda: NVIDIA H100 ..., sm_90, 132 SMs, 79.1 GiB"
  bool cuda = false;
  int device = 0;
};

#ifdef WANRT_HAVE_CUDA
inline Backend make_cuda_backend(const CudaOptions& options) {
  WANRT_CHECK(cuda::device_count() > 0, "no CUDA device found (this program measures the CUDA "
              "backend; run it with --cpu --tiny to test its logic on the CPU)");
  const cuda::DeviceInfo info = cuda::device_info(options.device);
  Backend backend;
  backend.ops = make_cuda_ops(options);
  backend.sync = [] { cuda::synchronize(); };
  backend.cuda = true;
  backend.device = options.device;
  char text[256];
  std::snprintf(text, sizeof text, "cuda: %s, sm_%d%d, %d SMs, %.1f GiB (device %d)",
                info.name.c_str(), info.compute_major, info.compute_minor, info.multiprocessors,
                static_cast<double>(info.total_memory) / (1u << 30), options.device);
  backend.description = text;
  return backend;
}
#endif

inline Backend make_cpu_backend() {
  Backend backend;
  backend.ops = make_cpu_ops();
  backend.sync = [] {};  // CPU ops are finished when they return
  backend.description = "cpu: the float32 reference backend (for testing this program only)";
  return backend;
}

// The CUDA backend unless `cpu`; a build without CUDA can only run --cpu.
inline void require_cuda_build(bool cpu) {
#ifndef WANRT_HAVE_CUDA
  WANRT_CHECK(cpu, "this build has no CUDA backend (nvcc was not found, or WANRT_CUDA=OFF); "
              "run with --cpu --tiny to test the program on the CPU");
#else
  (void)cpu;
#endif
}

// ---- device memory ----

// Peak device memory over a stretch of work. The CUDA backend allocates from the device's
// stream-ordered memory pool (cudaMallocAsync), which keeps what it reserved, so the peak is
// what was in use at the start (cudaMemGetInfo: weights, the pool's reservation so far, the
// CUDA context) plus how far the pool's reservation rose above its starting size
// (cudaMemPoolAttrReservedMemHigh, reset at start). Memory taken outside the pool
// (cudaMalloc) during the stretch shows only if still held at the end, so the peak is also at
// least what is in use then. start() first trims the pool to what is allocated, so memory the
// pool kept from earlier work (another size, another phase) does not count.
struct MemoryPeak {
  bool measured = false;
  double in_use_before = 0, in_use_after = 0;  // bytes (cudaMemGetInfo: total − free)
  double pool_growth = 0;                      // pool reservation high-water − start
  double pool_used_high = 0;                   // bytes handed out by the pool at its peak
  double peak() const { return std::max(in_use_after, in_use_before + pool_growth); }
  std::string describe() const {
    if (!measured) return "n/a (CPU backend)";
    char text[256];
    std::snprintf(text, sizeof text,
                  "%.2f GB (in use before %.2f GB, pool reservation grew by %.2f GB, pool's "
                  "allocations peaked at %.2f GB; in use after %.2f GB)",
                  peak() / kGB, in_use_before / kGB, pool_growth / kGB, pool_used_high / kGB,
                  in_use_after / kGB);
    return text;
  }
};

class MemoryMeter {
 public:
  explicit MemoryMeter(const Backend& backend) : cuda_(backend.cuda), device_(backend.device) {}

  // Device memory in use now (all processes), bytes; 0 on the CPU backend.
  double in_use() const {
#ifdef WANRT_HAVE_CUDA
    if (cuda_) {
      size_t free_bytes = 0, total_bytes = 0;
      check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
      return static_cast<double>(total_bytes - free_bytes);
    }
#endif
    return 0;
  }

  void start() {
    peak_ = MemoryPeak{};
#ifdef WANRT_HAVE_CUDA
    if (!cuda_) return;
    peak_.measured = true;
    cudaMemPool_t pool = current_pool();
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    check(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo");
    peak_.in_use_before = in_use();
    uint64_t zero = 0;  // resets each high-water mark to the current value
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero), "reset ReservedMemHigh");
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), "reset UsedMemHigh");
    reserved_at_start_ = pool_attribute(pool, cudaMemPoolAttrReservedMemCurrent);
#endif
  }

  MemoryPeak stop() {
#ifdef WANRT_HAVE_CUDA
    if (cuda_) {
      cudaMemPool_t pool = current_pool();
      const double reserved_high = pool_attribute(pool, cudaMemPoolAttrReservedMemHigh);
      peak_.pool_growth = std::max(0.0, reserved_high - reserved_at_start_);
      peak_.pool_used_high = pool_attribute(pool, cudaMemPoolAttrUsedMemHigh);
      peak_.in_use_after = in_use();
    }
#endif
    return peak_;
  }

 private:
#ifdef WANRT_HAVE_CUDA
  static void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) fail("CUDA error in ", what, ": ", cudaGetErrorString(status));
  }
  cudaMemPool_t current_pool() const {
    cudaMemPool_t pool = nullptr;  // the pool cudaMallocAsync draws from on this device
    check(cudaDeviceGetMemPool(&pool, device_), "cudaDeviceGetMemPool");
    return pool;
  }
  static double pool_attribute(cudaMemPool_t pool, cudaMemPoolAttr attribute) {
    uint64_t value = 0;
    check(cudaMemPoolGetAttribute(pool, attribute, &value), "cudaMemPoolGetAttribute");
    return static_cast<double>(value);
  }
  double reserved_at_start_ = 0;
#endif
  bool cuda_ = false;
  int device_ = 0;
  MemoryPeak peak_;
};

// ---- statistics and text ----

struct Summary {
  double mean = 0, min = 0, max = 0;
  size_t count = 0;
};
inline Summary summarize(const std::vector<double>& values) {
  Summary s;
  s.count = values.size();
  if (values.empty()) return s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  for (double v : values) s.mean += v;
  s.mean /= static_cast<double>(values.size());
  return s;
}

// printf into a std::string.
template <typename... Values>
std::string fmt(const char* pattern, Values... values) {
  char text[512];
  std::snprintf(text, sizeof text, pattern, values...);
  return text;
}

// Checks a host result for NaN/Inf: random weights keep activations finite, so a non-finite
// value means a backend bug (the timing of a broken kernel is worthless).
inline std::string finite_check(const Tensor& host_f32) {
  int64_t bad = 0;
  double sum_abs = 0;
  for (float v : host_f32.floats()) {
    if (!std::isfinite(v)) ++bad;
    else sum_abs += std::fabs(v);
  }
  if (bad > 0) return fmt("WARNING: %lld of %lld output values are NaN/Inf (backend bug?)",
                          static_cast<long long>(bad), static_cast<long long>(host_f32.numel()));
  return fmt("output finite, mean |v| %.4g", host_f32.numel() ? sum_abs / static_cast<double>(host_f32.numel()) : 0.0);
}

// main()'s body: every failure ends as "<program>: error: <message>" and exit status 1.
inline int run_main(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::cerr << program << ": error: " << e.what() << std::endl;
  } catch (const std::bad_alloc&) {
    std::cerr << program << ": error: out of host memory" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << program << ": error: unexpected failure: " << e.what() << std::endl;
  }
  return 1;
}

}  // namespace wanrt::bench
