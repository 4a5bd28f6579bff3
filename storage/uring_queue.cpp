// io_uring backend of BlockQueue: one ring per thread, shared by the queues opened on it. The
// only file that includes liburing.
#include <liburing.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>

#include "core/log.hpp"
#include "storage/block_queue.hpp"

namespace tessera::storage {
namespace {

std::atomic<size_t> g_rings{0};

// One io_uring per thread, shared by every queue opened on it: a target's scratch store and
// the store of each pool shard it serves (their logs, checkpoints and extents) submit to the
// same device queue, which the target reaps in one place. Used only on its thread.
class SharedRing {
 public:
  struct Req {
    int fd;
    IoOp op;
    uint64_t off;
    void* buf;
    size_t len;
    IoWait* w;
  };

  static Result<std::shared_ptr<SharedRing>> for_this_thread(unsigned depth) {
    thread_local std::weak_ptr<SharedRing> current;
    if (auto r = current.lock()) return r;
    auto r = std::shared_ptr<SharedRing>(new SharedRing);
    int rc = io_uring_queue_init(depth, &r->ring_, 0);
    if (rc < 0) {
      return Status(Errc::unsupported, fmt::format("io_uring_queue_init: {}", strerror(-rc)));
    }
    r->ring_ok_ = true;
    ++g_rings;
    r->efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd_ < 0 || io_uring_register_eventfd(&r->ring_, r->efd_) != 0) {
      return Status(Errc::unsupported, "io_uring eventfd registration failed");
    }
    current = r;
    return r;
  }

  ~SharedRing() {
    if (ring_ok_) {
      io_uring_queue_exit(&ring_);
      --g_rings;
    }
    if (efd_ >= 0) ::close(efd_);
  }

  int efd() const { return efd_; }

  void submit(const Req& r) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      flush();
      sqe = io_uring_get_sqe(&ring_);
    }
    if (sqe == nullptr) {
      overflow_.push_back(r);
      return;
    }
    prep(sqe, r);
  }

  // Completes every finished request, whichever queue submitted it.
  size_t poll() {
    size_t n = 0;
    if (unsubmitted_ > 0 || !overflow_.empty()) flush();
    io_uring_cqe* cqe = nullptr;
    unsigned head;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      auto* w = reinterpret_cast<IoWait*>(io_uring_cqe_get_data(cqe));
      w->complete(cqe->res);
      ++n;
    }
    if (n > 0) {
      io_uring_cq_advance(&ring_, static_cast<unsigned>(n));
      inflight_ -= n;
    }
    return n;
  }

  bool nothing_to_do() {
    if (unsubmitted_ > 0 || !overflow_.empty()) return false;
    return io_uring_cq_ready(&ring_) == 0;
  }

  // Until no request is queued or in flight: only for a queue closed under I/O (its file is
  // about to be closed), which no store does.
  void drain() {
    while (unsubmitted_ > 0 || !overflow_.empty() || inflight_ > 0) {
      if (poll() > 0) continue;
      io_uring_cqe* cqe = nullptr;
      if (inflight_ == 0 || io_uring_wait_cqe(&ring_, &cqe) < 0) break;
    }
  }

 private:
  SharedRing() = default;

  void prep(io_uring_sqe* sqe, const Req& r) {
    switch (r.op) {
      case IoOp::read:
        io_uring_prep_read(sqe, r.fd, r.buf, static_cast<unsigned>(r.len), r.off);
        break;
      case IoOp::write:
        io_uring_prep_write(sqe, r.fd, r.buf, static_cast<unsigned>(r.len), r.off);
        break;
      case IoOp::sync:
        io_uring_prep_fsync(sqe, r.fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data(sqe, r.w);
    ++unsubmitted_;
  }

  void flush() {
    while (!overflow_.empty()) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;
      prep(sqe, overflow_.front());
      overflow_.pop_front();
    }
    if (unsubmitted_ == 0) return;
    int rc = io_uring_submit(&ring_);
    if (rc > 0) {
      inflight_ += static_cast<size_t>(rc);
      unsubmitted_ -= static_cast<unsigned>(rc);
    } else if (rc < 0 && rc != -EAGAIN && rc != -EBUSY) {
      log::error("io_uring_submit: {}", strerror(-rc));
    }
  }

  io_uring ring_{};
  bool ring_ok_ = false;
  int efd_ = -1;
  unsigned unsubmitted_ = 0;
  size_t inflight_ = 0;
  std::deque<Req> overflow_;
};

// A file on the shared ring of the thread that uses it. Each queue is a poller of its own (the
// target adds one per store): its wait fd is a duplicate of the ring's eventfd, and polling any
// of them reaps the ring for all. A queue opened on one thread and used on another (tests open
// on their main thread) moves to the user's ring at its first use there, before any I/O.
class UringQueue final : public BlockQueue {
 public:
  ~UringQueue() override {
    // Its requests out of the ring before the file closes (a store closes its queue idle).
    if (ring_ && in_flight_ > 0) ring_->drain();
    if (efd_ >= 0) ::close(efd_);
    if (fd_ >= 0) ::close(fd_);
  }

  static Result<std::unique_ptr<BlockQueue>> open(const BlockQueueOptions& o) {
    auto q = std::make_unique<UringQueue>();
    q->depth_ = o.depth;
    TESSERA_TRY(q->bind());  // io_uring usable here, or "auto" takes another backend
    auto f = open_backing_file(o.path, o.size, false);
    if (!f) return f.status();
    q->fd_ = f->fd;
    q->created_ = f->created;
    q->size_ = o.size;
    return std::unique_ptr<BlockQueue>(std::move(q));
  }

  std::string_view backend() const override { return "uring"; }

  size_t poll() override { return ring().poll(); }

  int wait_fd() override {
    ring();
    return efd_;
  }

  bool prepare_to_sleep() override {
    SharedRing& r = ring();
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(efd_, &v, sizeof(v));  // reset the level-triggered fd
    return r.nothing_to_do();
  }

 protected:
  void submit(IoOp op, uint64_t off, void* buf, size_t len, IoWait* w) override {
    ring().submit({fd_, op, off, buf, len, w});
  }

 private:
  SharedRing& ring() {
    if (owner_ != std::this_thread::get_id()) {
      if (in_flight_ > 0) {
        log::error("io_uring queue used from a second thread with I/O in flight; kept its ring");
      } else if (Status st = bind(); !st.is_ok()) {
        log::error("io_uring queue kept its ring: {}", st.to_string());
      }
    }
    return *ring_;
  }

  // Onto this thread's ring, with a wait fd of its own.
  Status bind() {
    auto r = SharedRing::for_this_thread(depth_);
    if (!r) return r.status();
    int efd = ::fcntl((*r)->efd(), F_DUPFD_CLOEXEC, 0);
    if (efd < 0) return Status(Errc::io_error, "dup of the io_uring eventfd failed");
    if (efd_ >= 0) ::close(efd_);
    efd_ = efd;
    ring_ = std::move(*r);
    owner_ = std::this_thread::get_id();
    return Status();
  }

  std::shared_ptr<SharedRing> ring_;
  std::thread::id owner_;
  unsigned depth_ = 128;
  int efd_ = -1;
  int fd_ = -1;
};

}  // namespace

Result<std::unique_ptr<BlockQueue>> open_uring_queue(const BlockQueueOptions& opts) {
  return UringQueue::open(opts);
}

size_t uring_rings_open() { return g_rings.load(); }

}  // namespace tessera::storage
