// TargetStore: visibility, conditions, updates, fetches, punches and listings.
#include "storage/store.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <boost/fiber/future.hpp>
#include <boost/fiber/operations.hpp>
#include <chrono>
#include <cstring>
#include <limits>

#include "core/anchor.hpp"
#include "core/checksum.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"
#include "proto/capnp_util.hpp"
#include "storage/store_internal.hpp"
#include "storage/wal.capnp.h"

namespace tessera::storage {

using namespace detail;

// ---- visibility -------------------------------------------------------------------------------

const AkeyVal* TargetStore::find(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                                 const Object** o, const Dkey** d) const {
  auto oit = objects_.find(oid);
  if (oit == objects_.end()) return nullptr;
  auto dit = oit->second.dkeys.find(dkey);
  if (dit == oit->second.dkeys.end()) return nullptr;
  auto ait = dit->second.akeys.find(akey);
  if (ait == dit->second.akeys.end()) return nullptr;
  *o = &oit->second;
  *d = &dit->second;
  return &ait->second;
}

bool TargetStore::akey_visible(const Object& o, const Dkey& d, const AkeyVal& a,
                               uint64_t epoch) const {
  uint64_t fl = floor_of(o, d, a, epoch);
  if (a.kind == ValueKind::single) return newest_single(a, fl, epoch) >= 0;
  bool data = false;
  bool punches = false;
  for (const Version& v : a.versions) {
    if (v.epoch > epoch) break;
    if (v.epoch <= fl) continue;
    (v.punch ? punches : data) = true;
  }
  if (!data || !punches) return data;
  return array_end(a, resolve(a, fl, epoch, 0, kMaxEpoch)) != 0;
}

bool TargetStore::dkey_visible(const Object& o, const Dkey& d, uint64_t epoch) const {
  for (const auto& [k, a] : d.akeys) {
    if (akey_visible(o, d, a, epoch)) return true;
  }
  return false;
}

bool TargetStore::object_visible(const Object& o, uint64_t epoch) const {
  for (const auto& [k, d] : o.dkeys) {
    if (dkey_visible(o, d, epoch)) return true;
  }
  return false;
}

Status TargetStore::rsize_mismatch(const AkeyVal& a, uint32_t rsize) {
  return Status(Errc::invalid_argument,
                fmt::format("the array has {} byte records, not {}", a.rsize, rsize));
}

// ---- conditional operations -------------------------------------------------------------------

std::string TargetStore::busy_key(const ObjectId& oid, std::string_view dkey,
                                  std::string_view akey) const {
  std::string k(16, '\0');
  std::memcpy(k.data(), &oid.hi, 8);
  std::memcpy(k.data() + 8, &oid.lo, 8);
  uint32_t dl = static_cast<uint32_t>(dkey.size());
  k.append(reinterpret_cast<const char*>(&dl), 4);
  k.append(dkey);
  k.append(akey);
  return k;
}

bool TargetStore::busy(const ObjectId& oid, std::string_view dkey, std::string_view akey) const {
  if (busy_.empty() && dtx_keys_.empty()) return false;
  // A change in flight, or prepared by a transaction not yet decided.
  for (auto k : {busy_key(oid, {}, {}), busy_key(oid, dkey, {}), busy_key(oid, dkey, akey)}) {
    if (busy_.count(k) != 0 || dtx_keys_.count(k) != 0) return true;
  }
  return false;
}

Status TargetStore::check_condition(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey, Cond cond) const {
  if (cond == Cond::none) return Status();
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  const AkeyVal* a = find(oid, dkey, akey, &o, &d);
  bool exists = a != nullptr && akey_visible(*o, *d, *a, kMaxEpoch);
  if (cond == Cond::insert && exists) {
    return Status(Errc::exists, "conditional insert: the akey already has a value");
  }
  if (cond == Cond::update && !exists) {
    return Status(Errc::not_found, "conditional update: the akey has no value");
  }
  return Status();
}

namespace {
// Registers a change's epoch as in flight until it is applied or failed: aggregation stays
// below every such epoch.
class InflightEpoch {
 public:
  InflightEpoch(std::set<uint64_t>& set, uint64_t epoch) : set_(set), epoch_(epoch) {
    set_.insert(epoch_);
  }
  ~InflightEpoch() { set_.erase(epoch_); }
  InflightEpoch(const InflightEpoch&) = delete;
  InflightEpoch& operator=(const InflightEpoch&) = delete;

