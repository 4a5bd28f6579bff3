// TargetStore: space, checkpoints, aggregation, the background fiber and the counters.
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
  // Part of the room kept is for what the log added since the last checkpoint: a checkpoint
  // now gives that back, when that part is what is missing (a store truly full would otherwise
  // write a checkpoint for every refused write). Writers short of room at once share one
  // checkpoint (the first takes maintenance, the others find it done when they get it).
  const uint64_t logged = wal_ ? wal_->since(ckpt_mark_) : 0;
  const uint64_t missing = bytes + keep - alloc_.free_bytes();
  if (logged > 0 && logged + logged / 4 >= missing) {
    const uint64_t seen = checkpoints_;
    maintenance_lock();
    Status st = checkpoints_ == seen ? checkpoint_locked() : Status();
    maintenance_unlock();
    if (!st.is_ok()) log::warn("{}: checkpoint to make room: {}", who(), st.to_string());
    keep = reserve();
    if (alloc_.free_bytes() >= bytes + keep) return Status();
  }
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
  // Transactions as of the mark, taken before anything suspends: one committed while the
  // checkpoint is written stays prepared in it, and the commit, logged after the mark, is
  // replayed over it.
  std::vector<std::vector<uint8_t>> prepared;
  for (const auto& [id, d] : dtx_) prepared.push_back(d->prepare);
  std::vector<std::pair<DtxId, bool>> decided;
  for (const auto& [id, dec] : dtx_decided_) decided.emplace_back(id, dec.first);
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
      return Status(Errc::no_space,
                    fmt::format("{}: no room for a checkpoint: {}", who(), off.status().message()));
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
  // Writes one chunk of `n` entries and lists it in the directory.
  auto put_chunk = [&](capnp::MallocMessageBuilder& b, size_t n) -> Status {
    auto words = capnp::messageToFlatArray(b);
    auto chunk = words.asBytes();
    auto e = put(chunk.begin(), chunk.size());
    if (!e) return e.status();
    dir.push_back(DirEntry{e->disk, e->len, static_cast<uint32_t>(e->csum)});
    bytes += round_block(chunk.size());
    entries += n;
    return Status();
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
    const size_t n = refs.size();
    refs.clear();
    est = 0;
    return put_chunk(b, n);
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
  // Then the transactions: each prepared one's record, and the decisions remembered.
  for (size_t i = 0; i < prepared.size();) {
    size_t n = 0;
    size_t size = 0;
    while (i + n < prepared.size() && (n == 0 || size + prepared[i + n].size() < kChunkTarget)) {
      size += prepared[i + n].size();
      ++n;
    }
    capnp::MallocMessageBuilder b(static_cast<unsigned>(size / 8 + 1024));
    auto list = b.initRoot<schema::CkptChunk>().initEntries(static_cast<unsigned>(n));
    for (size_t j = 0; j < n; ++j) {
      list[static_cast<unsigned>(j)].setLevel(3);
      list[static_cast<unsigned>(j)].setDtx(
          capnp::Data::Reader(prepared[i + j].data(), prepared[i + j].size()));
    }
    if (Status st = put_chunk(b, n); !st.is_ok()) return fail(st);
    i += n;
  }
  if (!decided.empty()) {
    capnp::MallocMessageBuilder b(static_cast<unsigned>(decided.size() * 4 + 1024));
    auto e = b.initRoot<schema::CkptChunk>().initEntries(1)[0];
    e.setLevel(4);
    auto list = e.initDtxDecided(static_cast<unsigned>(decided.size()));
    for (size_t j = 0; j < decided.size(); ++j) {
      auto d = list[static_cast<unsigned>(j)];
      d.initId().setEpoch(decided[j].first.epoch);
      d.getId().setLeader(decided[j].first.leader);
      d.setCommitted(decided[j].second);
    }
    if (Status st = put_chunk(b, 1); !st.is_ok()) return fail(st);
  }

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
  log::info("{}: checkpoint {}: {} entries, {} chunks, {} KiB in {:.1f} ms", who(), h.seq, entries,
            dir.size(), ckpt_bytes_ >> 10, ms);
  return Status();
}

