// Shared parts of the tessera CLI: global options, output and error reporting, argument
// parsing, and how a command finds the system or the engine it talks to.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "client/client.hpp"
#include "client/container.hpp"
#include "client/mgmt_client.hpp"
#include "core/status.hpp"

namespace tessera::cli {

using nlohmann::json;

struct Globals {
  std::string engine;                 // single-engine mode: an engine's control address
  bool engine_env = false;            // $TESSERA_ENGINE set
  CLI::Option* engine_opt = nullptr;  // --engine
  std::string mgmt;    // system mode: the management service (overrides the system file)
  std::string system;  // system file (or its directory)
  bool json = false;
  int timeout_ms = 30000;
  int rc = 0;  // exit code of the command that ran

  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(timeout_ms); }
  // An engine was named (flag or environment): engine mode where a command has both.
  bool engine_given() const {
    return engine_env || (engine_opt != nullptr && engine_opt->count() > 0);
  }
};

// Prints the error (JSON on stdout with --json, else one line on stderr); returns 1.
int fail(const Globals& g, const Status& st, const std::string& what);
// --json: prints `j` with "ok": true; else runs `text`. Returns 0.
int done(const Globals& g, json j, const std::function<void()>& text);
// Bytes into a JSON reply: as text under `name` when they are UTF-8, else in base 16 under
// `name`_hex (binary values and keys never break --json).
void put_bytes(json& j, const std::string& name, std::string_view bytes);

// Registers a leaf command whose callback's result becomes the exit code.
CLI::App* leaf(CLI::App* parent, Globals& g, const std::string& name, const std::string& help,
               std::function<int()> run);

std::string human(uint64_t bytes);
// An epoch in JSON: the text of its digits (epochs exceed 2^53, which JSON tools such as jq
// round; `--epoch` takes the text back).
json epoch_json(uint64_t epoch);
// The UTC time (ISO 8601, seconds) an epoch was taken at.
std::string epoch_time(uint64_t epoch);
Result<std::string> read_input(const std::string& file);  // "" or "-": stdin
Status write_output(const std::string& file, std::span<const uint8_t> data);
Result<ObjectId> parse_oid(const std::string& s);
std::string oid_str(ObjectId o);

// System mode: the management service's address from --mgmt, $TESSERA_MGMT, or the system file.
Result<std::string> mgmt_address(const Globals& g);
Result<MgmtClient> mgmt_client(const Globals& g);
// A client connected to the system, and a container opened through it.
struct Opened {
  std::unique_ptr<Client> client;
  std::unique_ptr<Container> cont;
};
Result<Opened> open_container(const Globals& g, const std::string& pool, const std::string& cont,
                              bool write);

// JSON of management records, shared by the commands that print them.
json pool_json(const mgmt::PoolView& v);
json cont_json(const mgmt::ContView& v);
// The pool's rebuild: state, generation, objects/records/bytes, elapsed_ms (and targets while
// busy).
json rebuild_json(const mgmt::PoolView& v);
json acl_json(const mgmt::Acl& a);
void print_acl(const mgmt::Acl& a);

// The engine view (engine mode's `system query`, `engine query`).
int engine_query(const Globals& g, int64_t rank = -1);

// get-acl and update-acl under `parent`, for a pool (cont null) or a container; `args`
// registers the positionals that fill `pool` (and `*cont`).
void add_acl_commands(CLI::App* parent, Globals& g, const std::function<void(CLI::App*)>& args,
                      const std::string& pool, const std::string* cont);

void add_engine_commands(CLI::App& app, Globals& g);
void add_system_commands(CLI::App& app, Globals& g);
// tessera system top (apps/cli/top_cmd.cpp), under `system`.
void add_top_command(CLI::App* sys, Globals& g);
void add_pool_commands(CLI::App& app, Globals& g);
// tessera pool aggregate / scrub (apps/cli/pool_maint_cmds.cpp), under `pool`.
void add_pool_maintenance_commands(CLI::App* pool, Globals& g);
void add_cont_commands(CLI::App& app, Globals& g);
void add_cont_check_command(CLI::App* cont, Globals& g);
void add_obj_commands(CLI::App& app, Globals& g);
void add_kv_commands(CLI::App& app, Globals& g);
// tessera fs (apps/cli/fs_cmds.cpp): POSIX containers.
void add_fs_commands(CLI::App& app, Globals& g);
void add_drill_commands(CLI::App& app, Globals& g);
void add_status_command(CLI::App& app, Globals& g);

}  // namespace tessera::cli
