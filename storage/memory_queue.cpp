// In-memory backend of BlockQueue for unit tests, fuzzing and the simulation: same asynchronous
// contract (completions are delivered by the next poll, never inline), no file. Contents live as
// long as the queue, or as the image the caller shares with it (BlockQueueOptions::image), or
// the simulated disk (BlockQueueOptions::disk), which also records what each sync made durable.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "storage/block_queue.hpp"

namespace tessera::storage {
namespace {

class MemoryQueue final : public BlockQueue {
 public:
  MemoryQueue(std::shared_ptr<std::vector<uint8_t>> image, bool created)
      : image_(std::move(image)), data_(*image_) {
    init(created);
  }
  MemoryQueue(std::shared_ptr<MemoryDisk> disk, bool created)
      : disk_(std::move(disk)), data_(disk_->image) {
    init(created);
  }
  void init(bool created) {
    size_ = data_.size();
    created_ = created;
    efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~MemoryQueue() override {
    if (efd_ >= 0) ::close(efd_);
  }
  std::string_view backend() const override { return "memory"; }

  size_t poll() override {
    size_t n = 0;
    while (!done_.empty()) {
      auto [w, res] = done_.front();
      done_.pop_front();
      w->complete(res);
      ++n;
    }
    return n;
  }
  int wait_fd() override { return efd_; }
  bool prepare_to_sleep() override {
    uint64_t v;
    [[maybe_unused]] ssize_t r = ::read(efd_, &v, sizeof(v));
    return done_.empty();
  }

 protected:
  void submit(IoOp op, uint64_t off, void* buf, size_t len, IoWait* w) override {
    if (op != IoOp::read && disk_ && disk_->before_write_or_sync)
      disk_->before_write_or_sync(op, op == IoOp::write ? off : 0);
    if (op == IoOp::read) std::memcpy(buf, data_.data() + off, len);
    if (op == IoOp::write) {
      std::memcpy(data_.data() + off, buf, len);
      if (disk_) {
        for (uint64_t b = off / kBlock; b * kBlock < off + len; ++b) disk_->dirty.insert(b);
      }
    }
    if (op == IoOp::sync && disk_) {
      // Every write submitted so far has landed in the image: all of it becomes durable.
      for (uint64_t b : disk_->dirty) {
        std::memcpy(disk_->durable.data() + b * kBlock, data_.data() + b * kBlock, kBlock);
      }
      disk_->dirty.clear();
    }
    done_.emplace_back(w, static_cast<int>(len));
    uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(efd_, &one, sizeof(one));
  }

 private:
  static constexpr uint64_t kBlock = 4096;
  std::shared_ptr<std::vector<uint8_t>> image_;
  std::shared_ptr<MemoryDisk> disk_;
  std::vector<uint8_t>& data_;
  std::deque<std::pair<IoWait*, int>> done_;
  int efd_ = -1;
};

}  // namespace

std::vector<uint8_t> MemoryDisk::after_power_loss(std::mt19937_64& rng) const {
  constexpr uint64_t kSector = 512;
  std::vector<uint8_t> out = durable;
  for (uint64_t b : dirty) {
    const uint8_t* now = image.data() + b * 4096;
    uint8_t* to = out.data() + b * 4096;
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2:
        break;  // the old contents
      case 3:
      case 4:
      case 5:
        std::memcpy(to, now, 4096);  // the new contents
        break;
      default:  // torn: some sectors new, the others old
        for (uint64_t s = 0; s < 4096; s += kSector) {
          if (rng() % 2 == 0) std::memcpy(to + s, now + s, kSector);
        }
    }
  }
  return out;
}

std::shared_ptr<MemoryDisk> MemoryDisk::after_crash(bool power_loss, std::mt19937_64& rng) const {
  auto next = std::make_shared<MemoryDisk>(image.size());
  next->image = power_loss ? after_power_loss(rng) : image;
  next->durable = next->image;
  return next;
}

Result<std::unique_ptr<BlockQueue>> open_memory_queue(const BlockQueueOptions& opts) {
  if (opts.size == 0 || opts.size % 4096 != 0) {
    return Status(Errc::invalid_argument, "storage size must be a positive multiple of 4 KiB");
  }
  if (opts.disk) {
    if (opts.disk->image.size() != opts.size || opts.disk->durable.size() != opts.size) {
      return Status(Errc::invalid_argument, "the memory disk is not of the size asked for");
    }
    return std::unique_ptr<BlockQueue>(std::make_unique<MemoryQueue>(opts.disk, false));
  }
  if (opts.image) {
    if (opts.image->size() != opts.size) {
      return Status(Errc::invalid_argument, "the memory image is not of the size asked for");
    }
    return std::unique_ptr<BlockQueue>(std::make_unique<MemoryQueue>(opts.image, false));
  }
  return std::unique_ptr<BlockQueue>(
      std::make_unique<MemoryQueue>(std::make_shared<std::vector<uint8_t>>(opts.size), true));
}

}  // namespace tessera::storage
