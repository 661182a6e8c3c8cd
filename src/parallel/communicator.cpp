#include "parallel/communicator.h"

#include <barrier>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace wanrt {
namespace {

class SingleRank final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_to_all(const void* send, void* recv, size_t bytes_per_rank) override {
    std::memmove(recv, send, bytes_per_rank);
  }
  void all_gather(const void* send, void* recv, size_t bytes) override {
    std::memmove(recv, send, bytes);
  }
};

// Ranks as threads: each collective publishes its send buffer, waits for every rank, copies
// its share out of the others' buffers, and waits again before any buffer can be reused.
struct ThreadGroupState {
  explicit ThreadGroupState(int n) : world(n), sync(n), sends(static_cast<size_t>(n)) {}
  int world;
  std::barrier<> sync;
  std::vector<const void*> sends;
};

class ThreadRank final : public Communicator {
 public:
  ThreadRank(std::shared_ptr<ThreadGroupState> state, int rank) : state_(std::move(state)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return state_->world; }

  void all_to_all(const void* send, void* recv, size_t bytes_per_rank) override {
    exchange(send, [&](int peer, const char* peer_send) {
      std::memcpy(static_cast<char*>(recv) + static_cast<size_t>(peer) * bytes_per_rank,
                  peer_send + static_cast<size_t>(rank_) * bytes_per_rank, bytes_per_rank);
    });
  }
  void all_gather(const void* send, void* recv, size_t bytes) override {
    exchange(send, [&](int peer, const char* peer_send) {
      std::memcpy(static_cast<char*>(recv) + static_cast<size_t>(peer) * bytes, peer_send, bytes);
    });
  }

 private:
  template <typename CopyFrom>
  void exchange(const void* send, CopyFrom copy_from) {
    state_->sends[static_cast<size_t>(rank_)] = send;
    state_->sync.arrive_and_wait();
    for (int peer = 0; peer < state_->world; ++peer)
      copy_from(peer, static_cast<const char*>(state_->sends[static_cast<size_t>(peer)]));
    state_->sync.arrive_and_wait();
  }

  std::shared_ptr<ThreadGroupState> state_;
  int rank_;
};

}  // namespace

std::shared_ptr<Communicator> make_single_rank_communicator() { return std::make_shared<SingleRank>(); }

std::vector<std::shared_ptr<Communicator>> make_thread_group(int world_size) {
  WANRT_CHECK(world_size >= 1, "a rank group needs at least one rank, got ", world_size);
  auto state = std::make_shared<ThreadGroupState>(world_size);
  std::vector<std::shared_ptr<Communicator>> ranks;
  for (int r = 0; r < world_size; ++r) ranks.push_back(std::make_shared<ThreadRank>(state, r));
  return ranks;
}

}  // namespace wanrt
