// bench_linear: the Wan2.2 DiT's GEMMs through CudaOps::linear (cuBLASLt, BF16 operands, F32
// accumulation, bias/GELU-tanh in the epilogue), and the speed of upload_weight.
//
//   ./build/bench_linear [--quantized]   (needs a GPU; prints three tables, or only the
//                                         quantized-weight one)
//
// GEMMs per block at 720p (81 frames: 75,600 tokens on one GPU) and 480p (32,760 tokens):
// self/cross-attention q, k, v, o (5120 → 5120 + bias), FFN up (5120 → 13824 + bias + GELU-tanh),
// FFN down (13824 → 5120 + bias), and the cross-attention k, v of the 512 text tokens.
// FLOPs 2·N·K·M; TFLOP/s against the H100 SXM's 989 dense BF16 TFLOP/s. Inputs are random
// (zeros would flatter the tensor cores' power draw); each shape is warmed up, then timed over
// enough calls for ≥ 0.2 s with CUDA events on the backend's stream.
//
// Quantized weights (--quantize int8|fp8) at the 720p shapes, against bf16 on the same shapes:
//   int8: the layer's I8 codes widened to a BF16 scratch weight, then the BF16 GEMM with the
//         per-channel scale as cuBLASLt's alpha vector (default route, where offered) or folded
//         into the scratch; and the widening kernel alone. A fused mixed-input kernel (I8 codes
//         converted in registers inside the GEMM) could at best save the widening, so these rows
//         bound what one would gain.
//   fp8:  the per-token quantizer of x alone, and quantizer + FP8 GEMM with outer-vector scales
//         (default), with unit scales + a scaling kernel, and with CUBLASLT_MATMUL_DESC_FAST_ACCUM.
// Each row says which route linear() took (LinearPathCounts).
//
// upload_weight: a 1 GiB host tensor in F32 (converted to BF16 on the GPU) and in BF16 (copied
// as is), from pageable heap memory and from a memory-mapped file in the page cache (what a
// checkpoint is); seconds from the call to the end of the last copy. For scale, the table ends
// with a plain cudaMemcpy from pinned memory (the PCIe ceiling).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_linear.h"
#include "backends/cuda/cuda_ops_impl.h"
#include "backends/cuda/cuda_quant.h"
#include "core/mapped_file.h"
#endif

