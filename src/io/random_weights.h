// Random weights by name and shape, as `wanrt make-demo-checkpoint` draws them: norm gains
// 1 + 0.02·N(0, 1), everything else 0.02·N(0, 1), small enough that activations stay finite
// through every layer of the pipeline. The demo checkpoints and the benchmarks use them; a
// random network runs exactly as fast as a trained one, and its output is noise by design.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/tensor.h"
#include "io/expected_tensors.h"
#include "io/tensor_store.h"

namespace wanrt {

// Normal deviates by Box-Muller in float over splitmix64: several times faster than
// std::normal_distribution over mt19937_64, which matters for the billions of values of a
// full-size checkpoint. Statistical quality far beyond what random test weights need.
class FastNormal {
 public:
  explicit FastNormal(uint64_t seed) : state_(seed) {}
  float next();

 private:
  uint64_t next_bits();
  uint64_t state_;
  float spare_ = 0;
  bool has_spare_ = false;
};

// Norm gains start near 1, as trained models keep them.
bool is_norm_gain(const std::string& name, const Shape& shape);

// A seed for the tensor called `name` drawn from `seed` (a hash of both), so each tensor's
// values depend on its name only, not on the order tensors are written in.
uint64_t weight_seed(uint64_t seed, std::string_view name);

// Fills a contiguous host tensor (F32, BF16 or F16) with the values of the weight `name`,
// using every core: the tensor is cut into chunks of 2^20 values, each drawn from its own
// stream (seed, chunk index), so the values do not depend on the number of threads.
void fill_random_weight(Tensor& out, const std::string& name, uint64_t seed);
// A new host tensor of `dtype` so filled.
Tensor random_weight(const std::string& name, const Shape& shape, DType dtype, uint64_t seed);

// Every tensor of `expected` in a store (file name "random"), each from weight_seed(seed, name).
TensorStore random_weight_store(const ExpectedTensors& expected, DType dtype, uint64_t seed);

}  // namespace wanrt
