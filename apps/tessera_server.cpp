// tessera-server: one engine. Reads a YAML config (flags override it), starts the targets and
// the control socket, and runs until SIGTERM or SIGINT, then shuts down cleanly.
#include <malloc.h>
#include <pthread.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "actors/control_server.hpp"
#include "actors/engine.hpp"
#include "actors/mgmt/link.hpp"
#include "actors/mgmt/service.hpp"
#include "actors/swim.hpp"
#include "core/config.hpp"
#include "core/crash_point.hpp"
#include "core/log.hpp"
#include "core/version.hpp"
#include "net/stream.hpp"
#include "proto/protocol.hpp"
#include "security/authority.hpp"
#include "security/credential.hpp"
#include "telemetry/http.hpp"
#include "telemetry/metrics.hpp"

using namespace tessera;

namespace {
int die(const std::string& msg) {
  std::fprintf(stderr, "tessera-server: %s\n", msg.c_str());
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  // Large buffers (a rebuild's pushes, 1 MiB I/O, checkpoints) come and go on every request.
  // glibc's defaults hand each one back to the kernel and fault it in again, page by page, on
  // the next request (a third of the engines' CPU during a rebuild went to page faults and
  // unmapping). Kept in the heap instead: up to 32 MiB from arenas, and free memory at the top of
  // a heap returned only past 256 MiB.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  CLI::App app{"tessera-server: a Tessera storage engine (one process, N pinned targets)"};
  app.set_version_flag("--version", fmt::format("tessera-server {}", tessera::version()));
  app.option_defaults()->always_capture_default();  // --help shows every default
  std::string config_path;
  EngineConfig flags;
  std::string storage_size, wal_size, cpus;
  app.add_option("-c,--config", config_path, "YAML config file (flags below override it)");
  app.add_option("--rank", flags.rank, "engine rank in the system");
  app.add_option("--listen", flags.listen,
                 "control socket address host:port (port 0: any free port)");
  app.add_option("--metrics", flags.metrics,
                 "Prometheus metrics address host:port (port 0: any free port), or 'off'");
  app.add_option("--provider", flags.provider, "libfabric provider: 'tcp;ofi_rxm' or 'shm'");
  app.add_option("--fabric-node", flags.fabric_node,
                 "local address for the fabric endpoints (tcp)");
  app.add_option("--targets", flags.targets, "number of targets (pinned threads)");
  app.add_option("--cpus", cpus, "comma-separated CPU per target, e.g. 0,1");
  app.add_option("--storage-dir", flags.storage_dir, "directory of the target files");
  app.add_option("--storage-size", storage_size, "bytes per target file, e.g. 1G");
  app.add_option("--wal-size", wal_size, "write-ahead log bytes per target (default size/8)");
  app.add_option("--block-backend", flags.block_backend, "block queue: auto, uring or aio");
  app.add_flag("--busy-poll", flags.busy_poll, "targets spin instead of sleeping when idle");
  app.add_option("--spin-us", flags.spin_us,
                 "microseconds a target keeps polling after an event before it sleeps (0..10000, "
                 "default 100; 0 where targets share CPUs with other busy threads)");
  app.add_option("--log-level", flags.log_level, "debug, info, warn, error or off")
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));
  app.add_option("--port-file", flags.port_file, "write the bound control port to this file");
  app.add_option("--checksum", flags.checksum, "checksum of stored extents: crc32c or crc64");
  app.add_option("--checkpoint-interval-ms", flags.checkpoint_interval_ms,
                 "checkpoint at least this often when anything changed (0: only when the log "
                 "fills)");
  app.add_option("--aggregation-interval-ms", flags.aggregation_interval_ms,
                 "background aggregation period (0: off)");
  app.add_option("--aggregation-delay-ms", flags.aggregation_delay_ms,
                 "aggregate versions older than this");
  app.add_option("--mgmt", flags.mgmt,
                 "control address of the management service to join (host:port)");
  app.add_flag("--mgmt-host", flags.mgmt_host,
               "host the management service (its state lives in the storage directory)");
  app.add_option("--access-points", flags.access_points,
                 "the replicated management service: every access point as "
                 "RANK@CONTROL@RAFT,... (the same list on every engine; docs/DEPLOY.md)");
  app.add_option("--host", flags.host, "fault domain above this engine (default: host name)");
  app.add_option("--mgmt-dead-after-ms", flags.mgmt_dead_after_ms,
                 "management service: heartbeat silence after which an engine is dead");
  app.add_option("--mgmt-heartbeat-ms", flags.mgmt_heartbeat_ms,
                 "how often this engine sends the management service a heartbeat (at most half "
                 "of the service's --mgmt-dead-after-ms)");
  app.add_option("--mgmt-stop-grace-ms", flags.mgmt_stop_grace_ms,
                 "management service: how long a cleanly stopped engine keeps its targets in "
                 "the pool maps before it counts as dead");
  app.add_option("--mgmt-handle-lease-ms", flags.mgmt_handle_lease_ms,
                 "management service: a container handle its client has not renewed for this "
                 "long is closed (the client died; 0: never)");
  app.add_option("--swim-period-ms", flags.swim_period_ms,
                 "failure detection: one probe of another engine per period (0: off)");
  app.add_option("--swim-ping-timeout-ms", flags.swim_ping_timeout_ms,
                 "failure detection: wait for a direct ping's ack");
  app.add_option("--swim-indirect", flags.swim_indirect,
                 "failure detection: engines asked to ping a silent one");
  app.add_option("--swim-suspicion-ms", flags.swim_suspicion_ms,
                 "failure detection: a suspect that does not refute within this is dead");
  app.add_option("--rebuild-share-pct", flags.rebuild_share_pct,
                 "rebuild: percent of a target's time its scan may use (1..100, default 50)");
  app.add_option("--ec-reencode-interval-ms", flags.ec_reencode_interval_ms,
                 "erasure coding: re-encode full stripes of partial-stripe copies into cells and "
                 "parity every this often (0: off; default 10000)");
  app.add_option(
      "--reclaim-interval-ms", flags.reclaim_interval_ms,
      "rebuild: drop what the pool map no longer places on a target (a former home's "
      "data) every this often, once the map settled; after a rebuild a pool aggregates again "
      "only once every target reclaimed (default 10000)");
  app.add_option("--system-key", flags.system_key,
                 "file of the key engines and administrators share (mode 0600)");
  app.add_option("--node-keys", flags.node_keys,
                 "directory of trusted node agents' public keys (NODE.pub): whose users' "
                 "credentials the management service accepts");
  app.add_flag("--insecure", flags.insecure,
               "authenticate nothing: any client may claim any user (development only)");
  std::string keygen;
  app.add_option("--keygen", keygen,
                 "make a new system key in this file (mode 0600; never over an existing file) "
                 "and exit");
  int64_t clock_offset_ms = 0;
  app.add_option("--clock-offset-ms", clock_offset_ms,
                 "tests: this engine's wall clock reads this far ahead (negative: behind), as on a "
                 "host whose clock is set apart")
      ->group("Testing");
  CLI11_PARSE(app, argc, argv);
  if (!keygen.empty()) {
    Status ks = security::SystemKey::generate(keygen);
    if (!ks.is_ok()) return die(ks.to_string());
    std::printf("system key made: %s (copy it to every engine node, mode 0600)\n", keygen.c_str());
    return 0;
  }

  EngineConfig cfg;
  if (!config_path.empty()) {
    auto c = load_engine_config(config_path);
    if (!c) return die(c.status().to_string());
    cfg = std::move(*c);
  }
  // Flags given on the command line win over the file.
  auto given = [&](const char* name) { return app.count(name) > 0; };
  if (given("--rank")) cfg.rank = flags.rank;
  set_crash_point_rank(cfg.rank);
  if (given("--listen")) cfg.listen = flags.listen;
  if (given("--metrics")) cfg.metrics = flags.metrics;
  if (given("--provider")) cfg.provider = flags.provider;
  if (given("--fabric-node")) cfg.fabric_node = flags.fabric_node;
  if (given("--targets")) cfg.targets = flags.targets;
  if (given("--storage-dir")) cfg.storage_dir = flags.storage_dir;
  if (given("--block-backend")) cfg.block_backend = flags.block_backend;
  if (given("--busy-poll")) cfg.busy_poll = flags.busy_poll;
  if (given("--spin-us")) cfg.spin_us = flags.spin_us;
  if (given("--log-level")) cfg.log_level = flags.log_level;
  if (given("--port-file")) cfg.port_file = flags.port_file;
  if (given("--checksum")) cfg.checksum = flags.checksum;
  if (given("--checkpoint-interval-ms")) cfg.checkpoint_interval_ms = flags.checkpoint_interval_ms;
  if (given("--aggregation-interval-ms")) {
    cfg.aggregation_interval_ms = flags.aggregation_interval_ms;
  }
  if (given("--aggregation-delay-ms")) cfg.aggregation_delay_ms = flags.aggregation_delay_ms;
  if (given("--mgmt")) cfg.mgmt = flags.mgmt;
  if (given("--mgmt-host")) cfg.mgmt_host = flags.mgmt_host;
  if (given("--access-points")) cfg.access_points = flags.access_points;
  if (given("--host")) cfg.host = flags.host;
  if (given("--mgmt-dead-after-ms")) cfg.mgmt_dead_after_ms = flags.mgmt_dead_after_ms;
  if (given("--mgmt-heartbeat-ms")) cfg.mgmt_heartbeat_ms = flags.mgmt_heartbeat_ms;
  if (given("--mgmt-stop-grace-ms")) cfg.mgmt_stop_grace_ms = flags.mgmt_stop_grace_ms;
  if (given("--mgmt-handle-lease-ms")) cfg.mgmt_handle_lease_ms = flags.mgmt_handle_lease_ms;
  if (given("--swim-period-ms")) cfg.swim_period_ms = flags.swim_period_ms;
  if (given("--swim-ping-timeout-ms")) cfg.swim_ping_timeout_ms = flags.swim_ping_timeout_ms;
  if (given("--swim-indirect")) cfg.swim_indirect = flags.swim_indirect;
  if (given("--swim-suspicion-ms")) cfg.swim_suspicion_ms = flags.swim_suspicion_ms;
  if (given("--rebuild-share-pct")) cfg.rebuild_share_pct = flags.rebuild_share_pct;
  if (given("--ec-reencode-interval-ms")) {
    cfg.ec_reencode_interval_ms = flags.ec_reencode_interval_ms;
  }
  if (given("--reclaim-interval-ms")) cfg.reclaim_interval_ms = flags.reclaim_interval_ms;
  if (given("--system-key")) cfg.system_key = flags.system_key;
  if (given("--node-keys")) cfg.node_keys = flags.node_keys;
  if (given("--insecure")) cfg.insecure = flags.insecure;
  if (given("--storage-size")) {
    auto v = parse_size(storage_size);
    if (!v) return die("--storage-size: " + v.status().message());
    cfg.storage_bytes = *v;
  }
  if (given("--wal-size")) {
    auto v = parse_size(wal_size);
    if (!v) return die("--wal-size: " + v.status().message());
    cfg.wal_bytes = *v;
  }
  if (given("--cpus")) {
    auto list = parse_cpu_list(cpus);
    if (!list) return die("--cpus: " + list.status().message());
    cfg.cpus = std::move(*list);
  }
  Status vs = validate(cfg);
  if (!vs.is_ok()) return die("invalid configuration: " + vs.message());
  if (auto ep = net::parse_endpoint(cfg.listen); !ep) {
    return die("invalid configuration: listen: " + ep.status().message());
  }
  if (cfg.metrics != "off") {
    if (auto ep = net::parse_endpoint(cfg.metrics); !ep) {
      return die("invalid configuration: metrics: " + ep.status().message() + " (or 'off')");
    }
  }
  log::set_level(log::parse_level(cfg.log_level));
  log::set_thread_name("main");

  // Signals are taken synchronously by this thread only; every thread started below inherits
  // the blocked mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // Authentication (docs/SECURITY.md): the system key MACs what this engine sends and proves
  // other engines and administrators; node keys let the management service check users.
  std::shared_ptr<const security::SystemKey> key;
  if (cfg.insecure) {
    log::warn(
        "INSECURE MODE: nothing is authenticated; any client may act as any user, as an "
        "engine or as an administrator (insecure: true / --insecure)");
  } else {
    auto k = security::SystemKey::load(cfg.system_key);
    if (!k) return die("system key: " + k.status().to_string());
    key = std::move(*k);
    security::set_default_authority(security::Authority(key, ""));
  }
  // The replicated management service: this engine is an access point when the list names it.
  std::vector<mgmt::AccessPoint> aps;
  bool access_point = false;
  if (!cfg.access_points.empty()) {
    if (cfg.mgmt_host || !cfg.mgmt.empty()) {
      return die("access_points replaces mgmt and mgmt_host: give one or the other");
    }
    auto l = mgmt::parse_access_points(cfg.access_points);
    if (!l) return die("access_points: " + l.status().message());
    aps = std::move(*l);
    for (const auto& ap : aps) access_point = access_point || ap.rank == cfg.rank;
    if (access_point && cfg.insecure) {
      return die("access points prove the system key to each other: they cannot run insecure");
    }
  }
  const bool hosts_service = cfg.mgmt_host || access_point;
  std::shared_ptr<security::CredentialVerifier> verifier;
  if (hosts_service && !cfg.insecure) {
    if (cfg.node_keys.empty()) {
      log::warn("no node_keys: only engines and administrators can use the management service");
    } else {
      auto nk = security::NodeKeys::load_dir(cfg.node_keys);
      if (!nk) return die("node keys: " + nk.status().to_string());
      log::info("management service: users vouched for by {} node agent key(s) from {}", nk->size(),
                cfg.node_keys);
      verifier = std::make_shared<security::CredentialVerifier>(std::move(*nk));
    }
  }

  // The real environment unless a test skews the clock (no extra call on every clock read).
  SkewedEnv skewed(RealEnv::instance(), std::chrono::milliseconds(clock_offset_ms));
  Env& env = clock_offset_ms != 0 ? static_cast<Env&>(skewed) : RealEnv::instance();
  if (clock_offset_ms != 0)
    log::warn("this engine's wall clock reads {} ms apart", clock_offset_ms);
  Engine engine(env, cfg, key);
  Status st = engine.start();
  if (!st.is_ok()) return die("engine failed to start: " + st.to_string());

  std::unique_ptr<mgmt::MgmtService> mgmt_svc;
  if (hosts_service) {
    mgmt::MgmtOptions mo;
    mo.state_path = cfg.storage_dir + "/mgmt-state.json";
    mo.admin_uid = ::geteuid();
    mo.dead_after = std::chrono::milliseconds(cfg.mgmt_dead_after_ms);
    mo.stop_grace = std::chrono::milliseconds(cfg.mgmt_stop_grace_ms);
    mo.handle_lease = std::chrono::milliseconds(cfg.mgmt_handle_lease_ms);
    mo.verifier = verifier;
    mo.self_rank = cfg.rank;
    if (access_point) {
      mo.access_points = aps;
      mo.raft_dir = cfg.storage_dir + "/mgmt-raft";
      mo.key = key;
      std::error_code ec;
      std::filesystem::create_directories(mo.raft_dir, ec);
      if (ec) {
        engine.stop();
        return die(fmt::format("cannot create {}: {}", mo.raft_dir, ec.message()));
      }
    }
    auto svc = mgmt::MgmtService::open(mo);
    if (!svc) {
      engine.stop();
      return die("management service: " + svc.status().to_string());
    }
    mgmt_svc = std::move(*svc);
  }

  // Handlers run on the control server's worker threads, from the moment it listens: they read
  // its bound address (set before its threads start), never a string this thread writes later.
  const ControlServer* serving = nullptr;
  ControlServer control(
      cfg.listen,
      [&](const Message& req, uint64_t session) -> Result<Buffer> {
        if (req.protocol == proto::kProtoSystem && req.method == proto::kSysQuery) {
          return engine.system_info(serving->address());
        }
        if (req.protocol == proto::kProtoMgmt && req.method == proto::kMgmtCall) {
          if (!mgmt_svc) {
            return Status(
                Errc::unsupported,
                fmt::format("engine rank {} does not host the management service", cfg.rank));
          }
          return mgmt_svc->handle(req, session);
        }
        if (req.protocol == proto::kProtoMgmt && req.method == proto::kEngineCall) {
          return engine.control(req);
        }
        return Status(Errc::unsupported,
                      fmt::format("control socket does not serve protocol {} method {}",
                                  req.protocol, req.method));
      },
      cfg.max_message_bytes,
      [&](uint64_t session) {
        if (mgmt_svc) mgmt_svc->on_close(session);
      },
      key, cfg.insecure);
  serving = &control;
  st = control.start();
  if (!st.is_ok()) {
    engine.stop();
    return die(st.to_string());
  }
  const std::string control_addr = control.address();
  if (!cfg.port_file.empty()) {
    std::string tmp = cfg.port_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << control.port() << "\n";
    }
    std::rename(tmp.c_str(), cfg.port_file.c_str());
  }
  // Metrics (docs/OPERATIONS.md, "Telemetry"): a scrape gathers every target's counters at
  // most every 200 ms; scrapes in between get the last one. Started after the control socket
  // has its port: an engine restarted on its old control port must not find it taken by its
  // own metrics socket (port 0: any free port).
  std::unique_ptr<telemetry::HttpServer> metrics;
  if (cfg.metrics != "off") {
    struct Scrape {
      std::chrono::steady_clock::time_point at{};
      telemetry::MetricSet set;
    };
    auto last = std::make_shared<Scrape>();
    metrics = std::make_unique<telemetry::HttpServer>(
        cfg.metrics, [&engine, last](const std::string& path) -> telemetry::HttpResponse {
          const std::string p = path.substr(0, path.find('?'));
          if (p != "/metrics" && p != "/metrics.json") {
            return {404, "text/plain; charset=utf-8",
                    "not found: this engine serves /metrics (Prometheus text) and "
                    "/metrics.json\n"};
          }
          const auto now = std::chrono::steady_clock::now();
          if (now - last->at >= std::chrono::milliseconds(200) || last->set.families() == 0) {
            last->set = telemetry::MetricSet();
            engine.metrics(last->set);
            last->at = now;
          }
          if (p == "/metrics.json") return {200, "application/json", last->set.json().dump()};
          return {200, "text/plain; version=0.0.4; charset=utf-8", last->set.prometheus()};
        });
    st = metrics->start();
    if (!st.is_ok()) {
      control.stop();
      engine.stop();
      return die(st.to_string());
    }
    engine.set_metrics_address(metrics->address());
  }
  std::unique_ptr<mgmt::MgmtLink> link;
  if (hosts_service || !cfg.mgmt.empty() || !aps.empty()) {
    mgmt::MgmtLink::Options lo;
    if (!aps.empty()) {
      for (const auto& ap : aps) lo.mgmt_addr += (lo.mgmt_addr.empty() ? "" : ",") + ap.control;
    } else {
      lo.mgmt_addr = cfg.mgmt.empty() ? control_addr : cfg.mgmt;
    }
    lo.self.rank = cfg.rank;
    lo.heartbeat = std::chrono::milliseconds(cfg.mgmt_heartbeat_ms);
    lo.self.host = engine.host();
    lo.self.control_addr = control_addr;
    lo.self.metrics_addr = metrics ? metrics->address() : "";
    lo.self.provider = cfg.provider;
    lo.self.fabric_addrs = engine.fabric_addrs();
    lo.self.pid = static_cast<uint64_t>(::getpid());
    link = std::make_unique<mgmt::MgmtLink>(
        lo, [&engine](const std::vector<mgmt::ShardInfo>& pools) { engine.open_pools(pools); });
    engine.attach(link.get());
    link->start();
    SwimOptions so;
    so.period = std::chrono::milliseconds(cfg.swim_period_ms);
    so.ping_timeout = std::chrono::milliseconds(cfg.swim_ping_timeout_ms);
    so.indirect = static_cast<uint32_t>(cfg.swim_indirect);
    so.suspicion = std::chrono::milliseconds(cfg.swim_suspicion_ms);
    st = engine.start_swim(so);
    if (!st.is_ok()) log::warn("failure detection not started: {}", st.to_string());
  }
  log::info(
      "tessera-server {}: engine rank {} ready: {} targets, provider {}, control {}, "
      "metrics {}, storage {}{}",
      version(), cfg.rank, cfg.targets, cfg.provider, control_addr,
      metrics ? metrics->address() : "off", cfg.storage_dir,
      cfg.mgmt_host  ? " (management service host)"
      : access_point ? " (access point)"
                     : "");

  int sig = 0;
  sigwait(&sigs, &sig);
  log::info("signal {} received; shutting down", sig);
  // A clean stop is not a failure: the management service hears it first, so this engine's
  // targets stay in the pool maps while it restarts, and a stopping management service
  // judges nobody by the connections it closes.
  // An access point announces its stop first (to the leader, maybe itself), then stops its
  // replica: a leader hands leadership on.
  if (mgmt_svc && cfg.mgmt_host) mgmt_svc->shutdown();
  if (link && !cfg.mgmt_host) {
    // A busy service (a slow disk, a loaded host) may answer late; leaving unrecorded closes
    // the connection, which the service takes for a crash.
    Status ls = link->leave(std::chrono::milliseconds(10000));
    if (ls.is_ok()) {
      log::info("engine rank {}: clean stop recorded by the management service", cfg.rank);
      delay_point("engine.stop.recorded");
    } else {
      log::warn("engine rank {}: clean stop not recorded: {}", cfg.rank, ls.to_string());
    }
  }
  if (mgmt_svc) mgmt_svc->shutdown();
  if (link) link->stop();
  if (metrics) metrics->stop();
  control.stop();
  engine.stop();
  log::info("engine rank {} stopped", cfg.rank);
  return 0;
}
