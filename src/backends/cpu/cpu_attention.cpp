// Attention-side ops of the float32 reference: rotary embedding, exact softmax attention
// (the score matrix is materialised one query row at a time; softmax in double), embedding.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/cpu_ops.h"

namespace wanrt {

void CpuOps::rope_(Tensor& x, const Tensor& table) {
  expect_f32(x, "rope input");
  expect_f32(table, "rope table");
  WANRT_CHECK(x.dim() == 3 && x.size(2) % 2 == 0, "cpu backend: rope needs [L, heads, even d], got ",
              x.describe());
  const int64_t tokens = x.size(0), heads = x.size(1), d = x.size(2), pairs = d / 2;
  WANRT_CHECK(table.dim() == 3 && table.size(1) == pairs && table.size(2) == 2 &&
                  table.size(0) <= tokens,
              "cpu backend: rope table ", table.describe(), " does not fit ", x.describe());
  const int64_t rotated = table.size(0);
  float* data = x.data<float>();
  const float* cs = table.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < rotated; ++n) {
    for (int64_t h = 0; h < heads; ++h) {
      float* v = data + (n * heads + h) * d;
      for (int64_t k = 0; k < pairs; ++k) {
        const float c = cs[(n * pairs + k) * 2], s = cs[(n * pairs + k) * 2 + 1];
        const float a = v[2 * k], b = v[2 * k + 1];
        v[2 * k] = a * c - b * s;
        v[2 * k + 1] = a * s + b * c;
      }
    }
  }
}

// The unfused definition that faster backends fuse: the norm spans whole rows (all heads),
// then each head's pairs rotate.
Tensor CpuOps::rms_norm_rope(const Tensor& x, const Tensor& weight, float eps, const Tensor& table,
                             int64_t heads) {
  WANRT_CHECK(x.dim() >= 2 && heads >= 1, "cpu backend: rms_norm_rope needs x [L, heads·head_dim], got ",
              x.describe(), " for ", heads, " heads");
  const int64_t tokens = x.size(0);
  const int64_t features = shape_numel(Shape(x.shape().begin() + 1, x.shape().end()));
  WANRT_CHECK(features % heads == 0, "cpu backend: rms_norm_rope: ", features,
              " features of ", x.describe(), " do not split into ", heads, " heads");
  Tensor out = rms_norm(x.reshape({tokens, features}), weight, eps).reshape({tokens, heads, features / heads});
  rope_(out, table);
  return out;
}

Tensor CpuOps::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionOptions& options) {
  expect_f32(q, "attention q");
  expect_f32(k, "attention k");
  expect_f32(v, "attention v");
  WANRT_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3 && k.shape() == v.shape() &&
                  q.size(1) == k.size(1) && q.size(2) == k.size(2),
              "cpu backend: attention needs q [Lq, H, d] and k, v [Lk, H, d]; got ", q.describe(),
              ", ", k.describe(), ", ", v.describe());
  const int64_t lq = q.size(0), lk = k.size(0), heads = q.size(1), d = q.size(2);
  const int64_t keys = options.kv_len < 0 ? lk : options.kv_len;
  WANRT_CHECK(keys >= 1 && keys <= lk, "cpu backend: attention kv_len ", options.kv_len,
              " out of range for ", lk, " keys");
  const float* bias = nullptr;
  if (options.bias) {
    expect_f32(*options.bias, "attention bias");
    WANRT_CHECK(options.bias->shape() == Shape({heads, lq, lk}), "cpu backend: attention bias ",
                options.bias->describe(), " must be [", heads, ", ", lq, ", ", lk, "]");
    bias = options.bias->data<float>();
  }
  Tensor out = Tensor::empty(DType::F32, q.shape());
  const float* qd = q.data<float>();
  const float* kd = k.data<float>();
  const float* vd = v.data<float>();
  float* od = out.data<float>();
#pragma omp parallel
  {
    std::vector<double> scores(static_cast<size_t>(keys));
    std::vector<double> acc(static_cast<size_t>(d));
#pragma omp for collapse(2) schedule(static)
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < lq; ++i) {
        const float* qi = qd + (i * heads + h) * d;
        double max_score = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < keys; ++j) {
          const float* kj = kd + (j * heads + h) * d;
          double dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(qi[c]) * kj[c];
          double s = dot * options.scale;
          if (bias) s += bias[(h * lq + i) * lk + j];
          scores[static_cast<size_t>(j)] = s;
          max_score = std::max(max_score, s);
        }
        double denom = 0;
        for (auto& s : scores) denom += (s = std::exp(s - max_score));
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < keys; ++j) {
          const float* vj = vd + (j * heads + h) * d;
          const double p = scores[static_cast<size_t>(j)] / denom;
          for (int64_t c = 0; c < d; ++c) acc[static_cast<size_t>(c)] += p * vj[c];
        }
        float* oi = od + (i * heads + h) * d;
        for (int64_t c = 0; c < d; ++c) oi[c] = static_cast<float>(acc[static_cast<size_t>(c)]);
      }
    }
  }
  return out;
}

Tensor CpuOps::embedding(const Tensor& table, const Tensor& ids) {
  expect_f32(table, "embedding table");
  WANRT_CHECK(table.dim() == 2, "cpu backend: embedding table must be 2-D, got ", table.describe());
  WANRT_CHECK(ids.device() == Device::Host && ids.dtype() == DType::I64 && ids.dim() == 1,
              "cpu backend: embedding ids must be a host I64 vector, got ", ids.describe());
  const int64_t vocab = table.size(0), dim = table.size(1), n = ids.size(0);
  Tensor out = Tensor::empty(DType::F32, {n, dim});
  const int64_t* id = ids.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    WANRT_CHECK(id[i] >= 0 && id[i] < vocab, "token id ", id[i], " at position ", i,
                " is outside the vocabulary of ", vocab);
    std::copy_n(table.data<float>() + id[i] * dim, dim, out.data<float>() + i * dim);
  }
  return out;
}

}  // namespace wanrt
