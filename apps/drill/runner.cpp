// Runs a drill: system, pool, container, load, steps, monitor, verification, report.
#include <signal.h>
#include <stdlib.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "apps/drill/runner.hpp"
#include "apps/local_system.hpp"
#include "client/mgmt_client.hpp"
#include "core/config.hpp"

namespace tessera::drill {

namespace {

// The targets whose state differs between two maps: "rank 3 targets 0,1 up-in -> down; ...".
std::string map_changes(const placement::PoolMap& before, const placement::PoolMap& after) {
  std::string out;
  for (const auto& e : after.engines) {
    std::map<std::pair<std::string, std::string>, std::string> moves;  // (from, to) -> targets
    for (const auto& t : e.targets) {
      auto old = before.state(e.rank, t.index);
      std::string from = old ? std::string(placement::state_name(*old)) : "absent";
      std::string to(placement::state_name(t.state));
      if (from == to) continue;
      auto& s = moves[{from, to}];
      s += (s.empty() ? "" : ",") + std::to_string(t.index);
    }
    for (const auto& [k, ts] : moves) {
      out += fmt::format("{}rank {} target{} {} {} -> {}", out.empty() ? "" : "; ", e.rank,
                         ts.find(',') == std::string::npos ? "" : "s", ts, k.first, k.second);
    }
  }
  return out;
}

}  // namespace

void Runner::event(const std::string& kind, const std::string& text, json extra) {
  json e = {{"t", round2(now())}, {"kind", kind}, {"text", text}};
  for (auto& [k, v] : extra.items()) e[k] = v;
  {
    std::lock_guard lk(mu_);
    timeline_.push_back(e);
  }
  if (o_.on_event) o_.on_event(e);
}

Status Runner::setup() {
  const std::string attach = !o_.attach.empty() ? o_.attach : d_.attach;
  if (!attach.empty()) {
    auto sys = local::SystemFile::load(local::system_path(attach));
    if (!sys) return sys.status();
    sys_ = std::move(*sys);
    event("system",
          fmt::format("attached to the system in {} ({} engines)", sys_.dir, sys_.engines.size()));
  } else {
    dir_ = o_.dir;
    if (dir_.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "tessera-drill-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) {
        return Status(Errc::io_error, "cannot make a temporary directory for the drill");
      }
      dir_ = tmpl;
    }
    local::StartOptions so;
    so.dir = dir_;
    so.engines = d_.engines;
    so.targets = d_.targets;
    so.provider = d_.provider;
    so.engine_args = d_.engine_args;
    so.wait = std::chrono::seconds(90);
    started_ = true;  // whatever happens next, stop what was started
    auto rep = local::start(so, [this](const std::string& l) { progress(l); });
    if (!rep) return rep.status();
    sys_ = rep->sys;
    event("system", fmt::format("started {} engines x {} target{} in {}", sys_.engines.size(),
                                sys_.targets, sys_.targets == 1 ? "" : "s", sys_.dir));
  }
  mgmt_ = sys_.mgmt;
  mc_ = std::make_unique<MgmtClient>(mgmt_, Millis(30000));
  if (!attach.empty()) {
    // A pool over "every engine" takes the engines joined to the leader now: an attached
    // system's engines may still be joining (a new leader, a restart), so the pool waits for
    // its ranks (the drill's faults name ranks the pool must hold).
    std::vector<uint32_t> ranks(d_.pool_ranks.begin(), d_.pool_ranks.end());
    if (ranks.empty()) {
      for (const auto& e : sys_.engines) ranks.push_back(e.rank);
    }
    Status st = wait_joined(ranks, Millis(90000));
    if (!st.is_ok()) return Status(st.code(), "the attached system: " + st.message());
  }
  auto bytes = parse_size(d_.pool_size);
  if (!bytes) return bytes.status();
  auto pv = mc_->pool_create(d_.pool, *bytes, d_.pool_ranks);
  if (!pv) return Status(pv.status().code(), "pool create: " + pv.status().message());
  for (const auto& [k, v] : d_.pool_props) {
    Status st = mc_->pool_set_prop(d_.pool, k, v);
    if (!st.is_ok()) return Status(st.code(), fmt::format("pool property {}: {}", k, st.message()));
  }
  mgmt::ContProps p;
  p.label = d_.cont;
  p.type = mgmt::ContType::array;
  for (const auto& [k, v] : d_.cont_props) {
    Status st = mgmt::set_cont_prop(p, k, v);
    if (!st.is_ok()) return Status(st.code(), "container: " + st.message());
  }
  auto cv = mc_->cont_create(d_.pool, p);
  if (!cv) return Status(cv.status().code(), "cont create: " + cv.status().message());
  const auto* cls = placement::find_class(cv->c.props.oclass);
  event("setup",
        fmt::format("pool {} on {} engines (map version {}), container {} of class {}", d_.pool,
                    pv->pool.map.engines.size(), pv->pool.map.version, d_.cont,
                    cls != nullptr ? cls->name : "?"),
        {{"map_version", pv->pool.map.version}});
  mon_ = std::thread([this] { monitor(); });
  if (d_.has_load) {
    // A machine N times slower stretches every phase N times: the load writes N times slower,
    // so that a drill puts about as much data in its pool wherever it runs.
    LoadSpec spec = d_.load;
    if (o_.time_scale > 1.0) spec.rate /= o_.time_scale;
    auto load = std::make_unique<VerifiedLoad>(mgmt_, d_.pool, d_.cont, spec, d_.seed);
    TESSERA_TRY(load->start());
    {
      // The monitor thread, started above, reads both under mu_ (observe).
      std::lock_guard lk(mu_);
      load_ = std::move(load);
      load_running_ = true;
    }
    if (d_.load.preload > 0) {
      progress(fmt::format("preloading {} writes", d_.load.preload));
      if (!load_->wait_preloaded(Millis(600000))) {
        return Status(Errc::timeout, "the preload did not finish within 10 minutes");
      }
    }
    event("load",
          fmt::format("load running: {} writers x {} B {} writes{}{}", d_.load.writers,
                      d_.load.size, d_.load.kind == ValueKind::array ? "array" : "single-value",
                      load_->spec().rate > 0 ? fmt::format(" at {:g}/s each", load_->spec().rate) : "",
                      d_.load.preload > 0 ? fmt::format(" ({} preloaded, {} acknowledged)",
                                                        d_.load.preload, load_->acked())
                                          : ""));
  }
  return Status();
}

