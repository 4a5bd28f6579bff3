#include "storage/block_queue.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "core/log.hpp"
#include "core/no_lock.hpp"

namespace tessera::storage {

Result<size_t> BlockQueue::run(IoOp op, uint64_t off, void* buf, size_t len) {
  if (op != IoOp::sync) {
    if (off % 4096 != 0 || len % 4096 != 0 || reinterpret_cast<uintptr_t>(buf) % 4096 != 0) {
      return Status(Errc::internal, "unaligned block I/O");
    }
    if (off + len > size_) {
      return Status(Errc::internal,
                    fmt::format("I/O at {}+{} beyond device size {}", off, len, size_));
    }
  }
  if (op == IoOp::write && fail_writes_ > 0) {
    --fail_writes_;
    return Status(Errc::io_error, "injected write failure");
  }
  IoWait w;
  ++in_flight_;
  submit(op, off, buf, len, &w);
  NoLock nl;
  while (!w.done) w.cv.wait(nl);
  --in_flight_;
  if (w.res < 0) {
    return Status(Errc::io_error, fmt::format("{} at offset {}: {}",
                                              op == IoOp::read    ? "read"
                                              : op == IoOp::write ? "write"
                                                                  : "sync",
                                              off, strerror(-w.res)));
  }
  if (op != IoOp::sync && static_cast<size_t>(w.res) != len) {
    return Status(Errc::io_error,
                  fmt::format("short I/O at offset {}: {} of {} bytes", off, w.res, len));
  }
  return static_cast<size_t>(w.res);
}

Result<size_t> BlockQueue::read(uint64_t off, void* buf, size_t len) {
  return run(IoOp::read, off, buf, len);
}

Result<size_t> BlockQueue::write(uint64_t off, const void* buf, size_t len) {
  return run(IoOp::write, off, const_cast<void*>(buf), len);
}

Status BlockQueue::sync() {
  auto r = run(IoOp::sync, 0, nullptr, 0);
  return r.status();
}

Result<OpenedFile> open_backing_file(const std::string& path, uint64_t size, bool dsync) {
  if (size == 0 || size % 4096 != 0) {
    return Status(Errc::invalid_argument, "storage size must be a positive multiple of 4 KiB");
  }
  OpenedFile f;
  struct stat st {};
  f.created = ::stat(path.c_str(), &st) != 0;
  int flags = O_RDWR | O_CREAT | O_CLOEXEC | (dsync ? O_DSYNC : 0);
  f.fd = ::open(path.c_str(), flags | O_DIRECT, 0600);
  f.direct = f.fd >= 0;
  if (f.fd < 0 && errno == EINVAL) {
    // File systems without O_DIRECT (tmpfs): fall back to buffered I/O, durable through sync.
    f.fd = ::open(path.c_str(), flags, 0600);
    if (f.fd >= 0) log::warn("{}: O_DIRECT unsupported here; using buffered I/O", path);
  }
  if (f.fd < 0) {
    return Status(errno == EACCES ? Errc::permission : Errc::io_error,
                  fmt::format("cannot open {}: {}", path, strerror(errno)));
  }
  if (::fstat(f.fd, &st) != 0)
    return Status(Errc::io_error, "fstat: " + std::string(strerror(errno)));
  if (static_cast<uint64_t>(st.st_size) < size) {
    if (::fallocate(f.fd, 0, 0, static_cast<off_t>(size)) != 0) {
      int e = errno;
      if (e == EOPNOTSUPP && ::ftruncate(f.fd, static_cast<off_t>(size)) == 0) return f;
      ::close(f.fd);
      return Status(e == ENOSPC ? Errc::no_space : Errc::io_error,
                    fmt::format("cannot size {} to {} bytes: {}", path, size, strerror(e)));
    }
  }
  return f;
}

Result<std::unique_ptr<BlockQueue>> open_block_queue(const BlockQueueOptions& opts) {
  if (opts.backend == "memory") return open_memory_queue(opts);
  if (opts.backend == "aio") return open_aio_queue(opts);
  if (opts.backend == "uring") return open_uring_queue(opts);
  if (opts.backend == "auto") {
    auto q = open_uring_queue(opts);
    if (q || q.status().code() != Errc::unsupported) return q;
    log::warn("io_uring unavailable ({}); using libaio", q.status().message());
    return open_aio_queue(opts);
  }
  return Status(
      Errc::invalid_argument,
      fmt::format("unknown block backend '{}' (use auto, uring, aio or memory)", opts.backend));
}

}  // namespace tessera::storage
