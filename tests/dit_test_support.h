// Small random DiT experts and calls, for the tests of the DiT runner, its CUDA graphs and
// MagCache (CPU and GPU suites alike).
#pragma once

#include <cstdint>
#include <random>

#include "io/tensor_store.h"
#include "model/dit.h"
#include "model/dit_config.h"

namespace wanrt::testing {

// A tiny I2V expert: dim 64, 2 heads of 32 (RoPE slots 6 / 5 / 5), FFN 96, 2 blocks, text
// 24 wide and up to 16 rows; in 36 channels (16 latent + 20 conditioning), out 16.
DitConfig tiny_i2v_dit_config();

// The same with heads of 128 (the width the Hopper attention kernels take): dim 256, 2 heads,
// FFN 512, 3 blocks, text 128 wide and up to 64 rows.
DitConfig small_i2v_dit_config();

// Every tensor `config` expects, N(0, stddev²); norm gains near 1, as trained models keep them.
TensorStore random_dit_weights(const DitConfig& config, std::mt19937_64& rng, float stddev);

// One DiT call's inputs (latent, I2V conditioning, text); the tensors live in the struct.
struct DitCall {
  Tensor x, y, context;
  double timestep = 0;
  DitInputs get() const { return {.x = &x, .y = &y, .timestep = timestep, .context = &context}; }
};

// A call on a latent of frames × height × width with `text_rows` rows of text, N(0, 1).
DitCall random_dit_call(const DitConfig& config, std::mt19937_64& rng, double timestep,
                        int64_t frames, int64_t height, int64_t width, int64_t text_rows);

}  // namespace wanrt::testing
