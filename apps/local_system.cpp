#include "apps/local_system.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "client/client.hpp"
#include "client/mgmt_client.hpp"
#include "security/credential.hpp"

namespace tessera::local {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// The last lines of an engine's log, for error messages.
std::string log_tail(const std::string& path, size_t lines = 8) {
  std::string text = read_file(path);
  size_t pos = text.size();
  for (size_t n = 0; n <= lines && pos > 0;) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      pos = 0;
      break;
    }
    ++n;
  }
  std::string tail = text.substr(pos);
  while (!tail.empty() && (tail.front() == '\n')) tail.erase(0, 1);
  return tail;
}

std::string self_dir() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

// A program beside `near` (a path of another program), beside this one, or on $PATH.
Result<std::string> find_program(const std::string& name, const std::string& near) {
  for (const std::string& d :
       {near.empty() ? std::string() : fs::path(near).parent_path().string(), self_dir()}) {
    std::string c = d + "/" + name;
    if (!d.empty() && ::access(c.c_str(), X_OK) == 0) return c;
  }
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "");
  std::string d;
  while (std::getline(ss, d, ':')) {
    std::string c = d + "/" + name;
    if (!d.empty() && ::access(c.c_str(), X_OK) == 0) return c;
  }
  return Status(Errc::not_found, fmt::format("{} not found beside {} or on $PATH", name,
                                             near.empty() ? "this program" : near));
}

Result<std::string> find_server(const std::string& given) {
  if (!given.empty()) {
    if (::access(given.c_str(), X_OK) != 0) {
      return Status(Errc::invalid_argument,
                    fmt::format("cannot run '{}': {}", given, std::strerror(errno)));
    }
    return fs::absolute(given).string();
  }
  std::string beside = self_dir() + "/tessera-server";
  if (::access(beside.c_str(), X_OK) == 0) return beside;
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "");
  std::string d;
  while (std::getline(ss, d, ':')) {
    std::string c = d + "/tessera-server";
    if (!d.empty() && ::access(c.c_str(), X_OK) == 0) return c;
  }
  return Status(Errc::not_found,
                "tessera-server not found beside this program or on $PATH (give --server)");
}

// From /proc/PID/stat: the state letter ('Z': zombie; 0 when the process is gone) and the
// kernel's flags word.
struct ProcStat {
  char state = 0;
  unsigned long flags = 0;
};

ProcStat proc_stat(pid_t pid) {
  std::string stat = read_file(fmt::format("/proc/{}/stat", pid));
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return {};
  // After "(comm) ": state ppid pgrp session tty_nr tpgid flags ...
  std::istringstream fields(stat.substr(close + 2));
  ProcStat ps;
  std::string skip;
  fields >> ps.state >> skip >> skip >> skip >> skip >> skip >> ps.flags;
  return ps;
}

// True when a SIGKILL waits for the process (its first thread's or the whole process's
// pending set in /proc/PID/status): a process killed on a busy machine may not have run since.
bool kill_pending(pid_t pid) {
  std::istringstream status(read_file(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("SigPnd:", 0) != 0 && line.rfind("ShdPnd:", 0) != 0) continue;
    const unsigned long long mask = std::strtoull(line.c_str() + 7, nullptr, 16);
    if ((mask >> (SIGKILL - 1)) & 1) return true;
  }
  return false;
}

// A process killed a moment ago may still be exiting: the kill may not have been acted on yet,
// then its threads close its sockets and files one by one, and its first thread may already
// be a zombie while the others still hold them (or have given up the memory, so /proc shows
// no command line). True while that lasts.
bool exiting(pid_t pid) {
  const ProcStat ps = proc_stat(pid);
  constexpr unsigned long kPfExiting = 0x4;  // include/linux/sched.h
  if (ps.state == 0) return false;
  if (ps.state != 'Z' && ps.state != 'X') {
    return (ps.flags & kPfExiting) != 0 || kill_pending(pid);
  }
  std::error_code ec;
  size_t threads = 0;
  for (auto it = std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++threads;
  }
  return threads > 1;
}

