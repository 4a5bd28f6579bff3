#include "storage/wal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "core/checksum.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"

namespace tessera::storage {
namespace {
constexpr uint64_t kBlock = 4096;
constexpr size_t kMaxGroupPayload = 4u << 20;
uint64_t round_up(uint64_t v) {
  return (v + kBlock - 1) / kBlock * kBlock;
}

uint32_t group_crc(const GroupHeader& h, const uint8_t* payload) {
  GroupHeader tmp = h;
  tmp.crc = 0;
  return crc32c(payload, h.payload_len, crc32c(&tmp, sizeof(tmp)));
}
}  // namespace

Wal::Wal(Target& target, BlockQueue& q, uint64_t offset, uint64_t length, uint64_t incarnation)
    : target_(target), q_(q), offset_(offset), length_(length), incarnation_(incarnation) {}

Wal::~Wal() {
  for (Waiter* w : pending_) {
    if (w->posted) delete w;  // never started, or stopped: nobody else owns them
  }
}

Status Wal::format() {
  Buffer zero(kBlock);
  std::memset(zero.data(), 0, kBlock);
  auto w = q_.write(offset_, zero.data(), kBlock);
  if (!w) return w.status();
  tail_ = 0;
  lsn_ = 0;
  total_ = 0;
  head_total_ = 0;
  return q_.sync();
}

Status Wal::replay(const WalMark& from,
                   const std::function<Status(std::span<const uint8_t>)>& apply) {
  // Read the region through a sliding window so thousands of small groups cost few reads.
  constexpr uint64_t kWindow = 4u << 20;
  Buffer win;
  uint64_t wstart = 0;
  uint64_t wlen = 0;
  auto view = [&](uint64_t pos, uint64_t n) -> Result<const uint8_t*> {
    if (pos < wstart || pos + n > wstart + wlen) {
      uint64_t len = std::min(std::max(kWindow, round_up(n)), length_ - pos);
      win.reset(len);
      auto r = q_.read(offset_ + pos, win.data(), len);
      if (!r) return r.status();
      wstart = pos;
      wlen = len;
    }
    return win.data() + (pos - wstart);
  };
  // The group with `lsn` at `pos`, if valid: its size; 0 when there is none.
  auto group_at = [&](uint64_t pos, uint64_t lsn, GroupHeader& h) -> Result<uint64_t> {
    if (pos + kBlock > length_) return uint64_t{0};
    auto hp = view(pos, kBlock);
    if (!hp) return hp.status();
    std::memcpy(&h, *hp, sizeof(h));
    if (h.magic != kGroupMagic || h.incarnation != incarnation_ || h.lsn != lsn ||
        h.payload_len > length_ - pos - sizeof(h)) {
      return uint64_t{0};
    }
    uint64_t gsize = round_up(sizeof(h) + h.payload_len);
    auto gp = view(pos, gsize);
    if (!gp) return gp.status();
    if (group_crc(h, *gp + sizeof(h)) != h.crc) {
      log::warn(
          "WAL group {} at {} fails its checksum: the log ends here unless a later group "
          "follows (checked below)",
          h.lsn, pos);
      return uint64_t{0};
    }
    return gsize;
  };
  if (from.pos >= length_ || from.pos % kBlock != 0 || from.lsn == 0) {
    return Status(Errc::internal, "checkpoint points outside the log");
  }
  uint64_t pos = from.pos;
  uint64_t lsn = from.lsn - 1;
  uint64_t total = from.total;
  uint64_t records = 0;
  while (true) {
    GroupHeader h;
    auto g = group_at(pos, lsn + 1, h);
    if (!g) return g.status();
    if (*g == 0 && pos != 0) {
      // The writer skips the end of the region when a group does not fit there.
      g = group_at(0, lsn + 1, h);
      if (!g) return g.status();
      if (*g != 0) {
        total += length_ - pos;
        pos = 0;
      }
    }
    if (*g == 0) break;
    // Copy the payload out: apply() may do I/O that moves the window.
    auto gp = view(pos, *g);
    if (!gp) return gp.status();
    Buffer copy(*gp + sizeof(h), h.payload_len);
    size_t off = 0;
    for (uint32_t i = 0; i < h.count; ++i) {
      uint32_t len;
      if (off + 8 > copy.size()) return Status(Errc::internal, "WAL group payload truncated");
      std::memcpy(&len, copy.data() + off, 4);
      off += 8;
      if (len > copy.size() - off) return Status(Errc::internal, "WAL record overruns its group");
      TESSERA_TRY(apply(std::span<const uint8_t>(copy.data() + off, len)));
      off += (len + 7) / 8 * 8;
      ++records;
    }
    lsn = h.lsn;
    pos += *g;
    total += *g;
    if (pos == length_) pos = 0;
  }
  // Where the log ends, a torn tail (the group being written when the power failed) is normal:
  // group commit writes one group at a time, so nothing of this incarnation with a higher lsn
  // can follow it. A valid later group anywhere in the log means the group that ends replay was
  // durable once and is damaged, and the records after it were acknowledged: refuse rather
  // than drop them.
  for (uint64_t at = 0; at + kBlock <= length_; at += kBlock) {
    auto hp = view(at, kBlock);
    if (!hp) return hp.status();
    GroupHeader h;
    std::memcpy(&h, *hp, sizeof(h));
    if (h.magic != kGroupMagic || h.incarnation != incarnation_ || h.lsn <= lsn ||
        h.payload_len > length_ - at - sizeof(h)) {
      continue;
    }
    auto gp = view(at, round_up(sizeof(h) + h.payload_len));
    if (!gp) return gp.status();
    if (group_crc(h, *gp + sizeof(h)) != h.crc) continue;
    return Status(Errc::checksum,
                  fmt::format("the write-ahead log is damaged: replay ends at log offset {} "
                              "(group {} missing or failing its checksum), yet group {} follows "
                              "at offset {}; the updates logged after the damage were "
                              "acknowledged, so the target is not opened",
                              pos, lsn + 1, h.lsn, at));
  }
  tail_ = pos;
  lsn_ = lsn;
  total_ = total;
  head_total_ = from.total;
  log::info("WAL replay: groups {}..{}, {} records, {} bytes", from.lsn, lsn, records,
            total - from.total);
  return Status();
}

void Wal::start() {
  running_ = true;
  std::weak_ptr<int> alive = alive_;
  target_.on_stop([this, alive] {
    if (alive.lock() == nullptr) return;
    stopping_ = true;
    wake_.notify_all();
    space_cv_.notify_all();
  });
  target_.spawn([this] {
    committer();
    committer_done_ = true;
    done_cv_.notify_all();
  });
}

void Wal::stop() {
  if (!running_) return;
  stopping_ = true;
  wake_.notify_all();
  space_cv_.notify_all();
  NoLock nl;
  while (!committer_done_) done_cv_.wait(nl);
  running_ = false;
}

Status Wal::append(std::span<const uint8_t> record, const std::function<void()>& on_durable) {
  if (stopping_ || !running_) return Status(Errc::shutdown, "target stopping");
  Waiter w;
  w.record = record;
  w.on_durable = &on_durable;
  pending_.push_back(&w);
  wake_.notify_one();
  NoLock nl;
  while (!w.done) w.cv.wait(nl);
  return w.result;
}

Wal::Waiter* Wal::posted_waiter(std::vector<uint8_t> record) {
  auto* w = new Waiter;
  w->owned = std::move(record);
  w->record = w->owned;
  w->posted = true;
  return w;
}

void Wal::post(std::vector<uint8_t> record) {
  if (stopping_ || !running_) return;
  Waiter* w = posted_waiter(std::move(record));
  if (posted_ == 0) first_posted_ = target_.env().now();
  ++posted_;
  pending_.push_back(w);
  // Posted records ride with the next group an append makes; alone they wait for a batch or
  // for kPostDelay (a group of their own costs a write and a sync).
  if (posted_ >= kPostBatch) wake_.notify_one();
}

void Wal::hold() {
  if (stopping_ || !running_ || held_) return;
  held_ = true;
  if (posted_ == 0) first_posted_ = target_.env().now();
  wake_.notify_one();  // a committer asleep with nothing posted starts counting kPostDelay
}

void Wal::finish(Waiter* w, const Status& st) {
  if (w->posted) {
    delete w;
    return;
  }
  w->result = st;
  w->done = true;
  w->cv.notify_one();
}

void Wal::committer() {
  NoLock nl;
  while (true) {
    while (!stopping_) {
      if (pending_.size() > posted_ || posted_ >= kPostBatch) break;  // an append waits
      if (posted_ == 0 && !held_) {
        wake_.wait(nl);
      } else if (target_.wait_until(wake_, nl, first_posted_ + kPostDelay)) {
        break;
      }
    }
    if (pending_.empty() && !held_) break;
    std::vector<Waiter*> batch;
    size_t bytes = 0;
    if (held_) {
      held_ = false;
      std::vector<uint8_t> rec = group_hook_ ? group_hook_() : std::vector<uint8_t>{};
      if (!rec.empty()) {
        bytes += 8 + (rec.size() + 7) / 8 * 8;
        batch.push_back(posted_waiter(std::move(rec)));
      }
    }
    while (!pending_.empty()) {
      size_t rec = 8 + (pending_.front()->record.size() + 7) / 8 * 8;
      if (!batch.empty() && bytes + rec > kMaxGroupPayload) break;
      bytes += rec;
      batch.push_back(pending_.front());
      if (pending_.front()->posted) --posted_;
      pending_.pop_front();
    }
    Status st = write_group(batch);
    if (st.is_ok()) {
      for (Waiter* w : batch) {
        if (w->on_durable != nullptr) (*w->on_durable)();
      }
    }
    for (Waiter* w : batch) finish(w, st);
  }
  // Stopping: fail whatever is still queued so its fibers can finish.
  for (Waiter* w : pending_) finish(w, Status(Errc::shutdown, "target stopping"));
  pending_.clear();
  posted_ = 0;
}

void Wal::release(const WalMark& m) {
  if (m.total > head_total_) head_total_ = m.total;
  ++space_epoch_;
  space_cv_.notify_all();
}

void Wal::fail_pending(const Status& st) {
  space_error_ = st;
  ++space_epoch_;
  space_cv_.notify_all();
}

Status Wal::write_group(std::vector<Waiter*>& batch) {
  size_t payload = 0;
  for (Waiter* w : batch) payload += 8 + (w->record.size() + 7) / 8 * 8;
  uint64_t gsize = round_up(sizeof(GroupHeader) + payload);
  if (gsize > length_ / 2) {
    return Status(Errc::no_space,
                  fmt::format("a {} byte log group exceeds half the {} byte log", gsize, length_));
  }
  NoLock nl;
  while (true) {
    uint64_t gap = tail_ + gsize > length_ ? length_ - tail_ : 0;
    // One block stays free so the tail never runs onto the head.
    if (used() + gap + gsize + kBlock <= length_) {
      if (gap != 0) {
        tail_ = 0;
        total_ += gap;
      }
      break;
    }
    if (stopping_) return Status(Errc::shutdown, "target stopping");
    if (!full_hook_) {
      return Status(Errc::no_space,
                    fmt::format("write-ahead log full ({} of {} bytes used)", used(), length_));
    }
    uint64_t seen = space_epoch_;
    ++activity_.full_waits;
    full_hook_();
    while (seen == space_epoch_ && !stopping_) space_cv_.wait(nl);
    if (!space_error_.is_ok()) {
      Status st = std::move(space_error_);
      space_error_ = Status();
      return st;
    }
  }
  // Fault point: the device refuses the group (nothing of it is acknowledged).
  if (target_.env().fault("wal.write")) {
    return Status(Errc::io_error, "injected fault: the log write failed");
  }
  staging_.reset(gsize);
  std::memset(staging_.data(), 0, gsize);
  uint8_t* p = staging_.data() + sizeof(GroupHeader);
  for (Waiter* w : batch) {
    uint32_t len = static_cast<uint32_t>(w->record.size());
    std::memcpy(p, &len, 4);
    std::memcpy(p + 8, w->record.data(), len);
    p += 8 + (len + 7) / 8 * 8;
  }
  GroupHeader h{kGroupMagic,
                0,
                incarnation_,
                lsn_ + 1,
                static_cast<uint32_t>(batch.size()),
                static_cast<uint32_t>(payload)};
  h.crc = group_crc(h, staging_.data() + sizeof(GroupHeader));
  std::memcpy(staging_.data(), &h, sizeof(h));
  const Nanos began = target_.env().now();
  auto w = q_.write(offset_ + tail_, staging_.data(), gsize);
  if (!w) return w.status();
  TESSERA_TRY(q_.sync());
  activity_.commit.observe(target_.env().now() - began);
  ++activity_.groups;
  activity_.records += batch.size();
  activity_.bytes += gsize;
  tail_ += gsize;
  if (tail_ == length_) tail_ = 0;
  total_ += gsize;
  lsn_ = h.lsn;
  return Status();
}

}  // namespace tessera::storage
