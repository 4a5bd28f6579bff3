// TargetStore: what rebuild moves: the names a shard holds and whole akey histories, exported
// and imported with their epochs.
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

#include "proto/capnp_util.hpp"
#include "core/checksum.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"
#include "storage/store_internal.hpp"
#include "storage/wal.capnp.h"

namespace tessera::storage {

using namespace detail;

// ---- rebuild ----------------------------------------------------------------------------------

bool TargetStore::holds(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                        uint64_t epoch, uint64_t lo, uint64_t hi) const {
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  const AkeyVal* a = find(oid, dkey, akey, &o, &d);
  if (a == nullptr) return false;
  for (const Version& x : a->versions) {
    if (x.epoch == epoch && (a->kind != ValueKind::array || (x.lo < hi && lo < x.hi))) return true;
  }
  return false;
}

std::vector<ObjectId> TargetStore::object_keys() const {
  std::vector<ObjectId> out;
  out.reserve(objects_.size());
  for (const auto& [k, o] : objects_) out.push_back(k);
  return out;
}

std::vector<std::string> TargetStore::dkey_names(const ObjectId& oid) const {
  std::vector<std::string> out;
  auto it = objects_.find(oid);
  if (it == objects_.end()) return out;
  for (const auto& [k, d] : it->second.dkeys) out.push_back(k);
  return out;
}

std::vector<std::pair<std::string, ValueKind>> TargetStore::akey_names(
    const ObjectId& oid, std::string_view dkey) const {
  std::vector<std::pair<std::string, ValueKind>> out;
  auto it = objects_.find(oid);
  if (it == objects_.end()) return out;
  auto d = it->second.dkeys.find(dkey);
  if (d == it->second.dkeys.end()) return out;
  for (const auto& [k, a] : d->second.akeys) out.emplace_back(k, a.kind);
  return out;
}

uint64_t TargetStore::history_bytes(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey) const {
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  const AkeyVal* a = akey.empty() ? nullptr : find(oid, dkey, akey, &o, &d);
  if (a == nullptr) return 0;
  uint64_t total = 0;
  for (const Version& v : a->versions) {
    if (!v.punch) total += a->kind == ValueKind::array ? v.hi - v.lo : v.length;
  }
  return total;
}

Result<AkeyExport> TargetStore::export_akey(const ObjectId& oid, std::string_view dkey,
                                            std::string_view akey) {
  AkeyExport x;
  std::vector<Version> vers;  // copied: the fiber yields on the reads below
  {
    auto it = objects_.find(oid);
    if (it == objects_.end()) return x;
    x.object_punches = it->second.punches;
    auto d = it->second.dkeys.find(dkey);
    if (d == it->second.dkeys.end()) return x;
    x.dkey_punches = d->second.punches;
    if (akey.empty()) return x;
    auto a = d->second.akeys.find(akey);
    if (a == d->second.akeys.end()) return x;
    x.akey_punches = a->second.punches;
    x.kind = a->second.kind;
    x.rsize = a->second.rsize;
    vers = a->second.versions;
  }
  uint64_t total = 0;
  for (const Version& v : vers) {
    if (v.punch) continue;
    total += x.kind == ValueKind::array ? v.hi - v.lo : v.length;
  }
  x.data.reset(total);
  ReadGuard guard(*this);
  uint64_t at = 0;
  for (const Version& v : vers) {
    AkeyExport::Ver e{v.epoch, v.lo, v.hi, v.punch, at};
    if (x.kind == ValueKind::single) {
      e.lo = 0;
      e.hi = v.length;
    }
    if (!v.punch) {
      const uint64_t lo = x.kind == ValueKind::array ? v.lo : v.offset;
      const uint64_t hi = x.kind == ValueKind::array ? v.hi : v.offset + v.length;
      if (v.extents.empty()) {
        std::memcpy(x.data.data() + at, v.inline_data.data() + (lo - v.offset), hi - lo);
      } else {
        uint64_t pstart = v.offset;
        for (const Extent& ex : v.extents) {
          uint64_t elo = std::max(lo, pstart);
          uint64_t ehi = std::min(hi, pstart + ex.len);
          if (elo < ehi) {
            auto b = read_extent(ex, v.csum_type);
            if (!b) return b.status();
            std::memcpy(x.data.data() + at + (elo - lo), b->data() + (elo - pstart), ehi - elo);
          }
          pstart += ex.len;
        }
      }
      at += hi - lo;
    }
    x.versions.push_back(e);
  }
  return x;
}

Status TargetStore::import_akey(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                                const AkeyExport& x) {
  for (uint64_t e : x.object_punches) TESSERA_TRY(punch(oid, "", "", e, true).status());
  for (uint64_t e : x.dkey_punches) TESSERA_TRY(punch(oid, dkey, "", e, true).status());
  if (akey.empty()) return Status();
  for (uint64_t e : x.akey_punches) TESSERA_TRY(punch(oid, dkey, akey, e, true).status());
  const uint32_t rsize = std::max<uint32_t>(1, x.rsize);
  for (const auto& v : x.versions) {
    if (v.hi < v.lo || (v.hi - v.lo) % (x.kind == ValueKind::array ? rsize : 1) != 0 ||
        (x.kind == ValueKind::array && v.lo % rsize != 0)) {
      return Status(Errc::invalid_argument, "exported version is not a whole number of records");
    }
    if (v.punch) {
      if (x.kind != ValueKind::array || v.hi == v.lo) {
        return Status(Errc::invalid_argument, "exported range punch of a non-array akey");
      }
      TESSERA_TRY(
          punch_range(oid, dkey, akey, v.lo / rsize, (v.hi - v.lo) / rsize, rsize, v.epoch, true)
              .status());
      continue;
    }
    if (v.data_at > x.data.size() || v.hi - v.lo > x.data.size() - v.data_at) {
      return Status(Errc::invalid_argument, "exported version lies outside its data");
    }
    auto bytes = std::span<const uint8_t>(x.data.data() + v.data_at, v.hi - v.lo);
    UpdateOptions uo;
    uo.epoch = v.epoch;
    uo.rsize = rsize;
    uo.import = true;
    uo.verified = x.verified;
    if (x.kind == ValueKind::array && bytes.empty()) continue;
    TESSERA_TRY(update(oid, dkey, akey, x.kind, x.kind == ValueKind::array ? v.lo / rsize : 0,
                       bytes, x.verified ? 0 : crc32c(bytes), uo)
                    .status());
  }
  return Status();
}

}  // namespace tessera::storage
