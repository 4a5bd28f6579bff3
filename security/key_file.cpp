#include "security/key_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace tessera::security {

namespace {
Status sys_error(Errc code, const std::string& what, const std::string& path) {
  return Status(code, fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}
}  // namespace

Status write_key_file(const std::string& path, std::span<const uint8_t> bytes, unsigned mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return sys_error(errno == EEXIST ? Errc::exists : Errc::io_error, "cannot create key file",
                     path);
  }
  // The umask may have narrowed the mode; set it exactly (a public key stays readable).
  bool ok = ::fchmod(fd, mode) == 0;
  size_t done = 0;
  while (ok && done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  Status st = ok ? Status() : sys_error(Errc::io_error, "cannot write key file", path);
  ::close(fd);
  if (!ok) ::unlink(path.c_str());
  return st;
}

Result<Buffer> read_key_file(const std::string& path, size_t size, bool secret) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return sys_error(errno == ENOENT                     ? Errc::not_found
                     : errno == EACCES || errno == EPERM ? Errc::permission
                                                         : Errc::io_error,
                     "cannot open key file", path);
  }
  struct stat stt {};
  Status st;
  if (::fstat(fd, &stt) != 0) {
    st = sys_error(Errc::io_error, "cannot stat key file", path);
  } else if (!S_ISREG(stt.st_mode)) {
    st = Status(Errc::invalid_argument, fmt::format("key file {} is not a regular file", path));
  } else if (secret && (stt.st_mode & 077) != 0) {
    st = Status(Errc::permission,
                fmt::format("key file {} may be read by others (mode {:04o}): chmod 600 it", path,
                            stt.st_mode & 07777));
  } else if (static_cast<size_t>(stt.st_size) != size) {
    st = Status(Errc::invalid_argument,
                fmt::format("key file {} holds {} bytes, not {}", path, stt.st_size, size));
  }
  Buffer out(size);
  size_t done = 0;
  while (st.is_ok() && done < size) {
    ssize_t n = ::read(fd, out.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) st = sys_error(Errc::io_error, "cannot read key file", path);
    if (n > 0) done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (!st.is_ok()) return st;
  return out;
}

}  // namespace tessera::security
