#include "storage/store.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <isa-l/crc64.h>
#include <kj/exception.h>

#include <algorithm>
#include <boost/fiber/future.hpp>
#include <boost/fiber/operations.hpp>
#include <chrono>
#include <cstring>
#include <limits>

#include "actors/schema/capnp_util.hpp"
#include "core/checksum.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"
#include "storage/wal.capnp.h"

namespace tessera::storage {
namespace {

constexpr char kSuperMagic[8] = {'T', 'S', 'R', 'A', 'S', 'T', 'O', '2'};
constexpr char kCkptMagic[8] = {'T', 'S', 'R', 'A', 'C', 'K', 'P', '1'};
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kCkptSlot0 = 4096;    // two header slots of one block each
constexpr uint64_t kMetaEnd = 3 * 4096;  // superblock + two slots
constexpr uint64_t kChunkTarget = 1u << 20;
constexpr uint64_t kMaxEpoch = std::numeric_limits<uint64_t>::max();

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
uint32_t struct_crc(T s) {
  s.crc = 0;
  return crc32c(&s, sizeof(s));
}

uint64_t checksum(CsumType t, const uint8_t* p, size_t n) {
  if (t == CsumType::crc64) return crc64_ecma_refl(0, p, n);
  return crc32c(p, n);
}

// Largest element of an ascending vector that is <= e, or 0.
uint64_t max_le(const std::vector<uint64_t>& v, uint64_t e) {
  auto it = std::upper_bound(v.begin(), v.end(), e);
  return it == v.begin() ? 0 : *(it - 1);
}

void insert_sorted(std::vector<uint64_t>& v, uint64_t e) {
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

void overlay(Segs& m, uint64_t lo, uint64_t hi, size_t ver) {
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
Segs resolve(const AkeyVal& a, uint64_t floor, uint64_t epoch, uint64_t lo, uint64_t hi) {
  Segs m;
  for (size_t i = 0; i < a.versions.size(); ++i) {
    const Version& v = a.versions[i];
    if (v.epoch > epoch) break;
    if (v.epoch <= floor) continue;
    overlay(m, std::max(lo, v.lo), std::min(hi, v.hi), i);
  }
  return m;
}

}  // namespace

TargetStore::TargetStore(Target& t, std::unique_ptr<BlockQueue> q, const StoreOptions& opts)
    : target_(t), q_(std::move(q)), opts_(opts), hlc_(t.env()) {}

TargetStore::~TargetStore() {
  if (q_) target_.remove_poller(q_.get());
}

void TargetStore::close() {
  bg_stop_ = true;
  bg_cv_.notify_all();
  NoLock nl;
  while (bg_running_) bg_done_cv_.wait(nl);
  if (wal_) wal_->stop();
  if (q_) target_.remove_poller(q_.get());
}

Result<std::unique_ptr<TargetStore>> TargetStore::open(Target& t, std::unique_ptr<BlockQueue> q,
                                                       const StoreOptions& opts) {
  std::unique_ptr<TargetStore> s(new TargetStore(t, std::move(q), opts));
  t.add_poller(s->q_.get());
  Buffer block(kBlock);
  auto r = s->q_->read(0, block.data(), kBlock);
  if (!r) return r.status();
  Superblock sb;
  std::memcpy(&sb, block.data(), sizeof(sb));
  bool blank = std::all_of(block.data(), block.data() + kBlock, [](uint8_t b) { return b == 0; });
  if (blank) {
    TESSERA_TRY(s->format());
  } else {
    if (std::memcmp(sb.magic, kSuperMagic, 4) != 0) {
      return Status(Errc::invalid_argument,
                    "the storage file is not a Tessera target (bad superblock magic); "
                    "refusing to overwrite it");
    }
    if (std::memcmp(sb.magic, kSuperMagic, sizeof(kSuperMagic)) != 0) {
      return Status(Errc::invalid_argument,
                    "the storage file holds an older Tessera target format; move it away to "
                    "format a new one");
    }
    if (struct_crc(sb) != sb.crc) {
      return Status(Errc::checksum, "the target superblock fails its checksum");
    }
    if (sb.device_size != s->q_->size()) {
      return Status(Errc::invalid_argument,
                    fmt::format("the target was formatted with {} bytes but is opened with {}",
                                sb.device_size, s->q_->size()));
    }
    s->incarnation_ = sb.incarnation;
    s->wal_off_ = sb.wal_off;
    s->wal_len_ = sb.wal_len;
    s->data_off_ = sb.data_off;
    TESSERA_TRY(s->recover());
  }
  s->wal_->set_full_hook([p = s.get()] {
    p->ckpt_wanted_ = true;
    p->bg_cv_.notify_all();
  });
  s->wal_->start();
  s->bg_running_ = true;
  std::weak_ptr<int> alive = s->alive_;
  TargetStore* self = s.get();
  t.on_stop([self, alive] {
    if (alive.lock() == nullptr) return;
    self->bg_stop_ = true;
    self->bg_cv_.notify_all();
  });
  t.spawn([self] {
    self->background();
    self->bg_running_ = false;
    self->bg_done_cv_.notify_all();
  });
  return s;
}

Status TargetStore::write_superblock() {
  Superblock sb{};
  std::memcpy(sb.magic, kSuperMagic, sizeof(sb.magic));
  sb.version = 2;
  sb.block = kBlock;
  sb.device_size = q_->size();
  sb.wal_off = wal_off_;
  sb.wal_len = wal_len_;
  sb.data_off = data_off_;
  sb.data_len = q_->size() - data_off_;
  sb.incarnation = incarnation_;
  sb.created_ns = static_cast<uint64_t>(target_.env().wall().count());
  sb.target_index = opts_.target_index;
  sb.crc = struct_crc(sb);
  Buffer block(kBlock);
  std::memset(block.data(), 0, kBlock);
  std::memcpy(block.data(), &sb, sizeof(sb));
  auto w = q_->write(0, block.data(), kBlock);
  if (!w) return w.status();
  return q_->sync();
}

Status TargetStore::format() {
  uint64_t size = q_->size();
  uint64_t wal = opts_.wal_bytes;
  if (wal == 0) wal = std::clamp<uint64_t>(size / 8, 16ull << 20, 1ull << 30);
  wal = wal / kBlock * kBlock;
  if (wal < 64 * kBlock) {
    return Status(Errc::invalid_argument,
                  fmt::format("a {} byte log is too small (at least {} bytes)", wal, 64 * kBlock));
  }
  if (size < kMetaEnd + wal + 64 * kBlock) {
    return Status(
        Errc::invalid_argument,
        fmt::format("storage of {} bytes is too small for a {} byte log plus data", size, wal));
  }
  incarnation_ = target_.env().random() | 1;
  wal_off_ = kMetaEnd;
  wal_len_ = wal;
  data_off_ = kMetaEnd + wal;
  if (opts_.zero_fill) {
    TESSERA_TRY(zero_fill(kBlock, size));
  } else {
    // The checkpoint slots must read as empty.
    Buffer zero(2 * kBlock);
    std::memset(zero.data(), 0, zero.size());
    auto w = q_->write(kCkptSlot0, zero.data(), zero.size());
    if (!w) return w.status();
  }
  wal_ = std::make_unique<Wal>(target_, *q_, wal_off_, wal_len_, incarnation_);
  TESSERA_TRY(wal_->format());
  alloc_.reset(data_off_, size - data_off_);
  // The superblock goes last: a crash before this point leaves a blank file that formats again.
  TESSERA_TRY(write_superblock());
  // The blocks zero_fill wrote were told as it went; the rest (the first block, or all of it
  // without the fill) now.
  if (opts_.formatted) opts_.formatted(opts_.zero_fill ? kBlock : size);
  log::info("{}: formatted {} bytes (log {} bytes, data {} bytes)", who(), size,
            wal_len_, size - data_off_);
  return Status();
}

Status TargetStore::zero_fill(uint64_t from, uint64_t to) {
  constexpr uint64_t kChunk = 4u << 20;
  constexpr int kDepth = 8;
  Buffer zeros(kChunk);
  std::memset(zeros.data(), 0, kChunk);
  uint64_t next = from;
  int live = kDepth;
  Status first_error;
  boost::fibers::promise<void> all;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kDepth; ++i) {
    target_.spawn([&] {
      while (next < to && first_error.is_ok()) {
        uint64_t off = next;
        uint64_t len = std::min(kChunk, to - off);
        next += len;
        auto w = q_->write(off, zeros.data(), len);
        if (!w && first_error.is_ok()) first_error = w.status();
        if (w && opts_.formatted) opts_.formatted(len);
      }
      if (--live == 0) all.set_value();
    });
  }
  all.get_future().get();
  TESSERA_TRY(first_error);
  TESSERA_TRY(q_->sync());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("{}: initialized {} MiB in {:.2f} s", who(), (to - from) >> 20,
            secs);
  return Status();
}

namespace {

void version_to(schema::WalVersion::Builder b, const Version& v) {
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

Result<Version> version_from(schema::WalVersion::Reader r, uint64_t data_off, uint64_t size) {
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

}  // namespace

Status TargetStore::recover() {
  auto t0 = std::chrono::steady_clock::now();
  wal_ = std::make_unique<Wal>(target_, *q_, wal_off_, wal_len_, incarnation_);
  alloc_.reset(data_off_, q_->size() - data_off_);
  WalMark from;
  TESSERA_TRY(load_checkpoint(from));
  TESSERA_TRY(
      wal_->replay(from, [this](std::span<const uint8_t> rec) { return apply_record(rec); }));
  ckpt_mark_ = from;
  versions_ = 0;
  for (const Extent& e : ckpt_extents_) {
    Status st = alloc_.mark_used(e.disk, e.len);
    if (!st.is_ok()) return Status(Errc::internal, "checkpoint extents: " + st.message());
  }
  for (auto& [oid, obj] : objects_) {
    for (auto& [dk, d] : obj.dkeys) {
      for (auto& [ak, a] : d.akeys) {
        for (auto& v : a.versions) {
          ++versions_;
          for (auto& e : v.extents) {
            Status st = alloc_.mark_used(e.disk, e.len);
            if (!st.is_ok()) return Status(Errc::internal, "recovered index: " + st.message());
          }
        }
      }
    }
  }
  recovery_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log::info("{}: recovered {} objects, {} versions, {} bytes of data in use in {:.0f} ms",
            who(), objects_.size(), versions_, alloc_.used_bytes(), recovery_ms_);
  return Status();
}

Status TargetStore::load_checkpoint(WalMark& from) {
  Buffer slots(2 * kBlock);
  auto r = q_->read(kCkptSlot0, slots.data(), slots.size());
  if (!r) return r.status();
  CkptHeader best{};
  bool found = false;
  for (int i = 0; i < 2; ++i) {
    CkptHeader h;
    std::memcpy(&h, slots.data() + i * kBlock, sizeof(h));
    if (std::memcmp(h.magic, kCkptMagic, sizeof(kCkptMagic)) != 0) continue;
    if (struct_crc(h) != h.crc || h.incarnation != incarnation_) continue;
    if (!found || h.seq > best.seq) best = h;
    found = true;
  }
  from = WalMark{};
  if (!found) return Status();
  ckpt_seq_ = best.seq;
  agg_epoch_ = best.agg_epoch;
  hlc_.observe(best.hlc);
  from = WalMark{best.wal_lsn, best.wal_pos, best.wal_total};
  if (best.chunks == 0) return Status();
  if (best.dir_len != best.chunks * sizeof(DirEntry) || best.dir_disk < data_off_ ||
      best.dir_disk + best.dir_len > q_->size()) {
    return Status(Errc::internal, "checkpoint directory out of range");
  }
  Buffer dir(best.dir_len);
  r = q_->read(best.dir_disk, dir.data(), round_block(best.dir_len));
  if (!r) return r.status();
  if (crc32c({dir.data(), best.dir_len}) != best.dir_crc) {
    return Status(Errc::checksum, "checkpoint directory fails its checksum");
  }
  ckpt_extents_.push_back(Extent{best.dir_disk, best.dir_len, best.dir_crc});
  capnp::ReaderOptions ro;
  ro.traversalLimitInWords = std::numeric_limits<uint64_t>::max() / 16;
  uint64_t entries = 0;
  Buffer chunk;
  for (uint64_t i = 0; i < best.chunks; ++i) {
    DirEntry de;
    std::memcpy(&de, dir.data() + i * sizeof(DirEntry), sizeof(de));
    if (de.disk < data_off_ || de.disk % kBlock != 0 || de.disk + de.len > q_->size() ||
        de.len % 8 != 0) {
      return Status(Errc::internal, "checkpoint chunk out of range");
    }
    chunk.reset(de.len);
    r = q_->read(de.disk, chunk.data(), round_block(de.len));
    if (!r) return r.status();
    if (crc32c({chunk.data(), de.len}) != de.crc) {
      return Status(Errc::checksum, fmt::format("checkpoint chunk {} fails its checksum", i));
    }
    ckpt_extents_.push_back(Extent{de.disk, de.len, de.crc});
    ckpt_bytes_ += round_block(de.len);
    try {
      capn::DecodeScope ds;
      kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(chunk.data()),
                                            de.len / 8);
      capnp::FlatArrayMessageReader reader(words, ro);
      for (auto e : reader.getRoot<schema::CkptChunk>().getEntries()) {
        ObjectId oid{e.getOidHi(), e.getOidLo()};
        Object& o = objects_[oid];
        std::vector<uint64_t> punches;
        for (uint64_t p : e.getPunches()) punches.push_back(p);
        if (e.getLevel() == 0) {
          o.punches = std::move(punches);
        } else if (e.getLevel() == 1) {
          o.dkeys[from_data(e.getDkey())].punches = std::move(punches);
        } else {
          AkeyVal& a = o.dkeys[from_data(e.getDkey())].akeys[from_data(e.getAkey())];
          a.punches = std::move(punches);
          a.kind = e.getKind() == 1 ? ValueKind::array : ValueKind::single;
          a.rsize = std::max<uint32_t>(1, e.getRsize());
          for (auto vr : e.getVersions()) {
            auto v = version_from(vr, data_off_, q_->size());
            if (!v) return v.status();
            a.versions.push_back(std::move(*v));
          }
        }
        ++entries;
      }
      if (ds.failed()) return Status(Errc::internal, "undecodable checkpoint chunk: " + ds.what());
    } catch (const kj::Exception& ex) {
      return Status(Errc::internal,
                    fmt::format("undecodable checkpoint chunk: {}", ex.getDescription().cStr()));
    }
  }
  log::info("{}: checkpoint {} loaded: {} entries in {} chunks", who(),
            best.seq, entries, best.chunks);
  return Status();
}

Status TargetStore::apply_record(std::span<const uint8_t> bytes) {
  if (bytes.size() % 8 != 0) return Status(Errc::internal, "WAL record not word aligned");
  try {
    capn::DecodeScope ds;
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(bytes.data()),
                                          bytes.size() / 8);
    capnp::FlatArrayMessageReader reader(words);
    if (ds.failed()) return Status(Errc::internal, "undecodable WAL record: " + ds.what());
    auto rec = reader.getRoot<schema::WalRecord>();
    ObjectId oid{rec.getOidHi(), rec.getOidLo()};
    hlc_.observe(rec.getEpoch());
    std::string dkey = from_data(rec.getDkey());
    std::string akey = from_data(rec.getAkey());
    if (rec.isPunch()) {
      apply_punch(oid, dkey, akey, rec.getEpoch());
      return Status();
    }
    auto u = rec.getUpdate();
    auto v = version_from(u.getVersion(), data_off_, q_->size());
    if (!v) return v.status();
    apply_version(oid, dkey, akey, u.getKind() == 1 ? ValueKind::array : ValueKind::single,
                  std::max<uint32_t>(1, u.getRsize()), std::move(*v));
    if (ds.failed()) return Status(Errc::internal, "undecodable WAL record: " + ds.what());
  } catch (const kj::Exception& e) {
    return Status(Errc::internal,
                  fmt::format("undecodable WAL record: {}", e.getDescription().cStr()));
  }
  return Status();
}

void TargetStore::apply_version(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                                ValueKind kind, uint32_t rsize, Version v) {
  Object& o = objects_[oid];
  auto dit = o.dkeys.find(dkey);
  if (dit == o.dkeys.end()) dit = o.dkeys.emplace(std::string(dkey), Dkey{}).first;
  auto ait = dit->second.akeys.find(akey);
  if (ait == dit->second.akeys.end()) {
    ait = dit->second.akeys.emplace(std::string(akey), AkeyVal{}).first;
  }
  AkeyVal& a = ait->second;
  if (a.versions.empty()) {
    a.kind = kind;
    a.rsize = rsize;
  }
  auto pos = std::upper_bound(a.versions.begin(), a.versions.end(), v.epoch,
                              [](uint64_t e, const Version& x) { return e < x.epoch; });
  // Replay after a checkpoint meets changes the checkpoint already holds: apply them once. One
  // epoch may hold several versions of an akey (the disjoint pieces and punches of one
  // erasure-coded update, always disjoint), so an array version is a repeat only where it
  // meets one of them (aggregation may have narrowed the copy the checkpoint holds).
  for (auto it = pos; it != a.versions.begin() && (it - 1)->epoch == v.epoch; --it) {
    const Version& x = *(it - 1);
    if (a.kind != ValueKind::array || (x.lo < v.hi && v.lo < x.hi)) return;
  }
  a.versions.insert(pos, std::move(v));
  ++versions_;
}

void TargetStore::apply_punch(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                              uint64_t epoch) {
  Object& o = objects_[oid];
  if (dkey.empty()) {
    insert_sorted(o.punches, epoch);
    return;
  }
  auto dit = o.dkeys.find(dkey);
  if (dit == o.dkeys.end()) dit = o.dkeys.emplace(std::string(dkey), Dkey{}).first;
  if (akey.empty()) {
    insert_sorted(dit->second.punches, epoch);
    return;
  }
  auto ait = dit->second.akeys.find(akey);
  if (ait == dit->second.akeys.end()) {
    ait = dit->second.akeys.emplace(std::string(akey), AkeyVal{}).first;
  }
  insert_sorted(ait->second.punches, epoch);
}

// ---- visibility -------------------------------------------------------------------------------

namespace {
uint64_t floor_of(const TargetStore::Object& o, const TargetStore::Dkey& d, const AkeyVal& a,
                  uint64_t epoch) {
  return std::max({max_le(o.punches, epoch), max_le(d.punches, epoch), max_le(a.punches, epoch)});
}

// Index of the newest single-value version visible at `epoch`, or -1.
ptrdiff_t newest_single(const AkeyVal& a, uint64_t floor, uint64_t epoch) {
  for (size_t i = a.versions.size(); i-- > 0;) {
    if (a.versions[i].epoch > epoch) continue;
    return a.versions[i].epoch > floor ? static_cast<ptrdiff_t>(i) : -1;
  }
  return -1;
}

// One past the highest visible data byte of an array, 0 when none is visible.
uint64_t array_end(const AkeyVal& a, const Segs& whole) {
  for (auto it = whole.rbegin(); it != whole.rend(); ++it) {
    if (!a.versions[it->second.ver].punch) return it->second.end;
  }
  return 0;
}
}  // namespace

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
  if (busy_.empty()) return false;
  for (auto k : {busy_key(oid, {}, {}), busy_key(oid, dkey, {}), busy_key(oid, dkey, akey)}) {
    if (busy_.count(k) != 0) return true;
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
  if (crc32c(data) != crc) {
    return Status(Errc::checksum,
                  "update payload does not match its checksum (corrupted in transit)");
  }
  const Object* o = nullptr;
  const Dkey* d = nullptr;
  if (const AkeyVal* a = find(oid, dkey, akey, &o, &d); a != nullptr && !a->versions.empty()) {
    if (a->kind != kind) {
      return Status(Errc::invalid_argument,
                    fmt::format("akey holds {}, not {}",
                                a->kind == ValueKind::array ? "an array" : "a single value",
                                kind == ValueKind::array ? "an array" : "a single value"));
    }
    if (kind == ValueKind::array && a->rsize != rsize) {
      return rsize_mismatch(*a, rsize);
    }
  }
  if (uo.cond != Cond::none) {
    NoLock nl;
    while (busy(oid, dkey, akey)) busy_cv_.wait(nl);
  }
  BusyGuard guard(busy_, busy_cv_, busy_key(oid, dkey, akey));
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
        return Status(Errc::no_space,
                      fmt::format("{}: {}", who(), off.status().message()));
      }
      const uint8_t* src = data.data() + pos;
      // A value stored as one crc32c piece already has its checksum: the one verified above.
      bool whole = len == data.size() && v.csum_type == CsumType::crc32c;
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
  auto r = log_version(oid, dkey, akey, kind, rsize, std::move(v));
  if (r) ++updates_;
  return r;
}

Result<uint64_t> TargetStore::log_version(const ObjectId& oid, std::string_view dkey,
                                          std::string_view akey, ValueKind kind, uint32_t rsize,
                                          Version v) {
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
                fmt::format("{}: extent at {} ({} bytes) fails its {}", who(),
                            e.disk, e.len, t == CsumType::crc64 ? "crc64" : "crc32c"));
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
  hlc_.observe(given);
  return given;
}

