// safetensors: reading (memory-mapped, zero-copy, fully validated), sharded checkpoints through
// `*.safetensors.index.json`, and writing (atomically: temporary file, then rename).
//
// Format: u64 little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {str: str}},
// then the data section. Every problem (truncation, bad JSON, offsets out of range or
// overlapping, unknown dtype, byte size != shape × dtype size) is a wanrt::Error naming the
// file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/tensor_store.h"

namespace wanrt {

struct SafetensorsContents {
  TensorStore tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__", empty if absent
};

// One .safetensors file.
SafetensorsContents read_safetensors(const std::string& path);

// The in-memory form of read_safetensors (the fuzzer calls it): parses and validates `bytes`,
// naming `name` in errors. Tensors view `bytes` directly and share `owner`, which must keep
// them alive; a tensor whose bytes are not aligned to its element size is copied instead.
SafetensorsContents parse_safetensors(std::span<const std::byte> bytes, const std::string& name,
                                      std::shared_ptr<const void> owner);

// The parsed text of a `*.safetensors.index.json`.
struct SafetensorsIndex {
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file (relative)
  std::optional<uint64_t> total_size;             // "metadata"."total_size", if present
};
// Parses and validates index JSON `text`, naming `name` in errors.
SafetensorsIndex parse_safetensors_index(std::string_view text, const std::string& name);
// A sharded checkpoint: reads `index_path` ({"weight_map": {name: shard}}), opens every shard
// named there (relative to the index's folder) and checks that each shard holds exactly the
// names the index assigns to it.
TensorStore read_safetensors_index(const std::string& index_path);

// Writes `tensors` (host tensors, any dtype, contiguous) in the given order; metadata optional.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace wanrt
