// Collectives between the ranks of one sequence-parallel group.
//
// The model never calls these directly: backends call them from their collective ops
// (Ops::sequence_to_heads, ...). Buffers are host or device memory depending on the backend;
// a communicator says which it moves. One rank: every collective is a copy.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace wanrt {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Every rank sends `bytes_per_rank` bytes to each rank: chunk j of `send` goes to rank j,
  // and chunk j of `recv` comes from rank j.
  virtual void all_to_all(const void* send, void* recv, size_t bytes_per_rank) = 0;
  // recv = concatenation of every rank's `send` (`bytes` each) in rank order.
  virtual void all_gather(const void* send, void* recv, size_t bytes) = 0;
};

// A group of one rank (no communication).
std::shared_ptr<Communicator> make_single_rank_communicator();

// `world_size` ranks that are threads of one process, for testing sequence-parallel logic on
// the CPU: make_thread_group(n)[r] is rank r's communicator; each rank must run in its own
// thread and every collective blocks until all ranks reach it.
std::vector<std::shared_ptr<Communicator>> make_thread_group(int world_size);

}  // namespace wanrt
