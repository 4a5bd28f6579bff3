#include "apps/cli/zygote_server.hpp"

#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli/zygote_common.hpp"

extern char** environ;

namespace tessera::cli::zygote {

namespace {

constexpr size_t kMaxChildren = 64;
constexpr int kIoTimeoutS = 2;  // a peer that connected sends its request at once
constexpr std::chrono::seconds kRecheck{5};

// What a file on disk is: a rebuilt binary or library differs in one of these.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  int64_t mtime_ns = 0;
  off_t size = 0;
  bool operator==(const FileId&) const = default;
};

std::optional<FileId> file_id(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino,
                static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                st.st_size};
}

// The files whose change makes this server stale: its executable and libtessera.
std::vector<std::string> own_files() {
  std::vector<std::string> files;
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) files.emplace_back(buf, static_cast<size_t>(n));
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const char* name = info->dlpi_name;
        if (name != nullptr && std::strstr(name, "libtessera") != nullptr) {
          static_cast<std::vector<std::string>*>(out)->emplace_back(name);
        }
        return 0;
      },
      &files);
  return files;
}

std::vector<std::optional<FileId>> ids_of(const std::vector<std::string>& files) {
  std::vector<std::optional<FileId>> ids;
  for (const auto& f : files) ids.push_back(file_id(f));
  return ids;
}