Result<uint64_t> TargetStore::punch(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey, uint64_t at, bool import) {
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
  InflightEpoch inflight(inflight_epochs_, epoch);
  std::function<void()> apply = [&] { apply_punch(oid, dkey, akey, epoch); };
  TESSERA_TRY(wal_->append(std::span<const uint8_t>(bytes.begin(), bytes.size()), apply));
  return epoch;
}

Result<uint64_t> TargetStore::punch_range(const ObjectId& oid, std::string_view dkey,
                                          std::string_view akey, uint64_t offset, uint64_t length,
                                          uint32_t rsize, uint64_t at, bool import) {
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
  return log_version(oid, dkey, akey, ValueKind::array, rsize, std::move(v));
}

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
    if (x.kind == ValueKind::array && bytes.empty()) continue;
    TESSERA_TRY(update(oid, dkey, akey, x.kind, x.kind == ValueKind::array ? v.lo / rsize : 0,
                       bytes, crc32c(bytes), uo)
                    .status());
  }
  return Status();
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
    ObjectId from{};
    bool have_anchor = anchor.size() == 16;
    if (have_anchor) {
      std::memcpy(&from.hi, anchor.data(), 8);
      std::memcpy(&from.lo, anchor.data() + 8, 8);
    }
    auto it = have_anchor ? objects_.upper_bound(from) : objects_.begin();
    for (; it != objects_.end() && out.entries.size() < limit; ++it) {
      if (!object_visible(it->second, epoch)) continue;
      ListEntry e;
      e.oid = it->first;
      out.entries.push_back(e);
    }
    out.done = it == objects_.end();
    if (!out.entries.empty()) {
      out.anchor.resize(16);
      std::memcpy(out.anchor.data(), &out.entries.back().oid.hi, 8);
      std::memcpy(out.anchor.data() + 8, &out.entries.back().oid.lo, 8);
    }
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
  uint64_t from = 0;
  if (anchor.size() == 8) std::memcpy(&from, anchor.data(), 8);
  from *= a.rsize;
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
    uint64_t next = out.entries.back().offset + out.entries.back().length;
    out.anchor.assign(reinterpret_cast<const char*>(&next), 8);
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