 private:
  std::set<uint64_t>& set_;
  uint64_t epoch_;
};

}  // namespace

// Releases a kind hold when the update ends, or hands it to the stage that keeps the change.
struct TargetStore::KindGuard {
  TargetStore& store;
  std::string key;
  DtxStage* stage = nullptr;  // set: the update is staged; its hold goes to the stage if staged
  bool staged = false;
  ~KindGuard() {
    if (stage != nullptr && staged) {
      stage->store = &store;
      stage->holds.push_back(std::move(key));
    } else {
      store.release_kind(key);
    }
  }
};

Status TargetStore::hold_kind(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                              const std::string& key, ValueKind kind, uint32_t rsize) {
  auto name = [](ValueKind k) { return k == ValueKind::array ? "an array" : "a single value"; };
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  if (const AkeyVal* a = find(oid, dkey, akey, &o, &d); a != nullptr && !a->versions.empty()) {
    if (a->kind != kind) {
      return Status(Errc::invalid_argument,
                    fmt::format("akey holds {}, not {}", name(a->kind), name(kind)));
    }
    if (kind == ValueKind::array && a->rsize != rsize) return rsize_mismatch(*a, rsize);
  }
  KindHold& h = kind_holds_[key];
  if (h.count > 0 && (h.kind != kind || h.rsize != rsize)) {
    return Status(
        Errc::invalid_argument,
        fmt::format("akey is being written as {}{}, not as {}{}", name(h.kind),
                    h.kind == ValueKind::array ? fmt::format(" of {} byte records", h.rsize) : "",
                    name(kind),
                    kind == ValueKind::array ? fmt::format(" of {} byte records", rsize) : ""));
  }
  h.kind = kind;
  h.rsize = rsize;
  ++h.count;
  return Status();
}

void TargetStore::release_kind(const std::string& key) {
  auto it = kind_holds_.find(key);
  if (it != kind_holds_.end() && --it->second.count == 0) kind_holds_.erase(it);
}

void TargetStore::release_kinds(std::vector<std::string>& keys) {
  for (const auto& k : keys) release_kind(k);
  keys.clear();
}

DtxStage::~DtxStage() {
  if (store != nullptr) store->release_kinds(holds);
}

namespace {
// Marks keys as changing while a change is in flight; conditional operations wait for it.
struct BusyGuard {
  std::unordered_map<std::string, int>& map;
  boost::fibers::condition_variable_any& cv;
  std::string key;
  BusyGuard(std::unordered_map<std::string, int>& m, boost::fibers::condition_variable_any& c,
            std::string k)
      : map(m), cv(c), key(std::move(k)) {
    ++map[key];
  }
  ~BusyGuard() {
    auto it = map.find(key);
    if (--it->second == 0) {
      map.erase(it);
      cv.notify_all();
    }
  }
};
}  // namespace

// ---- update -----------------------------------------------------------------------------------

Result<uint64_t> TargetStore::update(const ObjectId& oid, std::string_view dkey,
                                     std::string_view akey, ValueKind kind, uint64_t offset,
                                     std::span<const uint8_t> data, uint32_t crc,
                                     const UpdateOptions& uo) {
  if (dkey.empty() || akey.empty())
    return Status(Errc::invalid_argument, "dkey and akey must not be empty");
  if (dkey.size() > opts_.max_key || akey.size() > opts_.max_key) {
    return Status(Errc::invalid_argument,
                  fmt::format("keys are limited to {} bytes", opts_.max_key));
  }
  if (data.size() > opts_.max_value) {
    return Status(Errc::too_big, fmt::format("update of {} bytes exceeds the {} byte limit",
                                             data.size(), opts_.max_value));
  }
  uint32_t rsize = kind == ValueKind::array ? std::max<uint32_t>(1, uo.rsize) : 1;
  if (kind == ValueKind::array) {
    if (data.empty()) return Status(Errc::invalid_argument, "empty array extent");
    if (data.size() % rsize != 0) {
      return Status(
          Errc::invalid_argument,
          fmt::format("{} bytes is not a whole number of {} byte records", data.size(), rsize));
    }
    if (offset > (std::numeric_limits<uint64_t>::max() - data.size()) / rsize) {
      return Status(Errc::invalid_argument, "array extent overflows the 64-bit offset space");
    }
  }
  if (!uo.verified && crc32c(data) != crc) {
    return Status(Errc::checksum,
                  "update payload does not match its checksum (corrupted in transit)");
  }
  if (uo.cond != Cond::none) {
    NoLock nl;
    while (busy(oid, dkey, akey)) busy_cv_.wait(nl);
  }
  // From here to the index (or the stage) the kind is held: no suspension comes between the
  // check and the hold.
  const std::string key = busy_key(oid, dkey, akey);
  TESSERA_TRY(hold_kind(oid, dkey, akey, key, kind, rsize));
  KindGuard kind_guard{*this, key, uo.stage, false};
  BusyGuard guard(busy_, busy_cv_, key);
  TESSERA_TRY(check_condition(oid, dkey, akey, uo.cond));

  Version v;
  auto epoch = take_epoch(uo.epoch, uo.import);
  if (!epoch) return epoch.status();
  v.epoch = *epoch;
  uint64_t byte_off = kind == ValueKind::array ? offset * rsize : 0;
  if (uo.import && holds(oid, dkey, akey, v.epoch, byte_off, byte_off + data.size())) {
    return v.epoch;
  }
  v.offset = byte_off;
  v.length = data.size();
  v.lo = byte_off;
  v.hi = byte_off + data.size();
  v.csum_type = uo.csum.value_or(opts_.checksum);
  bool inl = data.size() < opts_.inline_threshold;
  TESSERA_TRY(need_space(inl ? 0 : round_block(data.size())));
  InflightEpoch inflight(inflight_epochs_, v.epoch);
  if (inl) {
    v.inline_data.assign(reinterpret_cast<const char*>(data.data()), data.size());
  } else {
    Buffer staging;
    for (uint64_t pos = 0; pos < data.size(); pos += opts_.max_extent) {
      uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(opts_.max_extent, data.size() - pos));
      auto off = alloc_.alloc(len);
      if (!off) {
        release_extents(v.extents);
        return Status(Errc::no_space, fmt::format("{}: {}", who(), off.status().message()));
      }
      const uint8_t* src = data.data() + pos;
      // A value stored as one crc32c piece already has its checksum: the one verified above.
      bool whole = len == data.size() && v.csum_type == CsumType::crc32c && !uo.verified;
      Extent e{*off, len, whole ? crc : checksum(v.csum_type, src, len)};
      v.extents.push_back(e);
      uint64_t disk_len = round_block(len);
      if (reinterpret_cast<uintptr_t>(src) % kBlock != 0 || disk_len != len) {
        staging.reset(disk_len);
        std::memcpy(staging.data(), src, len);
        std::memset(staging.data() + len, 0, disk_len - len);
        src = staging.data();
      }
      auto w = q_->write(e.disk, src, disk_len);
      if (!w) {
        release_extents(v.extents);
        return w.status();
      }
    }
  }
  auto r = log_version(oid, dkey, akey, kind, rsize, std::move(v), uo.stage);
  if (r) ++updates_;
  kind_guard.staged = r.is_ok();
  return r;
}

