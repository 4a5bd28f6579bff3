#include "storage/store.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <isa-l/crc.h>
#include <kj/exception.h>

#include <algorithm>
#include <boost/fiber/future.hpp>
#include <chrono>
#include <cstring>
#include <limits>

#include "actors/schema/capnp_util.hpp"
#include "core/log.hpp"
#include "storage/wal.capnp.h"

namespace tessera::storage {
namespace {

constexpr char kSuperMagic[8] = {'T', 'S', 'R', 'A', 'S', 'T', 'O', '1'};
constexpr uint64_t kBlock = 4096;

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

uint32_t sb_crc(Superblock sb) {
  sb.crc = 0;
  return crc32_iscsi(reinterpret_cast<unsigned char*>(&sb), sizeof(sb), 0);
}

uint32_t crc32c(std::span<const uint8_t> d) {
  return crc32_iscsi(const_cast<uint8_t*>(d.data()), static_cast<int>(d.size()), 0);
}

using capn::as_data;
using capn::from_data;

}  // namespace

TargetStore::TargetStore(Target& t, std::unique_ptr<BlockQueue> q, const StoreOptions& opts)
    : target_(t), q_(std::move(q)), opts_(opts), hlc_(t.env()) {}

TargetStore::~TargetStore() {
  if (q_) target_.remove_poller(q_.get());
}

void TargetStore::close() {
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
    if (std::memcmp(sb.magic, kSuperMagic, sizeof(kSuperMagic)) != 0) {
      return Status(Errc::invalid_argument,
                    "the storage file is not a Tessera target (bad superblock magic); "
                    "refusing to overwrite it");
    }
    if (sb_crc(sb) != sb.crc) {
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
  s->wal_->start();
  return s;
}

Status TargetStore::write_superblock() {
  Superblock sb{};
  std::memcpy(sb.magic, kSuperMagic, sizeof(sb.magic));
  sb.version = 1;
  sb.block = kBlock;
  sb.device_size = q_->size();
  sb.wal_off = wal_off_;
  sb.wal_len = wal_len_;
  sb.data_off = data_off_;
  sb.data_len = q_->size() - data_off_;
  sb.incarnation = incarnation_;
  sb.created_ns = static_cast<uint64_t>(target_.env().wall().count());
  sb.target_index = opts_.target_index;
  sb.crc = sb_crc(sb);
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
  if (size < kBlock + wal + 16 * kBlock) {
    return Status(
        Errc::invalid_argument,
        fmt::format("storage of {} bytes is too small for a {} byte log plus data", size, wal));
  }
  incarnation_ = target_.env().random() | 1;
  wal_off_ = kBlock;
  wal_len_ = wal;
  data_off_ = kBlock + wal;
  if (opts_.zero_fill) TESSERA_TRY(zero_fill(kBlock, size));
  wal_ = std::make_unique<Wal>(target_, *q_, wal_off_, wal_len_, incarnation_);
  TESSERA_TRY(wal_->format());
  alloc_.reset(data_off_, size - data_off_);
  // The superblock goes last: a crash before this point leaves a blank file that formats again.
  TESSERA_TRY(write_superblock());
  log::info("target {}: formatted {} bytes (log {} bytes, data {} bytes)", opts_.target_index, size,
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
      }
      if (--live == 0) all.set_value();
    });
  }
  all.get_future().get();
  TESSERA_TRY(first_error);
  TESSERA_TRY(q_->sync());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("target {}: initialized {} MiB in {:.2f} s", opts_.target_index, (to - from) >> 20,
            secs);
  return Status();
}

Status TargetStore::recover() {
  wal_ = std::make_unique<Wal>(target_, *q_, wal_off_, wal_len_, incarnation_);
  TESSERA_TRY(
      wal_->replay([this](std::span<const uint8_t> rec) { return apply_record(rec, true); }));
  alloc_.reset(data_off_, q_->size() - data_off_);
  for (auto& [oid, obj] : objects_) {
    for (auto& [dk, d] : obj.dkeys) {
      for (auto& [ak, a] : d) {
        for (auto& v : a.versions) {
          for (auto& e : v.extents) {
            Status st = alloc_.mark_used(e.disk, e.len);
            if (!st.is_ok()) return Status(Errc::internal, "recovered index: " + st.message());
          }
        }
      }
    }
  }
  log::info("target {}: recovered {} objects, {} bytes of data in use", opts_.target_index,
            objects_.size(), alloc_.used_bytes());
  return Status();
}

