// Plain updates of keys and the model they are checked against: each key has one writer, which
// sends its updates one at a time and records what it heard. What a replica must show of a key:
// every acknowledged update at the epoch it was acknowledged with, and as the newest value the
// last acknowledged update or one sent after it (an unacknowledged update may or may not be
// applied).
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace tessera::sim {

// One update and what its writer heard.
struct PutRecord {
  uint32_t key = 0;
  uint64_t tag = 0;    // the value written: unique per update
  uint64_t epoch = 0;  // acknowledged: the reply's
  bool acked = false;
  uint64_t acked_at = 0;  // its place among every acknowledgement the test heard (1, 2, ...)
  uint32_t cells = 0;     // an array update: the stripe's data cells it wrote (bits; 0: all)
};

// One key's updates, in the order its writer sent them.
class KeyHistory {
 public:
  KeyHistory(const std::vector<PutRecord>& all, uint32_t key) {
    for (const auto& p : all) {
      if (p.key != key) continue;
      mine_.push_back(&p);
      if (p.acked) epochs_.push_back(p.epoch);
    }
    acked_ = epochs_.size();
    epochs_.push_back(0);
  }
  // The epochs to read the key at: each acknowledged update's, then 0 (the newest).
  const std::vector<uint64_t>& epochs() const { return epochs_; }
  size_t acked() const { return acked_; }

  // Whether `tags` (what a replica shows at each of epochs(); 0: nothing) holds the history.
  ::testing::AssertionResult shown_by(const std::vector<uint64_t>& tags) const {
    if (tags.size() != epochs_.size()) {
      return ::testing::AssertionFailure()
             << tags.size() << " values for " << epochs_.size() << " epochs";
    }
    size_t i = 0;
    for (size_t n = 0; n < mine_.size(); ++n) {
      if (!mine_[n]->acked) continue;
      if (tags[i] != mine_[n]->tag) {
        return ::testing::AssertionFailure() << fmt::format(
                   "the update acknowledged at epoch {} (tag {:#x}) is lost: {:#x} there",
                   mine_[n]->epoch, mine_[n]->tag, tags[i]);
      }
      ++i;
    }
    return newest_shown_by(tags.back());
  }
  // Whether `tag` (0: nothing) can be what a replica shows at snapshot epoch `snap`: the last
  // update acknowledged at or below it, or one sent after that and before the first update
  // acknowledged above it (an unacknowledged update's epoch is unknown; one sent later has a
  // higher epoch than that acknowledged one's); with none acknowledged at or below it, nothing
  // or an unacknowledged update sent before the first acknowledged one.
  ::testing::AssertionResult shown_at(uint64_t snap, uint64_t tag) const {
    const PutRecord* last = nullptr;
    if (after_last(
            tag, [&](const PutRecord& p) { return p.epoch <= snap; },
            [&](const PutRecord& p) { return p.acked && p.epoch > snap; }, &last)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << fmt::format(
               "tag {:#x} at snapshot epoch {}: the last update acknowledged at or below it is {}",
               tag, snap, last != nullptr ? fmt::format("{:#x}", last->tag) : std::string("none"));
  }
  // Whether `tag` (0: nothing) can be what a read shows that began once `before`
  // acknowledgements had been heard (PutRecord::acked_at): the last update acknowledged before
  // it began, or one sent after that (unacknowledged, or acknowledged while the read ran); with
  // none acknowledged before it, nothing or any update sent.
  ::testing::AssertionResult read_shown_by(uint64_t tag, uint64_t before) const {
    const PutRecord* last = nullptr;
    if (after_last(
            tag, [&](const PutRecord& p) { return p.acked_at <= before; },
            [](const PutRecord&) { return false; }, &last)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << fmt::format(
               "a read shows tag {:#x}; the last update acknowledged before it began is {}", tag,
               last != nullptr ? fmt::format("{:#x}", last->tag) : std::string("none"));
  }
  // Whether `tag` (what a replica shows as its newest value; 0: nothing) is the last
  // acknowledged update or one sent after it.
  ::testing::AssertionResult newest_shown_by(uint64_t tag) const {
    size_t last_acked = 0;
    for (size_t n = 0; n < mine_.size(); ++n) {
      if (mine_[n]->acked) last_acked = n + 1;
    }
    if (last_acked == 0) return ::testing::AssertionSuccess();
    for (size_t n = last_acked - 1; n < mine_.size(); ++n) {
      if (mine_[n]->tag == tag) return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << fmt::format(
               "the newest value (tag {:#x}) is older than the last acknowledged update (tag {:#x})",
               tag, mine_[last_acked - 1]->tag);
  }

 private:
  // Whether `tag` (0: nothing) is the last acknowledged update that `in(put)` holds for (*last),
  // or one sent after it and before the first that `stop(put)` holds for; with no such last
  // one, nothing or any update before that first.
  template <typename In, typename Stop>
  bool after_last(uint64_t tag, In in, Stop stop, const PutRecord** last) const {
    size_t from = 0;
    for (size_t n = 0; n < mine_.size(); ++n) {
      if (mine_[n]->acked && in(*mine_[n])) {
        from = n;
        *last = mine_[n];
      }
    }
    if (*last == nullptr && tag == 0) return true;
    for (size_t n = from; n < mine_.size(); ++n) {
      if (stop(*mine_[n])) break;
      if (mine_[n]->tag == tag) return true;
    }
    return false;
  }

  std::vector<const PutRecord*> mine_;
  std::vector<uint64_t> epochs_;
  size_t acked_ = 0;
};

}  // namespace tessera::sim