Result<uint64_t> TargetStore::log_version(const ObjectId& oid, std::string_view dkey,
                                          std::string_view akey, ValueKind kind, uint32_t rsize,
                                          Version v, DtxStage* stage) {
  capnp::MallocMessageBuilder b(512);
  auto rec = b.initRoot<schema::WalRecord>();
  rec.setEpoch(v.epoch);
  rec.setOidHi(oid.hi);
  rec.setOidLo(oid.lo);
  rec.setDkey(as_data(dkey));
  rec.setAkey(as_data(akey));
  auto u = rec.initUpdate();
  u.setKind(kind == ValueKind::array ? 1 : 0);
  u.setRsize(rsize);
  version_to(u.initVersion(), v);
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  uint64_t epoch = v.epoch;
  std::vector<Extent> extents = v.extents;
  if (stage != nullptr) {
    return stage_record(*stage, std::vector<uint8_t>(bytes.begin(), bytes.end()),
                        std::move(extents), epoch);
  }
  std::function<void()> apply = [&, v = std::move(v)]() mutable {
    apply_version(oid, dkey, akey, kind, rsize, std::move(v));
  };
  Status st = wal_->append(std::span<const uint8_t>(bytes.begin(), bytes.size()), apply);
  if (!st.is_ok()) {
    release_extents(extents);
    return st;
  }
  if (wal_->used() > wal_len_ / 2 && !ckpt_wanted_) {
    ckpt_wanted_ = true;
    bg_cv_.notify_all();
  }
  return epoch;
}