bool Runner::degraded(const mgmt::PoolView& v) const {
  if (v.redundancy != "normal" || v.pool.rebuild.state == "busy" || v.pool.map.moving()) {
    return true;
  }
  // A killed rank not yet noticed: the map still says up-in.
  for (uint32_t r : expect_down_) {
    if (const auto* e = v.pool.map.engine(r); e != nullptr && !none_up_in(*e)) return true;
  }
  return false;
}

void Runner::observe(const mgmt::PoolView& v) {
  const double t = now();
  struct Seen {
    const char* kind;
    std::string text;
    json extra;
  };
  std::vector<Seen> events;
  {
    std::lock_guard lk(mu_);
    if (last_ && last_->pool.map.version != v.pool.map.version) {
      std::string changes = map_changes(last_->pool.map, v.pool.map);
      if (changes.empty()) changes = "no target changed state (an engine's addresses)";
      events.push_back({"map",
                        fmt::format("map version {}: {}", v.pool.map.version, changes),
                        {{"map_version", v.pool.map.version}}});
    }
    const auto& r = v.pool.rebuild;
    if (!last_ || last_->pool.rebuild.gen != r.gen || last_->pool.rebuild.state != r.state) {
      if (r.state == "busy") {
        events.push_back(
            {"rebuild",
             fmt::format("rebuild generation {} busy (map version {})", r.gen, r.version),
             {{"generation", r.gen}, {"state", r.state}}});
      } else if ((r.state == "done" || r.state == "failed") && gens_.count(r.gen) == 0 &&
                 r.gen > 0 && last_) {
        const double secs = static_cast<double>(r.end_ms - std::min(r.end_ms, r.start_ms)) / 1000;
        json g = {{"generation", r.gen},     {"state", r.state},     {"map_version", r.version},
                  {"seconds", round2(secs)}, {"objects", r.objects}, {"records", r.records},
                  {"bytes", r.bytes},        {"lost", r.lost},       {"error", r.error}};
        gens_[r.gen] = g;
        events.push_back(
            {"rebuild",
             r.state == "done"
                 ? fmt::format("rebuild generation {} done in {:.1f} s: {} objects, {} records, "
                               "{:.2f} MiB, {} lost",
                               r.gen, secs, r.objects, r.records, mib(r.bytes), r.lost)
                 : fmt::format("rebuild generation {} failed: {}", r.gen, r.error),
             g});
      }
    }
    // Detection: a killed rank's targets leave up-in.
    for (const auto& [rank, kt] : kill_t_) {
      if (detect_s_.count(rank) != 0) continue;
      const auto* e = v.pool.map.engine(rank);
      if (e != nullptr && none_up_in(*e)) {
        detect_s_[rank] = t - kt;
        events.push_back({"detect",
                          fmt::format("rank {} declared down {:.1f} s after it was {}", rank,
                                      t - kt, hung_.count(rank) != 0 ? "hung" : "killed"),
                          {{"rank", rank}, {"detection_s", round2(t - kt)}}});
      }
    }
    Sample s;
    s.t = t;
    s.running = load_running_;
    if (load_) {
      s.bytes = load_->acked_bytes();
      s.writes = load_->acked();
    }
    s.degraded = degraded(v);
    samples_.push_back(s);
    last_ = v;
  }
  for (auto& e : events) event(e.kind, e.text, std::move(e.extra));
}

