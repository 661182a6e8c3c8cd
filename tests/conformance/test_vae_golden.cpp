// The Wan2.1 VAE against the official implementation (golden/vae/*, tiny random checkpoint):
// the normalised latent mean of encode(video) and the unclamped decode(decode_in), float32 CPU,
// each within 1e-5 relative.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "backends/ops.h"
#include "io/safetensors.h"
#include "model/vae.h"
#include "test_support.h"

namespace wanrt {
namespace {

using testing::relative_error;

constexpr double kTolerance = 1e-5;

// The config the reference ran with, from the case's meta JSON (a cross-check of the config
// the loader infers from the checkpoint's shapes).
VaeConfig config_from_meta(const std::string& meta_text) {
  const nlohmann::json config = nlohmann::json::parse(meta_text).at("config");
  VaeConfig result;
  result.dim = config.at("dim").get<int64_t>();
  result.z_dim = config.at("z_dim").get<int64_t>();
  result.dim_mult = config.at("dim_mult").get<std::vector<int64_t>>();
  result.num_res_blocks = config.at("num_res_blocks").get<int64_t>();
  result.temporal_downsample = config.at("temperal_downsample").get<std::vector<bool>>();
  EXPECT_TRUE(config.at("attn_scales").empty()) << "the engine's VAE has no in-stage attention";
  return result;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class VaeGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(VaeGolden, EncodeAndDecodeMatchTheReference) {
  WANRT_REQUIRE_GOLDEN(golden);
  const std::string case_path = golden + "/vae/" + GetParam() + ".safetensors";
  const SafetensorsContents golden_case = read_safetensors(case_path);
  const TensorStore& tensors = golden_case.tensors;

  auto ops = make_cpu_ops();
  WanVae vae = WanVae::load_file(*ops, golden + "/Wan2.2-I2V-tiny/Wan2.1_VAE.pth");
  ASSERT_TRUE(golden_case.metadata.count("meta")) << case_path << " has no meta";
  EXPECT_EQ(vae.config, config_from_meta(golden_case.metadata.at("meta")))
      << "inferred " << vae.config.describe();

  auto start = std::chrono::steady_clock::now();
  const Tensor latent = vae.encode(*ops, tensors.get("video"));
  const double encode_seconds = seconds_since(start);
  const double encode_error = relative_error(latent, tensors.get("latent"));

  VaeDecodeOptions unclamped;  // the golden decode_out is taken before the pipeline's clamp
  unclamped.clamp = false;
  start = std::chrono::steady_clock::now();
  const Tensor video = vae.decode(*ops, tensors.get("decode_in"), unclamped);
  const double decode_seconds = seconds_since(start);
  const double decode_error = relative_error(video, tensors.get("decode_out"));

  std::printf("%s: encode %s -> %s relative error %.3g (%.2f s); decode %s -> %s relative error "
              "%.3g (%.2f s)\n",
              GetParam(), tensors.get("video").describe().c_str(), latent.describe().c_str(),
              encode_error, encode_seconds, tensors.get("decode_in").describe().c_str(),
              video.describe().c_str(), decode_error, decode_seconds);
  EXPECT_LE(encode_error, kTolerance);
  EXPECT_LE(decode_error, kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Cases, VaeGolden,
                         ::testing::Values("t1_16x24", "t5_16x16", "t9_32x48"));

}  // namespace
}  // namespace wanrt