// ---- fetch ------------------------------------------------------------------------------------

Status TargetStore::verify_extent(const Extent& e, CsumType t, const uint8_t* bytes) const {
  if (checksum(t, bytes, e.len) == e.csum) return Status();
  return Status(Errc::checksum,
                fmt::format("{}: extent at {} ({} bytes) fails its {}", who(), e.disk, e.len,
                            t == CsumType::crc64 ? "crc64" : "crc32c"));
}

TargetStore::ReadGuard::ReadGuard(TargetStore& s) : s_(s), gen_(s.read_gen_) {
  s_.active_reads_.insert(gen_);
}

TargetStore::ReadGuard::~ReadGuard() {
  s_.active_reads_.erase(s_.active_reads_.find(gen_));
  s_.reclaim();
}

Result<Buffer> TargetStore::read_extent(const Extent& e, CsumType t) {
  Buffer buf(round_block(e.len));
  auto r = q_->read(e.disk, buf.data(), buf.size());
  if (!r) return r.status();
  buf.truncate(e.len);
  TESSERA_TRY(verify_extent(e, t, buf.data()));
  return buf;
}

Result<FetchResult> TargetStore::fetch(const ObjectId& oid, std::string_view dkey,
                                       std::string_view akey, ValueKind kind, uint64_t offset,
                                       uint64_t length, uint64_t epoch, const FetchOptions& fo) {
  ++fetches_;
  uint32_t rsize = kind == ValueKind::array ? std::max<uint32_t>(1, fo.rsize) : 1;
  if (epoch == 0) epoch = kMaxEpoch;
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  const AkeyVal* a = find(oid, dkey, akey, &o, &d);
  if (a != nullptr && !a->versions.empty()) {
    if (a->kind != kind) {
      return Status(Errc::invalid_argument, a->kind == ValueKind::array
                                                ? "akey holds an array; fetch it as an array"
                                                : "akey holds a single value; fetch it as one");
    }
    if (kind == ValueKind::array && a->rsize != rsize) {
      return rsize_mismatch(*a, rsize);
    }
  }
  if (kind == ValueKind::array &&
      (offset > kMaxEpoch / rsize || (length != 0 && length > (kMaxEpoch / rsize) - offset))) {
    return Status(Errc::invalid_argument, "array range overflows the 64-bit offset space");
  }

  // Plan the copy from the index first: the fiber yields on I/O and the index may change.
  struct Piece {
    uint64_t out;   // where in the output
    Extent ext;     // which stored piece
    uint64_t from;  // first byte of the piece wanted
    uint64_t len;   // bytes wanted
    CsumType csum;
  };
  std::vector<Piece> pieces;
  FetchResult out;
  uint64_t fl = a != nullptr ? floor_of(*o, *d, *a, epoch) : 0;

  // Copies bytes [lo, hi) of version v to out.data at `at`, or plans the piece reads.
  auto take = [&](const Version& v, uint64_t lo, uint64_t hi, uint64_t at) {
    if (v.extents.empty()) {
      std::memcpy(out.data.data() + at, v.inline_data.data() + (lo - v.offset), hi - lo);
      return;
    }
    uint64_t pstart = v.offset;
    for (const Extent& e : v.extents) {
      uint64_t elo = std::max(lo, pstart);
      uint64_t ehi = std::min(hi, pstart + e.len);
      if (elo < ehi) pieces.push_back({at + (elo - lo), e, elo - pstart, ehi - elo, v.csum_type});
      pstart += e.len;
    }
  };

  if (kind == ValueKind::single) {
    ptrdiff_t i = a != nullptr ? newest_single(*a, fl, epoch) : -1;
    if (i < 0) {
      if (fo.must_exist) return Status(Errc::not_found, "no value at this key and epoch");
      return out;
    }
    const Version& v = a->versions[static_cast<size_t>(i)];
    out.exists = true;
    out.size = v.length;
    out.epoch = v.epoch;
    out.data.reset(v.length);
    take(v, 0, v.length, 0);
  } else {
    Segs whole;
    if (a != nullptr) whole = resolve(*a, fl, epoch, 0, kMaxEpoch);
    uint64_t end_bytes = a != nullptr ? array_end(*a, whole) : 0;
    out.exists = end_bytes != 0;
    if (!out.exists && fo.must_exist) {
      return Status(Errc::not_found, "no value at this key and epoch");
    }
    out.size = end_bytes / rsize;
    if (length == 0) length = out.size > offset ? out.size - offset : 0;
    uint64_t lo = offset * rsize;
    uint64_t hi = lo + length * rsize;
    if (hi - lo > opts_.max_value) {
      return Status(Errc::too_big, fmt::format("fetch of {} bytes exceeds the {} byte limit",
                                               hi - lo, opts_.max_value));
    }
    out.data.reset(hi - lo);
    std::memset(out.data.data(), 0, hi - lo);
    uint64_t cur = lo;
    auto hole = [&](uint64_t from, uint64_t to) {
      if (from >= to) return;
      uint64_t f = from / rsize, n = (to - from) / rsize;
      if (!out.holes.empty() && out.holes.back().first + out.holes.back().second == f) {
        out.holes.back().second += n;
      } else {
        out.holes.emplace_back(f, n);
      }
    };
    auto it = whole.upper_bound(lo);
    if (it != whole.begin()) --it;
    for (; it != whole.end() && it->first < hi; ++it) {
      uint64_t slo = std::max(lo, it->first);
      uint64_t shi = std::min(hi, it->second.end);
      if (slo >= shi) continue;
      hole(cur, slo);
      const Version& v = a->versions[it->second.ver];
      if (v.punch) {
        hole(slo, shi);
      } else {
        out.epoch = std::max(out.epoch, v.epoch);
        take(v, slo, shi, slo - lo);
      }
      cur = shi;
    }
    hole(cur, hi);
  }
  if (pieces.empty()) return out;

  ReadGuard guard(*this);
  Buffer last;
  uint64_t last_disk = kMaxEpoch;
  for (const Piece& p : pieces) {
    // A whole piece landing on a block boundary of the output is read in place.
    bool in_place = p.from == 0 && p.len == p.ext.len && p.out % kBlock == 0 &&
                    (p.len % kBlock == 0 || p.out + p.len == out.data.size());
    if (in_place) {
      auto r = q_->read(p.ext.disk, out.data.data() + p.out, round_block(p.len));
      if (!r) return r.status();
      TESSERA_TRY(verify_extent(p.ext, p.csum, out.data.data() + p.out));
      continue;
    }
    if (last_disk != p.ext.disk) {
      auto b = read_extent(p.ext, p.csum);
      if (!b) return b.status();
      last = std::move(*b);
      last_disk = p.ext.disk;
    }
    std::memcpy(out.data.data() + p.out, last.data() + p.from, p.len);
  }
  return out;
}