// ---- aggregation ------------------------------------------------------------------------------

void TargetStore::aggregate_akey(const Object& o, const Dkey& d, AkeyVal& a,
                                 const std::vector<uint64_t>& bounds, bool keep_punches,
                                 AggregateStats& st) {
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
    st.bytes_freed += drop_version(v);
    ++st.versions_dropped;
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
      if (v.punch && v.epoch <= top && !keep_punches) {
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
  if (keep_punches) return;
  uint64_t oldest = a.versions.empty() ? kMaxEpoch : a.versions.front().epoch;
  size_t before = a.punches.size();
  std::erase_if(a.punches, [&](uint64_t p) { return p <= top && oldest > p; });
  st.punches_dropped += before - a.punches.size();
}

Result<AggregateStats> TargetStore::aggregate(
    uint64_t epoch, std::vector<uint64_t> protect, bool keep_punches,
    const std::function<bool(const ObjectId& key)>& keep_punches_of) {
  MaintenanceHold hold(*this);
  AggregateStats st;
  st.punches_kept = keep_punches;
  uint64_t top = epoch == 0 ? hlc_.last() : std::min(epoch, hlc_.last());
  // Changes still on their way to the log may carry older epochs: stay below them.
  if (!inflight_epochs_.empty()) top = std::min(top, *inflight_epochs_.begin() - 1);
  // A prepared transaction's changes land at their epochs when it commits: stay below them.
  for (const auto& [id, d] : dtx_) top = std::min(top, d->min_epoch - 1);
  std::vector<uint64_t> bounds;
  for (uint64_t e : protect) bounds.push_back(e);
  for (uint64_t e : protected_) bounds.push_back(e);
  std::erase_if(bounds, [top](uint64_t e) { return e >= top || e == 0; });
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  bounds.push_back(top);
  st.epoch = top;
  // From here on no change may land at or below `top` (take_epoch refuses it): one arriving
  // while the pass yields would otherwise slip under what the pass merges.
  agg_epoch_ = std::max(agg_epoch_, top);

  // Oldest version epoch under a node, to decide whether its punches still hide anything.
  auto oldest_in = [](const Dkey& d) {
    uint64_t m = kMaxEpoch;
    for (const auto& [k, a] : d.akeys) {
      if (!a.versions.empty()) m = std::min(m, a.versions.front().epoch);
    }
    return m;
  };
  bool keep = keep_punches;  // the current object's punches stay
  auto trim = [&](std::vector<uint64_t>& punches, uint64_t oldest) {
    if (keep) return;
    size_t before = punches.size();
    std::erase_if(punches, [&](uint64_t p) { return p <= top && oldest > p; });
    st.punches_dropped += before - punches.size();
  };
  uint32_t since_yield = 0;
  for (auto oit = objects_.begin(); oit != objects_.end();) {
    const ObjectId oid = oit->first;
    keep = keep_punches || (keep_punches_of && keep_punches_of(oid));
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
        aggregate_akey(o, d, ait->second, bounds, keep, st);
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
  ++aggregations_;
  bool changed =
      st.versions_dropped + st.versions_trimmed + st.punches_dropped + st.keys_removed != 0;
  if (changed || !pending_free_.empty()) TESSERA_TRY(checkpoint_locked());
  if (changed) {
    log::info(
        "{}: aggregated to epoch {}: {} versions dropped, {} trimmed, {} punches "
        "dropped, {} keys removed, {} bytes freed",
        who(), top, st.versions_dropped, st.versions_trimmed, st.punches_dropped, st.keys_removed,
        st.bytes_freed);
  }
  return st;
}

void TargetStore::set_protected_epochs(std::vector<uint64_t> epochs) {
  std::sort(epochs.begin(), epochs.end());
  protected_ = std::move(epochs);
}

// ---- background -------------------------------------------------------------------------------

void TargetStore::background() {
  Env& env = target_.env();
  NoLock nl;
  auto next_ckpt = env.now() + opts_.checkpoint_interval;
  auto next_agg = env.now() + opts_.aggregation_interval;
  // Space pressure: a write that found the data region full asks for a pass at once that
  // aggregates up to kPressureDelay ago (not aggregation_delay), so deleted and overwritten data
  // frees promptly; a pass that freed nothing waits kPressureIdle before the next one.
  constexpr auto kPressureDelay = std::chrono::seconds(1);
  constexpr auto kPressureIdle = std::chrono::seconds(5);
  auto next_pressure = env.now();
  std::string held;  // why passes keep punches, as the guard last said (empty: they do not)
  std::function<bool(const ObjectId&)> keep_of;  // objects whose punches stay, as it said
  while (!bg_stop_) {
    Nanos wake = env.now() + std::chrono::seconds(3600);
    if (opts_.checkpoint_interval.count() > 0) wake = std::min(wake, next_ckpt);
    if (opts_.aggregation_interval.count() > 0) wake = std::min(wake, next_agg);
    if (space_wanted_) wake = std::min(wake, next_pressure);
    if (!ckpt_wanted_ && !(space_wanted_ && env.now() >= next_pressure)) {
      target_.wait_until(bg_cv_, nl, wake);
    }
    if (bg_stop_) break;
    auto now = env.now();
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
      next_ckpt = env.now() + opts_.checkpoint_interval;
    }
    // Snapshots first: a pass that does not know them could merge one away; and every punch
    // kept while the guard holds (a rebuild moving data in, former homes not yet reclaimed).
    auto learn_guard = [&]() -> bool {
      if (!opts_.guard) return true;
      auto g = opts_.guard();
      if (!g) {
        log::warn("{}: aggregation skipped: the snapshots to keep are unknown: {}", who(),
                  g.status().to_string());
        return false;
      }
      if (g->hold != held) {
        if (!g->hold.empty()) {
          log::info("{}: aggregation keeps punches: {}", who(), g->hold);
        } else {
          log::info("{}: aggregation drops punches again", who());
        }
        held = g->hold;
      }
      set_protected_epochs(std::move(g->protect));
      keep_of = std::move(g->keep_punches_of);
      return true;
    };
    if (space_wanted_ && now >= next_pressure) {
      space_wanted_ = false;
      uint64_t freed = 0;
      uint64_t e = epoch_at_wall(env.wall() - kPressureDelay);
      if (e > agg_epoch_ && learn_guard()) {
        auto r = aggregate(e, {}, !held.empty(), keep_of);
        if (r) {
          freed = r->bytes_freed;
          log::info("{}: data region full: aggregation freed {} bytes", who(), freed);
        } else {
          log::warn("{}: aggregation under space pressure: {}", who(), r.status().to_string());
        }
      }
      next_pressure = env.now() + (freed > 0 ? std::chrono::seconds(0) : kPressureIdle);
    }
    if (opts_.aggregation_interval.count() > 0 && now >= next_agg) {
      uint64_t e = epoch_at_wall(env.wall() - opts_.aggregation_delay);
      if (e > agg_epoch_ && learn_guard()) {
        auto r = aggregate(e, {}, !held.empty(), keep_of);
        if (!r) log::warn("{}: aggregation: {}", who(), r.status().to_string());
      }
      next_agg = env.now() + opts_.aggregation_interval;
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
  if (wal_) {
    const auto& a = wal_->activity();
    s.wal_groups = a.groups;
    s.wal_records = a.records;
    s.wal_bytes = a.bytes;
    s.wal_full_waits = a.full_waits;
    s.wal_commit = a.commit;
  }
  s.dtx_open = dtx_.size();
  s.dtx_committed = dtx_committed_;
  s.dtx_aborted = dtx_aborted_;
  return s;
}

}  // namespace tessera::storage
