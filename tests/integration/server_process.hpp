// ServerProcess: a real tessera-server child process on 127.0.0.1 with a free port and a temp
// directory, for integration tests (or, given a configuration file and a network namespace, a
// "host" of a multi-host test). Always killed (SIGKILL) and reaped at scope exit.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "tests/port_reservation.hpp"

namespace tessera::testing {

struct ServerOptions {
  std::string dir;  // storage dir + port file + log
  std::string provider = "tcp;ofi_rxm";
  std::string backend = "auto";
  uint32_t targets = 2;
  std::string storage_size = "512M";
  std::vector<std::string> extra;  // more flags
  // A deployed host's start: `tessera-server --config FILE` (with only --port-file and
  // --storage-dir on the command line); the file has the address, the keys and the rest.
  std::string config;
  std::string netns;               // run it in this network namespace (/run/netns/NAME)
  std::string host = "127.0.0.1";  // where its control socket listens (address())

  static ServerOptions in(std::string d) {
    ServerOptions o;
    o.dir = std::move(d);
    return o;
  }
};

class ServerProcess {
 public:
  explicit ServerProcess(ServerOptions o) : opts_(std::move(o)) {}
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the server and waits until its control port is published (or it exits).
  // The timeout is a backstop only (a loaded machine under the sanitizers may take minutes to
  // replay a log); the wait ends as soon as the port is published or the process exits.
  Status start(std::chrono::seconds timeout = std::chrono::seconds(600));
  void kill9();
  // SIGTERM and wait; returns the exit status (or -1).
  int terminate();
  bool alive();
  pid_t pid() const { return pid_; }
  std::string address() const { return opts_.host + ":" + std::to_string(port_); }
  std::string log_path() const { return opts_.dir + "/server.log"; }
  std::string log() const;

 private:
  ServerOptions opts_;
  pid_t pid_ = -1;
  int port_ = 0;
  int starts_ = 0;
  std::unique_ptr<PortReservation> reservation_;  // the control port, held across restarts
};

// The system key every engine a test starts shares (made once per test process, removed at
// exit). Making it also makes this process, and the CLI it runs ($TESSERA_SYSTEM_KEY), the
// engines' administrator. ServerProcess passes it unless `extra` has --system-key or
// --insecure.
const std::string& test_system_key();

// Runs a command, returns (exit code, stdout).
std::pair<int, std::string> run_command(const std::vector<std::string>& argv,
                                        const std::string& stdin_data = {});

}  // namespace tessera::testing
