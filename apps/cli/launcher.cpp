// tessera: the launcher of the command-line client (apps/cli/zygote_common.hpp says why).
//
// Links neither libtessera nor libfabric. It hands the command to the user's CLI server and
// mirrors the outcome: the child's exit code, or the signal that ended it. When there is no
// server it starts one in the background and runs this command itself by exec'ing
// `tessera-cli` (beside this program); so it does whenever the server refuses (another user,
// namespace or loader environment, a rebuilt binary) and when $TESSERA_CLI_DIRECT is set.
// Signals the launcher receives (INT, TERM, HUP, QUIT) are passed on to the child.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "apps/cli/zygote_common.hpp"

extern char** environ;

namespace z = tessera::cli::zygote;

namespace {

std::atomic<pid_t> g_child{0};

std::string self_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  std::string p(buf);
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

[[noreturn]] void run_directly(const std::string& cli, char** argv) {
  ::execv(cli.c_str(), argv);
  std::fprintf(stderr, "tessera: cannot run %s: %s\n", cli.c_str(), std::strerror(errno));
  std::exit(127);
}

// Starts the server for `cli` in its own session, detached from this terminal and from every
// descriptor of ours; it exits at once if another one holds the lock.
void start_server(const std::string& cli, const z::Paths& paths) {
  pid_t pid = ::fork();
  if (pid < 0) return;
  if (pid == 0) {
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    // Holding no directory busy (a mount point to unmount, a test's temporary tree).
    if (::chdir("/") != 0) ::_exit(127);
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    ::close_range(3, ~0U, 0);
    ::execl(cli.c_str(), "tessera-cli", "--zygote-serve", paths.socket.c_str(),
            paths.lock.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
}

int connect_to(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// An open descriptor for each of 0, 1, 2 (/dev/null for a closed one) and the working directory.
bool command_fds(int (&fds)[z::kFdCount]) {
  for (int i = 0; i < 3; ++i) {
    fds[i] = ::fcntl(i, F_GETFD) >= 0 ? i : ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fds[i] < 0) return false;
  }
  fds[3] = ::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  return fds[3] >= 0;
}

bool send_request(int sock, int argc, char** argv) {
  std::string payload;
  for (int i = 0; i < argc; ++i) payload.append(argv[i], std::strlen(argv[i]) + 1);
  uint32_t envc = 0;
  for (char** e = environ; *e != nullptr; ++e, ++envc) payload.append(*e, std::strlen(*e) + 1);
  if (payload.size() > z::kMaxPayload) return false;
  z::Header h;
  mode_t um = ::umask(0);
  ::umask(um);
  h.umask = um;
  h.argc = static_cast<uint32_t>(argc);
  h.envc = envc;
  h.payload = static_cast<uint32_t>(payload.size());
  sigset_t blocked;
  ::sigprocmask(SIG_SETMASK, nullptr, &blocked);
  for (int sig = 1; sig <= 64 && sig < NSIG; ++sig) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) {
      h.ignored |= uint64_t{1} << (sig - 1);
    }
    if (sigismember(&blocked, sig) == 1) h.blocked |= uint64_t{1} << (sig - 1);
  }

  int fds[z::kFdCount];
  if (!command_fds(fds)) return false;
  iovec iov{&h, sizeof h};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(c), fds, sizeof fds);
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof h)) return false;
  return z::write_full(sock, payload.data(), payload.size());
}

void forward(int sig) {
  pid_t p = g_child.load();
  if (p > 0) ::kill(p, sig);
}

// Ends this process the way the child ended.
[[noreturn]] void mirror(int status) {
  if (WIFEXITED(status)) std::exit(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);  // the child dumped its core if it was going to
    std::signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::raise(sig);
    std::exit(128 + sig);
  }
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cli = self_dir() + "/tessera-cli";
  const char* direct = std::getenv("TESSERA_CLI_DIRECT");
  if (direct != nullptr && direct[0] != '\0' && std::strcmp(direct, "0") != 0) {
    run_directly(cli, argv);
  }
  auto paths = z::paths_for(cli);
  if (!paths) run_directly(cli, argv);
  int sock = connect_to(paths->socket);
  if (sock < 0) {
    start_server(cli, *paths);  // for the next command; this one does not wait for it
    run_directly(cli, argv);
  }
  if (!send_request(sock, argc, argv)) run_directly(cli, argv);
  z::Reply r{};
  if (!z::read_full(sock, &r, sizeof r) || r.kind != z::ReplyKind::started) {
    if (std::getenv("TESSERA_CLI_DEBUG") != nullptr) {
      std::fprintf(stderr, "tessera: the CLI server did not take the command (%s); running it here\n",
                   r.kind == z::ReplyKind::refused ? z::refusal_name(static_cast<z::Refusal>(r.value))
                                                   : "no reply");
    }
    ::close(sock);
    run_directly(cli, argv);
  }
  g_child.store(r.value);
  if (std::getenv("TESSERA_CLI_DEBUG") != nullptr) {
    std::fprintf(stderr, "tessera: the CLI server runs the command as pid %d\n", r.value);
  }
  struct sigaction sa {};
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    // One the caller ignores (nohup, a background job's INT) the command ignores too.
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler != SIG_IGN) {
      ::sigaction(sig, &sa, nullptr);
    }
  }
  if (!z::read_full(sock, &r, sizeof r) || r.kind != z::ReplyKind::exited) {
    std::fprintf(stderr,
                 "tessera: the CLI server ended while command %d ran; its outcome is unknown\n",
                 static_cast<int>(g_child.load()));
    return 1;
  }
  mirror(r.value);
}
