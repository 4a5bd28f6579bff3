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

#include <fmt/format.h>

#include "apps/cli/common.hpp"
#include "core/log.hpp"
#include "core/version.hpp"

using namespace tessera::cli;

int main(int argc, char** argv) {
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
