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

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/pickle.h"
#include "io/tensor_store.h"

namespace wanrt {

TensorStore read_pth(const std::string& path);

// The same from bytes in memory (fuzzing, embedded files): `name` labels errors and the store's
// file names; `owner` keeps `bytes` alive for the zero-copy views (null: the caller does).
// Contiguous tensors whose data is suitably aligned are views into `bytes`; others are copies.
TensorStore parse_pth(std::span<const std::byte> bytes, const std::string& name,
                      std::shared_ptr<const void> owner);

// Writes a state dict as torch.save would (zip of stored entries, 64-byte aligned records,
// pickle protocol 2, ZIP64 end records) under the top-level folder `archive_name`.
void write_pth(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
               const std::string& archive_name = "archive");

struct PthWriteOptions {
  std::string archive_name = "archive";
  // The `byteorder` record; nullopt leaves it out, as torch before 1.10 did.
  std::optional<std::string> byteorder = "little";
  // ZIP64 extra fields on every entry even when no size needs them (tests the ZIP64 path).
  bool force_zip64 = false;
};

// The general form: `storages` are host tensors whose bytes become the records data/0,
// data/1, ... (storage i has key "i"); `tensors` name strided views into them, so storages can
// be shared and views can be offset or non-contiguous. Every view must lie inside its storage.
void write_pth(const std::string& path, const std::vector<Tensor>& storages,
               const std::vector<PickledTensor>& tensors, const PthWriteOptions& options);
// As above, into memory.
std::vector<std::byte> encode_pth(const std::vector<Tensor>& storages,
                                  const std::vector<PickledTensor>& tensors,
                                  const PthWriteOptions& options);

}  // namespace wanrt