// ---- punch ------------------------------------------------------------------------------------

Result<uint64_t> TargetStore::take_epoch(uint64_t given, bool import) {
  if (given == 0) return hlc_.tick();
  if (given <= agg_epoch_ && !import) {
    return Status(
        Errc::invalid_argument,
        fmt::format("epoch {} is at or below the aggregation epoch {}", given, agg_epoch_));
  }
  if (given < rollback_floor_ && !import) {
    return Status(Errc::stale, fmt::format("{}: epoch {} is below a rollback at epoch {}: retry "
                                           "at a new epoch",
                                           who(), given, rollback_floor_));
  }
  hlc_.observe(given);
  return given;
}

Result<uint64_t> TargetStore::punch(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey, uint64_t at, bool import,
                                    DtxStage* stage) {
  if (dkey.empty() && !akey.empty()) {
    return Status(Errc::invalid_argument, "punching an akey needs its dkey");
  }
  BusyGuard guard(busy_, busy_cv_, busy_key(oid, dkey, akey));
  capnp::MallocMessageBuilder b(256);
  auto rec = b.initRoot<schema::WalRecord>();
  auto taken = take_epoch(at, import);
  if (!taken) return taken.status();
  uint64_t epoch = *taken;
  rec.setEpoch(epoch);
  rec.setOidHi(oid.hi);
  rec.setOidLo(oid.lo);
  rec.setDkey(as_data(dkey));
  rec.setAkey(as_data(akey));
  rec.setPunch();
  if (import) {
    // Held already: nothing to log.
    auto oit = objects_.find(oid);
    const std::vector<uint64_t>* have = nullptr;
    if (oit != objects_.end()) {
      if (dkey.empty()) {
        have = &oit->second.punches;
      } else if (auto d = oit->second.dkeys.find(dkey); d != oit->second.dkeys.end()) {
        if (akey.empty()) {
          have = &d->second.punches;
        } else if (auto a = d->second.akeys.find(akey); a != d->second.akeys.end()) {
          have = &a->second.punches;
        }
      }
    }
    if (have != nullptr && std::binary_search(have->begin(), have->end(), epoch)) return epoch;
  }
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  if (stage != nullptr) {
    return stage_record(*stage, std::vector<uint8_t>(bytes.begin(), bytes.end()), {}, epoch);
  }
  InflightEpoch inflight(inflight_epochs_, epoch);
  std::function<void()> apply = [&] { apply_punch(oid, dkey, akey, epoch); };
  TESSERA_TRY(wal_->append(std::span<const uint8_t>(bytes.begin(), bytes.size()), apply));
  return epoch;
}

