// TensorStore: the name -> tensor table and the errors that name files and shapes.
#include "io/tensor_store.h"

#include <algorithm>
#include <functional>
#include <string>

#include "test_support.h"

namespace wanrt {
namespace {

using testing::random_normal;
using testing::test_seed;

Shape random_shape(std::mt19937_64& rng) {
  Shape shape(1 + rng() % 3);
  for (auto& extent : shape) extent = static_cast<int64_t>(1 + rng() % 7);
  return shape;
}

using testing::error_of;

void expect_contains(const std::string& message, std::initializer_list<std::string> words) {
  for (const auto& word : words)
    EXPECT_NE(message.find(word), std::string::npos) << "no '" << word << "' in: " << message;
}

TEST(TensorStore, HoldsTensorsByNameWithTheirFiles) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(str_cat("seed ", seed));
  std::mt19937_64 rng(seed);
  TensorStore store;
  std::vector<std::string> names;
  int64_t params = 0;
  size_t bytes = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string name = str_cat("layer", rng() % 1000, ".", i);
    Tensor tensor = random_normal(random_shape(rng), rng).to(i % 2 ? DType::BF16 : DType::F32);
    params += tensor.numel();
    bytes += tensor.nbytes();
    names.push_back(name);
    store.add(name, tensor, i < 3 ? "b.safetensors" : "a.safetensors");
    EXPECT_EQ(store.get(name).raw(), tensor.raw());  // stored as is, not copied
    EXPECT_EQ(store.get(name, tensor.shape()).raw(), tensor.raw());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(store.names(), names);
  EXPECT_EQ(store.size(), names.size());
  EXPECT_EQ(store.total_params(), params);
  EXPECT_EQ(store.total_bytes(), bytes);
  EXPECT_EQ(store.sources(), "a.safetensors, b.safetensors");
  EXPECT_TRUE(store.contains(names[0]));
  EXPECT_FALSE(store.contains(names[0] + "x"));
}

TEST(TensorStore, ErrorsNameTheTensorAndItsFiles) {
  std::mt19937_64 rng(test_seed());
  TensorStore store;
  store.add("w", random_normal({2, 3}, rng), "one.safetensors");
  expect_contains(error_of([&] { store.add("w", random_normal({1}, rng), "two.safetensors"); }),
                  {"'w'", "one.safetensors", "two.safetensors"});
  expect_contains(error_of([&] { store.get("missing"); }), {"'missing'", "one.safetensors"});
  expect_contains(error_of([&] { store.file_of("missing"); }), {"'missing'"});
  expect_contains(error_of([&] { store.get("w", {3, 2}); }),
                  {"'w'", "one.safetensors", "[3, 2]", "[2, 3]"});
  expect_contains(error_of([&] { TensorStore().get("w"); }), {"'w'"});
}

TEST(TensorStore, MergeMovesEverythingOrNothing) {
  std::mt19937_64 rng(test_seed());
  TensorStore first, second, clashing;
  first.add("a", random_normal({4}, rng), "1.safetensors");
  second.add("b", random_normal({5}, rng), "2.safetensors");
  second.add("c", random_normal({6}, rng), "2.safetensors");
  clashing.add("d", random_normal({1}, rng), "3.safetensors");
  clashing.add("a", random_normal({1}, rng), "3.safetensors");

  first.merge(std::move(second));
  EXPECT_EQ(first.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(first.file_of("c"), "2.safetensors");
  EXPECT_EQ(first.get("b").numel(), 5);

  expect_contains(error_of([&] { first.merge(std::move(clashing)); }),
                  {"'a'", "1.safetensors", "3.safetensors"});
  EXPECT_EQ(first.size(), 3u);  // nothing moved
  EXPECT_FALSE(first.contains("d"));
  EXPECT_EQ(clashing.size(), 2u);  // NOLINT(bugprone-use-after-move): a failed merge keeps it
}

}  // namespace
}  // namespace wanrt