// The entries of `env` that loader_variable names, sorted.
std::vector<std::string> loader_env(const std::vector<std::string>& env) {
  std::vector<std::string> out;
  for (const auto& e : env) {
    if (loader_variable(e)) out.push_back(e);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> own_environment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Same namespaces, root and control group as this server: the command sees what it would see.
bool same_world(pid_t peer) {
  static constexpr const char* kSame[] = {"ns/cgroup", "ns/ipc", "ns/mnt", "ns/net", "ns/pid",
                                          "ns/time",   "ns/user", "ns/uts", "root"};
  const std::string p = "/proc/" + std::to_string(peer) + "/";
  for (const char* entry : kSame) {
    auto mine = file_id(std::string("/proc/self/") + entry);
    auto theirs = file_id(p + entry);
    if (!mine || !theirs || mine->dev != theirs->dev || mine->ino != theirs->ino) return false;
  }
  return read_text("/proc/self/cgroup") == read_text(p + "cgroup");
}

bool same_user(int conn, const ucred& cr) {
  if (cr.uid != ::getuid() || cr.gid != ::getgid()) return false;
  std::vector<gid_t> theirs(256);
  socklen_t len = static_cast<socklen_t>(theirs.size() * sizeof(gid_t));
  if (::getsockopt(conn, SOL_SOCKET, SO_PEERGROUPS, theirs.data(), &len) != 0) return false;
  theirs.resize(len / sizeof(gid_t));
  std::vector<gid_t> mine(static_cast<size_t>(std::max(::getgroups(0, nullptr), 0)));
  if (::getgroups(static_cast<int>(mine.size()), mine.data()) < 0) return false;
  std::sort(theirs.begin(), theirs.end());
  std::sort(mine.begin(), mine.end());
  return theirs == mine;
}

// The peer's resource limits, CPU set and nice value, which the child takes on.
struct Limits {
  rlimit lim[RLIM_NLIMITS] = {};
  cpu_set_t cpus{};
  int nice = 0;
};

bool limits_of(pid_t peer, Limits& out) {
  for (int r = 0; r < RLIM_NLIMITS; ++r) {
    rlimit mine{};
    if (::prlimit(peer, static_cast<__rlimit_resource>(r), nullptr, &out.lim[r]) != 0 ||
        ::getrlimit(static_cast<__rlimit_resource>(r), &mine) != 0) {
      return false;
    }
    if (mine.rlim_max != RLIM_INFINITY &&
        (out.lim[r].rlim_max == RLIM_INFINITY || out.lim[r].rlim_max > mine.rlim_max)) {
      return false;  // a child cannot raise a hard limit back up
    }
  }
  if (::sched_getaffinity(peer, sizeof out.cpus, &out.cpus) != 0) return false;
  errno = 0;
  out.nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(peer));
  return errno == 0 && out.nice >= ::getpriority(PRIO_PROCESS, 0);
}

struct Request {
  Header h;
  int fds[kFdCount] = {-1, -1, -1, -1};
  std::vector<std::string> args, env;
  ~Request() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

bool receive(int conn, Request& req) {
  iovec iov{&req.h, sizeof req.h};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof req.fds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c != nullptr && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
    size_t got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    std::memcpy(req.fds, CMSG_DATA(c), std::min(got, size_t{kFdCount}) * sizeof(int));
    if (got != kFdCount) return false;
  } else {
    return false;
  }
  if (n != static_cast<ssize_t>(sizeof req.h) || (msg.msg_flags & MSG_CTRUNC) != 0) return false;
  const Header& h = req.h;
  if (h.magic != kMagic || h.payload > kMaxPayload || h.argc == 0 ||
      size_t{h.argc} + h.envc > h.payload) {
    return false;
  }
  std::string payload(h.payload, '\0');
  if (!read_full(conn, payload.data(), payload.size()) || payload.back() != '\0') return false;
  size_t pos = 0;
  for (uint32_t i = 0; i < h.argc + h.envc; ++i) {
    size_t end = payload.find('\0', pos);
    if (end == std::string::npos) return false;
    (i < h.argc ? req.args : req.env).emplace_back(payload, pos, end - pos);
    pos = end + 1;
  }
  return pos == payload.size();
}

struct Running {
  pid_t pid;
  int conn;
  int pidfd;
  bool killed = false;
};

void send_reply(int conn, ReplyKind kind, int32_t value) {
  Reply r{kind, value};
  (void)write_full(conn, &r, sizeof r);
}

// In the child: become the command and run it. Never returns.
[[noreturn]] void become(Request& req, const Limits& lim, const std::vector<int>& server_fds,
                         MainFn run) {
  for (int fd : server_fds) ::close(fd);
  for (int i = 0; i < 3; ++i) {
    if (req.fds[i] != i) ::dup2(req.fds[i], i);
  }
  if (::fchdir(req.fds[3]) != 0) ::_exit(127);
  for (int& fd : req.fds) {
    if (fd > 2) ::close(fd);
    fd = -1;
  }
  ::setpgid(0, 0);
  ::umask(static_cast<mode_t>(req.h.umask & 0777));
  for (int r = 0; r < RLIM_NLIMITS; ++r) ::setrlimit(static_cast<__rlimit_resource>(r), &lim.lim[r]);
  ::sched_setaffinity(0, sizeof lim.cpus, &lim.cpus);
  ::setpriority(PRIO_PROCESS, 0, lim.nice);
  sigset_t blocked;
  sigemptyset(&blocked);
  for (int sig = 1; sig < NSIG; ++sig) {
    const uint64_t bit = sig <= 64 ? uint64_t{1} << (sig - 1) : 0;
    std::signal(sig, (req.h.ignored & bit) != 0 ? SIG_IGN : SIG_DFL);
    if ((req.h.blocked & bit) != 0) sigaddset(&blocked, sig);
  }
  ::sigprocmask(SIG_SETMASK, &blocked, nullptr);
  ::prctl(PR_SET_NAME, "tessera");

  // environ must outlive every exit handler (libraries read it from their destructors): the
  // arrays are never freed.
  auto* env_store = new std::vector<std::string>(std::move(req.env));
  auto* envp = new std::vector<char*>;
  for (auto& e : *env_store) envp->push_back(e.data());
  envp->push_back(nullptr);
  environ = envp->data();
  auto* args = new std::vector<std::string>(std::move(req.args));
  auto* argv = new std::vector<char*>;
  for (auto& a : *args) argv->push_back(a.data());
  argv->push_back(nullptr);
  std::exit(run(static_cast<int>(args->size()), argv->data()));
}

class Server {
 public:
  Server(int listen_fd, int lock_fd, MainFn run, std::vector<std::string> loader_env)
      : listen_(listen_fd), lock_(lock_fd), run_(run), files_(own_files()),
        file_ids_(ids_of(files_)), loader_env_(std::move(loader_env)) {
    const char* idle = std::getenv("TESSERA_CLI_SERVER_IDLE_S");
    if (idle != nullptr && std::atoi(idle) > 0) idle_ = std::chrono::seconds(std::atoi(idle));
  }

  void loop(const std::string& socket_path) {
    auto last_work = std::chrono::steady_clock::now();
    while (true) {
      if (!accepting_ && running_.empty()) return;
      std::vector<pollfd> pfds;
      if (accepting_) pfds.push_back({listen_, POLLIN, 0});
      for (const auto& r : running_) {
        pfds.push_back({r.pidfd, POLLIN, 0});
        pfds.push_back({r.killed ? -1 : r.conn, POLLIN, 0});
      }
      // Awake every kRecheck to notice a binary rebuilt or deleted (a test's copy): a stale
      // server would otherwise keep the old file's blocks for its whole idle time.
      std::chrono::steady_clock::duration wait = kRecheck;
      if (running_.empty()) {
        auto left = idle_ - (std::chrono::steady_clock::now() - last_work);
        if (left <= std::chrono::seconds(0) || stale()) {
          stop(socket_path);
          continue;
        }
        wait = std::min<std::chrono::steady_clock::duration>(wait, left);
      }
      int n = ::poll(pfds.data(), pfds.size(),
                     static_cast<int>(
                         std::chrono::duration_cast<std::chrono::milliseconds>(wait).count() + 1));
      if (n < 0 && errno != EINTR) return;
      if (n <= 0) continue;
      last_work = std::chrono::steady_clock::now();
      const size_t base = accepting_ ? 1 : 0;
      for (size_t k = 0; k < running_.size(); ++k) {
        Running& r = running_[k];
        const pollfd& conn = pfds[base + 2 * k + 1];
        if (!r.killed && (conn.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
          // The launcher went away (killed): so does its command, as it would have.
          ::kill(r.pid, SIGKILL);
          r.killed = true;
        }
        if ((pfds[base + 2 * k].revents & POLLIN) != 0) reap(r);
      }
      std::erase_if(running_, [](const Running& r) { return r.pid == 0; });
      if (base == 1 && (pfds[0].revents & POLLIN) != 0) accept_one(socket_path);
    }
  }

 private:
  // The binary or libtessera rebuilt, replaced or deleted since the server started.
  bool stale() const { return ids_of(files_) != file_ids_; }

  void stop(const std::string& socket_path) {
    if (!accepting_) return;
    accepting_ = false;
    ::unlink(socket_path.c_str());  // ours: a new server needs the lock we hold
    ::close(listen_);
  }

  std::optional<Refusal> check(int conn, const ucred& cr, const Request& req, Limits& lim) {
    if (!same_user(conn, cr)) return Refusal::other_user;
    if (!same_world(cr.pid)) return Refusal::other_world;
    if (loader_env(req.env) != loader_env_) return Refusal::loader_env;
    if (!limits_of(cr.pid, lim)) return Refusal::limits;
    if (running_.size() >= kMaxChildren) return Refusal::busy;
    return std::nullopt;
  }

  void accept_one(const std::string& socket_path) {
    int conn = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return;
    timeval tv{kIoTimeoutS, 0};
    ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ucred cr{};
    socklen_t len = sizeof cr;
    Request req;
    Limits lim;
    std::optional<Refusal> refusal;
    if (stale()) {
      // First: a launcher of a newer build may not even speak this server's framing.
      stop(socket_path);
      refusal = Refusal::stale;
    } else if (::getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 ||
               !receive(conn, req)) {
      refusal = Refusal::malformed;
    } else {
      refusal = check(conn, cr, req, lim);
    }
    pid_t pid = -1;
    if (!refusal) {
      std::vector<int> server_fds{lock_, conn};
      if (accepting_) server_fds.push_back(listen_);
      for (const auto& r : running_) {
        server_fds.push_back(r.conn);
        server_fds.push_back(r.pidfd);
      }
      pid = ::fork();
      if (pid == 0) become(req, lim, server_fds, run_);
      if (pid < 0) refusal = Refusal::fork_failed;
    }
    int pidfd = pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)) : -1;
    if (pid > 0 && pidfd < 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      refusal = Refusal::fork_failed;
    }
    if (refusal) {
      send_reply(conn, ReplyKind::refused, static_cast<int32_t>(*refusal));
      ::close(conn);
      return;
    }
    ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    send_reply(conn, ReplyKind::started, pid);
    running_.push_back({pid, conn, pidfd});
  }

  // The child ended: report its status; pid 0 marks the entry for removal.
  void reap(Running& r) {
    int st = 0;
    while (::waitpid(r.pid, &st, 0) < 0 && errno == EINTR) {
    }
    send_reply(r.conn, ReplyKind::exited, st);
    ::close(r.conn);
    ::close(r.pidfd);
    r.pid = 0;
  }

  int listen_;
  int lock_;
  MainFn run_;
  std::vector<std::string> files_;
  std::vector<std::optional<FileId>> file_ids_;
  std::vector<std::string> loader_env_;
  std::vector<Running> running_;
  bool accepting_ = true;
  std::chrono::steady_clock::duration idle_ = std::chrono::seconds(600);
};

}  // namespace

int serve(const char* socket_path, const char* lock_path, void (*warm)(), MainFn run) {
  int lock = ::open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX | LOCK_NB) != 0) return 0;  // another server runs
  // As the launcher started us: warm() may set defaults of its own, which commands need not.
  auto env = loader_env(own_environment());
  warm();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (std::strlen(socket_path) >= sizeof addr.sun_path) return 2;
  std::strcpy(addr.sun_path, socket_path);
  ::unlink(socket_path);  // a dead server's; the lock says none runs
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 64) != 0) {
    return 2;
  }
  Server server(fd, lock, run, std::move(env));
  server.loop(socket_path);
  return 0;
}

}  // namespace tessera::cli::zygote
