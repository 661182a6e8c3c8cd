#include "io/random_weights.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "core/error.h"

namespace wanrt {
namespace {

constexpr int64_t kChunk = int64_t{1} << 20;  // values per independent stream
constexpr float kWeightScale = 0.02f;

uint64_t mix(uint64_t z) {  // the splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Values [begin, end) of the weight into `out` (of `dtype`, already offset to `begin`).
void fill_chunk(void* out, DType dtype, int64_t count, float offset, uint64_t stream_seed,
                std::vector<float>& scratch) {
  FastNormal normal(stream_seed);
  float* values = dtype == DType::F32 ? static_cast<float*>(out) : scratch.data();
  for (int64_t i = 0; i < count; ++i) values[i] = offset + kWeightScale * normal.next();
  if (dtype != DType::F32)
    convert_elements(values, DType::F32, out, dtype, static_cast<size_t>(count));
}

}  // namespace

float FastNormal::next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const uint64_t bits = next_bits();
  constexpr float kTwoPi = 6.2831853f;
  const float u1 = (static_cast<float>(bits >> 40) + 1.0f) * 0x1.0p-24f;      // (0, 1]
  const float u2 = static_cast<float>((bits >> 8) & 0xFFFFFF) * 0x1.0p-24f;  // [0, 1)
  const float radius = std::sqrt(-2.0f * std::log(u1));
  spare_ = radius * std::sin(kTwoPi * u2);
  has_spare_ = true;
  return radius * std::cos(kTwoPi * u2);
}

uint64_t FastNormal::next_bits() { return mix(state_ += 0x9E3779B97F4A7C15ull); }

bool is_norm_gain(const std::string& name, const Shape& shape) {
  if (name.ends_with(".gamma")) return true;
  return shape.size() == 1 && name.ends_with(".weight") && name.find("norm") != std::string::npos;
}

uint64_t weight_seed(uint64_t seed, std::string_view name) {
  uint64_t hash = 0xCBF29CE484222325ull;  // FNV-1a over the name, then mixed with the seed
  for (const char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  return mix(hash ^ mix(seed + 0x9E3779B97F4A7C15ull));
}

void fill_random_weight(Tensor& out, const std::string& name, uint64_t seed) {
  WANRT_CHECK(out.device() == Device::Host && out.is_contiguous(), "random weight ", name,
              ": needs a contiguous host tensor, got ", out.describe());
  const DType dtype = out.dtype();
  WANRT_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16, "random weight ",
              name, ": dtype ", dtype_name(dtype), " is not F32, BF16 or F16");
  const float offset = is_norm_gain(name, out.shape()) ? 1.0f : 0.0f;
  const int64_t n = out.numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  auto* bytes = static_cast<unsigned char*>(out.raw_mut());
  const size_t element = dtype_size(dtype);
  std::atomic<int64_t> next_chunk{0};
  auto worker = [&] {
    std::vector<float> scratch(dtype == DType::F32 ? 0 : static_cast<size_t>(std::min(n, kChunk)));
    for (int64_t c = next_chunk++; c < chunks; c = next_chunk++) {
      const int64_t begin = c * kChunk, count = std::min(kChunk, n - begin);
      fill_chunk(bytes + static_cast<size_t>(begin) * element, dtype, count, offset,
                 mix(seed ^ mix(static_cast<uint64_t>(c) + 1)), scratch);
    }
  };
  const auto threads = static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t helpers = std::min<int64_t>(threads, chunks) - 1;
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(std::max<int64_t>(helpers, 0)));
  for (int64_t i = 0; i < helpers; ++i) pool.emplace_back(worker);
  worker();
  for (std::thread& thread : pool) thread.join();
}

Tensor random_weight(const std::string& name, const Shape& shape, DType dtype, uint64_t seed) {
  Tensor out = Tensor::empty(dtype, shape);
  fill_random_weight(out, name, seed);
  return out;
}

TensorStore random_weight_store(const ExpectedTensors& expected, DType dtype, uint64_t seed) {
  TensorStore store;
  for (const auto& [name, shape] : expected)
    store.add(name, random_weight(name, shape, dtype, weight_seed(seed, name)), "random");
  return store;
}

}  // namespace wanrt