void Runner::monitor() {
  MgmtClient mc(mgmt_, Millis(5000));
  while (!mon_stop_.load()) {
    auto v = mc.pool_query(d_.pool);
    if (v) observe(*v);
    std::this_thread::sleep_for(kPoll);
  }
}

Status Runner::wait_until(const Step& st,
                          const std::function<Result<bool>(const mgmt::PoolView&)>& done,
                          const std::string& what) {
  const Millis limit = this->limit(st, kDefaultWait);
  const auto until = Clock::now() + limit;
  const auto start = Clock::now();
  while (true) {
    auto v = mc_->pool_query(d_.pool);
    if (v) {
      auto ok = done(*v);
      if (!ok) return ok.status();
      if (*ok) return Status();
      const auto& r = v->pool.rebuild;
      progress(fmt::format(
          "{}: {:.0f} s, map version {}, rebuild {} (generation {}{})", what,
          std::chrono::duration<double>(Clock::now() - start).count(), v->pool.map.version, r.state,
          r.gen,
          r.state == "busy"
              ? fmt::format(", {}/{} targets, {} MiB of {} MiB", v->progress.targets_done,
                            v->progress.targets_total, v->progress.bytes >> 20,
                            v->progress.total_known()
                                ? std::to_string(v->progress.total() >> 20)
                                : std::string("?"))
              : ""));
    }
    if (aborting_) return Status(Errc::shutdown, fmt::format("{}: the drill ended", what));
    if (Clock::now() >= until) {
      return Status(Errc::timeout,
                    fmt::format("{}: not reached within {} s{}", what, limit.count() / 1000,
                                v ? "" : " (" + v.status().to_string() + ")"));
    }
    std::this_thread::sleep_for(kPoll);
  }
}


