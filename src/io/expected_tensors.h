// Comparing a checkpoint's tensors against the list a model configuration expects.
//
// Loading is strict in the reference (PyTorch load_state_dict(strict=True)), so a checkpoint
// with a missing, extra or mis-shaped tensor is a wrong checkpoint, not a partial one. Every
// problem is reported at once, so a user fixing a converted file sees the whole picture.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace wanrt {

class TensorStore;

using ExpectedTensors = std::vector<std::pair<std::string, Shape>>;

// One line per problem: "missing tensor X (expected [..]) — not in a.safetensors",
// "tensor X in FILE has shape [..], expected [..]", "unexpected tensor X in FILE",
// "tensor X in FILE has dtype I32, expected a float type". Empty when everything matches.
std::vector<std::string> tensor_set_problems(const TensorStore& store,
                                             const ExpectedTensors& expected);

// Throws wanrt::Error listing the problems (the first 20, then a count), prefixed by `what`
// ("high_noise_model: DiT weights do not match config.json").
void check_tensor_set(const TensorStore& store, const ExpectedTensors& expected,
                      const std::string& what);

int64_t expected_parameter_count(const ExpectedTensors& expected);

}  // namespace wanrt