Status TargetStore::apply_record(std::span<const uint8_t> bytes, bool replaying) {
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
    if (rec.isPunch()) {
      std::string dkey = from_data(rec.getDkey());
      std::string akey = from_data(rec.getAkey());
      apply_punch(oid, dkey, akey);
      return Status();
    }
    auto u = rec.getUpdate();
    Version v;
    v.epoch = rec.getEpoch();
    v.offset = u.getOffset();
    v.length = u.getLength();
    v.crc = u.getCrc();
    if (u.hasInline()) v.inline_data = from_data(u.getInline());
    for (auto e : u.getExtents()) {
      if (e.getDisk() < data_off_ || e.getDisk() + e.getLength() > q_->size()) {
        return Status(Errc::internal, "WAL record points outside the data region");
      }
      v.extents.push_back(Extent{e.getDisk(), e.getLength(), e.getCrc()});
    }
    apply_update(oid, from_data(rec.getDkey()), from_data(rec.getAkey()),
                 u.getKind() == 1 ? ValueKind::array : ValueKind::single, std::move(v), replaying);
  } catch (const kj::Exception& e) {
    return Status(Errc::internal,
                  fmt::format("undecodable WAL record: {}", e.getDescription().cStr()));
  }
  return Status();
}

void TargetStore::apply_update(const ObjectId& oid, std::string dkey, std::string akey,
                               ValueKind kind, Version v, bool replaying) {
  AkeyVal& a = objects_[oid].dkeys[std::move(dkey)][std::move(akey)];
  if (a.versions.empty()) a.kind = kind;
  if (kind == ValueKind::single) {
    // A single value keeps only its newest version; the loser's space is released.
    if (!a.versions.empty() && a.versions.back().epoch > v.epoch) {
      if (!replaying) release(v);
      return;
    }
    if (!a.versions.empty() && !replaying) release(a.versions.back());
    a.versions.clear();
    a.versions.push_back(std::move(v));
    return;
  }
  auto pos = std::upper_bound(a.versions.begin(), a.versions.end(), v.epoch,
                              [](uint64_t e, const Version& x) { return e < x.epoch; });
  a.versions.insert(pos, std::move(v));
}

void TargetStore::apply_punch(const ObjectId& oid, std::string_view dkey, std::string_view akey) {
  auto oit = objects_.find(oid);
  if (oit == objects_.end()) return;
  auto drop_akey = [this](AkeyVal& a) {
    for (auto& v : a.versions) release(v);
  };
  auto drop_dkey = [&](Dkey& d) {
    for (auto& [k, a] : d) drop_akey(a);
  };
  if (dkey.empty()) {
    for (auto& [k, d] : oit->second.dkeys) drop_dkey(d);
    objects_.erase(oit);
    return;
  }
  auto dit = oit->second.dkeys.find(dkey);
  if (dit == oit->second.dkeys.end()) return;
  if (akey.empty()) {
    drop_dkey(dit->second);
    oit->second.dkeys.erase(dit);
  } else {
    auto ait = dit->second.find(akey);
    if (ait == dit->second.end()) return;
    drop_akey(ait->second);
    dit->second.erase(ait);
    if (dit->second.empty()) oit->second.dkeys.erase(dit);
  }
  if (oit->second.dkeys.empty()) objects_.erase(oit);
}

void TargetStore::release(const Version& v) {
  release_extents(v.extents);
}

void TargetStore::release_extents(const std::vector<Extent>& ex) {
  if (ex.empty()) return;
  if (active_reads_.empty() || wal_ == nullptr) {
    for (const Extent& e : ex) {
      Status st = alloc_.free(e.disk, e.len);
      if (!st.is_ok()) log::error("target {}: {}", opts_.target_index, st.to_string());
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
    if (!st.is_ok()) log::error("target {}: {}", opts_.target_index, st.to_string());
    return true;
  });
}