json Runner::summary(const Result<VerifyReport>& final) const {
  std::lock_guard lk(mu_);
  json s;
  // Detection.
  json det = json::array();
  double worst = 0;
  for (const auto& [rank, kt] : kill_t_) {
    auto it = detect_s_.find(rank);
    det.push_back({{"rank", rank},
                   {"seconds", it == detect_s_.end() ? json(nullptr) : json(round2(it->second))}});
    if (it != detect_s_.end()) worst = std::max(worst, it->second);
  }
  s["detection"] = det;
  s["detection_s_max"] = kill_t_.empty() ? json(nullptr) : json(round2(worst));
  // Rebuild generations.
  json gens = json::array();
  double secs = 0;
  uint64_t bytes = 0, records = 0, objects = 0, lost = 0;
  for (const auto& [g, j] : gens_) {
    gens.push_back(j);
    secs += j["seconds"].get<double>();
    bytes += j["bytes"].get<uint64_t>();
    records += j["records"].get<uint64_t>();
    objects += j["objects"].get<uint64_t>();
    lost += j["lost"].get<uint64_t>();
  }
  s["rebuild"] = {{"generations", gens},
                  {"seconds", round2(secs)},
                  {"bytes", bytes},
                  {"records", records},
                  {"objects", objects},
                  {"lost", lost},
                  {"rate_mib_s", secs > 0 ? round2(mib(bytes) / secs) : 0.0}};
  // Foreground throughput: every interval between two samples with the load running, by
  // phase (before the first fault; during: a fault not yet repaired, or data moving; after).
  struct Acc {
    double secs = 0;
    uint64_t bytes = 0, writes = 0;
  };
  std::map<std::string, Acc> acc;
  for (size_t i = 1; i < samples_.size(); ++i) {
    const Sample& a = samples_[i - 1];
    const Sample& b = samples_[i];
    if (!a.running || !b.running || a.t < steps_start_) continue;
    const double ff = first_fault_.load();
    const char* phase = ff < 0 || b.t <= ff ? "before" : b.degraded ? "during" : "after";
    Acc& x = acc[phase];
    x.secs += b.t - a.t;
    x.bytes += b.bytes - a.bytes;
    x.writes += b.writes - a.writes;
  }
  json fg;
  for (const char* p : {"before", "during", "after"}) {
    const Acc& x = acc[p];
    // A phase shorter than a sample has no rate (null), not a rate of 0.
    const bool measured = x.secs >= 0.05;
    fg[p] = {{"seconds", round1(x.secs)},
             {"writes_per_s",
              measured ? json(round1(static_cast<double>(x.writes) / x.secs)) : json(nullptr)},
             {"mib_per_s", measured ? json(round2(mib(x.bytes) / x.secs)) : json(nullptr)}};
  }
  s["foreground"] = fg;
  // Acknowledged writes per second of the drill (t, writes, degraded), for plots.
  json series = json::array();
  size_t from = 0;
  for (size_t i = 1; i < samples_.size(); ++i) {
    if (samples_[i].t - samples_[from].t >= 1.0 || i + 1 == samples_.size()) {
      const Sample& a = samples_[from];
      const Sample& b = samples_[i];
      series.push_back({{"t", round1(b.t)},
                        {"writes_per_s",
                         round1(static_cast<double>(b.writes - a.writes) / (b.t - a.t))},
                        {"degraded", b.degraded}});
      from = i;
    }
  }
  s["writes_per_s_series"] = series;
  s["acknowledged_writes"] = load_ ? load_->acked() : 0;
  s["write_errors"] = load_ ? load_->errors() : 0;
  s["write_error_samples"] = load_ ? load_->error_samples() : std::vector<std::string>{};
  if (final) {
    s["verified_writes"] = final->checked;
    s["lost_writes"] = final->lost;
    s["lost_samples"] = final->samples;
  } else {
    s["verified_writes"] = nullptr;
    s["lost_writes"] = nullptr;
    s["verify_error"] = final.status().to_string();
  }
  s["map_version"] = last_ ? last_->pool.map.version : 0;
  return s;
}