Result<uint64_t> TargetStore::punch_range(const ObjectId& oid, std::string_view dkey,
                                          std::string_view akey, uint64_t offset, uint64_t length,
                                          uint32_t rsize, uint64_t at, bool import,
                                          DtxStage* stage) {
  rsize = std::max<uint32_t>(1, rsize);
  if (dkey.empty() || akey.empty())
    return Status(Errc::invalid_argument, "a range punch needs its dkey and akey");
  if (length == 0) return Status(Errc::invalid_argument, "empty range to punch");
  if (offset > kMaxEpoch / rsize || length > kMaxEpoch / rsize - offset) {
    return Status(Errc::invalid_argument, "array range overflows the 64-bit offset space");
  }
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  if (const AkeyVal* a = find(oid, dkey, akey, &o, &d); a != nullptr && !a->versions.empty()) {
    if (a->kind != ValueKind::array) {
      return Status(Errc::invalid_argument, "akey holds a single value; punch the akey instead");
    }
    if (a->rsize != rsize) {
      return rsize_mismatch(*a, rsize);
    }
  }
  BusyGuard guard(busy_, busy_cv_, busy_key(oid, dkey, akey));
  Version v;
  auto taken = take_epoch(at, import);
  if (!taken) return taken.status();
  if (import && holds(oid, dkey, akey, *taken, offset * rsize, (offset + length) * rsize)) {
    return *taken;
  }
  v.epoch = *taken;
  v.punch = true;
  v.offset = offset * rsize;
  v.lo = v.offset;
  v.hi = v.offset + length * rsize;
  InflightEpoch inflight(inflight_epochs_, v.epoch);
  return log_version(oid, dkey, akey, ValueKind::array, rsize, std::move(v), stage);
}

// ---- enumeration ------------------------------------------------------------------------------

