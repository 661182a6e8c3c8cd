// bench_linear: the Wan2.2 DiT's GEMMs through CudaOps::linear (cuBLASLt, BF16 operands, F32
// accumulation, bias/GELU-tanh in the epilogue), and the speed of upload_weight.
//
//   ./build/bench_linear            (needs a GPU; prints two tables)
//
// GEMMs per block at 720p (81 frames: 75,600 tokens on one GPU) and 480p (32,760 tokens):
// self/cross-attention q, k, v, o (5120 → 5120 + bias), FFN up (5120 → 13824 + bias + GELU-tanh),
// FFN down (13824 → 5120 + bias), and the cross-attention k, v of the 512 text tokens.
// FLOPs 2·N·K·M; TFLOP/s against the H100 SXM's 989 dense BF16 TFLOP/s. Inputs are random
// (zeros would flatter the tensor cores' power draw); each shape is warmed up, then timed over
// enough calls for ≥ 0.2 s with CUDA events on the backend's stream.
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
#include <random>
#include <string>
#include <vector>

#ifdef WANRT_HAVE_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_device.h"
#include "backends/cuda/cuda_linear.h"
#include "backends/cuda/cuda_ops_impl.h"
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

int main() {
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
    bench_gemms(ops);
    bench_uploads(ops);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_linear: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
