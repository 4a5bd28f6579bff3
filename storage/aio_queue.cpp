// libaio backend of BlockQueue. The only file that includes libaio. The file is opened
// O_DIRECT|O_DSYNC, so a completed write is already durable and sync() has nothing to flush.
#include <libaio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <vector>

#include "core/log.hpp"
#include "storage/block_queue.hpp"

namespace tessera::storage {
namespace {

class AioQueue final : public BlockQueue {
 public:
  ~AioQueue() override {
    if (ctx_ != nullptr) io_destroy(ctx_);
    if (efd_ >= 0) ::close(efd_);
    if (fd_ >= 0) ::close(fd_);
  }

  static Result<std::unique_ptr<BlockQueue>> open(const BlockQueueOptions& o) {
    auto q = std::make_unique<AioQueue>();
    int rc = io_setup(static_cast<int>(o.depth), &q->ctx_);
    if (rc < 0) return Status(Errc::unsupported, fmt::format("io_setup: {}", strerror(-rc)));
    q->efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd_ < 0) return Status(Errc::internal, "eventfd failed");
    auto f = open_backing_file(o.path, o.size, true);
    if (!f) return f.status();
    q->fd_ = f->fd;
    q->created_ = f->created;
    q->size_ = o.size;
    q->depth_ = o.depth;
    return std::unique_ptr<BlockQueue>(std::move(q));
  }

  std::string_view backend() const override { return "aio"; }

  size_t poll() override {
    size_t n = 0;
    // Syncs complete here: with O_DSYNC every earlier completed write is already durable.
    while (!syncs_.empty()) {
      syncs_.front()->complete(0);
      syncs_.pop_front();
      ++n;
    }
    while (!queued_.empty() && inflight_ < depth_) {
      if (!issue(queued_.front())) break;
      queued_.pop_front();
    }
    if (inflight_ == 0) return n;
    io_event evs[64];
    timespec zero{0, 0};
    int got = io_getevents(ctx_, 0, 64, evs, &zero);
    for (int i = 0; i < got; ++i) {
      auto* cb = static_cast<iocb*>(evs[i].obj);
      auto* w = static_cast<IoWait*>(evs[i].data);
      long res = static_cast<long>(evs[i].res);
      w->complete(static_cast<int>(res));
      delete cb;
      --inflight_;
      ++n;
    }
    return n;
  }

  int wait_fd() override { return efd_; }

  bool prepare_to_sleep() override {
    // Reading resets the eventfd; a non-zero count means completions are waiting to be reaped,
    // and sleeping now would miss them.
    uint64_t v = 0;
    if (::read(efd_, &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v)) && v > 0) return false;
    return syncs_.empty() && queued_.empty();
  }

 protected:
  void submit(IoOp op, uint64_t off, void* buf, size_t len, IoWait* w) override {
    if (op == IoOp::sync) {
      syncs_.push_back(w);
      uint64_t one = 1;
      [[maybe_unused]] ssize_t r = ::write(efd_, &one, sizeof(one));
      return;
    }
    Req r{op, off, buf, len, w};
    if (inflight_ >= depth_ || !issue(r)) queued_.push_back(r);
  }

 private:
  struct Req {
    IoOp op;
    uint64_t off;
    void* buf;
    size_t len;
    IoWait* w;
  };

  bool issue(const Req& r) {
    auto* cb = new iocb;
    if (r.op == IoOp::read) {
      io_prep_pread(cb, fd_, r.buf, r.len, static_cast<long long>(r.off));
    } else {
      io_prep_pwrite(cb, fd_, r.buf, r.len, static_cast<long long>(r.off));
    }
    io_set_eventfd(cb, efd_);
    cb->data = r.w;
    iocb* list[1] = {cb};
    int rc = io_submit(ctx_, 1, list);
    if (rc == 1) {
      ++inflight_;
      return true;
    }
    delete cb;
    if (rc == -EAGAIN) return false;
    r.w->complete(rc < 0 ? rc : -EIO);
    return true;
  }

  io_context_t ctx_ = nullptr;
  int efd_ = -1;
  int fd_ = -1;
  unsigned depth_ = 128;
  unsigned inflight_ = 0;
  std::deque<Req> queued_;
  std::deque<IoWait*> syncs_;
};

}  // namespace

Result<std::unique_ptr<BlockQueue>> open_aio_queue(const BlockQueueOptions& opts) {
  return AioQueue::open(opts);
}

}  // namespace tessera::storage