void Runner::teardown() {
  aborting_ = true;
  (void)join_background(kDefaultWait);
  if (load_) {
    load_->stop();
    std::lock_guard lk(mu_);
    load_running_ = false;
  }
  mon_stop_ = true;
  if (mon_.joinable()) mon_.join();
  for (uint32_t r : hung_) {
    // A stopped process takes no SIGTERM: end it the way a drill ended it anyway.
    if (const auto* e = sys_.engine(r); e != nullptr && local::engine_alive(*e)) {
      (void)local::kill_engine(sys_, r, SIGKILL);
    }
  }
  hung_.clear();
  if (started_) {
    started_ = false;
    auto sys = local::SystemFile::load(dir_ + "/system.json");
    if (sys) (void)local::stop(*sys, std::chrono::seconds(10), [](const std::string&) {});
  }
}

Result<json> Runner::run() {
  event("drill", fmt::format("drill \"{}\" ({})", d_.name, d_.path));
  Status st = setup();
  if (!st.is_ok()) {
    teardown();
    return Status(st.code(), fmt::format("drill setup: {}", st.message()));
  }
  steps_start_ = now();
  std::string failure;
  for (const Step& s : d_.steps) {
    const double t = now();
    Status r = run_step(s);
    json extra = {{"line", s.line}, {"ok", r.is_ok()}, {"seconds", round2(now() - t)}};
    if (!r.is_ok()) extra["error"] = r.message();
    event("step", s.text, extra);
    if (!r.is_ok()) {
      failure = fmt::format("step '{}' (line {}): {}", s.text, s.line, r.message());
      break;
    }
  }
  // Background steps still running end before the final verification (a failed drill stops
  // their waits at once).
  if (!failure.empty()) aborting_ = true;
  if (Status b = join_background(kDefaultWait); !b.is_ok() && failure.empty()) {
    failure = b.message();
  }
  // The final verification: every write acknowledged over the whole drill.
  Result<VerifyReport> final = Status(Errc::not_found, "the drill has no load");
  if (load_) {
    load_->stop();
    {
      std::lock_guard lk(mu_);
      load_running_ = false;
    }
    progress(fmt::format("verifying {} acknowledged writes", load_->acked()));
    final = load_->verify(load_->acks(), 2);
    if (final) {
      event("verify",
            fmt::format("final: {} acknowledged writes checked, {} lost", final->checked,
                        final->lost),
            {{"checked", final->checked}, {"lost", final->lost}});
      if (final->lost > 0 && failure.empty()) {
        failure = fmt::format("{} acknowledged writes lost", final->lost);
      }
    } else if (failure.empty()) {
      failure = "final verification: " + final.status().to_string();
    }
    if (failure.empty() && load_->errors() > 0 && !d_.allow_write_errors) {
      failure =
          fmt::format("{} writes failed (the drill does not allow write errors)", load_->errors());
    }
  }
  mon_stop_ = true;
  if (mon_.joinable()) mon_.join();
  json report;
  report["drill"] = d_.name;
  report["file"] = d_.path;
  report["ok"] = failure.empty();  // as every --json answer: the command succeeded
  report["passed"] = failure.empty();
  report["failure"] = failure.empty() ? json(nullptr) : json(failure);
  report["summary"] = summary(final);
  const bool kept = started_ && (o_.keep || !failure.empty());
  teardown();
  if (!dir_.empty() && o_.dir.empty() && !kept) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  report["system_dir"] = dir_.empty() ? json(sys_.dir) : json(dir_);
  report["system_dir_kept"] = dir_.empty() || kept || !o_.dir.empty();
  {
    std::lock_guard lk(mu_);
    report["timeline"] = timeline_;
  }
  return report;
}

Result<json> run_drill(const DrillSpec& spec, const RunOptions& opts) {
  Runner r(spec, opts);
  return r.run();
}

}  // namespace tessera::drill
