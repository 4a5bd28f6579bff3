#include "apps/cli/zygote_common.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>

namespace tessera::cli::zygote {

namespace {

std::optional<std::string> user_dir() {
  std::string base;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/') {
    base = std::string(xdg) + "/tessera";
  } else {
    base = "/tmp/tessera-" + std::to_string(::getuid());
  }
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) return std::nullopt;
  struct stat st {};
  if (::lstat(base.c_str(), &st) != 0) return std::nullopt;
  // Someone else's directory, a symlink, or one others may enter: not ours to trust.
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 077) != 0) {
    return std::nullopt;
  }
  return base;
}

}  // namespace

std::optional<Paths> paths_for(const std::string& cli_binary) {
  auto dir = user_dir();
  if (!dir) return std::nullopt;
  char name[40];
  std::snprintf(name, sizeof name, "/cli-%016zx", std::hash<std::string>{}(cli_binary));
  Paths p{*dir + name + ".sock", *dir + name + ".lock"};
  if (p.socket.size() >= sizeof(sockaddr_un{}.sun_path)) return std::nullopt;
  return p;
}

const char* refusal_name(Refusal r) {
  switch (r) {
    case Refusal::malformed: return "malformed request";
    case Refusal::other_user: return "another user or group list";
    case Refusal::other_world: return "another namespace, root or control group";
    case Refusal::loader_env: return "other FI_, LD_ or sanitizer variables";
    case Refusal::limits: return "a resource limit, CPU set or nice value it cannot give";
    case Refusal::stale: return "the CLI was rebuilt since the server started";
    case Refusal::busy: return "too many commands at once";
    case Refusal::fork_failed: return "fork failed";
  }
  return "unknown reason";
}

bool loader_variable(const std::string& entry) {
  static constexpr const char* kPrefixes[] = {"FI_",    "LD_",         "ASAN_",   "UBSAN_",
                                              "TSAN_",  "LSAN_",       "MALLOC_", "GLIBC_TUNABLES=",
                                              "PSM_",   "PSM2_",       "IPATH_",  "RDMAV_",
                                              "IBV_",   "HFI_"};
  for (const char* p : kPrefixes) {
    if (entry.rfind(p, 0) == 0) return true;
  }
  return false;
}

bool read_full(int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_full(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace tessera::cli::zygote
