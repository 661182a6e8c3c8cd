#include "io/expected_tensors.h"

#include <set>

#include "io/tensor_store.h"

namespace wanrt {

std::vector<std::string> tensor_set_problems(const TensorStore& store,
                                             const ExpectedTensors& expected) {
  std::vector<std::string> problems;
  std::set<std::string> expected_names;
  for (const auto& [name, shape] : expected) {
    expected_names.insert(name);
    if (!store.contains(name)) {
      problems.push_back(str_cat("missing tensor ", name, " (expected shape ", shape_str(shape),
                                 "); read from: ", store.sources()));
      continue;
    }
    const Tensor& tensor = store.get(name);
    if (tensor.shape() != shape)
      problems.push_back(str_cat("tensor ", name, " in ", store.file_of(name), " has shape ",
                                 shape_str(tensor.shape()), ", expected ", shape_str(shape)));
    if (!dtype_is_float(tensor.dtype()) && !tensor.is_row_scaled())  // codes + scales are float
      problems.push_back(str_cat("tensor ", name, " in ", store.file_of(name), " has dtype ",
                                 dtype_name(tensor.dtype()), ", expected a float type"));
  }
  for (const std::string& name : store.names())
    if (!expected_names.count(name))
      problems.push_back(str_cat("unexpected tensor ", name, " ",
                                 shape_str(store.get(name).shape()), " in ", store.file_of(name)));
  return problems;
}

void check_tensor_set(const TensorStore& store, const ExpectedTensors& expected,
                      const std::string& what) {
  const std::vector<std::string> problems = tensor_set_problems(store, expected);
  if (problems.empty()) return;
  constexpr size_t kShown = 20;
  std::string message = str_cat(what, " (", problems.size(), " problem",
                                problems.size() == 1 ? "" : "s", "):");
  for (size_t i = 0; i < problems.size() && i < kShown; ++i) message += "\n  " + problems[i];
  if (problems.size() > kShown) message += str_cat("\n  ... and ", problems.size() - kShown, " more");
  fail(message);
}

int64_t expected_parameter_count(const ExpectedTensors& expected) {
  int64_t total = 0;
  for (const auto& entry : expected) total += shape_numel(entry.second);
  return total;
}

}  // namespace wanrt
