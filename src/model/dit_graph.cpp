#include "model/dit_graph.h"

#include <chrono>

#include "core/error.h"

namespace wanrt {
namespace {

bool same_owner(const std::weak_ptr<const void>& a, const std::weak_ptr<const void>& b) {
  return !a.owner_before(b) && !b.owner_before(a);
}

// A backend copy of the matrix `t` that the graph can own as a static buffer.
Tensor static_copy(Ops& ops, const Tensor& t) {
  WANRT_ASSERT(t.dim() == 2);
  return ops.rows(t, 0, t.size(0));
}

}  // namespace

DitGraphShape DitGraphShape::of(const DitConditioning& cond) {
  DitGraphShape s;
  s.frames = cond.frames;
  s.height = cond.height;
  s.width = cond.width;
  s.tokens = cond.tokens;
  s.seq_len = cond.seq_len;
  s.local_begin = cond.local_begin;
  s.local_tokens = cond.local_tokens;
  s.x0 = cond.x0.shape();
  s.e0 = cond.e0.shape();
  s.context = cond.context.shape();
  s.rope = cond.rope.shape();
  s.x0_dtype = cond.x0.dtype();
  s.e0_dtype = cond.e0.dtype();
  s.context_dtype = cond.context.dtype();
  s.rope_dtype = cond.rope.dtype();
  return s;
}

DitGraphs::DitGraphs(Ops& ops, GraphCapture& capture) : ops_(&ops), capture_(&capture) {}

void DitGraphs::drop_gone_experts() {
  entries_.remove_if([](const Entry& e) { return e.expert.expired(); });
}

DitGraphs::Entry& DitGraphs::entry_for(const WanModel& expert, const DitConditioning& cond) {
  drop_gone_experts();  // their graphs can never run again
  const std::weak_ptr<const void> identity = expert.weights_identity();
  const DitGraphShape shape = DitGraphShape::of(cond);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (same_owner(it->expert, identity) && it->shape == shape) {
      entries_.splice(entries_.begin(), entries_, it);  // most recently used first
      return entries_.front();
    }
  }
  if (entries_.size() >= kMaxEntries) entries_.pop_back();
  Entry entry;
  entry.expert = identity;
  entry.shape = shape;
  entries_.push_front(std::move(entry));
  return entries_.front();
}

void DitGraphs::capture(Entry& entry, const WanModel& expert, const DitConditioning& cond) {
  const auto start = std::chrono::steady_clock::now();
  Ops& ops = *ops_;
  GraphCapture& graph_capture = *capture_;
  // The static inputs, planned from this call's tensors (which also gives them this call's
  // values); the RoPE table is this call's own (a function of the shape alone).
  entry.inputs = DitConditioning{};
  entry.inputs.frames = cond.frames;
  entry.inputs.height = cond.height;
  entry.inputs.width = cond.width;
  entry.inputs.tokens = cond.tokens;
  entry.inputs.seq_len = cond.seq_len;
  entry.inputs.local_begin = cond.local_begin;
  entry.inputs.local_tokens = cond.local_tokens;
  entry.inputs.x0 = static_copy(ops, cond.x0);
  entry.inputs.e0 = static_copy(ops, cond.e0);
  entry.inputs.context = static_copy(ops, cond.context);
  entry.inputs.rope = cond.rope;
  // The region drops every tensor it makes (the graph's own memory) and keeps its result in
  // entry.out, made before it.
  const DitConditioning& inputs = entry.inputs;
  Tensor& out = entry.out;
  entry.graph = graph_capture.capture([&] {
    const Tensor x = expert.run_blocks(ops, inputs);
    graph_capture.copy_(out, x);
  });
  ++stats_.captures;
  stats_.capture_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Tensor DitGraphs::run_blocks(const WanModel& expert, const DitConditioning& cond) {
  Entry& entry = entry_for(expert, cond);
  ++entry.calls;
  if (entry.calls == 1 || entry.failed) {  // first use, or a key that cannot be captured
    ++stats_.eager;
    Tensor x = expert.run_blocks(*ops_, cond);
    if (entry.calls == 1) entry.out = static_copy(*ops_, x);  // plans the output buffer
    return x;
  }
  if (!entry.graph) {
    try {
      capture(entry, expert, cond);  // the static inputs now hold this call's values
    } catch (const Error& error) {
      // A region the backend cannot capture still runs, eagerly, and says why.
      entry.failed = true;
      entry.inputs = DitConditioning{};
      entry.out = Tensor();
      stats_.failure = error.what();
      ++stats_.eager;
      return expert.run_blocks(*ops_, cond);
    }
  } else {
    capture_->copy_(entry.inputs.x0, cond.x0);
    capture_->copy_(entry.inputs.e0, cond.e0);
    capture_->copy_(entry.inputs.context, cond.context);
  }
  entry.graph->replay();
  ++stats_.replays;
  return entry.out;
}

}  // namespace wanrt
