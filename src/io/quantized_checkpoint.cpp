#include "io/quantized_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/staged_output.h"
#include "model/dit_config.h"

namespace wanrt {
namespace {

namespace fs = std::filesystem;

bool is_code_dtype(DType dtype) { return quantization_of(dtype).has_value(); }

void check_scale(const std::string& name, const Tensor& codes, const Tensor& scale,
                 const TensorStore& raw) {
  const std::string where = str_cat("tensor ", name, " in ", raw.file_of(name));
  WANRT_CHECK(scale.dtype() == DType::F32, where, " is ", scale.describe(),
              "; the per-row scales of quantized weights are F32");
  WANRT_CHECK(codes.dim() >= 1 && scale.shape() == Shape{codes.size(0)}, where, " is ",
              scale.describe(), ", but its codes ", codes.describe(), " need one scale per row: [",
              codes.dim() >= 1 ? codes.size(0) : 0, "]");
  const float* values = scale.data<float>();
  for (int64_t r = 0; r < scale.numel(); ++r)
    WANRT_CHECK(std::isfinite(values[r]) && values[r] >= 0.0f, where, ": row ", r, " has scale ",
                values[r], "; scales are finite and not negative (the file is damaged)");
}

}  // namespace

std::string quantization_scheme_text(Quantization quantization) {
  const DType codes = quantization_dtype(quantization);
  const char* rounding = codes == DType::I8
                             ? "q = clamp(round_half_even(w / s), -127, 127)"
                             : "q = float8_e4m3fn(clamp(w / s, -448, 448)), rounded to nearest even";
  return str_cat("weight-only, symmetric, per output channel: for each quantized weight W "
                 "[out, in], NAME holds the ", dtype_name(codes), " codes q and NAME.scale the F32 "
                 "scales s [out], s[r] = max|W[r, :]| / ", quantization_code_max(codes), ", ",
                 rounding, "; W[r, c] ~= s[r] * q[r, c]. Quantized: the linear layers of the "
                 "transformer blocks (attention q/k/v/o, ffn.0, ffn.2); every other tensor as in "
                 "the source checkpoint. Written by wanrt.");
}

TensorStore join_row_scales(TensorStore raw, const std::map<std::string, std::string>& metadata,
                            const std::string& where) {
  std::optional<Quantization> declared;
  if (const auto it = metadata.find(kQuantizationMetadataKey); it != metadata.end()) {
    declared = quantization_from_name(it->second);
    WANRT_CHECK(declared && *declared != Quantization::None, where, ": metadata ",
                kQuantizationMetadataKey, " is '", it->second,
                "'; wanrt knows the quantizations int8 and fp8");
  }
  // First pass: which names are scales of codes present in the store.
  std::set<std::string> scale_names;
  for (const std::string& name : raw.names()) {
    if (!name.ends_with(kRowScaleSuffix)) continue;
    const std::string codes_name = name.substr(0, name.size() - kRowScaleSuffix.size());
    WANRT_CHECK(raw.contains(codes_name), where, ": tensor ", name,
                " holds per-row scales, but the quantized weight ", codes_name,
                " it belongs to is missing");
    WANRT_CHECK(is_code_dtype(raw.get(codes_name).dtype()), where, ": tensor ", name,
                " holds per-row scales, but ", codes_name, " is ",
                raw.get(codes_name).describe(), ", not I8 or F8_E4M3 codes");
    scale_names.insert(name);
  }
  const bool quantized_file = declared.has_value() || !scale_names.empty();

  TensorStore joined;
  for (const std::string& name : raw.names()) {
    if (scale_names.count(name)) continue;
    const Tensor& tensor = raw.get(name);
    const std::string scale_name = name + std::string(kRowScaleSuffix);
    const bool has_scale = scale_names.count(scale_name) != 0;
    if (tensor.dtype() == DType::I8 || (tensor.dtype() == DType::F8_E4M3 && quantized_file)) {
      WANRT_CHECK(has_scale, where, ": tensor ", name, " is ", tensor.describe(),
                  " quantized codes, but its per-row scales ", scale_name,
                  " (F32) are missing; the quantized checkpoint is incomplete: write it again "
                  "with `wanrt quantize`");
    }
    if (!has_scale) {
      joined.add(name, tensor, raw.file_of(name));
      continue;
    }
    WANRT_CHECK(!declared || tensor.dtype() == quantization_dtype(*declared), where,
                ": metadata says ", kQuantizationMetadataKey, " = ",
                quantization_name(*declared), ", but tensor ", name, " is ", tensor.describe());
    const Tensor& scale = raw.get(scale_name);
    check_scale(scale_name, tensor, scale, raw);
    joined.add(name, Tensor::with_row_scale(tensor, scale), raw.file_of(name));
  }
  WANRT_CHECK(!declared || !scale_names.empty(), where, ": metadata says ",
              kQuantizationMetadataKey, " = ", quantization_name(*declared),
              ", but no tensor has per-row scales (NAME", kRowScaleSuffix, ")");
  return joined;
}

void append_file_tensors(std::vector<std::pair<std::string, Tensor>>& out,
                         const std::string& name, const Tensor& tensor) {
  if (!tensor.is_row_scaled()) {
    out.emplace_back(name, tensor);
    return;
  }
  // The codes alone, as a plain view kept alive by (a copy of) the row-scaled tensor.
  out.emplace_back(name, Tensor::view(std::make_shared<const Tensor>(tensor), tensor.raw(),
                                      tensor.dtype(), tensor.shape(), tensor.device()));
  out.emplace_back(name + std::string(kRowScaleSuffix), tensor.row_scale());
}

std::vector<QuantizedExpertSummary> write_quantized_checkpoint(
    const std::string& source_root, const std::string& out_root, Quantization quantization,
    const std::function<void(const std::string&)>& progress) {
  const DType codes = quantization_dtype(quantization);
  const auto say = [&](const std::string& line) {
    if (progress) progress(line);
  };
  const CheckpointLayout layout = resolve_checkpoint(source_root);
  if (!layout.high_noise.found || !layout.low_noise.found) require_complete(layout);  // says what is missing

  std::error_code ec;
  if (fs::exists(out_root, ec)) {
    WANRT_CHECK(fs::is_directory(out_root, ec) && fs::is_empty(out_root, ec), out_root,
                ": exists and is not an empty folder; give a new folder for the quantized "
                "checkpoint");
  }
  // The folder is written beside its final path and renamed into place when complete.
  fs::path final_path = fs::path(out_root).lexically_normal();
  if (!final_path.has_filename()) final_path = final_path.parent_path();  // "out/" -> "out"
  StagedOutput staged(final_path.string());
  const fs::path temp(staged.temp_path());
  fs::create_directories(temp);

  std::vector<QuantizedExpertSummary> summaries;
  for (const ExpertLayout* expert : {&layout.high_noise, &layout.low_noise}) {
    say(str_cat("quantizing ", expert->name, " to ", quantization_name(quantization), " ..."));
    const DitConfig config = load_expert_config(*expert);
    const TensorStore weights = load_expert_weights(*expert, config);
    QuantizedExpertSummary summary;
    summary.name = expert->name;
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& [name, shape] : config.expected_tensors()) {
      const Tensor& tensor = weights.get(name);
      WANRT_CHECK(!tensor.is_row_scaled(), expert->weights->path, ": tensor ", name, " is already ",
                  tensor.describe(), "; quantize the float checkpoint, not a quantized one");
      if (dit_weight_is_quantized(name)) {
        append_file_tensors(tensors, name, quantize_rows(tensor, codes, name));
        ++summary.quantized_tensors;
        summary.quantized_parameters += tensor.numel();
      } else {
        append_file_tensors(tensors, name, tensor);
        summary.float_parameters += tensor.numel();
      }
    }
    const fs::path folder = temp / expert->name;
    fs::create_directories(folder);
    fs::copy_file(expert->config_path, folder / "config.json");
    summary.path = (fs::path(out_root) / expert->name / kDitSingleName).string();
    const fs::path file = folder / kDitSingleName;
    write_safetensors(file.string(), tensors,
                      {{kQuantizationMetadataKey, std::string(quantization_name(quantization))},
                       {kQuantizationSchemeKey, quantization_scheme_text(quantization)},
                       {"format", "pt"}});
    summary.bytes = fs::file_size(file);
    summaries.push_back(summary);
  }

  // The parts that stay float: links to the source files, at their layout paths.
  const auto link = [&](const std::string& source_file, const fs::path& relative) {
    const fs::path target = temp / relative;
    fs::create_directories(target.parent_path());
    fs::create_symlink(fs::absolute(source_file), target);
    say(str_cat("linked ", relative.string(), " -> ", fs::absolute(source_file).string()));
  };
  if (layout.t5) link(layout.t5->path, fs::path(layout.t5->path).filename());
  if (layout.vae) link(layout.vae->path, fs::path(layout.vae->path).filename());
  if (!layout.tokenizer_model.empty()) link(layout.tokenizer_model, kTokenizerModel);
  for (const MissingPart& part : layout.missing)
    say(str_cat("note: the source has no ", part.what, " (", part.expected_path,
                "); the quantized checkpoint lacks it too"));
  const fs::path readme = fs::path(source_root) / "README.txt";
  if (fs::is_regular_file(readme, ec)) fs::copy_file(readme, temp / "README.txt");
  staged.commit();
  return summaries;
}

}  // namespace wanrt
