// What `wanrt inspect` found in a checkpoint folder, gathered once and then printed as text or
// JSON. Gathering never throws for a bad component: each component records its own error, so
// one broken file does not hide the state of the others.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/checkpoint.h"

namespace wanrt::cli {

// GPU bytes for a component's weights at each weight precision (weights only).
struct WeightMemory {
  uint64_t bf16 = 0;
  uint64_t int8 = 0;  // --quantize int8; fp8 needs the same: 1-byte codes, scales, rest bf16
};

struct ComponentReport {
  std::string title;        // "high_noise_model", "umT5 text encoder", "VAE"
  bool present = false;     // files found
  bool valid = false;       // loaded and passed every check
  std::string error;        // why not valid (empty when valid or absent)
  std::string source;       // the file opened (.pth, .safetensors or the index)
  std::string format;       // weight_format_name()
  size_t file_count = 0;
  uint64_t bytes_on_disk = 0;
  size_t tensor_count = 0;
  std::map<std::string, size_t> dtype_counts;  // "BF16" -> 1095
  int64_t parameters = 0;
  // Configuration as (key, value) in display order; DiT values from defaults say so.
  std::vector<std::pair<std::string, std::string>> config;
  bool memory_known = false;
  WeightMemory memory;
};

struct InspectReport {
  CheckpointLayout layout;
  ComponentReport high_noise;
  ComponentReport low_noise;
  ComponentReport t5;
  ComponentReport vae;
  std::string tokenizer;              // "256 pieces (pad 0, eos 1, unk 2)" when it loaded
  std::vector<std::string> warnings;  // cross-component inconsistencies

  bool ok() const;  // complete, every component valid, no warnings
};

// Throws wanrt::Error only when `root` is not a folder.
InspectReport inspect_checkpoint(const std::string& root);

// The memory rule, shared with the text that states it: a weight that --quantize quantizes
// (`is_quantized`, dit_weight_is_quantized for the experts; null for the text encoder and VAE,
// which stay bf16) costs 1 byte per element plus a 4-byte scale per output row under int8/fp8;
// every other tensor costs 2 bytes (bf16).
WeightMemory weight_memory(const ExpectedTensors& tensors,
                           const std::function<bool(std::string_view)>& is_quantized);

}  // namespace wanrt::cli
