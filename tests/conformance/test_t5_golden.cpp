// The umT5 encoder on the tiny checkpoint against the official T5Encoder's float32 outputs
// (golden/t5/*.safetensors): ids [1, L], mask [1, L] in; `out` [L, dim] for every position.
// The config in the case's meta JSON is only used to cross-check the inferred configuration.
#include <iostream>

#include <nlohmann/json.hpp>

#include "backends/ops.h"
#include "io/safetensors.h"
#include "io/torch_pth.h"
#include "test_support.h"
#include "text/t5.h"

namespace wanrt {
namespace {

class T5Golden : public ::testing::TestWithParam<const char*> {};

TEST_P(T5Golden, MatchesReference) {
  WANRT_REQUIRE_GOLDEN(golden);
  const auto contents = read_safetensors(golden + "/t5/" + GetParam() + ".safetensors");
  const Tensor& ids_tensor = contents.tensors.get("ids");
  const Tensor& mask = contents.tensors.get("mask");
  const Tensor& expected = contents.tensors.get("out");
  ASSERT_EQ(ids_tensor.dtype(), DType::I64);
  ASSERT_EQ(mask.dtype(), DType::I64);
  const int64_t positions = ids_tensor.numel();
  const std::vector<int64_t> ids(ids_tensor.data<int64_t>(), ids_tensor.data<int64_t>() + positions);
  int64_t tokens = 0;
  for (int64_t j = 0; j < positions; ++j) tokens += mask.data<int64_t>()[j];
  // The mask is a prefix of ones ending at EOS.
  for (int64_t j = 0; j < positions; ++j) ASSERT_EQ(mask.data<int64_t>()[j], j < tokens ? 1 : 0);
  ASSERT_EQ(ids[static_cast<size_t>(tokens - 1)], 1) << "EOS should end the real tokens";

  auto ops = make_cpu_ops();
  const T5Encoder encoder(
      read_pth(golden + "/Wan2.2-I2V-tiny/models_t5_umt5-xxl-enc-bf16.pth"), *ops);

  const auto meta = nlohmann::json::parse(contents.metadata.at("meta")).at("config");
  const T5Config& c = encoder.config();
  EXPECT_EQ(c.vocab, meta.at("vocab").get<int64_t>());
  EXPECT_EQ(c.dim, meta.at("dim").get<int64_t>());
  EXPECT_EQ(c.dim_attn, meta.at("dim_attn").get<int64_t>());
  EXPECT_EQ(c.dim_ffn, meta.at("dim_ffn").get<int64_t>());
  EXPECT_EQ(c.num_heads, meta.at("num_heads").get<int64_t>());
  EXPECT_EQ(c.num_layers, meta.at("num_layers").get<int64_t>());
  EXPECT_EQ(c.num_buckets, meta.at("num_buckets").get<int64_t>());
  ASSERT_EQ(shape_str(expected.shape()), shape_str({positions, c.dim}));

  // The reference's own run: every position, padded keys masked; all rows as the golden has them.
  const Tensor all = encoder.encode_all_positions(*ops, ids, tokens);
  const double all_error = testing::relative_error(all, expected);
  EXPECT_LE(all_error, 1e-5);
  // What the pipeline keeps: the first `tokens` rows, in both modes.
  const Tensor kept = expected.slice_rows(0, tokens);
  const double padded_error =
      testing::relative_error(encoder.encode(*ops, ids, tokens, T5Positions::Padded), kept);
  const double true_length_error =
      testing::relative_error(encoder.encode(*ops, ids, tokens, T5Positions::TrueLength), kept);
  EXPECT_LE(padded_error, 1e-5);
  EXPECT_LE(true_length_error, 1e-5);
  std::cout << GetParam() << ": " << tokens << " of " << positions
            << " tokens; relative error all rows " << all_error << ", kept rows (padded run) "
            << padded_error << ", kept rows (true-length run) " << true_length_error << "\n";
}

INSTANTIATE_TEST_SUITE_P(Cases, T5Golden, ::testing::Values("len24_tokens11", "len512_tokens40"));

}  // namespace
}  // namespace wanrt
