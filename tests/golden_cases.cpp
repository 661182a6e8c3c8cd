#include "golden_cases.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <utility>

#include "io/safetensors.h"
#include "io/torch_pth.h"
#include "model/dit.h"
#include "model/vae.h"
#include "pipeline/i2v_pipeline.h"
#include "test_support.h"
#include "text/t5.h"

namespace wanrt::testing {
namespace {

namespace fs = std::filesystem;

// The stems of the .safetensors files in golden/<folder>, sorted, so every run and every
// backend visits the cases in the same order.
std::vector<fs::path> case_files(const std::string& golden, const std::string& folder) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(fs::path(golden) / folder))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The config the VAE reference ran with, from the case's meta JSON (a cross-check of the config
// the loader infers from the checkpoint's shapes).
VaeConfig vae_config_from_meta(const std::string& meta_text) {
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

}  // namespace

double GoldenCase::error(std::string_view output) const {
  for (const GoldenError& e : errors)
    if (e.output == output) return e.error;
  fail("golden case ", name, " measured no output named ", output);
}

void expect_within(const GoldenCase& result, double tolerance) {
  for (const GoldenError& e : result.errors)
    EXPECT_LE(e.error, tolerance) << result.name << ": " << e.output;
}

void expect_within(const GoldenCase& result, std::string_view output, double tolerance) {
  EXPECT_LE(result.error(output), tolerance) << result.name << ": " << output;
}

GoldenExpert read_golden_expert(const std::string& golden, const std::string& name) {
  const std::string dir = golden + "/Wan2.2-I2V-tiny/" + name;
  return {DitConfig::from_json_file(dir + "/config.json"),
          read_safetensors(dir + "/diffusion_pytorch_model.safetensors")};
}

std::string golden_expert_of_case(const std::string& case_name) {
  return case_name.rfind("high", 0) == 0 ? "high_noise_model" : "low_noise_model";
}

DitInputs GoldenDitCase::inputs() const {
  return {.x = &x, .y = &y, .timestep = timestep, .context = &context, .seq_len = seq_len};
}

std::vector<GoldenDitCase> read_dit_golden_cases(const std::string& golden) {
  std::vector<GoldenDitCase> cases;
  for (const fs::path& path : case_files(golden, "dit")) {
    auto file = read_safetensors(path.string());
    const TensorStore& data = file.tensors;
    if (!data.contains("x")) continue;  // an output-only case (the bf16 autocast reference)
    const std::string name = path.stem().string();
    const auto meta = nlohmann::json::parse(file.metadata.at("meta"));
    cases.push_back({.name = name,
                     .data = data,
                     .expert = read_golden_expert(golden, golden_expert_of_case(name)),
                     .x = data.get("x").to(DType::F32),
                     .y = data.get("y").to(DType::F32),
                     .context = data.get("context").to(DType::F32),
                     .timestep = data.get("t").to(DType::F32).data<float>()[0],
                     .seq_len = meta.at("seq_len").get<int64_t>()});
  }
  WANRT_CHECK(!cases.empty(), "no DiT cases with inputs under ", golden, "/dit");
  return cases;
}

std::vector<GoldenCase> run_dit_golden(Ops& ops, const std::string& golden) {
  std::vector<GoldenCase> results;
  for (const GoldenDitCase& golden_case : read_dit_golden_cases(golden)) {
    const TensorStore& data = golden_case.data;
    GoldenCase result{.name = golden_case.name, .errors = {}};
    const WanModel model = WanModel::load(golden_case.expert.config, golden_case.expert.weights.tensors, ops);

    std::map<std::string, Tensor> traced;
    const DitTrace trace = [&](const std::string& name, const Tensor& value) {
      traced[name] = value.clone();
    };
    traced["out"] = model.forward(ops, golden_case.inputs(), &trace);

    for (const std::string& name : data.names()) {
      if (name == "x" || name == "y" || name == "t" || name == "context") continue;
      WANRT_CHECK(traced.count(name), "DiT case ", result.name,
                  ": the engine produced no tensor named ", name);
      const Tensor expected = data.get(name).to(DType::F32);
      const Tensor actual = traced.at(name).reshape(expected.shape());
      const double err = relative_error(actual, expected);
      std::printf("  %-24s %-22s rel err %.2e\n", result.name.c_str(), name.c_str(), err);
      result.errors.push_back({name, err});
    }
    WANRT_CHECK(!result.errors.empty(), "DiT case ", result.name, " holds no outputs");
    results.push_back(std::move(result));
  }
  return results;
}

GoldenCase run_t5_golden(Ops& ops, const std::string& golden, const std::string& case_name) {
  const auto contents = read_safetensors(golden + "/t5/" + case_name + ".safetensors");
  const Tensor& ids_tensor = contents.tensors.get("ids");
  const Tensor& mask = contents.tensors.get("mask");
  const Tensor& expected = contents.tensors.get("out");
  WANRT_CHECK(ids_tensor.dtype() == DType::I64 && mask.dtype() == DType::I64, "T5 case ",
              case_name, ": ids ", ids_tensor.describe(), " and mask ", mask.describe(),
              " must be I64");
  const int64_t positions = ids_tensor.numel();
  const std::vector<int64_t> ids(ids_tensor.data<int64_t>(), ids_tensor.data<int64_t>() + positions);
  int64_t tokens = 0;
  for (int64_t j = 0; j < positions; ++j) tokens += mask.data<int64_t>()[j];
  // The mask is a prefix of ones ending at EOS.
  for (int64_t j = 0; j < positions; ++j)
    WANRT_CHECK(mask.data<int64_t>()[j] == (j < tokens ? 1 : 0), "T5 case ", case_name,
                ": the mask is not a prefix of ones (position ", j, ")");
  WANRT_CHECK(tokens >= 1 && ids[static_cast<size_t>(tokens - 1)] == 1, "T5 case ", case_name,
              ": EOS (id 1) should end the real tokens");

  const T5Encoder encoder(read_pth(golden + "/Wan2.2-I2V-tiny/models_t5_umt5-xxl-enc-bf16.pth"), ops);
  const auto meta = nlohmann::json::parse(contents.metadata.at("meta")).at("config");
  const T5Config& c = encoder.config();
  EXPECT_EQ(c.vocab, meta.at("vocab").get<int64_t>());
  EXPECT_EQ(c.dim, meta.at("dim").get<int64_t>());
  EXPECT_EQ(c.dim_attn, meta.at("dim_attn").get<int64_t>());
  EXPECT_EQ(c.dim_ffn, meta.at("dim_ffn").get<int64_t>());
  EXPECT_EQ(c.num_heads, meta.at("num_heads").get<int64_t>());
  EXPECT_EQ(c.num_layers, meta.at("num_layers").get<int64_t>());
  EXPECT_EQ(c.num_buckets, meta.at("num_buckets").get<int64_t>());
  WANRT_CHECK(expected.shape() == Shape({positions, c.dim}), "T5 case ", case_name, ": out ",
              expected.describe(), " must be ", shape_str({positions, c.dim}));

  // The reference's own run: every position, padded keys masked; all rows as the golden has them.
  const double all_error = relative_error(encoder.encode_all_positions(ops, ids, tokens), expected);
  // What the pipeline keeps: the first `tokens` rows, in both modes.
  const Tensor kept = expected.slice_rows(0, tokens);
  const double padded_error =
      relative_error(encoder.encode(ops, ids, tokens, T5Positions::Padded), kept);
  const double true_length_error =
      relative_error(encoder.encode(ops, ids, tokens, T5Positions::TrueLength), kept);
  std::cout << case_name << ": " << tokens << " of " << positions
            << " tokens; relative error all rows " << all_error << ", kept rows (padded run) "
            << padded_error << ", kept rows (true-length run) " << true_length_error << "\n";
  return {.name = case_name,
          .errors = {{"all_rows", all_error},
                     {"kept_rows_padded", padded_error},
                     {"kept_rows_true_length", true_length_error}}};
}

GoldenCase run_vae_golden(Ops& ops, const std::string& golden, const std::string& case_name) {
  const std::string case_path = golden + "/vae/" + case_name + ".safetensors";
  const SafetensorsContents golden_case = read_safetensors(case_path);
  const TensorStore& tensors = golden_case.tensors;

  WanVae vae = WanVae::load_file(ops, golden + "/Wan2.2-I2V-tiny/Wan2.1_VAE.pth");
  WANRT_CHECK(golden_case.metadata.count("meta"), case_path, " has no meta");
  EXPECT_EQ(vae.config, vae_config_from_meta(golden_case.metadata.at("meta")))
      << "inferred " << vae.config.describe();

  auto start = std::chrono::steady_clock::now();
  const Tensor latent = vae.encode(ops, tensors.get("video"));
  const double encode_seconds = seconds_since(start);
  const double encode_error = relative_error(latent, tensors.get("latent"));

  VaeDecodeOptions unclamped;  // the golden decode_out is taken before the pipeline's clamp
  unclamped.clamp = false;
  start = std::chrono::steady_clock::now();
  const Tensor video = vae.decode(ops, tensors.get("decode_in"), unclamped);
  const double decode_seconds = seconds_since(start);
  const double decode_error = relative_error(video, tensors.get("decode_out"));

  std::printf("%s: encode %s -> %s relative error %.3g (%.2f s); decode %s -> %s relative error "
              "%.3g (%.2f s)\n",
              case_name.c_str(), tensors.get("video").describe().c_str(), latent.describe().c_str(),
              encode_error, encode_seconds, tensors.get("decode_in").describe().c_str(),
              video.describe().c_str(), decode_error, decode_seconds);
  return {.name = case_name,
          .errors = {{"encode_latent", encode_error}, {"decode_video", decode_error}}};
}

std::vector<GoldenCase> run_e2e_golden(Ops& ops, const std::string& golden,
                                       I2VPipelineOptions options,
                                       std::vector<Tensor>* final_latents) {
  const auto pipeline = I2VPipeline::load(golden + "/Wan2.2-I2V-tiny", ops, std::move(options));
  std::vector<GoldenCase> results;
  for (const fs::path& path : case_files(golden, "e2e")) {
    const std::string name = path.stem().string();
    const auto data = read_safetensors(path.string());
    const auto meta = nlohmann::json::parse(data.metadata.at("meta"));
    const Tensor noise = data.tensors.get("noise").to(DType::F32);

    I2VRequest request;
    request.image_path = (path.parent_path() / (name + "_input.png")).string();
    request.prompt_ids = meta.at("prompt_ids").get<std::vector<int64_t>>();
    request.negative_prompt_ids = meta.at("n_prompt_ids").get<std::vector<int64_t>>();
    request.max_area = meta.at("max_area").get<int64_t>();
    request.frame_num = meta.at("frames").get<int64_t>();
    request.solver = meta.at("solver").get<std::string>();
    request.steps = meta.at("steps").get<int>();
    request.shift = meta.at("shift").get<double>();
    request.guide_low = meta.at("guide").at(0).get<double>();
    request.guide_high = meta.at("guide").at(1).get<double>();
    request.noise = &noise;

    const I2VResult result = pipeline->generate(request);
    const double latent_err = relative_error(result.latent, data.tensors.get("final_latent"));
    const double video_err = relative_error(result.video, data.tensors.get("video"));
    std::printf("  %-24s final_latent rel err %.2e, video rel err %.2e\n", name.c_str(), latent_err,
                video_err);
    results.push_back({.name = name, .errors = {{"final_latent", latent_err}, {"video", video_err}}});
    if (final_latents) final_latents->push_back(result.latent);
  }
  WANRT_CHECK(!results.empty(), "no end-to-end cases under ", golden, "/e2e");
  return results;
}

}  // namespace wanrt::testing
