// Snapshot rollback of one object (docs/TRANSACTIONS.md, "Snapshot rollback"): what the object
// showed at epoch `snap` becomes its newest state, written as changes at epoch `at`.
//
// Nothing below `at` is touched, so the history stays readable at every epoch (snapshots taken
// after `snap` included), and anything written after the rollback (above `at`) stays on top.
// The changes are decided by comparing the state at `snap` with the state just below `at`:
// replicas, which hold the same history, make the same changes. A rollback interrupted by a
// crash leaves some changes at `at`; running it again (at a new epoch above them) rewrites the
// snapshot's state over them.
#include <fmt/format.h>

#include "storage/store_internal.hpp"

namespace tessera::storage {

using namespace detail;

namespace {

// Array records rewritten per update: bounds the memory one rollback holds.
constexpr uint64_t kWindowBytes = 1u << 20;

bool any_between(const std::vector<uint64_t>& v, uint64_t lo, uint64_t hi) {
  auto it = std::upper_bound(v.begin(), v.end(), lo);
  return it != v.end() && *it < hi;
}

}  // namespace

Status TargetStore::rollback_check(uint64_t snap, uint64_t at) const {
  if (snap == 0 || at <= snap) {
    return Status(Errc::invalid_argument,
                  fmt::format("rollback from epoch {} at epoch {}: the new epoch must be above the "
                              "snapshot's",
                              snap, at));
  }
  if (snap < agg_epoch_ && !std::binary_search(protected_.begin(), protected_.end(), snap)) {
    return Status(Errc::invalid_argument,
                  fmt::format("{}: epoch {} is below what aggregation kept readable (epoch {}); "
                              "only snapshots stay readable below it",
                              who(), snap, agg_epoch_));
  }
  return Status();
}

Status TargetStore::rollback_begin(uint64_t snap, uint64_t at) {
  TESSERA_TRY(rollback_check(snap, at));
  if (hlc_.last() >= at) {
    return Status(Errc::stale,
                  fmt::format("{}: its clock is at epoch {}, past the rollback epoch {}: changes "
                              "may already sit above it (clocks of the hosts apart?); run the "
                              "rollback again",
                              who(), hlc_.last(), at));
  }
  hlc_.observe(at);
  rollback_floor_ = std::max(rollback_floor_, at);
  return Status();
}

Result<RollbackStats> TargetStore::rollback_object(const ObjectId& oid, uint64_t snap,
                                                   uint64_t at) {
  TESSERA_TRY(rollback_check(snap, at));
  RollbackStats st;
  st.objects = 1;
  const uint64_t before = at - 1;  // the state the rollback replaces
  // Names first: the writes below suspend, and the index may change meanwhile.
  struct Key {
    std::string dkey, akey;
    ValueKind kind;
  };
  std::vector<Key> keys;
  {
    auto oit = objects_.find(oid);
    if (oit == objects_.end()) return st;
    const Object& o = oit->second;
    if (!object_visible(o, snap)) {
      if (object_visible(o, before)) {
        TESSERA_TRY(punch(oid, {}, {}, at).status());
        ++st.punched;
      }
      return st;
    }
    const bool object_punched = any_between(o.punches, snap, at);
    for (const auto& [dk, d] : o.dkeys) {
      if (!dkey_visible(o, d, snap)) {
        if (dkey_visible(o, d, before)) keys.push_back({dk, {}, ValueKind::single});
        continue;
      }
      const bool dkey_punched = object_punched || any_between(d.punches, snap, at);
      for (const auto& [ak, a] : d.akeys) {
        bool changed = dkey_punched || any_between(a.punches, snap, at);
        for (const Version& v : a.versions) changed |= v.epoch > snap && v.epoch < at;
        if (changed) keys.push_back({dk, ak, a.kind});
      }
    }
  }
  for (const Key& k : keys) {
    if (k.akey.empty()) {  // a dkey made after the snapshot
      TESSERA_TRY(punch(oid, k.dkey, {}, at).status());
      ++st.punched;
      continue;
    }
    const Object* o = nullptr;
    const Dkey* d = nullptr;
    const AkeyVal* a = find(oid, k.dkey, k.akey, &o, &d);
    if (a == nullptr) continue;
    if (!akey_visible(*o, *d, *a, snap)) {
      TESSERA_TRY(punch(oid, k.dkey, k.akey, at).status());
      ++st.punched;
      continue;
    }
    UpdateOptions uo;
    uo.epoch = at;
    // The checksum the value had at the snapshot.
    for (const Version& v : a->versions) {
      if (v.epoch <= snap && !v.punch) uo.csum = v.csum_type;
    }
    ++st.rewritten;
    if (k.kind == ValueKind::single) {
      auto r = fetch(oid, k.dkey, k.akey, ValueKind::single, 0, 0, snap);
      if (!r) return r.status();
      TESSERA_TRY(update(oid, k.dkey, k.akey, ValueKind::single, 0, r->data.span(),
                         crc32c(r->data.span()), uo)
                      .status());
      st.bytes += r->data.size();
      continue;
    }
    // An array: every record up to the highest ever written (below `at`) is rewritten as it
    // read at the snapshot, window by window: data as data, holes as range punches.
    const uint32_t rsize = a->rsize;
    uo.rsize = rsize;
    uint64_t end = 0;
    for (const Version& v : a->versions) {
      if (v.epoch < at) end = std::max(end, v.hi);
    }
    const uint64_t records = (end + rsize - 1) / rsize;
    const uint64_t window = std::max<uint64_t>(1, kWindowBytes / rsize);
    for (uint64_t w = 0; w < records; w += window) {
      const uint64_t n = std::min(window, records - w);
      FetchOptions fo;
      fo.rsize = rsize;
      auto r = fetch(oid, k.dkey, k.akey, ValueKind::array, w, n, snap, fo);
      if (!r) return r.status();
      // Holes are listed in records from the start of the array, in ascending order.
      uint64_t pos = w;
      auto put_data = [&](uint64_t upto) -> Status {
        if (upto <= pos) return Status();
        const uint64_t off = (pos - w) * rsize;
        const uint64_t len = (upto - pos) * rsize;
        if (off + len > r->data.size()) {
          return Status(Errc::internal, "array fetch returned less than its range");
        }
        std::span<const uint8_t> bytes(r->data.data() + off, len);
        TESSERA_TRY(update(oid, k.dkey, k.akey, ValueKind::array, pos, bytes, crc32c(bytes), uo)
                        .status());
        st.bytes += len;
        return Status();
      };
      for (const auto& [hoff, hlen] : r->holes) {
        const uint64_t lo = std::max(hoff, w), hi = std::min(hoff + hlen, w + n);
        if (lo >= hi) continue;
        TESSERA_TRY(put_data(lo));
        TESSERA_TRY(punch_range(oid, k.dkey, k.akey, lo, hi - lo, rsize, at).status());
        pos = hi;
      }
      TESSERA_TRY(put_data(w + n));
    }
  }
  return st;
}

}  // namespace tessera::storage
