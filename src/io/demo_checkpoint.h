// A tiny random-weight checkpoint in the real Wan-AI/Wan2.2-I2V-A14B layout, for testing the
// engine end to end without 126 GB of downloads. Its outputs are noise by design.
//
// What it exercises: config.json in the diffusers style with only the keys the real file has
// (so the constructor-default path runs: text_dim 4096, patch (1,2,2), qk_norm, ...); DiT
// weights split over two shards with an index; T5 and VAE as torch.save .pth files; and, when
// SentencePiece is available, a small trained tokenizer at google/umt5-xxl/spiece.model.
// Because text_dim defaults to 4096, the demo T5 has width 4096 (with a narrow attention and
// FFN to stay small), so every component fits the next one as in the real checkpoint.
#pragma once

#include <cstdint>
#include <string>

#include "io/checkpoint.h"
#include "model/dit_config.h"

namespace wanrt {

DitConfig demo_dit_config();
T5CheckpointConfig demo_t5_config();
VaeCheckpointConfig demo_vae_config();

// Writes the demo checkpoint into `dir` (created if needed; existing demo files are replaced).
// The same seed gives the same weights.
void write_demo_checkpoint(const std::string& dir, uint64_t seed);

}  // namespace wanrt
