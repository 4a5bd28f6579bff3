// Consistency check of one akey (docs/TRANSACTIONS.md, "Consistency check"): what it shows at an
// epoch, reduced to a crc64 digest that two copies of the akey can compare without moving the
// bytes. Only the visible state counts: how the versions below it were merged by aggregation
// (which each copy runs on its own schedule) changes nothing, except a single value's epoch,
// which every copy of a replicated update keeps.
#include <fmt/format.h>
#include <isa-l/crc64.h>

#include <algorithm>

#include "storage/store_internal.hpp"

namespace tessera::storage {

using namespace detail;

namespace {

// Bytes read per fetch of an array: bounds what one digest holds in memory.
constexpr uint64_t kDigestWindow = 1u << 20;

uint64_t mix(uint64_t crc, const void* p, size_t n) {
  return crc64_ecma_refl(crc, static_cast<const unsigned char*>(p), n);
}
uint64_t mix_u64(uint64_t crc, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  return mix(crc, b, sizeof b);
}

}  // namespace

Result<AkeyDigest> TargetStore::akey_digest(const ObjectId& oid, std::string_view dkey,
                                            std::string_view akey, uint64_t epoch) {
  if (epoch == 0) epoch = kMaxEpoch;
  AkeyDigest out;
  {
    const Object* o = nullptr;
    const Dkey* d = nullptr;
    const AkeyVal* a = find(oid, dkey, akey, &o, &d);
    if (a == nullptr) return out;
    out.kind = a->kind;
    out.rsize = a->kind == ValueKind::array ? std::max<uint32_t>(1, a->rsize) : 1;
    out.exists = akey_visible(*o, *d, *a, epoch);
  }
  if (!out.exists) {
    out.rsize = 1;  // nothing visible: no shape to compare either
    out.kind = ValueKind::single;
    return out;
  }
  uint64_t crc = 0;
  // A piece that fails its checksum: this copy is damaged (a scrub or repair heals it), which
  // says nothing of whether it agrees with the others.
  auto damaged = [&out](const Status& st) -> Result<AkeyDigest> {
    if (st.code() != Errc::checksum && st.code() != Errc::io_error) return st;
    out.damaged = true;
    out.digest = 0;
    return out;
  };
  if (out.kind == ValueKind::single) {
    auto r = fetch(oid, dkey, akey, ValueKind::single, 0, 0, epoch);
    if (!r) return damaged(r.status());
    out.exists = r->exists;
    out.size = r->data.size();
    out.epoch = r->epoch;
    out.digest = mix(crc, r->data.data(), r->data.size());
    return out;
  }
  auto end = max_recx(oid, dkey, akey, epoch);
  if (!end) return end.status();
  out.size = *end;
  const uint64_t window = std::max<uint64_t>(1, kDigestWindow / out.rsize);
  FetchOptions fo;
  fo.rsize = out.rsize;
  for (uint64_t w = 0; w < out.size; w += window) {
    const uint64_t n = std::min(window, out.size - w);
    auto r = fetch(oid, dkey, akey, ValueKind::array, w, n, epoch, fo);
    if (!r) return damaged(r.status());
    // Holes read as zeros; where they are is part of the state (a punched range is not a
    // written run of zeros).
    for (const auto& [off, len] : r->holes) {
      crc = mix_u64(mix_u64(crc, off), len);
    }
    crc = mix(crc, r->data.data(), r->data.size());
  }
  out.digest = crc;
  return out;
}

Status TargetStore::replace_history(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey, uint64_t upto, const AkeyExport& x) {
  if (dkey.empty() || akey.empty()) {
    return Status(Errc::invalid_argument, "a history is replaced one akey at a time");
  }
  for (const auto& v : x.versions) {
    if (v.epoch > upto) {
      return Status(Errc::invalid_argument,
                    fmt::format("{}: a replacement history holds epoch {}, above {}", who(),
                                v.epoch, upto));
    }
  }
  {
    // Drop what lies at or below `upto`, as aggregation drops merged versions: the extents
    // are freed after the next checkpoint (the log still names them until then).
    MaintenanceHold hold(*this);
    auto oit = objects_.find(oid);
    if (oit != objects_.end()) {
      auto dit = oit->second.dkeys.find(dkey);
      if (dit != oit->second.dkeys.end()) {
        auto ait = dit->second.akeys.find(akey);
        if (ait != dit->second.akeys.end()) {
          AkeyVal& a = ait->second;
          std::vector<Version> kept;
          for (Version& v : a.versions) {
            if (v.epoch > upto) {
              kept.push_back(std::move(v));
              continue;
            }
            drop_version(v);
          }
          a.versions = std::move(kept);
          std::erase_if(a.punches, [upto](uint64_t p) { return p <= upto; });
          if (a.versions.empty()) {  // the replacement decides the akey's shape
            a.kind = x.kind;
            a.rsize = std::max<uint32_t>(1, x.rsize);
          }
          if (a.versions.empty() && a.punches.empty()) {
            dit->second.akeys.erase(ait);
            erase_if_empty(oit, dit);
          }
        }
      }
    }
  }
  TESSERA_TRY(import_akey(oid, dkey, akey, x));
  return checkpoint();
}

uint64_t TargetStore::drop_version(Version& v) {
  uint64_t freed = 0;
  for (const Extent& e : v.extents) {
    pending_free_.push_back(e);
    freed += round_block(e.len);
  }
  pending_bytes_ += freed;
  v.extents.clear();
  --versions_;
  return freed;
}

void TargetStore::erase_if_empty(std::map<ObjectId, Object>::iterator oit,
                                 std::map<std::string, Dkey, std::less<>>::iterator dit) {
  if (!dit->second.akeys.empty() || !dit->second.punches.empty()) return;
  oit->second.dkeys.erase(dit);
  if (oit->second.dkeys.empty() && oit->second.punches.empty()) objects_.erase(oit);
}

uint64_t TargetStore::drop_keys(const ObjectId& oid, std::string_view dkey,
                                const std::vector<std::string>& akeys,
                                const std::function<bool()>& still) {
  // As aggregation: the one maintenance at a time (its passes keep places in the index across
  // suspensions). Waiting for it may suspend; the drop itself does not.
  MaintenanceHold hold(*this);
  if (still && !still()) return 0;
  auto oit = objects_.find(oid);
  if (oit == objects_.end()) return 0;
  auto dit = oit->second.dkeys.find(dkey);
  if (dit == oit->second.dkeys.end()) return 0;
  Dkey& d = dit->second;
  uint64_t bytes = 0;
  auto drop_akey = [&](std::map<std::string, AkeyVal, std::less<>>::iterator ait) {
    for (Version& v : ait->second.versions) {
      if (!v.punch) bytes += v.length;
      drop_version(v);
    }
    return d.akeys.erase(ait);
  };
  if (akeys.empty()) {
    for (auto ait = d.akeys.begin(); ait != d.akeys.end();) ait = drop_akey(ait);
    d.punches.clear();
  } else {
    for (const auto& name : akeys) {
      auto ait = d.akeys.find(name);
      if (ait != d.akeys.end()) drop_akey(ait);
    }
  }
  erase_if_empty(oit, dit);
  return bytes;
}

}  // namespace tessera::storage
