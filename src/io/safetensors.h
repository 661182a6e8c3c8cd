// safetensors: reading (memory-mapped, zero-copy, fully validated), sharded checkpoints through
// `*.safetensors.index.json`, and writing (atomically: temporary file, then rename).
//
// Format: u64 little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {str: str}},
// then the data section. Every problem (truncation, bad JSON, offsets out of range or
// overlapping, unknown dtype, byte size != shape × dtype size) is a wanrt::Error naming the
// file and the tensor.
#pragma once

#include <map>
#include <string>
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
// A sharded checkpoint: reads `index_path` ({"weight_map": {name: shard}}), opens every shard
// named there (relative to the index's folder) and checks that each shard holds exactly the
// names the index assigns to it.
TensorStore read_safetensors_index(const std::string& index_path);

// Writes `tensors` (host tensors, any dtype, contiguous) in the given order; metadata optional.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace wanrt
