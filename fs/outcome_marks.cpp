#include "fs/outcome_marks.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <string>
#include <thread>

#include "core/log.hpp"
#include "fs/layout.hpp"
#include "fs/namespace_internal.hpp"
#include "placement/layout.hpp"

namespace tessera::fs {

namespace {

uint64_t random_mount_id() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

}  // namespace

OutcomeMarks::OutcomeMarks(Container& c, uint16_t meta_class)
    : c_(c),
      oid_(placement::with_class(ObjectId{static_cast<uint32_t>(ObjTag::marks), random_mount_id()},
                                 meta_class)) {}

OutcomeMarks::~OutcomeMarks() {
  if (!written_.load()) return;
  auto r = c_.punch(oid_);
  if (!r) {
    log::warn("removing this mount's outcome marks (object {}): {}", oid_.lo,
              r.status().to_string());
  }
}

OutcomeMarks::Held::Held(OutcomeMarks& m) : m_(m) {
  std::lock_guard g(m_.mu_);
  if (m_.free_.empty()) {
    slot_ = m_.slots_++;
  } else {
    slot_ = m_.free_.back();
    m_.free_.pop_back();
  }
}

OutcomeMarks::Held::~Held() {
  std::lock_guard g(m_.mu_);
  m_.free_.push_back(slot_);
}

void OutcomeMarks::Held::next() {
  seq_ = m_.seq_.fetch_add(1) + 1;
}

Status OutcomeMarks::Held::write(Transaction& tx) const {
  m_.written_.store(true);
  return tx.update(m_.oid_, std::string(kMarksDkey), index_key(slot_), ValueKind::single, 0,
                   detail::as_bytes(encode_u64(seq_)));
}

Result<bool> OutcomeMarks::Held::committed(uint64_t epoch,
                                           std::chrono::steady_clock::time_point until) const {
  Status last;
  for (int round = 0;; ++round) {
    // A transaction of its own, whose read of the slot leaves a stamp at its epoch; the epoch
    // must be above the change's, or the stamp would not stop the change's prepare.
    auto tx = m_.c_.tx_open(0);
    if (tx && (*tx)->epoch() > epoch) {
      auto v = detail::get_single(**tx, m_.oid_, kMarksDkey, index_key(slot_));
      if (v) return *v && decode_u64(**v) == seq_;
      last = v.status();
    } else if (!tx) {
      last = tx.status();
    } else {
      last = Status(Errc::busy, fmt::format("a new transaction's epoch {} is not above {}",
                                            (*tx)->epoch(), epoch));
    }
    if (std::chrono::steady_clock::now() >= until) return last;
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min(1000, 50 << std::min(round, 4))));
  }
}

}  // namespace tessera::fs