// ---- space ------------------------------------------------------------------------------------

void TargetStore::release_extents(const std::vector<Extent>& ex) {
  if (ex.empty()) return;
  if (active_reads_.empty()) {
    for (const Extent& e : ex) {
      Status st = alloc_.free(e.disk, e.len);
      if (!st.is_ok()) log::error("{}: {}", who(), st.to_string());
    }
    return;
  }
  for (const Extent& e : ex) deferred_free_.emplace_back(read_gen_, e);
  ++read_gen_;
}

void TargetStore::reclaim() {
  if (deferred_free_.empty()) return;
  uint64_t oldest =
      active_reads_.empty() ? std::numeric_limits<uint64_t>::max() : *active_reads_.begin();
  std::erase_if(deferred_free_, [&](const std::pair<uint64_t, Extent>& p) {
    if (p.first >= oldest) return false;
    Status st = alloc_.free(p.second.disk, p.second.len);
    if (!st.is_ok()) log::error("{}: {}", who(), st.to_string());
    return true;
  });
}

uint64_t TargetStore::reserve() const {
  // The next checkpoint holds at most what the last one did plus what the log added since.
  uint64_t grow = ckpt_bytes_ + (wal_ ? wal_->since(ckpt_mark_) : 0);
  return grow + grow / 4 + (2u << 20);
}