Result<ListResult> TargetStore::list(ListScope scope, const ObjectId& oid, std::string_view dkey,
                                     std::string_view akey, std::string_view anchor, uint32_t limit,
                                     uint64_t epoch) const {
  if (limit == 0) limit = 1000;
  if (epoch == 0) epoch = kMaxEpoch;
  ListResult out;
  out.done = false;
  if (scope == ListScope::objects) {
    const std::optional<ObjectId> from = oid_of_anchor(anchor);
    auto it = from ? objects_.upper_bound(*from) : objects_.begin();
    for (; it != objects_.end() && out.entries.size() < limit; ++it) {
      if (!object_visible(it->second, epoch)) continue;
      ListEntry e;
      e.oid = it->first;
      out.entries.push_back(e);
    }
    out.done = it == objects_.end();
    if (!out.entries.empty()) out.anchor = oid_anchor(out.entries.back().oid);
    return out;
  }
  auto oit = objects_.find(oid);
  if (oit == objects_.end()) return Status(Errc::not_found, "no such object");
  const Object& o = oit->second;
  if (scope == ListScope::dkeys) {
    auto it = anchor.empty() ? o.dkeys.begin() : o.dkeys.upper_bound(anchor);
    for (; it != o.dkeys.end() && out.entries.size() < limit; ++it) {
      if (!dkey_visible(o, it->second, epoch)) continue;
      ListEntry e;
      e.key = it->first;
      out.entries.push_back(std::move(e));
    }
    out.done = it == o.dkeys.end();
    if (!out.entries.empty()) out.anchor = out.entries.back().key;
    return out;
  }
  auto dit = o.dkeys.find(dkey);
  if (dit == o.dkeys.end()) return Status(Errc::not_found, "no such dkey");
  const Dkey& d = dit->second;
  if (scope == ListScope::akeys) {
    auto it = anchor.empty() ? d.akeys.begin() : d.akeys.upper_bound(anchor);
    for (; it != d.akeys.end() && out.entries.size() < limit; ++it) {
      const AkeyVal& a = it->second;
      if (!akey_visible(o, d, a, epoch)) continue;
      ListEntry e;
      e.key = it->first;
      e.kind = a.kind;
      uint64_t fl = floor_of(o, d, a, epoch);
      if (a.kind == ValueKind::single) {
        e.size = a.versions[static_cast<size_t>(newest_single(a, fl, epoch))].length;
      } else {
        e.size = array_end(a, resolve(a, fl, epoch, 0, kMaxEpoch)) / a.rsize;
      }
      out.entries.push_back(std::move(e));
    }
    out.done = it == d.akeys.end();
    if (!out.entries.empty()) out.anchor = out.entries.back().key;
    return out;
  }
  // recx: the written runs of an array, merged across versions, from the anchor's record on.
  auto ait = d.akeys.find(akey);
  if (ait == d.akeys.end()) return Status(Errc::not_found, "no such akey");
  const AkeyVal& a = ait->second;
  if (a.kind != ValueKind::array) return Status(Errc::invalid_argument, "akey is not an array");
  const uint64_t from = record_of_anchor(anchor).value_or(0) * a.rsize;
  Segs whole = resolve(a, floor_of(o, d, a, epoch), epoch, from, kMaxEpoch);
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (const auto& [lo, s] : whole) {
    if (a.versions[s.ver].punch) continue;
    if (!runs.empty() && runs.back().second == lo) {
      runs.back().second = s.end;
    } else {
      runs.emplace_back(lo, s.end);
    }
  }
  size_t i = 0;
  for (; i < runs.size() && out.entries.size() < limit; ++i) {
    ListEntry e;
    e.kind = ValueKind::array;
    e.offset = runs[i].first / a.rsize;
    e.length = (runs[i].second - runs[i].first) / a.rsize;
    out.entries.push_back(e);
  }
  out.done = i == runs.size();
  if (!out.entries.empty()) {
    out.anchor = record_anchor(out.entries.back().offset + out.entries.back().length);
  }
  return out;
}

Result<std::string> TargetStore::max_dkey(const ObjectId& oid, uint64_t epoch) const {
  if (epoch == 0) epoch = kMaxEpoch;
  auto oit = objects_.find(oid);
  if (oit != objects_.end()) {
    for (auto it = oit->second.dkeys.rbegin(); it != oit->second.dkeys.rend(); ++it) {
      if (dkey_visible(oit->second, it->second, epoch)) return it->first;
    }
  }
  return Status(Errc::not_found, "the object has no visible dkey");
}

Result<uint64_t> TargetStore::max_recx(const ObjectId& oid, std::string_view dkey,
                                       std::string_view akey, uint64_t epoch) const {
  if (epoch == 0) epoch = kMaxEpoch;
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  const AkeyVal* a = find(oid, dkey, akey, &o, &d);
  if (a == nullptr) return uint64_t{0};
  if (a->kind != ValueKind::array && !a->versions.empty()) {
    return Status(Errc::invalid_argument, "akey is not an array");
  }
  return array_end(*a, resolve(*a, floor_of(*o, *d, *a, epoch), epoch, 0, kMaxEpoch)) / a->rsize;
}

}  // namespace tessera::storage
