// ReadStamps: which keys transactions read here, and at which epoch (docs/TRANSACTIONS.md,
// "User transactions").
//
// A transaction reads at its epoch E and leaves a stamp on what it read: a key (oid, dkey,
// akey), the akeys of a dkey (akey empty) or the dkeys of an object (dkey empty). A change at
// an epoch at or below a stamp would slide under a read that did not see it, so the change is
// refused (`restart`). The table is bounded: when full, the older half of the stamps is
// forgotten and the floor rises to the newest forgotten one; a key without a stamp counts as
// read at the floor. After a restart or a pool map change the floor is the clock: stamps left
// elsewhere (on a leader that changed) are covered by it.
//
// One per target store; target thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/object.hpp"

namespace tessera::storage {

class ReadStamps {
 public:
  explicit ReadStamps(size_t max = size_t{1} << 16) : max_(max) {}

  // A read at `epoch` by `owner` (the reading transaction, never 0) of (oid, dkey, akey).
  void note(const ObjectId& oid, std::string_view dkey, std::string_view akey, uint64_t epoch,
            uint64_t owner);
  // Whether a change of (oid, dkey, akey) at `epoch` goes under a read: a stamp above `epoch`,
  // or at `epoch` by another owner than `owner` (0: any stamp at `epoch` counts). A change of a
  // dkey (akey empty) or an object (dkey empty) meets every read under it. Returns the stamp
  // met, 0 when none.
  uint64_t conflict(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                    uint64_t epoch, uint64_t owner) const;
  void raise_floor(uint64_t epoch);
  uint64_t floor() const { return floor_; }
  size_t size() const { return stamps_.size(); }

 private:
  struct Stamp {
    uint64_t epoch = 0;
    uint64_t owner = 0;
  };
  static std::string key(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                         bool prefix);
  bool meets(const Stamp& s, uint64_t epoch, uint64_t owner) const {
    return s.epoch > epoch || (s.epoch == epoch && (owner == 0 || s.owner != owner));
  }
  size_t max_;
  uint64_t floor_ = 0;
  std::map<std::string, Stamp, std::less<>> stamps_;
};

}  // namespace tessera::storage