Status TargetStore::need_space(uint64_t bytes) {
  uint64_t keep = reserve();
  if (alloc_.free_bytes() >= bytes + keep) return Status();
  if (opts_.aggregation_interval.count() > 0 && !space_wanted_) {
    space_wanted_ = true;  // deleted or overwritten data may be waiting for aggregation
    bg_cv_.notify_all();
  }
  return Status(Errc::no_space,
                fmt::format("{}: data region full ({} bytes free, {} needed, {} kept for "
                            "the next checkpoint)",
                            who(), alloc_.free_bytes(), bytes, keep));
}

// ---- checkpoints ------------------------------------------------------------------------------

void TargetStore::maintenance_lock() {
  NoLock nl;
  while (maint_busy_) maint_cv_.wait(nl);
  maint_busy_ = true;
}

void TargetStore::maintenance_unlock() {
  maint_busy_ = false;
  maint_cv_.notify_all();
}

Status TargetStore::checkpoint() {
  maintenance_lock();
  Status st = checkpoint_locked();
  maintenance_unlock();
  return st;
}

Status TargetStore::checkpoint_locked() {
  auto t0 = std::chrono::steady_clock::now();
  const WalMark mark = wal_->mark();
  const uint64_t hlc = hlc_.last();
  std::vector<Extent> freeing = std::move(pending_free_);
  uint64_t freeing_bytes = pending_bytes_;
  pending_free_.clear();
  pending_bytes_ = 0;
  std::vector<Extent> written;
  std::vector<DirEntry> dir;
  uint64_t entries = 0;
  uint64_t bytes = 0;
  auto fail = [&](Status st) {
    release_extents(written);
    pending_free_.insert(pending_free_.end(), freeing.begin(), freeing.end());
    pending_bytes_ += freeing_bytes;
    log::error("{}: checkpoint failed: {}", who(), st.to_string());
    return st;
  };
  // Writes `data` to a newly allocated extent of the data region.
  auto put = [&](const uint8_t* data, size_t len) -> Result<Extent> {
    auto off = alloc_.alloc(len);
    if (!off) {
      return Status(Errc::no_space, fmt::format("{}: no room for a checkpoint: {}",
                                                who(), off.status().message()));
    }
    Extent e{*off, static_cast<uint32_t>(len), crc32c({data, len})};
    written.push_back(e);
    Buffer buf(round_block(len));
    std::memcpy(buf.data(), data, len);
    std::memset(buf.data() + len, 0, round_block(len) - len);
    auto w = q_->write(e.disk, buf.data(), round_block(len));
    if (!w) return w.status();
    return e;
  };

  struct Ref {
    const ObjectId* oid;
    const std::string* dkey;
    const std::string* akey;
    uint8_t level;
    const std::vector<uint64_t>* punches;
    const AkeyVal* a;
  };
  std::vector<Ref> refs;
  size_t est = 0;
  static const std::string kEmpty;
  // Builds one chunk from the collected entries (no suspension) and writes it (suspends).
  auto flush = [&]() -> Status {
    if (refs.empty()) return Status();
    capnp::MallocMessageBuilder b(static_cast<unsigned>(est / 8 + 1024));
    auto list = b.initRoot<schema::CkptChunk>().initEntries(static_cast<unsigned>(refs.size()));
    for (size_t i = 0; i < refs.size(); ++i) {
      const Ref& r = refs[i];
      auto e = list[static_cast<unsigned>(i)];
      e.setOidHi(r.oid->hi);
      e.setOidLo(r.oid->lo);
      e.setDkey(as_data(*r.dkey));
      e.setAkey(as_data(*r.akey));
      e.setLevel(r.level);
      auto p = e.initPunches(static_cast<unsigned>(r.punches->size()));
      for (size_t j = 0; j < r.punches->size(); ++j)
        p.set(static_cast<unsigned>(j), (*r.punches)[j]);
      if (r.a != nullptr) {
        e.setKind(r.a->kind == ValueKind::array ? 1 : 0);
        e.setRsize(r.a->rsize);
        auto vs = e.initVersions(static_cast<unsigned>(r.a->versions.size()));
        for (size_t j = 0; j < r.a->versions.size(); ++j) {
          version_to(vs[static_cast<unsigned>(j)], r.a->versions[j]);
        }
      }
    }
    entries += refs.size();
    refs.clear();
    est = 0;
    auto words = capnp::messageToFlatArray(b);
    auto chunk = words.asBytes();
    auto e = put(chunk.begin(), chunk.size());
    if (!e) return e.status();
    dir.push_back(DirEntry{e->disk, e->len, static_cast<uint32_t>(e->csum)});
    bytes += round_block(chunk.size());
    return Status();
  };
  // Map iterators stay valid across the writes' suspensions: nothing erases from the index
  // while maintenance is held (updates only insert).
  for (auto oit = objects_.begin(); oit != objects_.end(); ++oit) {
    if (!oit->second.punches.empty()) {
      refs.push_back({&oit->first, &kEmpty, &kEmpty, 0, &oit->second.punches, nullptr});
      est += 64 + 8 * oit->second.punches.size();
    }
    for (auto dit = oit->second.dkeys.begin(); dit != oit->second.dkeys.end(); ++dit) {
      if (!dit->second.punches.empty()) {
        refs.push_back({&oit->first, &dit->first, &kEmpty, 1, &dit->second.punches, nullptr});
        est += 64 + dit->first.size() + 8 * dit->second.punches.size();
      }
      for (auto ait = dit->second.akeys.begin(); ait != dit->second.akeys.end(); ++ait) {
        const AkeyVal& a = ait->second;
        refs.push_back({&oit->first, &dit->first, &ait->first, 2, &a.punches, &a});
        est += 80 + dit->first.size() + ait->first.size() + 8 * a.punches.size();
        for (const Version& v : a.versions)
          est += 96 + v.inline_data.size() + 24 * v.extents.size();
        if (est >= kChunkTarget) {
          Status st = flush();
          if (!st.is_ok()) return fail(st);
        }
      }
    }
  }
  if (Status st = flush(); !st.is_ok()) return fail(st);

  CkptHeader h{};
  std::memcpy(h.magic, kCkptMagic, sizeof(h.magic));
  h.version = 1;
  h.seq = ckpt_seq_ + 1;
  h.incarnation = incarnation_;
  h.wal_lsn = mark.lsn;
  h.wal_pos = mark.pos;
  h.wal_total = mark.total;
  h.hlc = hlc;
  h.agg_epoch = agg_epoch_;
  h.chunks = dir.size();
  h.entries = entries;
  h.bytes = bytes;
  h.created_ns = static_cast<uint64_t>(target_.env().wall().count());
  if (!dir.empty()) {
    auto e = put(reinterpret_cast<const uint8_t*>(dir.data()), dir.size() * sizeof(DirEntry));
    if (!e) return fail(e.status());
    h.dir_disk = e->disk;
    h.dir_len = e->len;
    h.dir_crc = static_cast<uint32_t>(e->csum);
  }
  if (Status st = q_->sync(); !st.is_ok()) return fail(st);
  h.crc = struct_crc(h);
  Buffer block(kBlock);
  std::memset(block.data(), 0, kBlock);
  std::memcpy(block.data(), &h, sizeof(h));
  auto w = q_->write(kCkptSlot0 + (h.seq % 2) * kBlock, block.data(), kBlock);
  if (!w) return fail(w.status());
  if (Status st = q_->sync(); !st.is_ok()) return fail(st);

  // The new checkpoint is durable: the old one, what aggregation dropped before it and the log
  // before its mark are no longer needed.
  release_extents(ckpt_extents_);
  release_extents(freeing);
  ckpt_extents_ = std::move(written);
  ckpt_bytes_ = bytes + round_block(dir.size() * sizeof(DirEntry));
  ckpt_seq_ = h.seq;
  ckpt_mark_ = mark;
  ++checkpoints_;
  wal_->release(mark);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log::info("{}: checkpoint {}: {} entries, {} chunks, {} KiB in {:.1f} ms",
            who(), h.seq, entries, dir.size(), ckpt_bytes_ >> 10, ms);
  return Status();
}

