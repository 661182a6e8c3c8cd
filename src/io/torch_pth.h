// PyTorch .pth files (the zip + pickle format of torch.save): reading state dicts of
// BF16/F16/F32 (and integer) tensors as zero-copy views of the memory-mapped file, and
// writing them (for demo checkpoints and tests).
//
// Reading follows spec/wan22-t5-vae-and-files.md §4.5: a ZIP (stored entries, ZIP64 records
// and extra fields honoured), any top-level folder name, `data.pkl` interpreted by a pickle
// machine that knows only the opcodes a state dict uses and never executes anything,
// `data/<key>` storages. Every malformed input is a wanrt::Error naming the file and the
// problem (bad zip directory, unsupported pickle opcode, storage out of range, ...).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "io/tensor_store.h"

namespace wanrt {

TensorStore read_pth(const std::string& path);

// Writes a state dict as torch.save would (zip of stored entries, 64-byte aligned records,
// pickle protocol 2, ZIP64 end records) under the top-level folder `archive_name`.
void write_pth(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
               const std::string& archive_name = "archive");

}  // namespace wanrt
