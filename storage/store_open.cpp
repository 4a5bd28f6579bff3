// TargetStore: opening a target file, formatting a new one, and recovery (checkpoint + log).
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

#include "core/checksum.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"
#include "proto/capnp_util.hpp"
#include "storage/store_internal.hpp"
#include "storage/wal.capnp.h"

namespace tessera::storage {

using namespace detail;

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
      const char v = sb.magic[7];
      if (v == '2') {
        return Status(Errc::invalid_argument,
                      "the storage file holds Tessera target format 2, whose epochs count "
                      "microseconds since 1970 and wrap in 2032; this release (format 3) counts "
                      "epochs from 2021 and cannot order its versions after them. Copy the data "
                      "out with the release that wrote it, then move the file away to format a "
                      "new one");
      }
      return Status(Errc::invalid_argument,
                    fmt::format("the storage file holds Tessera target format '{}', not {}; move "
                                "it away to format a new one",
                                v, kFormatVersion));
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
  // Transactions' read stamps are not kept across a restart: count every key as read now.
  s->reads_.raise_floor(s->hlc_.tick());
  s->wal_->set_full_hook([p = s.get()] {
    p->ckpt_wanted_ = true;
    p->bg_cv_.notify_all();
  });
  s->wal_->set_group_hook([p = s.get()] { return p->dtx_unlogged_record(); });
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
  sb.version = kFormatVersion;
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
  log::info("{}: formatted {} bytes (log {} bytes, data {} bytes)", who(), size, wal_len_,
            size - data_off_);
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
  log::info("{}: initialized {} MiB in {:.2f} s", who(), (to - from) >> 20, secs);
  return Status();
}

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
  // Transactions the log says were aborted put their extents aside for the next checkpoint;
  // their abort is durable, so they are simply free now (nothing below marks them used).
  pending_free_.clear();
  pending_bytes_ = 0;
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
  for (auto& [id, d] : dtx_) {
    for (const Extent& e : d->extents) {
      Status st = alloc_.mark_used(e.disk, e.len);
      if (!st.is_ok()) return Status(Errc::internal, "prepared transaction: " + st.message());
    }
  }
  if (!dtx_.empty()) {
    log::info("{}: {} transactions prepared and not yet decided", who(), dtx_.size());
  }
  recovery_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log::info("{}: recovered {} objects, {} versions, {} bytes of data in use in {:.0f} ms", who(),
            objects_.size(), versions_, alloc_.used_bytes(), recovery_ms_);
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
  ckpt_bytes_ = round_block(best.dir_len);  // counted as when it was written: chunks + directory
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
        ++entries;
        if (e.getLevel() == 3) {
          auto bytes = e.getDtx().asBytes();
          // The prepare record is copied out: it outlives the chunk buffer.
          std::vector<uint64_t> aligned((bytes.size() + 7) / 8);
          std::memcpy(aligned.data(), bytes.begin(), bytes.size());
          TESSERA_TRY(dtx_load({reinterpret_cast<const uint8_t*>(aligned.data()), bytes.size()}));
          continue;
        }
        if (e.getLevel() == 4) {
          for (auto dd : e.getDtxDecided()) {
            dtx_remember(DtxId{dd.getId().getEpoch(), dd.getId().getLeader()}, dd.getCommitted());
          }
          continue;
        }
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
      }
      if (ds.failed()) return Status(Errc::internal, "undecodable checkpoint chunk: " + ds.what());
    } catch (const kj::Exception& ex) {
      return Status(Errc::internal,
                    fmt::format("undecodable checkpoint chunk: {}", ex.getDescription().cStr()));
    }
  }
  log::info("{}: checkpoint {} loaded: {} entries in {} chunks", who(), best.seq, entries,
            best.chunks);
  return Status();
}

Status TargetStore::apply_record(std::span<const uint8_t> bytes) {
  return with_record(bytes, [&](schema::WalRecord::Reader rec) -> Status {
    if (rec.isDtxPrepare()) return dtx_load(bytes);
    if (rec.isDtxCommit() || rec.isDtxAbort()) {
      for (auto id : rec.isDtxCommit() ? rec.getDtxCommit().getIds() : rec.getDtxAbort().getIds()) {
        dtx_apply_outcome(DtxId{id.getEpoch(), id.getLeader()}, rec.isDtxCommit());
      }
      return Status();
    }
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
    return Status();
  });
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
  } else if (a.kind != kind || (kind == ValueKind::array && a.rsize != rsize)) {
    // Never live (hold_kind refuses it first); a log written before kinds were held may hold
    // one: the akey keeps the kind of its first version, and this one is left out.
    log::error("{}: a version at epoch {} of another kind than its akey's is left out", who(),
               v.epoch);
    return;
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

}  // namespace tessera::storage
