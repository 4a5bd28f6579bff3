// BlockQueue: a target's queue to its block device (a file opened O_DIRECT, or memory).
//
// One per store (a target's scratch store and each pool shard), created and used only on that
// target's thread; registered with the target as a Poller so completions are reaped by the
// target's scheduler. The uring backend's queues of one thread share one io_uring. read/write/sync suspend the
// calling fiber until the device completes, never the thread.
//
// Backends, chosen by name: "uring" (liburing), "aio" (libaio, file opened O_DSYNC so every
// write is durable), "memory" (tests; completes on the next poll). "auto" picks uring when the
// kernel allows it, else aio.
#pragma once

#include <boost/fiber/condition_variable.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/poller.hpp"
#include "core/status.hpp"

namespace tessera::storage {

// A simulated device for the memory backend that knows which of its blocks are durable: what
// `image` holds is what the device shows; `durable` is what a power loss keeps for sure (the
// image as of the last sync); `dirty` lists the 4 KiB blocks written since. A disk is used by
// one queue at a time, on that queue's target thread; read it there too (or once that target
// stopped).
enum class IoOp : uint8_t { read, write, sync };

struct MemoryDisk {
  explicit MemoryDisk(uint64_t size) : image(size), durable(size) {}
  std::vector<uint8_t> image;
  std::vector<uint8_t> durable;
  std::set<uint64_t> dirty;  // block numbers
  // Tests: called as each write or sync reaches the disk, before it takes effect (a test
  // takes the image a crash would leave at that moment: after_crash), with the write's offset
  // (0 for a sync).
  std::function<void(IoOp op, uint64_t off)> before_write_or_sync;
  // The image a power loss leaves: the durable bytes, and of each block written since the last
  // sync, as `rng` draws, the old contents, the new ones, or a block torn by the power loss
  // (each 512-byte sector old or new): a device persists some of the writes it was given, in
  // any order, and a write it was in the middle of in part.
  std::vector<uint8_t> after_power_loss(std::mt19937_64& rng) const;
  // The disk a crash leaves, all of it durable: the image as it is (kill -9: every completed
  // write stays), or after a power loss (after_power_loss draws from `rng`).
  std::shared_ptr<MemoryDisk> after_crash(bool power_loss, std::mt19937_64& rng) const;
};

struct BlockQueueOptions {
  std::string backend = "auto";  // auto | uring | aio | memory
  std::string path;              // file backing the target (ignored by memory)
  uint64_t size = 0;             // bytes; the file is created or grown to this size
  unsigned depth = 128;          // queue depth
  // memory only: the device's bytes, shared with the caller (kept across opens, as a file
  // would be; a fuzzer or test builds and inspects images). Empty: fresh zeroed memory.
  std::shared_ptr<std::vector<uint8_t>> image;
  // memory only, instead of `image`: a device that tracks what a sync made durable.
  std::shared_ptr<MemoryDisk> disk;
};

// One in-flight request; lives on the waiting fiber's stack.
struct IoWait {
  int res = 0;
  bool done = false;
  boost::fibers::condition_variable_any cv;
  void complete(int r) {
    res = r;
    done = true;
    cv.notify_one();
  }
};

class BlockQueue : public Poller {
 public:
  ~BlockQueue() override = default;
  virtual std::string_view backend() const = 0;
  uint64_t size() const { return size_; }
  // True when the file was created by this open (as opposed to reopened).
  bool created() const { return created_; }

  // Offsets, lengths and buffers must be 4 KiB aligned (O_DIRECT).
  Result<size_t> read(uint64_t off, void* buf, size_t len);
  Result<size_t> write(uint64_t off, const void* buf, size_t len);
  // Makes every completed write durable.
  Status sync();

  // Fault hook for tests: the next `n` writes fail with EIO.
  void fail_next_writes(unsigned n) { fail_writes_ = n; }

 protected:
  virtual void submit(IoOp op, uint64_t off, void* buf, size_t len, IoWait* w) = 0;
  uint64_t size_ = 0;
  bool created_ = false;
  size_t in_flight_ = 0;  // requests of this queue submitted and not yet returned

 private:
  Result<size_t> run(IoOp op, uint64_t off, void* buf, size_t len);
  unsigned fail_writes_ = 0;
};

Result<std::unique_ptr<BlockQueue>> open_block_queue(const BlockQueueOptions& opts);

// io_uring instances open in this process: the uring backend keeps one per thread, shared by
// every queue opened on that thread (a target's scratch store and its pool shards).
size_t uring_rings_open();

// Implementations (each in its own file; only these include liburing/libaio).
Result<std::unique_ptr<BlockQueue>> open_uring_queue(const BlockQueueOptions& opts);
Result<std::unique_ptr<BlockQueue>> open_aio_queue(const BlockQueueOptions& opts);
Result<std::unique_ptr<BlockQueue>> open_memory_queue(const BlockQueueOptions& opts);

// Opens (creating and sizing) the backing file; shared by the file backends.
struct OpenedFile {
  int fd = -1;
  bool created = false;
  bool direct = false;
};
Result<OpenedFile> open_backing_file(const std::string& path, uint64_t size, bool dsync);

}  // namespace tessera::storage
