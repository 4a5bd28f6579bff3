// tessera: the command-line client. Every command has --help; --json prints machine-readable
// output (errors too: {"ok": false, "error": ..., "message": ...}) and the exit code is 0 only
// on success.
//
// Two ways to reach data:
//   system mode (pool, cont, kv, obj --pool/--cont, system): the management service named by
//     --mgmt, $TESSERA_MGMT, or the system file (--system, $TESSERA_SYSTEM, ~/.tessera/system.json)
//     that `tessera system start` writes;
//   engine mode (obj without --pool, target, engine): one engine's scratch store, named by
//     --engine, $TESSERA_ENGINE, else 127.0.0.1:10001.
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "apps/cli/common.hpp"
#include "apps/cli/zygote_server.hpp"
#include "core/log.hpp"
#include "core/version.hpp"
#include "net/fabric.hpp"

using namespace tessera::cli;

namespace {

int run_cli(int argc, char** argv) {
  Globals g;
  const char* env_engine = std::getenv("TESSERA_ENGINE");
  g.engine_env = env_engine != nullptr && *env_engine != '\0';
  g.engine = g.engine_env ? env_engine : "127.0.0.1:10001";
  CLI::App app{"tessera: use and run a Tessera system"};
  app.set_version_flag("--version", fmt::format("tessera {}", tessera::version()));
  app.require_subcommand(1);
  app.fallthrough();
  g.engine_opt = app.add_option("-e,--engine", g.engine,
                                "engine mode: an engine's control address host:port "
                                "($TESSERA_ENGINE)")
                     ->capture_default_str();
  app.add_option("-m,--mgmt", g.mgmt,
                 "system mode: the management service's address host:port ($TESSERA_MGMT)");
  app.add_option("-s,--system", g.system,
                 "system mode: system file or its directory ($TESSERA_SYSTEM, default "
                 "~/.tessera/system.json)");
  app.add_flag("-j,--json", g.json, "machine-readable JSON output");
  app.add_option("--timeout-ms", g.timeout_ms, "per-request timeout")->capture_default_str();

  add_system_commands(app, g);
  add_pool_commands(app, g);
  add_cont_commands(app, g);
  add_kv_commands(app, g);
  add_fs_commands(app, g);
  add_obj_commands(app, g);
  add_engine_commands(app, g);
  add_drill_commands(app, g);
  add_status_command(app, g);

  // The client library's INFO lines (map refreshes, requests failed over) are not the
  // command's output: warnings and errors only, unless $TESSERA_LOG_LEVEL says otherwise.
  const char* level = std::getenv("TESSERA_LOG_LEVEL");
  tessera::log::set_level(tessera::log::parse_level(level != nullptr ? level : "warn"));
  CLI11_PARSE(app, argc, argv);
  return g.rc;
}

// The CLI server's libfabric set-up, which every command it runs inherits. A command talks to a
// few peers with a few requests in flight, so it needs few of the eager buffers ofi_rxm posts
// per connection (128 by default, 16 KiB each, all touched when a connection opens): half of a
// small command's time went to those page faults (docs/PERFORMANCE.md, "CLI start-up").
// libfabric reads the variable once, here; it is not left in the environment, so engines that
// `system start` runs never see it. A value the user set wins.
void warm() {
  const bool mine = std::getenv("FI_OFI_RXM_MSG_RX_SIZE") == nullptr;
  if (mine) ::setenv("FI_OFI_RXM_MSG_RX_SIZE", "32", 1);
  tessera::net::warm_providers();
  if (mine) ::unsetenv("FI_OFI_RXM_MSG_RX_SIZE");
}

}  // namespace

// `tessera-cli ARGS...` runs one command; `tessera-cli --zygote-serve SOCKET LOCK` is the CLI
// server the `tessera` launcher starts (apps/cli/zygote_server.hpp).
int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--zygote-serve") == 0) {
    return tessera::cli::zygote::serve(argv[2], argv[3], warm, run_cli);
  }
  return run_cli(argc, argv);
}