bool gone(pid_t pid) {
  if (pid <= 0) return true;
  // Decided only once the process has finished exiting (at most 30 s): neither taken for a
  // running engine nor started again while it still holds its port and files.
  for (int i = 0; i < 3000 && exiting(pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int st = 0;
  if (::waitpid(pid, &st, WNOHANG) == pid) return true;  // our child (started by this call)
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  const char s = proc_stat(pid).state;
  return s == 0 || s == 'Z' || s == 'X';
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  int logfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int nullfd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (logfd < 0 || nullfd < 0) {
    if (logfd >= 0) ::close(logfd);
    if (nullfd >= 0) ::close(nullfd);
    return -1;
  }
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  // Closed by the exec: until then the child is not yet the engine (its /proc cmdline is
  // ours), and a check of whether the engine runs must not see it so.
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    ::close(logfd);
    ::close(nullfd);
    return -1;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    // The engine outlives this program: its own session, no terminal, output to its log and
    // nothing else inherited (a caller reading our stdout must see it close when we exit).
    ::setsid();
    ::dup2(nullfd, 0);
    ::dup2(logfd, 1);
    ::dup2(logfd, 2);
    ::dup2(exec_pipe[1], 3);  // without FD_CLOEXEC; made close-on-exec again below
    ::close_range(4, ~0U, 0);
    ::fcntl(3, F_SETFD, FD_CLOEXEC);
    ::execv(args[0], args.data());
    const char msg[] = "tessera system start: exec of tessera-server failed\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    _exit(127);
  }
  ::close(exec_pipe[1]);
  if (pid > 0) {
    char c;
    while (::read(exec_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
  }
  ::close(exec_pipe[0]);
  ::close(logfd);
  ::close(nullfd);
  return pid;
}

// A port for a control socket that keeps it across restarts: one no socket holds now, and,
// where the machine leaves room, outside the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), so that while the engine is down the kernel gives
// it to no connection and no socket bound to port 0 (an engine's own fabric endpoints are, and
// start before its control socket). Where the range leaves no room, the kernel's choice; an
// engine that finds its port taken fails to start, and says so.
Result<uint16_t> free_port() {
  auto try_bind = [](uint16_t port) -> Result<uint16_t> {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status(Errc::io_error, fmt::format("socket: {}", std::strerror(errno)));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    socklen_t len = sizeof(a);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      Status st(Errc::io_error, fmt::format("cannot find a free port: {}", std::strerror(errno)));
      ::close(fd);
      return st;
    }
    ::close(fd);
    return ntohs(a.sin_port);
  };
  unsigned lo = 0, hi = 0;
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  if (range >> lo >> hi && lo > hi) std::swap(lo, hi);
  // Below the range (from half its start), else above it.
  unsigned first = 0, last = 0;
  if (lo >= 4096) {
    first = lo / 2;
    last = lo - 1;
  } else if (hi != 0 && hi <= 65535 - 4096) {
    first = hi + 1;
    last = 65535;
  }
  if (first != 0) {
    std::random_device rd;
    const unsigned span = last - first + 1;
    const unsigned start = rd() % span;
    for (unsigned i = 0; i < 256; ++i) {
      auto p = try_bind(static_cast<uint16_t>(first + (start + i * 7919u) % span));
      if (p) return p;
    }
  }
  return try_bind(0);
}

Result<uint16_t> port_of(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return Status(Errc::invalid_argument, "bad address " + addr);
  return static_cast<uint16_t>(std::strtoul(addr.c_str() + colon + 1, nullptr, 10));
}

// Starts one engine and waits for its control port.
Result<EngineRecord> start_engine(const SystemFile& sys, uint32_t rank, uint16_t port,
                                  const StartOptions& o) {
  EngineRecord e;
  e.rank = rank;
  e.dir = fmt::format("{}/rank{}", sys.dir, rank);
  e.log = e.dir + "/engine.log";
  std::error_code ec;
  fs::create_directories(e.dir, ec);
  if (ec) return Status(Errc::io_error, fmt::format("cannot create {}: {}", e.dir, ec.message()));
  std::string port_file = e.dir + "/port";
  fs::remove(port_file, ec);
  std::vector<std::string> argv{sys.server,
                                "--rank",
                                std::to_string(rank),
                                "--listen",
                                fmt::format("127.0.0.1:{}", port),
                                "--port-file",
                                port_file,
                                "--provider",
                                sys.provider,
                                "--targets",
                                std::to_string(sys.targets),
                                "--storage-dir",
                                e.dir,
                                "--storage-size",
                                sys.scratch_size};
  if (sys.insecure) {
    argv.push_back("--insecure");
  } else {
    argv.insert(argv.end(), {"--system-key", sys.system_key, "--node-keys", sys.node_keys});
  }
  if (!sys.access_points.empty()) {
    argv.push_back("--access-points");
    argv.push_back(mgmt::access_points_text(sys.access_points));
  } else if (rank == 0) {
    argv.push_back("--mgmt-host");
  } else {
    argv.push_back("--mgmt");
    argv.push_back(sys.mgmt);
  }
  argv.insert(argv.end(), sys.engine_args.begin(), sys.engine_args.end());
  if (!o.log_level.empty()) argv.insert(argv.end(), {"--log-level", o.log_level});
  e.pid = spawn(argv, e.log);
  if (e.pid < 0) {
    return Status(Errc::io_error,
                  fmt::format("cannot start rank {}: {}", rank, std::strerror(errno)));
  }
  e.control.clear();
  return e;
}

// Waits for the engine's port file (the engine writes it once it serves).
Status await_port(EngineRecord& e, Clock::time_point deadline) {
  std::string port_file = e.dir + "/port";
  while (Clock::now() < deadline) {
    std::string p = read_file(port_file);
    if (!p.empty() && p.back() == '\n') {
      e.control = "127.0.0.1:" + p.substr(0, p.size() - 1);
      return Status();
    }
    if (gone(e.pid)) {
      return Status(Errc::unavailable, fmt::format("rank {} exited during start; its log ({}):\n{}",
                                                   e.rank, e.log, log_tail(e.log)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status(Errc::timeout,
                fmt::format("rank {} did not open its control port; its log ({}):\n{}", e.rank,
                            e.log, log_tail(e.log)));
}

// Whether `pointer` can become a link to system file `target` (it is that file, a link, or
// nothing is there).
// The keys of a new system under DIR/keys (the directory and the secret keys owner-only).
Status make_keys(SystemFile& sys) {
  const std::string kd = sys.dir + "/keys";
  sys.system_key = kd + "/system.key";
  sys.node_keys = kd + "/nodes";
  sys.node_key = kd + "/node.key";
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  sys.node = security::valid_node_name(host) ? host : "localhost";
  std::error_code ec;
  fs::create_directories(sys.node_keys, ec);
  if (ec) return Status(Errc::io_error, fmt::format("cannot create {}: {}", kd, ec.message()));
  fs::permissions(kd, fs::perms::owner_all, ec);
  if (!fs::exists(sys.system_key, ec)) TESSERA_TRY(security::SystemKey::generate(sys.system_key));
  if (!fs::exists(sys.node_key, ec)) {
    TESSERA_TRY(
        security::NodeSigner::generate(sys.node_key, sys.node_keys + "/" + sys.node + ".pub"));
  }
  return Status();
}

bool agent_alive(const SystemFile& sys) {
  if (sys.agent_pid <= 0 || gone(sys.agent_pid)) return false;
  std::string cmd = read_file(fmt::format("/proc/{}/cmdline", sys.agent_pid));
  return cmd.find("tessera-agent") != std::string::npos && cmd.find(sys.agent) != std::string::npos;
}

// Starts the node agent unless it runs, and waits until it answers.
Status start_agent(SystemFile& sys, Clock::time_point deadline) {
  if (agent_alive(sys)) return Status();
  auto bin = find_program("tessera-agent", sys.server);
  if (!bin) return bin.status();
  sys.agent = sys.dir + "/agent.sock";
  if (sys.agent.size() >= 100) {
    return Status(Errc::invalid_argument,
                  fmt::format("the agent's socket path {} is too long for a Unix socket: use a "
                              "shorter --dir",
                              sys.agent));
  }
  const std::string log = sys.dir + "/agent.log";
  sys.agent_pid =
      spawn({*bin, "--socket", sys.agent, "--node-key", sys.node_key, "--node", sys.node}, log);
  if (sys.agent_pid < 0) {
    return Status(Errc::io_error,
                  fmt::format("cannot start tessera-agent: {}", std::strerror(errno)));
  }
  while (true) {
    auto c = security::request_credential(sys.agent, security::BodyHash{},
                                          std::chrono::milliseconds(1000));
    if (c) return Status();
    if (gone(sys.agent_pid)) {
      return Status(
          Errc::unavailable,
          fmt::format("tessera-agent exited during start; its log ({}):\n{}", log, log_tail(log)));
    }
    if (Clock::now() >= deadline) {
      return Status(Errc::timeout, fmt::format("tessera-agent did not answer on {}: {}", sys.agent,
                                               c.status().to_string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Status check_pointer(const std::string& pointer, const std::string& target) {
  if (pointer.empty()) return Status();
  std::error_code ec;
  fs::path p(pointer);
  if (fs::is_directory(p, ec)) p /= kSystemFileName;
  if (fs::weakly_canonical(p, ec) == fs::weakly_canonical(target, ec)) return Status();
  if (fs::exists(fs::symlink_status(p, ec)) && !fs::is_symlink(fs::symlink_status(p, ec))) {
    return Status(Errc::exists, fmt::format("{} exists and is not a link to a system file; "
                                            "remove it or give --system",
                                            p.string()));
  }
  return Status();
}

Status link_pointer(const std::string& pointer, const std::string& target) {
  if (pointer.empty()) return Status();
  std::error_code ec;
  fs::path p(pointer);
  if (fs::is_directory(p, ec)) p /= kSystemFileName;
  if (fs::equivalent(p, target, ec)) return Status();
  fs::create_directories(p.parent_path(), ec);
  if (fs::exists(fs::symlink_status(p, ec)) && !fs::is_symlink(fs::symlink_status(p, ec))) {
    return Status(Errc::exists, fmt::format("{} exists and is not a link to a system file; "
                                            "remove it or give --system",
                                            p.string()));
  }
  fs::path tmp = p.string() + ".tmp";
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp, ec);
  if (!ec) fs::rename(tmp, p, ec);
  if (ec) {
    return Status(Errc::io_error,
                  fmt::format("cannot link {} to {}: {}", p.string(), target, ec.message()));
  }
  return Status();
}

}  // namespace

bool engine_alive(const EngineRecord& e) {
  if (gone(e.pid)) return false;
  // Pids are reused (quickly where pid_max is 32768): only a tessera-server whose arguments
  // name this engine's directory is this engine.
  std::string cmd = read_file(fmt::format("/proc/{}/cmdline", e.pid));
  std::vector<std::string> args;
  for (size_t pos = 0; pos < cmd.size();) {
    size_t end = cmd.find('\0', pos);
    if (end == std::string::npos) end = cmd.size();
    args.push_back(cmd.substr(pos, end - pos));
    pos = end + 1;
  }
  if (args.empty() || args[0].find("tessera-server") == std::string::npos) return false;
  return std::find(args.begin(), args.end(), e.dir) != args.end();
}

Result<StartReport> start(const StartOptions& o, const Progress& progress) {
  if (o.dir.empty()) return Status(Errc::invalid_argument, "give the system's directory (--dir)");
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  if (ec) return Status(Errc::io_error, fmt::format("cannot create {}: {}", o.dir, ec.message()));
  const std::string dir = fs::canonical(o.dir).string();

  // One start at a time per directory.
  int lock = ::open((dir + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || ::flock(lock, LOCK_EX | LOCK_NB) != 0) {
    if (lock >= 0) ::close(lock);
    return Status(Errc::busy, fmt::format("another `tessera system start` runs on {}", dir));
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};

  StartReport rep;
  SystemFile& sys = rep.sys;
  const std::string path = dir + "/" + kSystemFileName;
  if (fs::exists(path, ec)) {
    auto old = SystemFile::load(path);
    if (!old) return old.status();
    sys = std::move(*old);
    if (o.targets != 0 && o.targets != sys.targets) {
      return Status(Errc::invalid_argument,
                    fmt::format("the system in {} has {} targets per engine, not {}", dir,
                                sys.targets, o.targets));
    }
    if (!o.provider.empty() && o.provider != sys.provider) {
      return Status(Errc::invalid_argument, fmt::format("the system in {} uses provider {}, not {}",
                                                        dir, sys.provider, o.provider));
    }
    if (o.access_points != 0 && o.access_points != sys.access_points.size()) {
      return Status(Errc::invalid_argument,
                    sys.access_points.empty()
                        ? fmt::format("the system in {} runs its management service on rank 0 "
                                      "alone; it cannot start with {} access points",
                                      dir, o.access_points)
                        : fmt::format("the system in {} has {} access points, not {}", dir,
                                      sys.access_points.size(), o.access_points));
    }
    if (o.engines != 0 && o.engines < sys.engines.size()) {
      return Status(Errc::invalid_argument,
                    fmt::format("the system in {} has {} engines; it cannot start with {}", dir,
                                sys.engines.size(), o.engines));
    }
  } else {
    sys.targets = o.targets != 0 ? o.targets : 2;
    sys.provider = o.provider.empty() ? "tcp;ofi_rxm" : o.provider;
    sys.scratch_size = o.scratch_size;
    sys.insecure = o.insecure;
  }
  if (o.insecure && !sys.insecure) {
    return Status(Errc::invalid_argument,
                  fmt::format("the system in {} was made secure; it cannot restart insecure", dir));
  }
  sys.dir = dir;
  sys.path = path;
  auto server = find_server(o.server.empty() ? sys.server : o.server);
  if (!server) return server.status();
  sys.server = *server;
  if (!o.engine_args.empty()) sys.engine_args = o.engine_args;
  const uint32_t want = o.engines != 0        ? o.engines
                        : sys.engines.empty() ? 3
                                              : static_cast<uint32_t>(sys.engines.size());
  if (want == 0 || want > 1024) {
    return Status(Errc::invalid_argument, "the number of engines must be between 1 and 1024");
  }
  if (sys.engines.empty() && o.access_points != 0) {
    // A new replicated system: ranks 0..n-1 are the access points, on ports chosen now and
    // kept (the other engines and the clients know the service by them).
    if (o.insecure) {
      return Status(Errc::invalid_argument,
                    "access points prove the system key to each other: an insecure system has "
                    "one management host (drop --access-points or --insecure)");
    }
    if (o.access_points > want || o.access_points > 7) {
      return Status(Errc::invalid_argument,
                    fmt::format("{} access points need at least as many engines (have {}; at "
                                "most 7; 3 or 5 survive the loss of 1 or 2)",
                                o.access_points, want));
    }
    sys.access_points.clear();
    for (uint32_t r = 0; r < o.access_points; ++r) {
      auto c = free_port();
      if (!c) return c.status();
      auto f = free_port();
      if (!f) return f.status();
      sys.access_points.push_back(
          {r, fmt::format("127.0.0.1:{}", *c), fmt::format("127.0.0.1:{}", *f)});
    }
    TESSERA_TRY(mgmt::check_access_points(sys.access_points));
  }
  if (!sys.access_points.empty()) {
    sys.mgmt.clear();
    for (const auto& ap : sys.access_points) sys.mgmt += (sys.mgmt.empty() ? "" : ",") + ap.control;
  }

  std::map<uint32_t, EngineRecord> recs;
  for (const auto& e : sys.engines) recs[e.rank] = e;
  std::vector<uint32_t> to_start;
  const std::set<uint32_t> only(o.only.begin(), o.only.end());
  for (uint32_t r : only) {
    if (recs.count(r) == 0) {
      return Status(Errc::invalid_argument,
                    fmt::format("the system in {} has no rank {} (ranks 0..{})", dir, r,
                                recs.empty() ? 0 : recs.rbegin()->first));
    }
  }
  for (uint32_t r = 0; r < want; ++r) {
    auto it = recs.find(r);
    if (it != recs.end() && engine_alive(it->second)) {
      rep.running.push_back(r);  // every rank that runs, named or not
    } else if (only.empty() || only.count(r) != 0) {
      to_start.push_back(r);
    }
  }
  // The link to the system must be possible before anything starts: a start never half fails.
  TESSERA_TRY(check_pointer(o.pointer, path));
  const auto deadline = Clock::now() + o.wait;
  bool started_agent = false;
  if (!sys.insecure) {
    TESSERA_TRY(make_keys(sys));
    started_agent = !agent_alive(sys);
    if (started_agent) progress("starting tessera-agent (vouches for this node's users)");
    TESSERA_TRY(start_agent(sys, deadline));
  }
  security::set_default_authority(authority(sys));
  std::vector<pid_t> spawned;
  const size_t aps = sys.access_points.size();
  // Starts `ranks` at once, then waits for their control ports. An access point listens on its
  // recorded port; rank 0 hosting the service alone on its recorded one (the others and the
  // clients know the service by it), chosen by free_port() at its first start; other engines
  // on any free port.
  auto start_ranks = [&](const std::vector<uint32_t>& ranks) -> Status {
    std::vector<EngineRecord> fresh;
    for (uint32_t r : ranks) {
      uint16_t port = 0;
      std::string what;
      if (r < aps) {
        auto p = port_of(sys.access_points[r].control);
        if (!p) return p.status();
        port = *p;
        what = fmt::format(" (access point, port {})", port);
      } else if (aps == 0 && r == 0) {
        if (recs.count(0) != 0) {
          auto p = port_of(recs[0].control);
          if (p) port = *p;
        }
        what = port != 0 ? fmt::format(" (management service) on its recorded port {}", port)
                         : std::string(" (management service)");
        if (port == 0) {
          auto p = free_port();
          if (!p) return p.status();
          port = *p;
        }
      }
      progress(fmt::format("starting rank {}{}", r, what));
      auto e = start_engine(sys, r, port, o);
      if (!e) return e.status();
      spawned.push_back(e->pid);
      fresh.push_back(std::move(*e));
    }
    for (auto& e : fresh) {
      TESSERA_TRY(await_port(e, deadline));
      rep.started.push_back(e.rank);
      recs[e.rank] = std::move(e);
    }
    return Status();
  };
  auto launch = [&]() -> Status {
    // Access points and engines at once: the engines find the leader among them, retrying until
    // one is elected. A single management host first: the others need its address.
    std::vector<uint32_t> rest;
    for (uint32_t r : to_start) {
      if (aps != 0 || r != 0) rest.push_back(r);
    }
    if (aps == 0) {
      if (rest.size() != to_start.size()) TESSERA_TRY(start_ranks({0}));
      sys.mgmt = recs[0].control;
    }
    return start_ranks(rest);
  };
  if (Status st = launch(); !st.is_ok()) {
    // Nothing half-started stays behind: the engines this call started are killed, and the
    // agent if this call started it (the system file that would name it is not written).
    for (pid_t p : spawned) {
      if (!gone(p)) ::kill(p, SIGKILL);
    }
    if (started_agent && agent_alive(sys)) ::kill(sys.agent_pid, SIGKILL);
    return st;
  }
  sys.engines.clear();
  for (auto& [r, e] : recs) sys.engines.push_back(e);
  TESSERA_TRY(sys.save());

  // Serving: the management service lists every rank as joined by the process we know, and the
  // engine has opened the pools the join named (until then its targets answer "still opening").
  MgmtClient mc(sys.mgmt, std::chrono::milliseconds(2000));
  size_t last_joined = SIZE_MAX;
  while (true) {
    auto members = mc.system_query();
    std::set<uint32_t> missing;
    for (uint32_t r = 0; r < want; ++r) {
      if (only.empty() || only.count(r) != 0) missing.insert(r);
    }
    if (members) {
      for (const auto& m : *members) {
        const EngineRecord* e = sys.engine(m.rank);
        if (e != nullptr && m.state == mgmt::MemberState::joined &&
            m.pid == static_cast<uint64_t>(e->pid)) {
          auto info = query_system(e->control, std::chrono::milliseconds(2000));
          if (info && info->pools_open) missing.erase(m.rank);
        }
      }
    }
    const size_t waited = only.empty() ? want : only.size();
    size_t joined = waited - missing.size();
    if (joined != last_joined) {
      progress(fmt::format("{} of {} engines serving", joined, waited));
      last_joined = joined;
    }
    if (missing.empty()) break;
    for (uint32_t r : missing) {
      const EngineRecord* e = sys.engine(r);
      if (e != nullptr && !engine_alive(*e)) {
        return Status(Errc::unavailable, fmt::format("rank {} exited; its log ({}):\n{}", r, e->log,
                                                     log_tail(e->log)));
      }
    }
    if (Clock::now() >= deadline) {
      std::string ranks;
      for (uint32_t r : missing) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
      return Status(
          Errc::timeout,
          fmt::format("rank(s) {} did not join and open their pools within {} s{}; logs in "
                      "{}/rank*/engine.log",
                      ranks, o.wait.count(),
                      members ? "" : " (management service: " + members.status().to_string() + ")",
                      dir));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  TESSERA_TRY(link_pointer(o.pointer, path));
  return rep;
}

Result<pid_t> kill_engine(const SystemFile& sys, uint32_t rank, int sig) {
  const EngineRecord* e = sys.engine(rank);
  if (e == nullptr) {
    return Status(Errc::invalid_argument,
                  fmt::format("the system in {} has no rank {}", sys.dir, rank));
  }
  if (!engine_alive(*e)) {
    return Status(Errc::not_found, fmt::format("rank {} is not running", rank));
  }
  if (::kill(e->pid, sig) != 0) {
    return Status(Errc::permission, fmt::format("cannot signal rank {} (pid {}): {}", rank, e->pid,
                                                std::strerror(errno)));
  }
  if (sig == SIGKILL || sig == SIGTERM) {
    // A clean stop takes as long as the engine needs to finish its requests and leave.
    const auto deadline = Clock::now() + std::chrono::seconds(sig == SIGKILL ? 10 : 60);
    while (engine_alive(*e) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (engine_alive(*e)) {
      return Status(Errc::timeout, fmt::format("rank {} (pid {}) survived {}", rank, e->pid,
                                               sig == SIGKILL ? "SIGKILL" : "SIGTERM"));
    }
  }
  return e->pid;
}

Result<std::vector<uint32_t>> stop(const SystemFile& sys, std::chrono::seconds grace,
                                   const Progress& progress) {
  security::set_default_authority(authority(sys));
  MgmtClient mc(sys.mgmt, std::chrono::milliseconds(5000));
  Status st = mc.system_stop();
  if (!st.is_ok()) {
    if (st.code() == Errc::permission) return st;
    progress(
        fmt::format("management service did not take the stop ({}); stopping the engines "
                    "anyway",
                    st.to_string()));
  }
  std::vector<uint32_t> stopped;
  // The management service's engines last (rank 0, or every access point): it records the
  // others as stopped (not dead) as they leave.
  const uint32_t hosts = std::max<uint32_t>(1, static_cast<uint32_t>(sys.access_points.size()));
  std::vector<const EngineRecord*> others;
  std::vector<const EngineRecord*> service;
  for (const auto& e : sys.engines) (e.rank < hosts ? service : others).push_back(&e);
  auto stop_some = [&](const std::vector<const EngineRecord*>& es) {
    std::vector<const EngineRecord*> live;
    for (const EngineRecord* e : es) {
      if (engine_alive(*e)) {
        ::kill(e->pid, SIGTERM);
        live.push_back(e);
        stopped.push_back(e->rank);
      }
    }
    const auto deadline = Clock::now() + grace;
    for (const EngineRecord* e : live) {
      while (engine_alive(*e) && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (engine_alive(*e)) {
        progress(fmt::format("rank {} (pid {}) did not stop within {} s: killing it", e->rank,
                             e->pid, grace.count()));
        ::kill(e->pid, SIGKILL);
      }
    }
  };
  stop_some(others);
  stop_some(service);
  if (agent_alive(sys)) {
    ::kill(sys.agent_pid, SIGTERM);
    const auto deadline = Clock::now() + grace;
    while (agent_alive(sys) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (agent_alive(sys)) ::kill(sys.agent_pid, SIGKILL);
  }
  std::sort(stopped.begin(), stopped.end());
  return stopped;
}

}  // namespace tessera::local