namespace wanrt {
namespace {

#ifdef WANRT_HAVE_CUDA
constexpr double kPeakBf16Tflops = 989.0;  // H100 SXM, dense BF16

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail(what, ": ", cudaGetErrorString(status));
}

// A device tensor of `shape` and `dtype` with N(0, stddev²) values: a random host block is
// uploaded once and tiled over the tensor (the GEMM speed does not depend on which values).
Tensor random_device(CudaOps& ops, DType dtype, Shape shape, float stddev) {
  static std::mt19937_64 rng(42);
  const int64_t block = std::min<int64_t>(shape_numel(shape), int64_t{1} << 22);
  Tensor host = Tensor::empty(DType::F32, {block});
  std::normal_distribution<float> dist(0.0f, stddev);
  for (float& v : host.floats()) v = dist(rng);
  const Tensor tile = ops.as_dtype(ops.upload(host), dtype);
  Tensor out = ops.empty(dtype, shape);
  const size_t total = out.nbytes(), step = tile.nbytes();
  for (size_t offset = 0; offset < total; offset += step)
    check(cudaMemcpyAsync(static_cast<char*>(out.raw_mut()) + offset, tile.raw(), std::min(step, total - offset),
                          cudaMemcpyDeviceToDevice, ops.stream()),
          "tiling random data");
  return out;
}

struct GemmCase {
  std::string name;
  int64_t n, k, m;
  Activation activation;
};

void bench_gemms(CudaOps& ops) {
  std::printf("\nDiT GEMMs: BF16 x BF16 -> BF16, F32 accumulation, bias in the epilogue\n");
  std::printf("%-26s %21s %-10s %9s %9s %8s %s\n", "GEMM", "N x K x M", "epilogue", "ms", "TFLOP/s", "% peak", "path");
  std::vector<GemmCase> cases;
  for (auto [label, tokens] : {std::pair{"720p", int64_t{75600}}, std::pair{"480p", int64_t{32760}}}) {
    cases.push_back({std::string(label) + " q/k/v/o", tokens, 5120, 5120, Activation::None});
    cases.push_back({std::string(label) + " ffn up", tokens, 5120, 13824, Activation::GeluTanh});
    cases.push_back({std::string(label) + " ffn down", tokens, 13824, 5120, Activation::None});
  }
  cases.push_back({"cross-attn k/v (text)", 512, 5120, 5120, Activation::None});

  cudaEvent_t start = nullptr, stop = nullptr;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  for (const GemmCase& c : cases) {
    const Tensor x = random_device(ops, DType::BF16, {c.n, c.k}, 1.0f);
    const Tensor w = random_device(ops, DType::BF16, {c.m, c.k}, 1.0f / std::sqrt(static_cast<float>(c.k)));
    const Tensor bias = random_device(ops, DType::F32, {c.m}, 0.5f);
    const LinearOptions options{.activation = c.activation};
    const double flops = 2.0 * static_cast<double>(c.n) * static_cast<double>(c.k) * static_cast<double>(c.m);
    const LinearPathCounts before = linear_path_counts();
    for (int i = 0; i < 3; ++i) ops.linear(x, w, &bias, options);  // plan, algorithm, clocks
    const LinearPathCounts after = linear_path_counts();
    const int iterations = static_cast<int>(std::clamp(0.2 / (flops / 700e12), 5.0, 1000.0));
    check(cudaEventRecord(start, ops.stream()), "record");
    for (int i = 0; i < iterations; ++i) ops.linear(x, w, &bias, options);
    check(cudaEventRecord(stop, ops.stream()), "record");
    check(cudaEventSynchronize(stop), "sync");
    float ms_total = 0;
    check(cudaEventElapsedTime(&ms_total, start, stop), "elapsed");
    const double ms = static_cast<double>(ms_total) / iterations;
    const double tflops = flops / (ms * 1e-3) / 1e12;
    const char* path = after.fused > before.fused ? "fused" : after.split > before.split ? "split" : "fallback";
    std::printf("%-26s %6lld x %5lld x %5lld %-10s %9.3f %9.1f %7.1f%% %s\n", c.name.c_str(), static_cast<long long>(c.n),
                static_cast<long long>(c.k), static_cast<long long>(c.m),
                c.activation == Activation::GeluTanh ? "bias+gelu" : "bias", ms, tflops,
                100.0 * tflops / kPeakBf16Tflops, path);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// Milliseconds per call of `f` (queued on the backend's stream): 3 untimed calls, then enough
// calls for ~0.2 s between two CUDA events.
double time_ms(CudaOps& ops, const std::function<void()>& f) {
  cudaEvent_t start = nullptr, stop = nullptr;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  auto timed = [&](int calls) {
    check(cudaEventRecord(start, ops.stream()), "record");
    for (int i = 0; i < calls; ++i) f();
    check(cudaEventRecord(stop, ops.stream()), "record");
    check(cudaEventSynchronize(stop), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    return static_cast<double>(ms) / calls;
  };
  timed(3);
  const double first = timed(1);
  const int calls = static_cast<int>(std::clamp(200.0 / std::max(first, 1e-3), 5.0, 1000.0));
  const double ms = timed(calls);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms;
}

// A host BF16 matrix of N(0, stddev²) values: a random block tiled over it (quantize_weight's
// input; the GEMM speed does not depend on the values).
Tensor random_host_bf16(Shape shape, float stddev) {
  static std::mt19937_64 rng(7);
  Tensor out = Tensor::empty(DType::BF16, shape);
  const size_t total = static_cast<size_t>(out.numel());
  const size_t block = std::min<size_t>(total, size_t{1} << 20);
  std::normal_distribution<float> dist(0.0f, stddev);
  auto* bits = out.data<uint16_t>();
  for (size_t i = 0; i < block; ++i) bits[i] = f32_to_bf16(dist(rng));
  for (size_t offset = block; offset < total; offset += block)
    std::memcpy(bits + offset, bits, std::min(block, total - offset) * sizeof(uint16_t));
  return out;
}

std::string route_of(const LinearPathCounts& before, const LinearPathCounts& after) {
  if (after.int8_alpha_vector > before.int8_alpha_vector) return "int8: alpha vector";
  if (after.int8_folded_scale > before.int8_folded_scale) return "int8: scale folded";
  if (after.fp8_outer_vector > before.fp8_outer_vector) return "fp8: outer-vector scales";
  if (after.fp8_unit_scale > before.fp8_unit_scale) return "fp8: unit scales + kernel";
  if (after.fp8_simple > before.fp8_simple) return "fp8: SIMPLE KERNEL";
  return "bf16";
}

void bench_quantized(CudaOps& ops) {
  std::printf("\nQuantized weights at the 720p DiT shapes (75,600 tokens): TFLOP/s of 2·N·K·M; x BF16, bias "
              "F32 (BF16 in the epilogue)\n");
  std::printf("%-14s %-46s %9s %9s  %s\n", "GEMM", "variant", "ms", "TFLOP/s", "route");
  struct Shape3 {
    const char* name;
    int64_t n, k, m;
    Activation activation;
  };
  const Shape3 shapes[] = {{"q/k/v/o", 75600, 5120, 5120, Activation::None},
                           {"ffn up", 75600, 5120, 13824, Activation::GeluTanh},
                           {"ffn down", 75600, 13824, 5120, Activation::None}};
  const QuantizedLinearSettings defaults = quantized_linear_settings();
  for (const Shape3& c : shapes) {
    const double flops = 2.0 * static_cast<double>(c.n) * static_cast<double>(c.k) * static_cast<double>(c.m);
    const Tensor x = random_device(ops, DType::BF16, {c.n, c.k}, 1.0f);
    const Tensor bias = random_device(ops, DType::F32, {c.m}, 0.5f);
    const LinearOptions options{.activation = c.activation};
    auto row = [&](const char* variant, double ms, bool gemm, const std::string& route) {
      if (gemm)
        std::printf("%-14s %-46s %9.3f %9.1f  %s\n", c.name, variant, ms, flops / (ms * 1e-3) / 1e12, route.c_str());
      else
        std::printf("%-14s %-46s %9.3f %9s  %s\n", c.name, variant, ms, "-", route.c_str());
    };
    auto gemm_row = [&](const char* variant, const Tensor& w) {
      const LinearPathCounts before = linear_path_counts();
      const double ms = time_ms(ops, [&] { ops.linear(x, w, &bias, options); });
      row(variant, ms, true, route_of(before, linear_path_counts()));
      return ms;
    };
    double bf16_ms = 0, widen_ms = 0;
    {
      const Tensor w = random_device(ops, DType::BF16, {c.m, c.k}, 1.0f / std::sqrt(static_cast<float>(c.k)));
      bf16_ms = gemm_row("bf16 (baseline)", w);
    }
    const Tensor host = random_host_bf16({c.m, c.k}, 1.0f / std::sqrt(static_cast<float>(c.k)));
    {
      check(cudaStreamSynchronize(ops.stream()), "sync");
      const auto t0 = std::chrono::steady_clock::now();
      const Tensor w = ops.quantize_weight(host, DType::I8);
      check(cudaStreamSynchronize(ops.stream()), "sync");
      row("int8: quantize_weight (host bf16 -> I8 codes)",
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(), false, "load time");
      set_quantized_linear_settings(defaults);
      gemm_row("int8: widen + GEMM (default route)", w);
      QuantizedLinearSettings folded = defaults;
      folded.int8_alpha_vector = false;
      set_quantized_linear_settings(folded);
      gemm_row("int8: widen with the scale folded + GEMM", w);
      set_quantized_linear_settings(defaults);
      Tensor scratch = ops.empty(DType::BF16, {c.m, c.k});
      widen_ms = time_ms(ops, [&] {
        launch_dequantize_rows(w.raw(), DType::I8, nullptr, c.m, c.k, scratch.raw_mut(), DType::BF16, ops.stream());
      });
      row("int8: the widening kernel alone", widen_ms, false, "I8 -> BF16 scratch");
      std::printf("%-14s %-46s %9s %9s  a fused mixed-input kernel saves at most %.2f %% (the widening)\n", c.name,
                  "int8: bound", "", "", 100.0 * widen_ms / (bf16_ms + widen_ms));
    }
    {
      const Tensor w = ops.quantize_weight(host, DType::F8_E4M3);
      Tensor codes = ops.empty(DType::F8_E4M3, {c.n, c.k}), scale = ops.empty(DType::F32, {c.n});
      const double quantizer_ms = time_ms(ops, [&] {
        launch_quantize_rows(x.raw(), DType::BF16, c.n, c.k, DType::F8_E4M3, codes.raw_mut(),
                             static_cast<float*>(scale.raw_mut()), nullptr, ops.stream());
      });
      row("fp8: per-token quantizer of x alone", quantizer_ms, false, "x BF16 -> E4M3 + scales");
      set_quantized_linear_settings(defaults);
      const double fp8_ms = gemm_row("fp8: quantize x + FP8 GEMM (default route)", w);
      std::printf("%-14s %-46s %9.3f %9.1f  (the FP8 GEMM without the quantizer)\n", c.name, "fp8: GEMM part",
                  fp8_ms - quantizer_ms, flops / ((fp8_ms - quantizer_ms) * 1e-3) / 1e12);
      QuantizedLinearSettings unit = defaults;
      unit.fp8_outer_vector = false;
      set_quantized_linear_settings(unit);
      gemm_row("fp8: unit scales + scaling kernel", w);
      QuantizedLinearSettings fast = defaults;
      fast.fp8_fast_accumulation = true;
      set_quantized_linear_settings(fast);
      gemm_row("fp8: default route, fast accumulation", w);
      set_quantized_linear_settings(defaults);
    }
  }
}

// Seconds for upload_weight(host) until its last copy has landed.
double time_upload(CudaOps& ops, const Tensor& host) {
  check(cudaStreamSynchronize(ops.stream()), "sync");
  const auto t0 = std::chrono::steady_clock::now();
  const Tensor w = ops.upload_weight(host);
  check(cudaDeviceSynchronize(), "sync");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void bench_uploads(CudaOps& ops) {
  std::printf("\nupload_weight of a 1 GiB host tensor (GB/s of host bytes; best of 3, first call in brackets)\n");
  std::printf("%-44s %10s %12s %10s\n", "source", "GB/s", "(first)", "s");
  const int64_t gib = int64_t{1} << 30;
  Tensor f32 = Tensor::empty(DType::F32, {16384, gib / 4 / 16384});
  Tensor bf16 = Tensor::empty(DType::BF16, {16384, gib / 2 / 16384});
  // Cheap distinct values (an LCG), written once so every page is resident.
  uint32_t state = 12345;
  for (float& v : f32.floats()) v = static_cast<float>(static_cast<int32_t>(state = state * 1664525u + 1013904223u)) * 1e-9f;
  uint16_t* b = bf16.data<uint16_t>();
  for (int64_t i = 0; i < bf16.numel(); ++i) b[i] = static_cast<uint16_t>(0x3F00 | ((state = state * 1664525u + 1013904223u) >> 25));

  auto report = [&](const char* label, const Tensor& host) {
    double first = 0, best = 1e30;
    for (int i = 0; i < 3; ++i) {
      const double s = time_upload(ops, host);
      if (i == 0) first = s;
      best = std::min(best, s);
    }
    const double gb = static_cast<double>(host.nbytes()) / 1e9;
    std::printf("%-44s %10.2f %12.2f %10.3f\n", label, gb / best, gb / first, best);
  };
  report("F32 heap -> BF16 (converted on the GPU)", f32);
  report("BF16 heap -> BF16", bf16);

  // The same bytes as a memory-mapped file (page cache warm: just written).
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::string path = (dir / "wanrt_bench_linear_weights.bin").string();
  try {
    {
      std::ofstream out(path, std::ios::binary);
      out.write(static_cast<const char*>(f32.raw()), static_cast<std::streamsize>(f32.nbytes()));
      out.write(static_cast<const char*>(bf16.raw()), static_cast<std::streamsize>(bf16.nbytes()));
      WANRT_CHECK(out.good(), "could not write ", path);
    }
    auto file = MappedFile::open(path);
    report("F32 mmap -> BF16 (converted on the GPU)", Tensor::view(file, file->data(), DType::F32, f32.shape()));
    report("BF16 mmap -> BF16", Tensor::view(file, file->data() + f32.nbytes(), DType::BF16, bf16.shape()));
  } catch (const Error& e) {
    std::printf("(mmap rows skipped: %s)\n", e.what());
  }
  std::filesystem::remove(path);

  // The PCIe ceiling: one 256 MiB cudaMemcpy from pinned memory.
  const size_t bytes = size_t{256} << 20;
  void* pinned = nullptr;
  check(cudaHostAlloc(&pinned, bytes, cudaHostAllocDefault), "pinned alloc");
  std::memset(pinned, 1, bytes);
  Tensor target = ops.empty(DType::U8, {static_cast<int64_t>(bytes)});
  check(cudaStreamSynchronize(ops.stream()), "sync");
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    check(cudaMemcpy(target.raw_mut(), pinned, bytes, cudaMemcpyHostToDevice), "memcpy");
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  cudaFreeHost(pinned);
  std::printf("%-44s %10.2f\n", "(reference: cudaMemcpy from pinned memory)", static_cast<double>(bytes) / 1e9 / best);
  const LoadStats stats = ops.load_stats();
  std::printf("load_stats: %lld tensors, %.2f GB from host, %.2f GB to the GPU, %.3f s inside upload_weight\n",
              static_cast<long long>(stats.tensors), static_cast<double>(stats.host_bytes) / 1e9,
              static_cast<double>(stats.device_bytes) / 1e9, stats.seconds);
}
#endif

}  // namespace
}  // namespace wanrt

int main(int argc, char** argv) {
  // --quantized: only the quantized-weight table (which has its own bf16 baseline rows).
  const bool quantized_only = argc > 1 && std::string(argv[1]) == "--quantized";
  if (argc > 2 || (argc == 2 && !quantized_only)) {
    std::fprintf(stderr, "usage: bench_linear [--quantized]\n");
    return 1;
  }
#ifndef WANRT_HAVE_CUDA
  std::printf("bench_linear: wanrt was built without CUDA; nothing to measure\n");
  return 0;
#else
  using namespace wanrt;
  try {
    if (cuda::device_count() == 0) {
      std::printf("bench_linear: no CUDA GPU on this machine; nothing to measure\n");
      return 0;
    }
    const cuda::DeviceInfo info = cuda::device_info(0);
    std::printf("GPU 0: %s, sm_%d%d, %d SMs, %.1f GiB\n", info.name.c_str(), info.compute_major, info.compute_minor,
                info.multiprocessors, static_cast<double>(info.total_memory) / (1ull << 30));
    CudaOps ops(CudaOptions{}, nullptr);
    if (!quantized_only) bench_gemms(ops);
    bench_quantized(ops);
    if (!quantized_only) bench_uploads(ops);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_linear: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
