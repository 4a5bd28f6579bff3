// Reassembler: puts back together the messages a fabric endpoint receives in pieces (a first
// chunk carrying the envelope, body and the start of the bulk; continuation chunks carrying the
// rest, in any order).
//
// Bounded, since the chunks come from the network: at most kMaxPartials messages in pieces at
// once, holding at most twice the largest message's bytes (continuation chunks that arrive
// before their first chunk included). A chunk beyond either bound, a second first chunk, or a
// chunk that does not fit its message drops the message (counted). A message whose chunks stop
// arriving is dropped by expire().
//
// Owned by one endpoint on its target thread; no locking.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "core/actor.hpp"
#include "net/frame.hpp"

namespace tessera::net {

class Reassembler {
 public:
  static constexpr size_t kMaxPartials = 256;

  explicit Reassembler(uint64_t max_message) : budget_(2 * max_message) {}

  // One chunk (kind first or cont) of a message sent in pieces: the whole message once its
  // last piece arrived, else nothing (kept, or dropped and counted).
  std::optional<Message> add(DecodedFrame& fr);
  // Drops the messages whose first piece arrived longer than `age` before `now`.
  void expire(std::chrono::steady_clock::time_point now, std::chrono::steady_clock::duration age);

  uint64_t dropped() const { return dropped_; }
  size_t partials() const { return partials_.size(); }
  uint64_t bytes_held() const { return bytes_; }

 private:
  struct Partial {
    bool have_first = false;
    Message msg;
    uint64_t total = 0;
    uint64_t received = 0;
    Buffer bulk;
    std::vector<std::pair<uint64_t, Buffer>> early;  // continuation chunks before the first
    uint64_t early_bytes = 0;
    std::chrono::steady_clock::time_point started;
    // Bytes this partial holds against the budget.
    uint64_t held() const { return have_first ? total : early_bytes; }
  };
  using Map = std::map<std::pair<uint64_t, uint64_t>, Partial>;  // (sender, message id)
  void drop(Map::iterator it, const char* why);
  static bool place(Partial& p, uint64_t off, std::span<const uint8_t> data);

  const uint64_t budget_;
  Map partials_;
  uint64_t bytes_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace tessera::net
