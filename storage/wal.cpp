#include "storage/wal.hpp"

#include <isa-l/crc.h>

#include <cstring>

#include "core/log.hpp"

namespace tessera::storage {
namespace {
struct NoLock {
  void lock() {}
  void unlock() {}
};
constexpr uint64_t kBlock = 4096;
constexpr size_t kMaxGroupPayload = 4u << 20;
uint64_t round_up(uint64_t v) {
  return (v + kBlock - 1) / kBlock * kBlock;
}

uint32_t group_crc(const GroupHeader& h, const uint8_t* payload) {
  GroupHeader tmp = h;
  tmp.crc = 0;
  uint32_t c = crc32_iscsi(reinterpret_cast<unsigned char*>(&tmp), sizeof(tmp), 0);
  return crc32_iscsi(const_cast<uint8_t*>(payload), static_cast<int>(h.payload_len), c);
}
}  // namespace

Wal::Wal(Target& target, BlockQueue& q, uint64_t offset, uint64_t length, uint64_t incarnation)
    : target_(target), q_(q), offset_(offset), length_(length), incarnation_(incarnation) {}

Wal::~Wal() = default;

Status Wal::format() {
  Buffer zero(kBlock);
  std::memset(zero.data(), 0, kBlock);
  auto w = q_.write(offset_, zero.data(), kBlock);
  if (!w) return w.status();
  tail_ = 0;
  lsn_ = 0;
  return q_.sync();
}

Status Wal::replay(const std::function<Status(std::span<const uint8_t>)>& apply) {
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
  uint64_t pos = 0;
  uint64_t lsn = 0;
  uint64_t records = 0;
  while (pos + kBlock <= length_) {
    auto hp = view(pos, kBlock);
    if (!hp) return hp.status();
    GroupHeader h;
    std::memcpy(&h, *hp, sizeof(h));
    if (h.magic != kGroupMagic || h.incarnation != incarnation_ || h.lsn != lsn + 1 ||
        h.payload_len > length_ - pos - sizeof(h)) {
      break;
    }
    uint64_t gsize = round_up(sizeof(h) + h.payload_len);
    auto gp = view(pos, gsize);
    if (!gp) return gp.status();
    const uint8_t* payload = *gp + sizeof(h);
    if (group_crc(h, payload) != h.crc) {
      log::warn("WAL group {} at {} fails its checksum: log ends here (torn write)", h.lsn, pos);
      break;
    }
    // Copy the payload out: apply() may do I/O that moves the window.
    Buffer copy(payload, h.payload_len);
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
    pos += gsize;
  }
  tail_ = pos;
  lsn_ = lsn;
  log::info("WAL replay: {} groups, {} records, {} bytes", lsn, records, pos);
  return Status();
}

void Wal::start() {
  running_ = true;
  std::weak_ptr<int> alive = alive_;
  target_.on_stop([this, alive] {
    if (alive.lock() == nullptr) return;
    stopping_ = true;
    wake_.notify_all();
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
  NoLock nl;
  while (!committer_done_) done_cv_.wait(nl);
  running_ = false;
}

Status Wal::append(std::span<const uint8_t> record) {
  if (stopping_ || !running_) return Status(Errc::shutdown, "target stopping");
  Waiter w;
  w.record = record;
  pending_.push_back(&w);
  wake_.notify_one();
  NoLock nl;
  while (!w.done) w.cv.wait(nl);
  return w.result;
}

void Wal::committer() {
  NoLock nl;
  while (true) {
    while (pending_.empty() && !stopping_) wake_.wait(nl);
    if (pending_.empty()) break;
    std::vector<Waiter*> batch;
    size_t bytes = 0;
    while (!pending_.empty()) {
      size_t rec = 8 + (pending_.front()->record.size() + 7) / 8 * 8;
      if (!batch.empty() && bytes + rec > kMaxGroupPayload) break;
      bytes += rec;
      batch.push_back(pending_.front());
      pending_.pop_front();
    }
    Status st = write_group(batch);
    for (Waiter* w : batch) {
      w->result = st;
      w->done = true;
      w->cv.notify_one();
    }
  }
  // Stopping: fail whatever is still queued so its fibers can finish.
  for (Waiter* w : pending_) {
    w->result = Status(Errc::shutdown, "target stopping");
    w->done = true;
    w->cv.notify_one();
  }
  pending_.clear();
}

Status Wal::write_group(std::vector<Waiter*>& batch) {
  size_t payload = 0;
  for (Waiter* w : batch) payload += 8 + (w->record.size() + 7) / 8 * 8;
  uint64_t gsize = round_up(sizeof(GroupHeader) + payload);
  if (tail_ + gsize > length_) {
    return Status(Errc::no_space,
                  fmt::format("write-ahead log full ({} of {} bytes used)", tail_, length_));
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
  auto w = q_.write(offset_ + tail_, staging_.data(), gsize);
  if (!w) return w.status();
  TESSERA_TRY(q_.sync());
  tail_ += gsize;
  lsn_ = h.lsn;
  return Status();
}

}  // namespace tessera::storage
