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
#include <functional>
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

// ---- the full-size checkpoint (for benchmarks) ----
// The real sizes of umT5-XXL (5.7 B parameters) and of the released Wan2.1 VAE; the DiT's are
// DitConfig::i2v_a14b().
T5CheckpointConfig full_size_t5_config();
VaeCheckpointConfig full_size_vae_config();

// Receives one progress line at a time (no newline).
using FullSizeLog = std::function<void(const std::string& line)>;

// What write_shared_expert_checkpoint() writes.
struct RandomCheckpointSpec {
  DitConfig dit;
  T5CheckpointConfig t5;
  VaeCheckpointConfig vae;
  uint64_t shard_bytes = 0;  // the expert's safetensors shards hold at most this (one tensor
                             // larger than it gets a shard of its own)
  uint64_t bytes() const;    // weight bytes on disk (the expert once)
};
// The real sizes: DitConfig::i2v_a14b(), umT5-XXL, the Wan2.1 VAE; ~5 GB shards (~40.5 GB).
RandomCheckpointSpec full_size_spec();

// A RANDOM-weight checkpoint in the real layout, so loading and running are measured the way
// a real checkpoint is: the high-noise expert in bf16 safetensors shards written one shard at a
// time (the host holds at most one shard), the umT5 .pth in bf16 (built in memory: ~11.4 GB of
// host RAM at full size), the VAE .pth in float32 and the tiny tokenizer. To fit a 64 GB disk,
// the low-noise expert has its own config.json and index but its shards are symbolic links to
// the high-noise ones: the same weights, read and uploaded twice by a loader. README.txt says
// all this and carries the random-weights marker. Checks the free disk space first; `log` gets
// a progress line per file. Values come from random_weight() with per-tensor seeds.
void write_shared_expert_checkpoint(const std::string& dir, uint64_t seed,
                                    const RandomCheckpointSpec& spec, const FullSizeLog& log);
// `wanrt make-demo-checkpoint --full-size`: the above with full_size_spec().
void write_full_size_checkpoint(const std::string& dir, uint64_t seed, const FullSizeLog& log);

}  // namespace wanrt
