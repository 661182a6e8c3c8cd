// The T5 encoder on random weights built here: configuration inference and strict key checks,
// the relative-position bucket table against the float32 log formula, the forward pass against
// a naive double-precision transcription of spec §1.4, and true-length vs padded runs.
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/ops.h"
#include "io/tensor_store.h"
#include "test_support.h"
#include "text/t5.h"

namespace wanrt {
namespace {

struct TinyShape {
  int64_t vocab = 40, dim = 24, dim_attn = 16, dim_ffn = 20, heads = 4, layers = 2;
};

TensorStore random_checkpoint(const TinyShape& s, std::mt19937_64& rng) {
  TensorStore store;
  auto add = [&](const std::string& name, Shape shape, float stddev) {
    store.add(name, testing::random_normal(std::move(shape), rng, stddev), "random");
  };
  add("token_embedding.weight", {s.vocab, s.dim}, 1.0f);
  for (int64_t i = 0; i < s.layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    store.add(p + "norm1.weight", testing::random_uniform({s.dim}, rng, 0.5f, 1.5f), "random");
    add(p + "attn.q.weight", {s.dim_attn, s.dim}, 0.3f);
    add(p + "attn.k.weight", {s.dim_attn, s.dim}, 0.3f);
    add(p + "attn.v.weight", {s.dim_attn, s.dim}, 0.3f);
    add(p + "attn.o.weight", {s.dim, s.dim_attn}, 0.3f);
    store.add(p + "norm2.weight", testing::random_uniform({s.dim}, rng, 0.5f, 1.5f), "random");
    add(p + "ffn.gate.0.weight", {s.dim_ffn, s.dim}, 0.3f);
    add(p + "ffn.fc1.weight", {s.dim_ffn, s.dim}, 0.3f);
    add(p + "ffn.fc2.weight", {s.dim, s.dim_ffn}, 0.3f);
    add(p + "pos_embedding.embedding.weight", {32, s.heads}, 1.0f);
  }
  store.add("norm.weight", testing::random_uniform({s.dim}, rng, 0.5f, 1.5f), "random");
  return store;
}

std::vector<int64_t> random_ids(std::mt19937_64& rng, int64_t count, int64_t vocab) {
  std::vector<int64_t> ids(static_cast<size_t>(count));
  for (auto& id : ids) id = static_cast<int64_t>(rng() % static_cast<uint64_t>(vocab));
  return ids;
}

// ---- a naive transcription of spec §1.4 in double ----
using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

Matrix to_matrix(const Tensor& t) {
  const Tensor f = t.to(DType::F32);
  const int64_t rows = f.dim() == 1 ? 1 : f.size(0);
  const int64_t cols = f.size(-1);
  Matrix m(static_cast<size_t>(rows), std::vector<double>(static_cast<size_t>(cols)));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m[r][c] = f.floats()[static_cast<size_t>(r * cols + c)];
  return m;
}

Matrix times_transposed(const Matrix& x, const Matrix& w) {  // x·wᵀ
  Matrix y(x.size(), std::vector<double>(w.size()));
  for (size_t r = 0; r < x.size(); ++r)
    for (size_t o = 0; o < w.size(); ++o)
      for (size_t c = 0; c < w[o].size(); ++c) y[r][o] += x[r][c] * w[o][c];
  return y;
}

Matrix rms_norm(const Matrix& x, const Matrix& weight) {
  Matrix y = x;
  for (auto& row : y) {
    double mean_square = 0;
    for (double v : row) mean_square += v * v / static_cast<double>(row.size());
    const double r = 1.0 / std::sqrt(mean_square + 1e-6);
    for (size_t c = 0; c < row.size(); ++c) row[c] *= r * weight[0][c];
  }
  return y;
}

// The bucket by the reference's formula, with log evaluated only where it is finite.
int64_t formula_bucket(int64_t d) {
  const int64_t base = d > 0 ? 16 : 0;
  const int64_t n = std::abs(d);
  if (n < 8) return base + n;
  const float scaled = std::log(static_cast<float>(n) / 8.0f) / std::log(128.0f / 8.0f) * 8.0f;
  return base + std::min<int64_t>(15, 8 + static_cast<int64_t>(scaled));
}

Matrix naive_encoder(const TensorStore& w, const TinyShape& s, const std::vector<int64_t>& ids,
                     int64_t kv_len) {
  const auto rows = ids.size();
  const Matrix table = to_matrix(w.get("token_embedding.weight"));
  Matrix x;
  for (int64_t id : ids) x.push_back(table[static_cast<size_t>(id)]);
  const int64_t head_dim = s.dim_attn / s.heads;
  for (int64_t layer = 0; layer < s.layers; ++layer) {
    const std::string p = "blocks." + std::to_string(layer) + ".";
    auto m = [&](const char* name) { return to_matrix(w.get(p + name)); };
    const Matrix h = rms_norm(x, m("norm1.weight"));
    const Matrix q = times_transposed(h, m("attn.q.weight"));
    const Matrix k = times_transposed(h, m("attn.k.weight"));
    const Matrix v = times_transposed(h, m("attn.v.weight"));
    const Matrix position = m("pos_embedding.embedding.weight");  // [32][heads]
    Matrix attended(rows, std::vector<double>(static_cast<size_t>(s.dim_attn)));
    for (int64_t head = 0; head < s.heads; ++head)
      for (size_t i = 0; i < rows; ++i) {
        std::vector<double> logits(rows, -INFINITY);
        double max_logit = -INFINITY;
        for (size_t j = 0; j < static_cast<size_t>(kv_len); ++j) {
          double dot = 0;  // no 1/sqrt(d) scale
          for (int64_t c = 0; c < head_dim; ++c)
            dot += q[i][head * head_dim + c] * k[j][head * head_dim + c];
          const int64_t d = static_cast<int64_t>(j) - static_cast<int64_t>(i);
          logits[j] = dot + position[formula_bucket(d)][head];
          max_logit = std::max(max_logit, logits[j]);
        }
        double total = 0;
        for (auto& l : logits) total += (l = std::exp(l - max_logit));
        for (size_t j = 0; j < rows; ++j)
          for (int64_t c = 0; c < head_dim; ++c)
            attended[i][head * head_dim + c] += logits[j] / total * v[j][head * head_dim + c];
      }
    const Matrix attn_out = times_transposed(attended, m("attn.o.weight"));
    for (size_t i = 0; i < rows; ++i)
      for (size_t c = 0; c < x[i].size(); ++c) x[i][c] += attn_out[i][c];
    const Matrix f = rms_norm(x, m("norm2.weight"));
    Matrix gate = times_transposed(f, m("ffn.gate.0.weight"));
    const Matrix linear = times_transposed(f, m("ffn.fc1.weight"));
    for (size_t i = 0; i < rows; ++i)
      for (size_t c = 0; c < gate[i].size(); ++c) {
        const double u = gate[i][c];
        const double gelu = 0.5 * u * (1 + std::tanh(std::sqrt(2 / M_PI) * (u + 0.044715 * u * u * u)));
        gate[i][c] = gelu * linear[i][c];
      }
    const Matrix ffn_out = times_transposed(gate, m("ffn.fc2.weight"));
    for (size_t i = 0; i < rows; ++i)
      for (size_t c = 0; c < x[i].size(); ++c) x[i][c] += ffn_out[i][c];
  }
  return rms_norm(x, to_matrix(w.get("norm.weight")));
}

Tensor to_tensor(const Matrix& m, size_t rows) {
  std::vector<float> values;
  for (size_t r = 0; r < rows; ++r)
    for (double v : m[r]) values.push_back(static_cast<float>(v));
  return Tensor::from_floats(values, {static_cast<int64_t>(rows), static_cast<int64_t>(m[0].size())});
}

// ---- tests ----

TEST(T5, BucketTableMatchesTheFloat32Formula) {
  for (int64_t d = -1200; d <= 1200; ++d)
    ASSERT_EQ(relative_position_bucket(d), formula_bucket(d)) << "offset " << d;
}

TEST(T5, ConfigIsInferredFromShapes) {
  std::mt19937_64 rng(testing::test_seed());
  TinyShape s;
  s.layers = 3;
  const T5Config c = infer_t5_config(random_checkpoint(s, rng));
  EXPECT_EQ(c.vocab, s.vocab);
  EXPECT_EQ(c.dim, s.dim);
  EXPECT_EQ(c.dim_attn, s.dim_attn);
  EXPECT_EQ(c.dim_ffn, s.dim_ffn);
  EXPECT_EQ(c.num_heads, s.heads);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_buckets, 32);
}

TEST(T5, BadCheckpointsAreNamedErrors) {
  std::mt19937_64 rng(testing::test_seed());
  const TinyShape s;
  auto ops = make_cpu_ops();
  auto expect_error_naming = [&](const TensorStore& store, const std::string& name) {
    try {
      T5Encoder encoder(store, *ops);
      ADD_FAILURE() << "no error; expected one naming " << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  TensorStore extra = random_checkpoint(s, rng);
  extra.add("pos_embedding.embedding.weight", testing::random_normal({32, s.heads}, rng), "x");
  expect_error_naming(extra, "pos_embedding.embedding.weight");

  // Rebuild without one key / with one misshapen tensor.
  const TensorStore full = random_checkpoint(s, rng);
  for (const std::string victim : {"blocks.1.ffn.fc2.weight", "norm.weight"}) {
    TensorStore missing, misshapen;
    for (const auto& name : full.names()) {
      if (name != victim) missing.add(name, full.get(name), "random");
      misshapen.add(name, name == victim ? testing::random_normal({3, 5}, rng) : full.get(name),
                    "random");
    }
    expect_error_naming(missing, victim);
    expect_error_naming(misshapen, victim);
  }
}

TEST(T5, ForwardMatchesNaiveTranscription) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const TinyShape s;
  const TensorStore weights = random_checkpoint(s, rng);
  auto ops = make_cpu_ops();
  const T5Encoder encoder(weights, *ops);
  const int64_t rows = 30;
  const int64_t length = 5 + static_cast<int64_t>(rng() % 20);
  const auto ids = random_ids(rng, rows, s.vocab);
  const Matrix expected = naive_encoder(weights, s, ids, length);  // [rows][dim]

  const Tensor all = encoder.encode_all_positions(*ops, ids, length);
  ASSERT_EQ(shape_str(all.shape()), shape_str({rows, s.dim}));
  EXPECT_LT(testing::relative_error(all, to_tensor(expected, rows)), 1e-5);
  const Tensor trimmed = encoder.encode(*ops, ids, length, T5Positions::Padded);
  EXPECT_LT(testing::relative_error(trimmed, to_tensor(expected, static_cast<size_t>(length))), 1e-5);
}

TEST(T5, TrueLengthRunEqualsPaddedRun) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const TinyShape s;
  const TensorStore weights = random_checkpoint(s, rng);
  auto ops = make_cpu_ops();
  const T5Encoder encoder(weights, *ops);
  for (int trial = 0; trial < 3; ++trial) {
    const int64_t rows = 64 + static_cast<int64_t>(rng() % 100);
    const int64_t length = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(rows));
    auto ids = random_ids(rng, rows, s.vocab);  // the padding ids are random too: masked anyway
    const Tensor true_length = encoder.encode(*ops, ids, length);
    const Tensor padded = encoder.encode(*ops, ids, length, T5Positions::Padded);
    ASSERT_EQ(shape_str(true_length.shape()), shape_str({length, s.dim}));
    EXPECT_LT(testing::relative_error(true_length, padded), 1e-5) << "length " << length;
    // Only the first `length` ids matter.
    for (int64_t j = length; j < rows; ++j) ids[static_cast<size_t>(j)] = 0;
    EXPECT_LT(testing::relative_error(encoder.encode(*ops, ids, length, T5Positions::Padded), padded),
              1e-6);
  }
  EXPECT_THROW(encoder.encode(*ops, std::vector<int64_t>{3, 4}, 0), Error);
  EXPECT_THROW(encoder.encode(*ops, std::vector<int64_t>{3, 4}, 3), Error);
}

}  // namespace
}  // namespace wanrt
