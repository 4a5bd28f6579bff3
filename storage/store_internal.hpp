// Private to storage/: the on-disk layouts and helpers the TargetStore's files share
// (store.cpp: reads and writes; store_open.cpp: format and recovery; store_export.cpp: what
// rebuild moves; store_maint.cpp: space, checkpoints, aggregation, background work).
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <isa-l/crc64.h>
#include <kj/exception.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

#include "core/checksum.hpp"
#include "proto/capnp_util.hpp"
#include "storage/store.hpp"
#include "storage/wal.capnp.h"

namespace tessera::storage::detail {

// Format 3: epochs count from 2021 (core/env.hpp). Format 2's counted microseconds since 1970
// in 48 bits, which wrap in 2032; its epochs are all above format 3's.
inline constexpr uint32_t kFormatVersion = 3;
inline constexpr char kSuperMagic[8] = {'T', 'S', 'R', 'A', 'S', 'T', 'O', '3'};
inline constexpr char kCkptMagic[8] = {'T', 'S', 'R', 'A', 'C', 'K', 'P', '1'};
inline constexpr uint64_t kBlock = 4096;
inline constexpr uint64_t kCkptSlot0 = 4096;    // two header slots of one block each
inline constexpr uint64_t kMetaEnd = 3 * 4096;  // superblock + two slots
inline constexpr uint64_t kChunkTarget = 1u << 20;
inline constexpr uint64_t kMaxEpoch = std::numeric_limits<uint64_t>::max();

struct Superblock {
  char magic[8];
  uint32_t version;
  uint32_t block;
  uint64_t device_size;
  uint64_t wal_off;
  uint64_t wal_len;
  uint64_t data_off;
  uint64_t data_len;
  uint64_t incarnation;
  uint64_t created_ns;
  uint32_t target_index;
  uint32_t crc;  // crc32c of the struct with crc = 0
};

struct CkptHeader {
  char magic[8];
  uint32_t version;
  uint32_t crc;  // crc32c of the struct with crc = 0
  uint64_t seq;
  uint64_t incarnation;
  uint64_t wal_lsn;  // replay starts with this group...
  uint64_t wal_pos;  // ...at this offset in the log region
  uint64_t wal_total;
  uint64_t hlc;
  uint64_t agg_epoch;
  uint64_t dir_disk;  // the chunk directory: `chunks` entries of DirEntry
  uint32_t dir_len;
  uint32_t dir_crc;
  uint64_t chunks;
  uint64_t entries;
  uint64_t bytes;  // chunk bytes
  uint64_t created_ns;
};

struct DirEntry {
  uint64_t disk;
  uint32_t len;
  uint32_t crc;  // crc32c of the chunk bytes
};
static_assert(sizeof(DirEntry) == 16);
static_assert(sizeof(CkptHeader) == 120);
static_assert(sizeof(Superblock) == 80);

template <typename T>
inline uint32_t struct_crc(T s) {
  s.crc = 0;
  return crc32c(&s, sizeof(s));
}

inline uint64_t checksum(CsumType t, const uint8_t* p, size_t n) {
  if (t == CsumType::crc64) return crc64_ecma_refl(0, p, n);
  return crc32c(p, n);
}

// Largest element of an ascending vector that is <= e, or 0.
inline uint64_t max_le(const std::vector<uint64_t>& v, uint64_t e) {
  auto it = std::upper_bound(v.begin(), v.end(), e);
  return it == v.begin() ? 0 : *(it - 1);
}

inline void insert_sorted(std::vector<uint64_t>& v, uint64_t e) {
  auto it = std::lower_bound(v.begin(), v.end(), e);
  if (it == v.end() || *it != e) v.insert(it, e);
}

using capn::as_data;
using capn::from_data;

using Version = TargetStore::Version;
using AkeyVal = TargetStore::AkeyVal;

// The array as seen at one epoch: start -> (end, index of the version on top). Versions are
// laid in ascending epoch order, each overwriting what it covers (punch entries included).
struct Seg {
  uint64_t end;
  size_t ver;
};
using Segs = std::map<uint64_t, Seg>;

inline void overlay(Segs& m, uint64_t lo, uint64_t hi, size_t ver) {
  if (lo >= hi) return;
  // Split a segment straddling lo, and one straddling hi.
  auto split = [&m](uint64_t at) {
    auto it = m.upper_bound(at);
    if (it == m.begin()) return;
    --it;
    if (it->first < at && it->second.end > at) {
      Seg right{it->second.end, it->second.ver};
      it->second.end = at;
      m.emplace(at, right);
    }
  };
  split(lo);
  split(hi);
  m.erase(m.lower_bound(lo), m.lower_bound(hi));
  m.emplace(lo, Seg{hi, ver});
}

// Versions visible at `epoch` above punch floor `floor`, resolved over [lo, hi).
inline Segs resolve(const AkeyVal& a, uint64_t floor, uint64_t epoch, uint64_t lo, uint64_t hi) {
  Segs m;
  for (size_t i = 0; i < a.versions.size(); ++i) {
    const Version& v = a.versions[i];
    if (v.epoch > epoch) break;
    if (v.epoch <= floor) continue;
    overlay(m, std::max(lo, v.lo), std::min(hi, v.hi), i);
  }
  return m;
}

inline void version_to(schema::WalVersion::Builder b, const Version& v) {
  b.setEpoch(v.epoch);
  b.setOffset(v.offset);
  b.setLength(v.length);
  b.setLo(v.lo);
  b.setHi(v.hi);
  b.setPunch(v.punch);
  b.setCsumType(static_cast<uint8_t>(v.csum_type));
  if (!v.inline_data.empty()) b.setInline(as_data(v.inline_data));
  auto ex = b.initExtents(static_cast<unsigned>(v.extents.size()));
  for (size_t i = 0; i < v.extents.size(); ++i) {
    ex[i].setDisk(v.extents[i].disk);
    ex[i].setLength(v.extents[i].len);
    ex[i].setCsum(v.extents[i].csum);
  }
}

inline Result<Version> version_from(schema::WalVersion::Reader r, uint64_t data_off,
                                    uint64_t size) {
  Version v;
  v.epoch = r.getEpoch();
  v.offset = r.getOffset();
  v.length = r.getLength();
  v.lo = r.getLo();
  v.hi = r.getHi();
  v.punch = r.getPunch();
  if (r.getCsumType() > 1) return Status(Errc::internal, "unknown checksum type in metadata");
  v.csum_type = static_cast<CsumType>(r.getCsumType());
  if (r.hasInline()) v.inline_data = from_data(r.getInline());
  uint64_t stored = 0;
  for (auto e : r.getExtents()) {
    if (e.getDisk() < data_off || e.getDisk() % kBlock != 0 || e.getDisk() + e.getLength() > size) {
      return Status(Errc::internal, "metadata points outside the data region");
    }
    v.extents.push_back(TargetStore::Extent{e.getDisk(), e.getLength(), e.getCsum()});
    stored += e.getLength();
  }
  if (!v.punch && stored + v.inline_data.size() != v.length) {
    return Status(Errc::internal, "metadata version length does not match its data");
  }
  if (v.lo > v.hi || v.lo < v.offset || (!v.punch && v.hi > v.offset + v.length)) {
    return Status(Errc::internal, "metadata version window outside its data");
  }
  return v;
}

inline uint64_t floor_of(const TargetStore::Object& o, const TargetStore::Dkey& d, const AkeyVal& a,
                         uint64_t epoch) {
  return std::max({max_le(o.punches, epoch), max_le(d.punches, epoch), max_le(a.punches, epoch)});
}

// Index of the newest single-value version visible at `epoch`, or -1.
inline ptrdiff_t newest_single(const AkeyVal& a, uint64_t floor, uint64_t epoch) {
  for (size_t i = a.versions.size(); i-- > 0;) {
    if (a.versions[i].epoch > epoch) continue;
    return a.versions[i].epoch > floor ? static_cast<ptrdiff_t>(i) : -1;
  }
  return -1;
}

// One past the highest visible data byte of an array, 0 when none is visible.
inline uint64_t array_end(const AkeyVal& a, const Segs& whole) {
  for (auto it = whole.rbegin(); it != whole.rend(); ++it) {
    if (!a.versions[it->second.ver].punch) return it->second.end;
  }
  return 0;
}
// Decodes one log record (a flat-array WalRecord) and calls fn(reader) inside a decode scope;
// an undecodable record is an `internal` error.
template <typename Fn>
Status with_record(std::span<const uint8_t> bytes, Fn&& fn) {
  if (bytes.size() % 8 != 0) return Status(Errc::internal, "WAL record not word aligned");
  try {
    capn::DecodeScope ds;
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(bytes.data()),
                                          bytes.size() / 8);
    capnp::FlatArrayMessageReader reader(words);
    Status st = fn(reader.getRoot<schema::WalRecord>());
    if (ds.failed()) return Status(Errc::internal, "undecodable WAL record: " + ds.what());
    return st;
  } catch (const kj::Exception& e) {
    return Status(Errc::internal,
                  fmt::format("undecodable WAL record: {}", e.getDescription().cStr()));
  }
}
}  // namespace tessera::storage::detail

namespace tessera::storage {

// One prepared transaction: its prepare record (kept whole for checkpoints), the changes in it
// and what they hold.
struct TargetStore::Dtx {
  DtxId id;
  std::vector<uint64_t> participants;
  std::vector<uint8_t> prepare;  // the prepare record, as logged
  // Its changes, decoded from `prepare` once: a commit applies them as replay applies logged
  // records (keys[i] and changes[i] are the same change). Each update holds its akey's kind
  // (kind_holds_, keyed by its busy key) until the transaction is decided.
  struct Key {
    ObjectId oid;
    std::string dkey, akey;
    uint64_t epoch = 0;
    std::string busy;  // busy_key(oid, dkey, akey)
  };
  struct Change {
    bool punch = false;  // a punch of the key at its epoch; else an update
    ValueKind kind = ValueKind::single;
    uint32_t rsize = 1;
    TargetStore::Version version;  // an update's version
  };
  std::vector<Key> keys;
  std::vector<Change> changes;
  std::vector<Extent> extents;
  Nanos prepared{0};  // Env time
  uint64_t min_epoch = detail::kMaxEpoch;
  bool user = false;
};

}  // namespace tessera::storage
