#include "tests/integration/server_process.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "security/authority.hpp"

namespace tessera::testing {

const std::string& test_system_key() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/tessera-test-key-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (d == nullptr) return std::string();
    static const std::string dir = d;
    std::string p = dir + "/system.key";
    if (!security::SystemKey::generate(p).is_ok()) return std::string();
    auto k = security::SystemKey::load(p);
    if (!k) return std::string();
    security::set_default_authority(security::Authority(*k, ""));
    ::setenv("TESSERA_SYSTEM_KEY", p.c_str(), 1);  // the CLI a test runs administers too
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
    return p;
  }();
  return path;
}

ServerProcess::~ServerProcess() {
  kill9();
}

Status ServerProcess::start(std::chrono::seconds timeout) {
  std::string port_file = opts_.dir + "/port";
  ::unlink(port_file.c_str());
  std::vector<std::string> args;
  if (!opts_.config.empty()) {
    args = {TESSERA_SERVER_BIN, "--config",      opts_.config, "--port-file",
            port_file,          "--storage-dir", opts_.dir};
    args.insert(args.end(), opts_.extra.begin(), opts_.extra.end());
  } else {
    // A restart keeps the control port, so engines that point at this one find it again
    // (tests/port_reservation.hpp). In another network namespace the engine picks it (this
    // process cannot hold it there).
    if (!reservation_ && opts_.netns.empty()) {
      auto r = PortReservation::make(opts_.host);
      if (!r) return r.status();
      reservation_ = std::move(*r);
      port_ = reservation_->port();
    }
    const std::string listen = opts_.host + ":" + std::to_string(port_);
    args = {TESSERA_SERVER_BIN, "--listen",       listen,
            "--port-file",      port_file,        "--storage-dir",
            opts_.dir,          "--storage-size", opts_.storage_size,
            "--provider",       opts_.provider,   "--block-backend",
            opts_.backend,      "--targets",      std::to_string(opts_.targets)};
    bool keyed = false;
    for (auto& e : opts_.extra) {
      args.push_back(e);
      keyed = keyed || e == "--insecure" || e == "--system-key";
    }
    if (!keyed) {
      if (test_system_key().empty()) return Status(Errc::internal, "cannot make a test system key");
      args.insert(args.end(), {"--system-key", test_system_key()});
    }
  }
  ++starts_;
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) return Status(Errc::internal, "fork failed");
  if (pid_ == 0) {
    // The engine dies with the test process, also one that crashed before it could stop it
    // (engines are started from the test's main thread, whose end this follows).
    (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(127);
    if (!opts_.netns.empty()) {
      int ns = ::open(("/run/netns/" + opts_.netns).c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) _exit(126);
      ::close(ns);
    }
    int fd = ::open((opts_.dir + "/server.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(port_file);
    if (in >> port_) return Status();
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return Status(Errc::internal, "tessera-server exited during start-up:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill9();
  return Status(Errc::timeout, "tessera-server did not publish its port:\n" + log());
}

void ServerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
}

int ServerProcess::terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool ServerProcess::alive() {
  if (pid_ <= 0) return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string ServerProcess::log() const {
  std::ifstream in(log_path());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::pair<int, std::string> run_command(const std::vector<std::string>& argv,
                                        const std::string& stdin_data) {
  int in_pipe[2], out_pipe[2];
  if (::pipe(in_pipe) != 0 || ::pipe(out_pipe) != 0) return {-1, ""};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    std::vector<char*> args;
    std::vector<std::string> copy = argv;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  std::thread writer([&] {
    size_t off = 0;
    while (off < stdin_data.size()) {
      ssize_t n = ::write(in_pipe[1], stdin_data.data() + off, stdin_data.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(in_pipe[1]);
  });
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(out_pipe[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(out_pipe[0]);
  writer.join();
  int st = 0;
  ::waitpid(pid, &st, 0);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace tessera::testing