Result<uint64_t> TargetStore::update(const ObjectId& oid, std::string_view dkey,
                                     std::string_view akey, ValueKind kind, uint64_t offset,
                                     std::span<const uint8_t> data, uint32_t crc) {
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
  if (kind == ValueKind::array) {
    if (data.empty()) return Status(Errc::invalid_argument, "empty array extent");
    if (offset > std::numeric_limits<uint64_t>::max() - data.size()) {
      return Status(Errc::invalid_argument, "array extent overflows the 64-bit offset space");
    }
  }
  if (crc32c(data) != crc) {
    return Status(Errc::checksum,
                  "update payload does not match its checksum (corrupted in transit)");
  }
  auto oit = objects_.find(oid);
  if (oit != objects_.end()) {
    auto dit = oit->second.dkeys.find(dkey);
    if (dit != oit->second.dkeys.end()) {
      auto ait = dit->second.find(akey);
      if (ait != dit->second.end() && !ait->second.versions.empty() && ait->second.kind != kind) {
        return Status(
            Errc::invalid_argument,
            fmt::format("akey holds {}, not {}",
                        ait->second.kind == ValueKind::array ? "an array" : "a single value",
                        kind == ValueKind::array ? "an array" : "a single value"));
      }
    }
  }

  Version v;
  v.epoch = hlc_.tick();
  v.offset = kind == ValueKind::array ? offset : 0;
  v.length = data.size();
  if (data.size() < opts_.inline_threshold) {
    v.inline_data.assign(reinterpret_cast<const char*>(data.data()), data.size());
    v.crc = crc;
  } else {
    Buffer staging;
    for (uint64_t pos = 0; pos < data.size(); pos += opts_.max_extent) {
      uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(opts_.max_extent, data.size() - pos));
      auto off = alloc_.alloc(len);
      if (!off) {
        release_extents(v.extents);
        return Status(Errc::no_space,
                      fmt::format("target {}: {}", opts_.target_index, off.status().message()));
      }
      Extent e{*off, len, crc32c(data.subspan(pos, len))};
      v.extents.push_back(e);
      uint64_t disk_len = round_block(len);
      const uint8_t* src = data.data() + pos;
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

  capnp::MallocMessageBuilder b(512);
  auto rec = b.initRoot<schema::WalRecord>();
  rec.setEpoch(v.epoch);
  rec.setOidHi(oid.hi);
  rec.setOidLo(oid.lo);
  rec.setDkey(as_data(dkey));
  rec.setAkey(as_data(akey));
  auto u = rec.initUpdate();
  u.setKind(kind == ValueKind::array ? 1 : 0);
  u.setOffset(v.offset);
  u.setLength(v.length);
  u.setCrc(v.crc);
  if (!v.inline_data.empty()) u.setInline(as_data(v.inline_data));
  auto ex = u.initExtents(static_cast<unsigned>(v.extents.size()));
  for (size_t i = 0; i < v.extents.size(); ++i) {
    ex[i].setDisk(v.extents[i].disk);
    ex[i].setLength(v.extents[i].len);
    ex[i].setCrc(v.extents[i].crc);
  }
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  Status st = wal_->append(std::span<const uint8_t>(bytes.begin(), bytes.size()));
  if (!st.is_ok()) {
    release_extents(v.extents);
    return st;
  }
  uint64_t epoch = v.epoch;
  apply_update(oid, std::string(dkey), std::string(akey), kind, std::move(v), false);
  ++updates_;
  return epoch;
}

Result<Buffer> TargetStore::read_extent(const Extent& e) {
  Buffer buf(round_block(e.len));
  auto r = q_->read(e.disk, buf.data(), buf.size());
  if (!r) return r.status();
  buf.truncate(e.len);
  if (crc32c(buf.span()) != e.crc) {
    return Status(Errc::checksum, fmt::format("target {}: extent at {} ({} bytes) fails its crc32c",
                                              opts_.target_index, e.disk, e.len));
  }
  return buf;
}

Result<FetchResult> TargetStore::fetch(const ObjectId& oid, std::string_view dkey,
                                       std::string_view akey, ValueKind kind, uint64_t offset,
                                       uint64_t length, uint64_t epoch) {
  ++fetches_;
  auto oit = objects_.find(oid);
  if (oit == objects_.end()) return Status(Errc::not_found, "no such object");
  auto dit = oit->second.dkeys.find(dkey);
  if (dit == oit->second.dkeys.end()) return Status(Errc::not_found, "no such dkey");
  auto ait = dit->second.find(akey);
  if (ait == dit->second.end()) return Status(Errc::not_found, "no such akey");
  if (ait->second.kind != kind) {
    return Status(Errc::invalid_argument, ait->second.kind == ValueKind::array
                                              ? "akey holds an array; fetch it as an array"
                                              : "akey holds a single value; fetch it as one");
  }
  if (epoch == 0) epoch = std::numeric_limits<uint64_t>::max();
  // Copy what this fetch needs from the index: the fiber yields on I/O and the index may change.
  std::vector<Version> vis;
  for (const Version& v : ait->second.versions) {
    if (v.epoch <= epoch) vis.push_back(v);
  }
  if (vis.empty()) return Status(Errc::not_found, "no version at or below the requested epoch");

  uint64_t gen = read_gen_;
  active_reads_.insert(gen);
  struct ReadGuard {
    TargetStore* s;
    uint64_t gen;
    ~ReadGuard() {
      s->active_reads_.erase(s->active_reads_.find(gen));
      s->reclaim();
    }
  } guard{this, gen};

  FetchResult out;
  if (kind == ValueKind::single) {
    const Version& v = vis.back();
    out.size = v.length;
    out.epoch = v.epoch;
    if (v.extents.empty()) {
      out.data = Buffer(v.inline_data.data(), v.inline_data.size());
      return out;
    }
    out.data.reset(v.length);
    uint64_t pos = 0;
    for (const Extent& e : v.extents) {
      // Pieces before the last are whole multiples of 4 KiB, so each read lands aligned in place.
      auto r = q_->read(e.disk, out.data.data() + pos, round_block(e.len));
      if (!r) return r.status();
      if (crc32c({out.data.data() + pos, e.len}) != e.crc) {
        return Status(Errc::checksum,
                      fmt::format("target {}: extent at {} ({} bytes) fails its crc32c",
                                  opts_.target_index, e.disk, e.len));
      }
      pos += e.len;
    }
    return out;
  }

  for (const Version& v : vis) out.size = std::max(out.size, v.offset + v.length);
  if (length == 0) length = out.size > offset ? out.size - offset : 0;
  if (length > opts_.max_value) {
    return Status(Errc::too_big, fmt::format("fetch of {} bytes exceeds the {} byte limit", length,
                                             opts_.max_value));
  }
  out.data.reset(length);
  std::memset(out.data.data(), 0, length);
  std::vector<std::pair<uint64_t, uint64_t>> covered;
  const uint64_t end = offset + length;
  for (const Version& v : vis) {
    uint64_t lo = std::max(offset, v.offset);
    uint64_t hi = std::min(end, v.offset + v.length);
    if (lo >= hi) continue;
    out.epoch = std::max(out.epoch, v.epoch);
    covered.emplace_back(lo, hi);
    if (v.extents.empty()) {
      std::memcpy(out.data.data() + (lo - offset), v.inline_data.data() + (lo - v.offset), hi - lo);
      continue;
    }
    uint64_t epos = v.offset;
    for (const Extent& e : v.extents) {
      uint64_t elo = std::max(lo, epos);
      uint64_t ehi = std::min(hi, epos + e.len);
      if (elo < ehi) {
        auto buf = read_extent(e);
        if (!buf) return buf.status();
        std::memcpy(out.data.data() + (elo - offset), buf->data() + (elo - epos), ehi - elo);
      }
      epos += e.len;
    }
  }
  std::sort(covered.begin(), covered.end());
  uint64_t cur = offset;
  for (auto [lo, hi] : covered) {
    if (lo > cur) out.holes.emplace_back(cur, lo - cur);
    cur = std::max(cur, hi);
  }
  if (cur < end) out.holes.emplace_back(cur, end - cur);
  return out;
}

Result<uint64_t> TargetStore::punch(const ObjectId& oid, std::string_view dkey,
                                    std::string_view akey) {
  if (dkey.empty() && !akey.empty()) {
    return Status(Errc::invalid_argument, "punching an akey needs its dkey");
  }
  capnp::MallocMessageBuilder b(256);
  auto rec = b.initRoot<schema::WalRecord>();
  uint64_t epoch = hlc_.tick();
  rec.setEpoch(epoch);
  rec.setOidHi(oid.hi);
  rec.setOidLo(oid.lo);
  rec.setDkey(as_data(dkey));
  rec.setAkey(as_data(akey));
  rec.setPunch();
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  TESSERA_TRY(wal_->append(std::span<const uint8_t>(bytes.begin(), bytes.size())));
  apply_punch(oid, dkey, akey);
  return epoch;
}

Result<ListResult> TargetStore::list(ListScope scope, const ObjectId& oid, std::string_view dkey,
                                     std::string_view anchor, uint32_t limit) const {
  if (limit == 0) limit = 1000;
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
  auto page = [&](const auto& map, auto fill) {
    auto it = anchor.empty() ? map.begin() : map.upper_bound(anchor);
    for (; it != map.end() && out.entries.size() < limit; ++it) {
      ListEntry e;
      e.key = it->first;
      fill(e, it->second);
      out.entries.push_back(std::move(e));
    }
    out.done = it == map.end();
    if (!out.entries.empty()) out.anchor = out.entries.back().key;
  };
  if (scope == ListScope::dkeys) {
    page(oit->second.dkeys, [](ListEntry&, const Dkey&) {});
    return out;
  }
  auto dit = oit->second.dkeys.find(dkey);
  if (dit == oit->second.dkeys.end()) return Status(Errc::not_found, "no such dkey");
  page(dit->second, [](ListEntry& e, const AkeyVal& a) {
    e.kind = a.kind;
    for (const auto& v : a.versions) e.size = std::max(e.size, v.offset + v.length);
  });
  return out;
}

StoreStats TargetStore::stats() const {
  StoreStats s;
  s.capacity = alloc_.capacity();
  s.used = alloc_.used_bytes();
  s.wal_used = wal_ ? wal_->used() : 0;
  s.wal_capacity = wal_len_;
  s.objects = objects_.size();
  s.updates = updates_;
  s.fetches = fetches_;
  return s;
}

}  // namespace tessera::storage