// ---- aggregation ------------------------------------------------------------------------------

void TargetStore::aggregate_akey(const Object& o, const Dkey& d, AkeyVal& a,
                                 const std::vector<uint64_t>& bounds, AggregateStats& st) {
  const uint64_t top = bounds.back();
  ++st.akeys_scanned;
  size_t old = 0;
  for (const Version& v : a.versions) old += v.epoch <= top ? 1 : 0;
  bool punched =
      max_le(o.punches, top) != 0 || max_le(d.punches, top) != 0 || max_le(a.punches, top) != 0;
  bool range_punch = std::any_of(a.versions.begin(), a.versions.end(),
                                 [top](const Version& v) { return v.punch && v.epoch <= top; });
  if (old <= 1 && !punched && !range_punch) return;

  auto drop = [&](Version& v) {
    for (const Extent& e : v.extents) {
      pending_free_.push_back(e);
      pending_bytes_ += round_block(e.len);
      st.bytes_freed += round_block(e.len);
    }
    ++st.versions_dropped;
    --versions_;
  };
  const size_t n = a.versions.size();
  std::vector<Version> kept;
  kept.reserve(n);
  if (a.kind == ValueKind::single) {
    std::vector<bool> keep(n, false);
    for (size_t i = 0; i < n; ++i) keep[i] = a.versions[i].epoch > top;
    for (uint64_t b : bounds) {
      ptrdiff_t i = newest_single(a, floor_of(o, d, a, b), b);
      if (i >= 0) keep[static_cast<size_t>(i)] = true;
    }
    for (size_t i = 0; i < n; ++i) {
      if (keep[i]) {
        kept.push_back(std::move(a.versions[i]));
      } else {
        drop(a.versions[i]);
      }
    }
  } else {
    // For each version: the byte ranges where it is on top at some boundary epoch.
    std::vector<std::vector<std::pair<uint64_t, uint64_t>>> tops(n);
    for (uint64_t b : bounds) {
      for (const auto& [lo, s] : resolve(a, floor_of(o, d, a, b), b, 0, kMaxEpoch)) {
        tops[s.ver].emplace_back(lo, s.end);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      Version& v = a.versions[i];
      if (v.epoch > top) {
        kept.push_back(std::move(v));
        continue;
      }
      auto& r = tops[i];
      if (r.empty()) {
        drop(v);
        continue;
      }
      std::sort(r.begin(), r.end());
      std::vector<std::pair<uint64_t, uint64_t>> runs;
      for (auto [lo, hi] : r) {
        if (!runs.empty() && lo <= runs.back().second) {
          runs.back().second = std::max(runs.back().second, hi);
        } else {
          runs.emplace_back(lo, hi);
        }
      }
      if (runs.size() == 1 && runs[0].first == v.lo && runs[0].second == v.hi) {
        kept.push_back(std::move(v));
        continue;
      }
      ++st.versions_trimmed;
      if (v.extents.empty()) {
        // Inline data and punch entries split freely: one version per run.
        for (auto [lo, hi] : runs) {
          Version s;
          s.epoch = v.epoch;
          s.punch = v.punch;
          s.csum_type = v.csum_type;
          s.lo = lo;
          s.hi = hi;
          s.offset = lo;
          if (!v.punch) {
            s.length = hi - lo;
            s.inline_data = v.inline_data.substr(lo - v.offset, hi - lo);
          }
          kept.push_back(std::move(s));
          ++versions_;
        }
        --versions_;
        continue;
      }
      // Stored pieces: runs that share a piece stay one version (its window widened over the
      // gap, which newer versions cover at every boundary); pieces outside every run are freed.
      std::vector<uint64_t> pstart(v.extents.size());
      uint64_t p = v.offset;
      for (size_t k = 0; k < v.extents.size(); ++k) {
        pstart[k] = p;
        p += v.extents[k].len;
      }
      auto piece_of = [&](uint64_t byte) {
        return static_cast<size_t>(std::upper_bound(pstart.begin(), pstart.end(), byte) -
                                   pstart.begin() - 1);
      };
      std::vector<bool> used(v.extents.size(), false);
      size_t emitted = 0;
      for (size_t k = 0; k < runs.size();) {
        size_t first = piece_of(runs[k].first);
        size_t last = piece_of(runs[k].second - 1);
        uint64_t lo = runs[k].first;
        uint64_t hi = runs[k].second;
        size_t j = k + 1;
        while (j < runs.size() && piece_of(runs[j].first) <= last) {
          last = std::max(last, piece_of(runs[j].second - 1));
          hi = runs[j].second;
          ++j;
        }
        Version s;
        s.epoch = v.epoch;
        s.csum_type = v.csum_type;
        s.offset = pstart[first];
        s.lo = lo;
        s.hi = hi;
        for (size_t q = first; q <= last; ++q) {
          s.extents.push_back(v.extents[q]);
          s.length += v.extents[q].len;
          used[q] = true;
        }
        kept.push_back(std::move(s));
        ++emitted;
        k = j;
      }
      for (size_t q = 0; q < v.extents.size(); ++q) {
        if (used[q]) continue;
        pending_free_.push_back(v.extents[q]);
        pending_bytes_ += round_block(v.extents[q].len);
        st.bytes_freed += round_block(v.extents[q].len);
      }
      versions_ += emitted - 1;
    }
    std::sort(kept.begin(), kept.end(),
              [](const Version& x, const Version& y) { return x.epoch < y.epoch; });
    // Range punches with nothing older beneath them hide nothing any more.
    std::vector<Version> rest;
    rest.reserve(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) {
      Version& v = kept[i];
      if (v.punch && v.epoch <= top) {
        bool hides = false;
        for (size_t j = 0; j < i && !hides; ++j) {
          hides =
              !kept[j].punch && kept[j].epoch < v.epoch && kept[j].lo < v.hi && v.lo < kept[j].hi;
        }
        if (!hides) {
          ++st.punches_dropped;
          --versions_;
          continue;
        }
      }
      rest.push_back(std::move(v));
    }
    kept = std::move(rest);
  }
  a.versions = std::move(kept);
  // An akey punch with no older version left hides nothing.
  uint64_t oldest = a.versions.empty() ? kMaxEpoch : a.versions.front().epoch;
  size_t before = a.punches.size();
  std::erase_if(a.punches, [&](uint64_t p) { return p <= top && oldest > p; });
  st.punches_dropped += before - a.punches.size();
}

Result<AggregateStats> TargetStore::aggregate(uint64_t epoch, std::vector<uint64_t> protect) {
  maintenance_lock();
  struct Unlock {
    TargetStore* s;
    ~Unlock() { s->maintenance_unlock(); }
  } unlock{this};
  AggregateStats st;
  uint64_t top = epoch == 0 ? hlc_.last() : std::min(epoch, hlc_.last());
  // Changes still on their way to the log may carry older epochs: stay below them.
  if (!inflight_epochs_.empty()) top = std::min(top, *inflight_epochs_.begin() - 1);
  std::vector<uint64_t> bounds;
  for (uint64_t e : protect) bounds.push_back(e);
  for (uint64_t e : protected_) bounds.push_back(e);
  std::erase_if(bounds, [top](uint64_t e) { return e >= top || e == 0; });
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  bounds.push_back(top);
  st.epoch = top;

  // Oldest version epoch under a node, to decide whether its punches still hide anything.
  auto oldest_in = [](const Dkey& d) {
    uint64_t m = kMaxEpoch;
    for (const auto& [k, a] : d.akeys) {
      if (!a.versions.empty()) m = std::min(m, a.versions.front().epoch);
    }
    return m;
  };
  auto trim = [&](std::vector<uint64_t>& punches, uint64_t oldest) {
    size_t before = punches.size();
    std::erase_if(punches, [&](uint64_t p) { return p <= top && oldest > p; });
    st.punches_dropped += before - punches.size();
  };
  uint32_t since_yield = 0;
  for (auto oit = objects_.begin(); oit != objects_.end();) {
    const ObjectId oid = oit->first;
    std::string last;
    bool started = false;
    while (true) {
      auto cur = objects_.find(oid);
      if (cur == objects_.end()) break;
      Object& o = cur->second;
      auto dit = started ? o.dkeys.upper_bound(last) : o.dkeys.begin();
      if (dit == o.dkeys.end()) break;
      last = dit->first;
      started = true;
      Dkey& d = dit->second;
      for (auto ait = d.akeys.begin(); ait != d.akeys.end();) {
        aggregate_akey(o, d, ait->second, bounds, st);
        ++since_yield;
        if (ait->second.versions.empty() && ait->second.punches.empty()) {
          ait = d.akeys.erase(ait);
          ++st.keys_removed;
        } else {
          ++ait;
        }
      }
      trim(d.punches, oldest_in(d));
      if (d.akeys.empty() && d.punches.empty()) {
        o.dkeys.erase(dit);
        ++st.keys_removed;
      }
      if (since_yield >= opts_.aggregation_batch) {
        since_yield = 0;
        boost::this_fiber::yield();
      }
    }
    auto cur = objects_.find(oid);
    if (cur != objects_.end()) {
      uint64_t m = kMaxEpoch;
      for (const auto& [k, d] : cur->second.dkeys) m = std::min(m, oldest_in(d));
      trim(cur->second.punches, m);
      if (cur->second.dkeys.empty() && cur->second.punches.empty()) {
        objects_.erase(cur);
        ++st.keys_removed;
      }
    }
    oit = objects_.upper_bound(oid);
  }
  agg_epoch_ = std::max(agg_epoch_, top);
  ++aggregations_;
  bool changed =
      st.versions_dropped + st.versions_trimmed + st.punches_dropped + st.keys_removed != 0;
  if (changed || !pending_free_.empty()) TESSERA_TRY(checkpoint_locked());
  if (changed) {
    log::info(
        "{}: aggregated to epoch {}: {} versions dropped, {} trimmed, {} punches "
        "dropped, {} keys removed, {} bytes freed",
        who(), top, st.versions_dropped, st.versions_trimmed, st.punches_dropped,
        st.keys_removed, st.bytes_freed);
  }
  return st;
}

void TargetStore::set_protected_epochs(std::vector<uint64_t> epochs) {
  std::sort(epochs.begin(), epochs.end());
  protected_ = std::move(epochs);
}

// ---- background -------------------------------------------------------------------------------

void TargetStore::background() {
  using Clock = std::chrono::steady_clock;
  NoLock nl;
  auto next_ckpt = Clock::now() + opts_.checkpoint_interval;
  auto next_agg = Clock::now() + opts_.aggregation_interval;
  // Space pressure: a write that found the data region full asks for a pass at once that
  // aggregates up to kPressureDelay ago (not aggregation_delay), so deleted and overwritten data
  // frees promptly; a pass that freed nothing waits kPressureIdle before the next one.
  constexpr auto kPressureDelay = std::chrono::seconds(1);
  constexpr auto kPressureIdle = std::chrono::seconds(5);
  auto next_pressure = Clock::now();
  while (!bg_stop_) {
    auto wake = Clock::now() + std::chrono::seconds(3600);
    if (opts_.checkpoint_interval.count() > 0) wake = std::min(wake, next_ckpt);
    if (opts_.aggregation_interval.count() > 0) wake = std::min(wake, next_agg);
    if (space_wanted_) wake = std::min(wake, next_pressure);
    if (!ckpt_wanted_ && !(space_wanted_ && Clock::now() >= next_pressure)) {
      bg_cv_.wait_until(nl, wake);
    }
    if (bg_stop_) break;
    auto now = Clock::now();
    bool interval_due = opts_.checkpoint_interval.count() > 0 && now >= next_ckpt;
    // Nothing logged since the last checkpoint: nothing to write; look again next period.
    if (interval_due && wal_->since(ckpt_mark_) == 0) {
      interval_due = false;
      next_ckpt = now + opts_.checkpoint_interval;
    }
    if (ckpt_wanted_ || wal_->used() > wal_len_ / 2 || interval_due) {
      ckpt_wanted_ = false;
      Status st = checkpoint();
      if (!st.is_ok()) {
        wal_->fail_pending(Status(
            Errc::no_space,
            fmt::format("write-ahead log full and the checkpoint that would free it failed: {}",
                        st.to_string())));
      }
      next_ckpt = Clock::now() + opts_.checkpoint_interval;
    }
    if (space_wanted_ && now >= next_pressure) {
      space_wanted_ = false;
      uint64_t freed = 0;
      uint64_t e = epoch_at_wall(target_.env().wall() - kPressureDelay);
      if (e > agg_epoch_) {
        auto r = aggregate(e);
        if (r) {
          freed = r->bytes_freed;
          log::info("{}: data region full: aggregation freed {} bytes", who(), freed);
        } else {
          log::warn("{}: aggregation under space pressure: {}", who(), r.status().to_string());
        }
      }
      next_pressure = Clock::now() + (freed > 0 ? std::chrono::seconds(0) : kPressureIdle);
    }
    if (opts_.aggregation_interval.count() > 0 && now >= next_agg) {
      uint64_t e = epoch_at_wall(target_.env().wall() - opts_.aggregation_delay);
      if (e > agg_epoch_) {
        auto r = aggregate(e);
        if (!r) log::warn("{}: aggregation: {}", who(), r.status().to_string());
      }
      next_agg = Clock::now() + opts_.aggregation_interval;
    }
  }
}

StoreStats TargetStore::stats() const {
  StoreStats s;
  s.capacity = alloc_.capacity();
  s.used = alloc_.used_bytes();
  s.checkpoint_bytes = ckpt_bytes_;
  s.pending_free = pending_bytes_;
  s.reserve = reserve();
  s.wal_used = wal_ ? wal_->used() : 0;
  s.wal_capacity = wal_len_;
  s.objects = objects_.size();
  s.versions = versions_;
  s.updates = updates_;
  s.fetches = fetches_;
  s.checkpoints = checkpoints_;
  s.aggregations = aggregations_;
  s.aggregation_epoch = agg_epoch_;
  s.recovery_ms = recovery_ms_;
  return s;
}

}  // namespace tessera::storage
