// Accuracy of weight-only quantization on the golden tiny checkpoint (shared/golden), measured
// on the float32 CPU backend and printed: per layer, the error of each quantized linear layer of
// both experts on random activations; per forward, the error of the whole DiT with int8 and fp8
// block weights against the float32 model on every golden DiT case. These are CPU numbers on a
// tiny random-weight model; the bounds hold them with a margin (a broken scale or code layout
// gives errors of order 1).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>

#include "backends/ops.h"
#include "golden_cases.h"
#include "io/safetensors.h"
#include "model/dit.h"
#include "test_support.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;

constexpr Quantization kSchemes[] = {Quantization::Int8, Quantization::Fp8};
// Bounds: two to three times the measured values (see the printed tables; measured: per layer
// int8 ~6.5e-3, fp8 ~2.7e-2; per forward int8 ~3.3e-3, fp8 ~1.3e-2).
double layer_bound(Quantization q) { return q == Quantization::Int8 ? 1.5e-2 : 6e-2; }
double forward_bound(Quantization q) { return q == Quantization::Int8 ? 1e-2 : 4e-2; }

// The layer kind of a block weight name: "self_attn.q", "ffn.0", ...
std::string layer_kind(const std::string& name) {
  const size_t begin = name.find('.', std::string("blocks.").size()) + 1;
  return name.substr(begin, name.size() - begin - std::string(".weight").size());
}

TEST(DitQuantizedGolden, PerLayerErrorOnRandomActivations) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  const uint64_t seed = testing::test_seed();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(str_cat("WANRT_TEST_SEED=", seed));
  // kind -> scheme -> worst relative error over both experts and all blocks
  std::map<std::string, std::map<Quantization, double>> worst;
  for (const char* expert_name : {"high_noise_model", "low_noise_model"}) {
    const testing::GoldenExpert expert = testing::read_golden_expert(golden, expert_name);
    for (const auto& [name, shape] : expert.config.expected_tensors()) {
      if (!dit_weight_is_quantized(name)) continue;
      const Tensor weight = expert.weights.tensors.get(name);
      const Tensor x = testing::random_normal({32, shape[1]}, rng);
      const Tensor exact = ops->linear(x, ops->upload_weight(weight), nullptr);
      for (Quantization q : kSchemes) {
        const double err = testing::relative_error(
            ops->linear(x, ops->quantize_weight(weight, quantization_dtype(q)), nullptr), exact);
        EXPECT_LT(err, layer_bound(q)) << expert_name << " " << name << " " << quantization_name(q);
        double& slot = worst[layer_kind(name)][q];
        slot = std::max(slot, err);
      }
    }
  }
  std::printf("  per-layer relative error, worst over blocks and experts (tiny golden checkpoint, "
              "random N(0,1) activations, CPU float32)\n  %-16s %12s %12s\n", "layer", "int8", "fp8");
  for (const auto& [kind, errors] : worst)
    std::printf("  %-16s %12.2e %12.2e\n", kind.c_str(), errors.at(Quantization::Int8),
                errors.at(Quantization::Fp8));
  EXPECT_EQ(worst.size(), 10u);
}

TEST(DitQuantizedGolden, PerForwardErrorAgainstFloat32) {
  WANRT_REQUIRE_GOLDEN(golden);
  auto ops = make_cpu_ops();
  std::printf("  per-forward relative error of the DiT output (tiny golden checkpoint, CPU)\n"
              "  %-22s %14s %14s %14s\n", "case", "int8 vs f32", "fp8 vs f32", "f32 vs golden");
  int cases = 0;
  for (const testing::GoldenDitCase& golden_case : testing::read_dit_golden_cases(golden)) {
    const std::string& case_name = golden_case.name;
    SCOPED_TRACE(case_name);
    const TensorStore& data = golden_case.data;
    const testing::GoldenExpert& expert = golden_case.expert;
    const DitInputs inputs = golden_case.inputs();
    const Tensor reference = WanModel::load(expert.config, expert.weights.tensors, *ops).forward(*ops, inputs);
    std::map<Quantization, double> errors;
    for (Quantization q : kSchemes) {
      const WanModel model = WanModel::load(expert.config, expert.weights.tensors, *ops, {.quantize = q});
      ASSERT_EQ(model.quantization(), q);
      errors[q] = testing::relative_error(model.forward(*ops, inputs), reference);
      EXPECT_LT(errors[q], forward_bound(q)) << quantization_name(q);
      EXPECT_GT(errors[q], 0.0) << quantization_name(q) << ": the quantized model changed nothing";
    }
    const double golden_err = testing::relative_error(reference, data.get("out").to(DType::F32).reshape(reference.shape()));
    std::printf("  %-22s %14.2e %14.2e %14.2e\n", case_name.c_str(), errors[Quantization::Int8],
                errors[Quantization::Fp8], golden_err);
    ++cases;
  }
  EXPECT_GE(cases, 1);
  // For scale: the reference itself run in bf16 autocast on a GPU, against its float32 output.
  const fs::path autocast = fs::path(golden) / "dit" / "high_t999_exact_gpu_bf16_autocast.safetensors";
  if (fs::exists(autocast)) {
    const auto meta = nlohmann::json::parse(read_safetensors(autocast.string()).metadata.at("meta"));
    std::printf("  (the official code under bf16 autocast on a GPU, high_t999_exact: %.2e vs f32)\n",
                meta.at("rel_err_vs_fp32").get<double>());
  }
}

}  // namespace
}  // namespace wanrt
