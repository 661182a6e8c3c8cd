// The golden cases (shared/golden, outputs of the official Wan2.2 code) run on any backend.
//
// Each runner loads the tiny checkpoint through `ops`, feeds a case's inputs, compares every
// output the case file holds with relative_error (‖a − b‖ / ‖b‖), prints one line per case or
// output (the log is the evidence) and returns the errors by name. It checks nothing against a
// tolerance: the caller does, because the bound depends on the backend (float32 CPU: 1e-5;
// a bf16 GPU: 1e-2; shared/golden/README.md). The conformance tests call these with
// make_cpu_ops(), tests/gpu/test_cuda_golden.cpp with make_cuda_ops().
//
// A case file that does not hold what the runner needs (a tensor the engine has no name for, a
// malformed mask, no meta) is an Error: a broken golden folder must fail, not pass vacuously.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "backends/ops.h"
#include "io/safetensors.h"
#include "model/dit.h"
#include "model/dit_config.h"
#include "pipeline/i2v_pipeline.h"

namespace wanrt::testing {

struct GoldenError {
  std::string output;  // the tensor compared: "block0_out", "encode_latent", "video", ...
  double error = 0;    // relative error against the reference's value
};

struct GoldenCase {
  std::string name;  // the case file's stem: "high_t999_exact", "len24_tokens11", ...
  std::vector<GoldenError> errors;  // in the order measured

  // The error measured for `output`; an output this case did not measure is an Error.
  double error(std::string_view output) const;
};

// EXPECTs error <= tolerance for every output of `result` (failures name case and output).
void expect_within(const GoldenCase& result, double tolerance);
// The same for one output.
void expect_within(const GoldenCase& result, std::string_view output, double tolerance);

// ---- DiT (golden/dit) ----
// One expert of the tiny checkpoint (golden/Wan2.2-I2V-tiny/<name>), read from its files.
struct GoldenExpert {
  DitConfig config;
  SafetensorsContents weights;
};
// `name`: "high_noise_model" or "low_noise_model".
GoldenExpert read_golden_expert(const std::string& golden, const std::string& name);
// The expert a dit/ case runs through: its name says (high_* / low_*).
std::string golden_expert_of_case(const std::string& case_name);

// A dit/ case that carries inputs (x, y, t, context), read with the expert its name picks.
struct GoldenDitCase {
  std::string name;     // the file's stem: "high_t999_exact", ...
  TensorStore data;     // every tensor of the file: the inputs, "out" and intermediates
  GoldenExpert expert;
  Tensor x, y, context;  // the inputs, F32
  double timestep = 0;
  int64_t seq_len = 0;  // from the case's meta
  // The inputs as WanModel::forward takes them; they point into this case.
  DitInputs inputs() const;
};
// Every dit/ case that carries inputs, sorted by name (an output-only case, the bf16 autocast
// reference, is passed over). No such case is an Error.
std::vector<GoldenDitCase> read_dit_golden_cases(const std::string& golden);


// Every case of read_dit_golden_cases through its expert; one error per tensor the file holds
// besides the inputs: `out` and the intermediates named as DitTrace names them.
std::vector<GoldenCase> run_dit_golden(Ops& ops, const std::string& golden);

// ---- umT5 encoder (golden/t5) ----
inline constexpr std::array<const char*, 2> kT5GoldenCases = {"len24_tokens11", "len512_tokens40"};
// Outputs: "all_rows" (every position, padded keys masked, as the reference runs),
// "kept_rows_padded" and "kept_rows_true_length" (the rows the pipeline keeps, computed both
// ways). Also EXPECTs the inferred configuration to equal the one in the case's meta.
GoldenCase run_t5_golden(Ops& ops, const std::string& golden, const std::string& case_name);

// ---- Wan2.1 VAE (golden/vae) ----
inline constexpr std::array<const char*, 3> kVaeGoldenCases = {"t1_16x24", "t5_16x16", "t9_32x48"};
// Outputs: "encode_latent" (the normalised latent mean of encode(video)) and "decode_video"
// (decode(decode_in), unclamped). Also EXPECTs the inferred configuration to equal the meta's.
GoldenCase run_vae_golden(Ops& ops, const std::string& golden, const std::string& case_name);

// ---- the whole I2V pipeline (golden/e2e) ----
// Every e2e/ case, with the reference's injected noise and token ids and the settings of its
// meta. Outputs: "final_latent" (the latent handed to the VAE decoder) and "video" (clamped).
// `final_latents`, if given, receives each case's final latent.
std::vector<GoldenCase> run_e2e_golden(Ops& ops, const std::string& golden,
                                       I2VPipelineOptions options = {},
                                       std::vector<Tensor>* final_latents = nullptr);

}  // namespace wanrt::testing
