// DitGraphs: the DiT's transformer blocks (WanModel::run_blocks) captured once per expert and
// shape as a graph of the backend (Ops::graph_capture, CUDA graphs) and replayed on every
// later call.
//
// What is captured: the 40 blocks, which are all but ~25 of a forward's ~1,350 launches.
// prepare() (latent upload, patch embedding, the float64 sinusoid of the timestep built on the
// host, the text embedding, the RoPE table built on the host) and head() run eagerly: both do
// host work per call, and MagCache's skipped calls need them without the blocks.
//
// The graph reads its inputs from static buffers of its entry and writes its result into one:
//   x0       [S, D]       the patch embeddings (per call: the latent)
//   e0       [6, D] F32   the time projection (per call: the timestep)
//   context  [T, D]       the embedded text (per call: cond and uncond differ here)
//   rope     [S, d/2, 2]  the RoPE table: a function of the shape only, which is in the key,
//                         so the capturing call's table is kept as it is
//   out      [S, D] F32   the blocks' output, copied there at the end of the graph
// Before a replay each call's x0, e0 and context are copied in (copy_: three device copies).
// The graph runs WanModel::run_blocks itself, so a replay launches exactly the kernels of an
// eager call, in the same order, and gives the same bits. (run_blocks starts the residual
// stream as a copy of x0, whose dtype is the patch embedding's, bf16 on CUDA, and the first
// residual update replaces it by a float32 tensor; so the stream cannot live in a buffer kept
// outside the graph, and the result is copied out instead: one [S, D] float32 copy per call.)
// cond and uncond calls, every step and every timestep share one graph per expert.
//
// Keys and invalidation: an entry belongs to one expert's weights (WanModel::weights_identity:
// an offloaded expert loaded again has new weight addresses and a new identity) and one shape
// (the patch grid, sequence length, this rank's rows, and the inputs' shapes and dtypes).
// Entries of experts that are gone are dropped; at most kMaxEntries are kept (least recently
// used goes first).
//
// A capture that fails (an op the backend cannot record) leaves that key eager and says why in
// stats().failure; the DiT's ops are all capturable on CUDA, so this is a safety net.
//
// First use: the first call of a key runs eagerly (it loads lazily loaded kernels, fills the
// GEMM algorithm and bias caches and sets kernel attributes: host work, and memory an op keeps,
// that must not happen under capture; its result also plans the output buffer); the second
// call captures, then replays; later calls replay.
//
// The tensor run_blocks() returns after a replay IS the entry's output buffer: it holds this
// call's result until the next call of the same expert and shape. DitRunner consumes it (head,
// residual copy) before that.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "backends/ops.h"
#include "model/dit.h"

namespace wanrt {

struct DitGraphStats {
  int eager = 0;     // calls run without a graph (first use of a key, or graphs disabled)
  int captures = 0;  // graphs captured
  int replays = 0;   // calls answered by a replay (the capturing call included)
  double capture_seconds = 0;  // host time of the last capture (record + instantiate + upload)
  // Why the last failed capture failed (that key then runs eagerly); empty when none failed.
  std::string failure;
};

// The shape part of a key: everything run_blocks reads that is not a tensor's value.
struct DitGraphShape {
  int64_t frames = 0, height = 0, width = 0, tokens = 0, seq_len = 0;
  int64_t local_begin = 0, local_tokens = 0;
  Shape x0, e0, context, rope;
  DType x0_dtype = DType::F32, e0_dtype = DType::F32, context_dtype = DType::F32,
        rope_dtype = DType::F32;
  static DitGraphShape of(const DitConditioning& cond);
  bool operator==(const DitGraphShape&) const = default;
};

class DitGraphs {
 public:
  static constexpr size_t kMaxEntries = 4;

  // `capture` is the backend's (ops.graph_capture()); both must outlive this object.
  DitGraphs(Ops& ops, GraphCapture& capture);
  DitGraphs(const DitGraphs&) = delete;
  DitGraphs& operator=(const DitGraphs&) = delete;

  // expert.run_blocks(ops, cond), from a graph where one is (or can now be) captured.
  Tensor run_blocks(const WanModel& expert, const DitConditioning& cond);

  const DitGraphStats& stats() const { return stats_; }
  size_t entries() const { return entries_.size(); }
  // Drops every graph and static buffer (frees their memory).
  void clear() { entries_.clear(); }
  // Drops the graphs of experts whose weights are gone (an offloaded expert), freeing their
  // memory now rather than at the next call.
  void drop_gone_experts();

 private:
  struct Entry {
    std::weak_ptr<const void> expert;
    DitGraphShape shape;
    int calls = 0;
    bool failed = false;  // capture failed: this key runs eagerly
    DitConditioning inputs;  // the static inputs: x0, e0, context, rope
    Tensor out;              // the static output, planned from the first (eager) call's result
    std::unique_ptr<OpGraph> graph;
  };
  Entry& entry_for(const WanModel& expert, const DitConditioning& cond);
  void capture(Entry& entry, const WanModel& expert, const DitConditioning& cond);

  Ops* ops_;
  GraphCapture* capture_;
  std::list<Entry> entries_;  // most recently used first
  DitGraphStats stats_;
};

}  // namespace wanrt
