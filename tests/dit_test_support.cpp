#include "dit_test_support.h"

#include <string>
#include <utility>

#include "test_support.h"

namespace wanrt::testing {

DitConfig tiny_i2v_dit_config() {
  DitConfig c;
  c.model_type = "i2v";
  c.in_dim = 36;
  c.out_dim = 16;
  c.dim = 64;
  c.ffn_dim = 96;
  c.freq_dim = 32;
  c.text_dim = 24;
  c.text_len = 16;
  c.num_heads = 2;
  c.num_layers = 2;
  return c;
}

DitConfig small_i2v_dit_config() {
  DitConfig c = tiny_i2v_dit_config();
  c.dim = 256;
  c.ffn_dim = 512;
  c.freq_dim = 64;
  c.text_dim = 128;
  c.text_len = 64;
  c.num_layers = 3;  // 2 heads of 128
  return c;
}

TensorStore random_dit_weights(const DitConfig& config, std::mt19937_64& rng, float stddev) {
  TensorStore store;
  for (const auto& [name, shape] : config.expected_tensors()) {
    Tensor value = random_normal(shape, rng, stddev);
    if (shape.size() == 1 && name.find("norm") != std::string::npos && name.ends_with(".weight"))
      for (float& v : value.floats()) v += 1.0f;
    store.add(name, std::move(value), "random");
  }
  return store;
}

DitCall random_dit_call(const DitConfig& config, std::mt19937_64& rng, double timestep,
                        int64_t frames, int64_t height, int64_t width, int64_t text_rows) {
  return {random_normal({config.out_dim, frames, height, width}, rng),
          random_normal({config.in_dim - config.out_dim, frames, height, width}, rng),
          random_normal({text_rows, config.text_dim}, rng), timestep};
}

}  // namespace wanrt::testing
