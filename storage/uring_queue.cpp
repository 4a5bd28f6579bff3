// io_uring backend of BlockQueue. The only file that includes liburing.
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <deque>

#include "core/log.hpp"
#include "storage/block_queue.hpp"

namespace tessera::storage {
namespace {

class UringQueue final : public BlockQueue {
 public:
  ~UringQueue() override {
    if (ring_ok_) io_uring_queue_exit(&ring_);
    if (efd_ >= 0) ::close(efd_);
    if (fd_ >= 0) ::close(fd_);
  }

  static Result<std::unique_ptr<BlockQueue>> open(const BlockQueueOptions& o) {
    auto q = std::make_unique<UringQueue>();
    int rc = io_uring_queue_init(o.depth, &q->ring_, 0);
    if (rc < 0) {
      return Status(Errc::unsupported, fmt::format("io_uring_queue_init: {}", strerror(-rc)));
    }
    q->ring_ok_ = true;
    q->efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd_ < 0 || io_uring_register_eventfd(&q->ring_, q->efd_) != 0) {
      return Status(Errc::unsupported, "io_uring eventfd registration failed");
    }
    auto f = open_backing_file(o.path, o.size, false);
    if (!f) return f.status();
    q->fd_ = f->fd;
    q->created_ = f->created;
    q->size_ = o.size;
    return std::unique_ptr<BlockQueue>(std::move(q));
  }

  std::string_view backend() const override { return "uring"; }

  size_t poll() override {
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

  int wait_fd() override { return efd_; }

  bool prepare_to_sleep() override {
    uint64_t v;
    [[maybe_unused]] ssize_t r = ::read(efd_, &v, sizeof(v));  // reset the level-triggered fd
    if (unsubmitted_ > 0 || !overflow_.empty()) return false;
    return io_uring_cq_ready(&ring_) == 0;
  }

 protected:
  void submit(IoOp op, uint64_t off, void* buf, size_t len, IoWait* w) override {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      flush();
      sqe = io_uring_get_sqe(&ring_);
    }
    if (sqe == nullptr) {
      overflow_.push_back({op, off, buf, len, w});
      return;
    }
    prep(sqe, {op, off, buf, len, w});
  }

 private:
  struct Req {
    IoOp op;
    uint64_t off;
    void* buf;
    size_t len;
    IoWait* w;
  };

  void prep(io_uring_sqe* sqe, const Req& r) {
    switch (r.op) {
      case IoOp::read:
        io_uring_prep_read(sqe, fd_, r.buf, static_cast<unsigned>(r.len), r.off);
        break;
      case IoOp::write:
        io_uring_prep_write(sqe, fd_, r.buf, static_cast<unsigned>(r.len), r.off);
        break;
      case IoOp::sync:
        io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
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
  int fd_ = -1;
  unsigned unsubmitted_ = 0;
  size_t inflight_ = 0;
  std::deque<Req> overflow_;
};

}  // namespace

Result<std::unique_ptr<BlockQueue>> open_uring_queue(const BlockQueueOptions& opts) {
  return UringQueue::open(opts);
}

}  // namespace tessera::storage
