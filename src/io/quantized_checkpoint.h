// Quantized DiT experts on disk: how `wanrt quantize` writes them and how every loader of an
// expert reads them back, so a quantized checkpoint starts without re-quantizing.
//
// An expert's safetensors file holds, for each quantized weight (dit_weight_is_quantized):
//   NAME         the codes: I8 or F8_E4M3, the weight's shape [out, in]
//   NAME.scale   F32 [out], the per-output-row scales (w ≈ scale[r] · code[r, :])
// and every other tensor as the float checkpoint stores it. Its "__metadata__" says the scheme:
//   "wanrt_quantization":        "int8" or "fp8"
//   "wanrt_quantization_scheme": a sentence stating the formula (for people and other tools)
// A quantized checkpoint folder is a complete Wan2.2 layout: the quantized experts with their
// config.json, and the text encoder, VAE and tokenizer as symbolic links to the source
// checkpoint's files (they are not quantized; links save copying 17 GB).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/quantize.h"
#include "io/checkpoint.h"
#include "io/tensor_store.h"

namespace wanrt {

inline constexpr const char* kQuantizationMetadataKey = "wanrt_quantization";
inline constexpr const char* kQuantizationSchemeKey = "wanrt_quantization_scheme";
inline constexpr std::string_view kRowScaleSuffix = ".scale";

// The sentence stored under kQuantizationSchemeKey.
std::string quantization_scheme_text(Quantization quantization);

// The store with each NAME.scale joined onto its codes NAME as a row-scaled tensor. `metadata`
// is the file's "__metadata__" (empty for .pth or sharded files); `where` names the file in
// errors. Errors: I8 codes without their scale (a quantized file missing a scale), a scale of
// the wrong dtype, shape or value (negative, non-finite), a scale whose codes are missing or
// not I8/F8_E4M3, metadata naming an unknown scheme or disagreeing with the codes. F8_E4M3
// tensors without a scale are plain float weights, unless the file is a quantized one (its
// metadata says so, or other tensors have scales), where a missing scale is an error.
TensorStore join_row_scales(TensorStore raw, const std::map<std::string, std::string>& metadata,
                            const std::string& where);

// The opposite, for writing: `tensor` as the file stores it (codes NAME + NAME.scale for a
// row-scaled tensor, else NAME), appended to `out`.
void append_file_tensors(std::vector<std::pair<std::string, Tensor>>& out,
                         const std::string& name, const Tensor& tensor);

struct QuantizedExpertSummary {
  std::string name;              // "high_noise_model"
  std::string path;              // the .safetensors written
  int64_t quantized_tensors = 0;  // weights turned into codes + scales
  int64_t quantized_parameters = 0;
  int64_t float_parameters = 0;  // kept as stored
  uint64_t bytes = 0;            // the file's size
};

// Writes the quantized form of checkpoint `source_root` (both float experts present; the
// other parts are linked where present) into the new folder `out_root` (must not exist, or be
// empty); the folder appears only when complete. `progress` (optional) hears one line per step.
std::vector<QuantizedExpertSummary> write_quantized_checkpoint(
    const std::string& source_root, const std::string& out_root, Quantization quantization,
    const std::function<void(const std::string&)>& progress = {});

}  // namespace wanrt
