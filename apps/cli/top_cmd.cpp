// tessera system top: a live per-engine view (I/O rate, bandwidth, p99 latency, space,
// rebuild), from each engine's metrics endpoint (GET /metrics.json, docs/OPERATIONS.md).
// Each round scrapes every joined engine at once and shows the rates over the interval.
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <csignal>
#include <ctime>
#include <future>
#include <set>
#include <thread>

#include "apps/cli/common.hpp"
#include "core/histogram.hpp"
#include "mgmt/types.hpp"
#include "telemetry/http.hpp"

namespace tessera::cli {

namespace {

// Object requests that are I/O (the rest: maintenance, transactions' outcomes, rebuild).
bool io_op(const std::string& op) {
  static const std::set<std::string> kIo = {"update", "fetch",     "punch",     "list",
                                            "ec_update", "tx_commit", "tx_prepare"};
  return kIo.count(op) != 0;
}

// One engine's scrape, summed over its targets and pools.
struct Totals {
  double ops = 0, in = 0, out = 0;
  Histogram::Counts lat{};  // I/O latency, per bucket
  double used = 0, capacity = 0;
  double rebuild_sent = 0, rebuild_planned = 0;
  bool rebuilding = false;
};

Totals totals(const json& j) {
  Totals t;
  for (const auto& fam : j.at("families")) {
    const std::string name = fam.at("name").get<std::string>();
    for (const auto& s : fam.at("samples")) {
      const json& l = s.at("labels");
      auto label = [&](const char* k) { return l.contains(k) ? l[k].get<std::string>() : ""; };
      const double v = s.contains("value") ? s["value"].get<double>() : 0;
      if (name == "tessera_requests_total" && io_op(label("op"))) t.ops += v;
      if (name == "tessera_request_bytes_in_total" && io_op(label("op"))) t.in += v;
      if (name == "tessera_request_bytes_out_total" && io_op(label("op"))) t.out += v;
      if (name == "tessera_request_duration_seconds" && io_op(label("op"))) {
        uint64_t prev = 0;
        size_t i = 0;
        for (const auto& b : s.at("buckets")) {
          const uint64_t cum = b.at(1).get<uint64_t>();
          if (i < Histogram::kBuckets) t.lat[i] += cum - prev;
          prev = cum;
          ++i;
        }
        t.lat[Histogram::kBuckets] += s.at("count").get<uint64_t>() - prev;
      }
      const bool data_of_pool = label("pool") != "0" && label("tier") == "data";
      if (name == "tessera_space_used_bytes" && data_of_pool) t.used += v;
      if (name == "tessera_space_capacity_bytes" && data_of_pool) t.capacity += v;
      if (name == "tessera_rebuild_running" && v > 0) t.rebuilding = true;
      if (name == "tessera_rebuild_sent_bytes") t.rebuild_sent += v;
      if (name == "tessera_rebuild_planned_bytes") t.rebuild_planned += v;
    }
  }
  return t;
}

// The 99th percentile of the latencies counted between two scrapes (the bucket's upper bound,
// µs); 0 without any.
double p99_us(const Totals& a, const Totals& b) {
  Histogram::Counts d{};
  for (size_t i = 0; i <= Histogram::kBuckets; ++i) d[i] = b.lat[i] - a.lat[i];
  return Histogram::quantile_seconds(d, 0.99) * 1e6;
}

struct Scrape {
  Result<Totals> t = Status(Errc::unavailable, "not scraped");
  std::chrono::steady_clock::time_point at;
};

std::vector<Scrape> scrape_all(const std::vector<mgmt::Member>& ms) {
  std::vector<std::future<Scrape>> fs;
  for (const auto& m : ms) {
    fs.push_back(std::async(std::launch::async, [addr = m.metrics_addr] {
      Scrape s;
      if (addr.empty()) {
        s.t = Status(Errc::unsupported, "metrics off");
      } else if (auto body = telemetry::http_get(addr, "/metrics.json", std::chrono::seconds(2));
                 !body) {
        s.t = body.status();
      } else {
        try {
          s.t = totals(json::parse(*body));
        } catch (const std::exception& e) {
          s.t = Status(Errc::protocol, fmt::format("unreadable metrics: {}", e.what()));
        }
      }
      s.at = std::chrono::steady_clock::now();
      return s;
    }));
  }
  std::vector<Scrape> out;
  for (auto& f : fs) out.push_back(f.get());
  return out;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int top(Globals& g, double interval_s, uint64_t count) {
  if (!(interval_s >= 0.1 && interval_s <= 3600)) {
    return fail(g, Status(Errc::invalid_argument, "--interval must be 0.1..3600 seconds"),
                "system top");
  }
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "system top");
  const bool tty = !g.json && ::isatty(STDOUT_FILENO) != 0;
  auto members = mc->system_query();
  if (!members) return fail(g, members.status(), "system top");
  auto before = scrape_all(*members);
  const auto period = std::chrono::duration<double>(interval_s);
  for (uint64_t round = 0; count == 0 || round < count; ++round) {
    std::this_thread::sleep_for(period);
    // Engines that joined or left since: scrape the new list, compare what both have.
    auto now_members = mc->system_query();
    if (!now_members) return fail(g, now_members.status(), "system top");
    if (now_members->size() != members->size()) {
      members = std::move(now_members);
      before = scrape_all(*members);
      continue;
    }
    members = std::move(now_members);
    auto after = scrape_all(*members);
    json rows = json::array();
    for (size_t i = 0; i < members->size(); ++i) {
      const auto& m = (*members)[i];
      json r = {{"rank", m.rank},
                {"state", mgmt::member_state_name(m.state)},
                {"metrics", m.metrics_addr}};
      if (!after[i].t) {
        r["error"] = after[i].t.status().to_string();
      } else {
        r["used"] = after[i].t->used;
        r["capacity"] = after[i].t->capacity;
        r["rebuilding"] = after[i].t->rebuilding;
        r["rebuild_sent"] = after[i].t->rebuild_sent;
        r["rebuild_planned"] = after[i].t->rebuild_planned;
        if (before[i].t) {
          const Totals& a = *before[i].t;
          const Totals& b = *after[i].t;
          const double dt =
              std::chrono::duration<double>(after[i].at - before[i].at).count();
          r["ops_per_s"] = dt > 0 ? (b.ops - a.ops) / dt : 0;
          r["write_bytes_per_s"] = dt > 0 ? (b.in - a.in) / dt : 0;
          r["read_bytes_per_s"] = dt > 0 ? (b.out - a.out) / dt : 0;
          r["p99_us"] = p99_us(a, b);
        }
      }
      rows.push_back(std::move(r));
    }
    before = std::move(after);
    if (g.json) {
      std::printf("%s\n", json({{"time", utc_now()}, {"engines", rows}}).dump().c_str());
      std::fflush(stdout);
      continue;
    }
    if (tty) std::printf("\033[H\033[2J");
    std::printf("tessera system top: %zu engines, every %.1f s%s   %s\n", rows.size(), interval_s,
                tty ? " (Ctrl-C ends)" : "", utc_now().c_str());
    std::printf("%-5s %-9s %9s %11s %11s %9s %23s  %s\n", "rank", "state", "I/O ops/s", "write/s",
                "read/s", "p99", "used / capacity", "rebuild");
    for (const auto& r : rows) {
      if (r.contains("error") || !r.contains("ops_per_s")) {
        std::printf("%-5u %-9s %s\n", r["rank"].get<uint32_t>(),
                    r["state"].get<std::string>().c_str(),
                    r.contains("error") ? r["error"].get<std::string>().c_str() : "(first scrape)");
        continue;
      }
      const double p99 = r["p99_us"].get<double>();
      std::string rb = "-";
      if (r["rebuilding"].get<bool>()) {
        const double planned = r["rebuild_planned"].get<double>();
        rb = planned > 0 ? fmt::format("{:.0f}% of {}", 100 * r["rebuild_sent"].get<double>() / planned,
                                       human(static_cast<uint64_t>(planned)))
                         : "scanning";
      }
      std::printf("%-5u %-9s %9.0f %11s %11s %9s %23s  %s\n", r["rank"].get<uint32_t>(),
                  r["state"].get<std::string>().c_str(), r["ops_per_s"].get<double>(),
                  human(static_cast<uint64_t>(r["write_bytes_per_s"].get<double>())).c_str(),
                  human(static_cast<uint64_t>(r["read_bytes_per_s"].get<double>())).c_str(),
                  p99 <= 0 ? "-"
                  : p99 >= 1000 ? fmt::format("{:.1f} ms", p99 / 1000).c_str()
                                : fmt::format("{:.0f} us", p99).c_str(),
                  (human(static_cast<uint64_t>(r["used"].get<double>())) + " / " +
                   human(static_cast<uint64_t>(r["capacity"].get<double>())))
                      .c_str(),
                  rb.c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

void add_top_command(CLI::App* sys, Globals& g) {
  auto interval = std::make_shared<double>(2.0);
  auto count = std::make_shared<uint64_t>(0);
  auto* c = leaf(sys, g, "top",
                 "a live per-engine view: I/O operations and bytes per second, p99 latency, "
                 "space and rebuild progress, from each engine's metrics endpoint",
                 [&g, interval, count] { return top(g, *interval, *count); });
  c->add_option("-i,--interval", *interval, "seconds between refreshes (0.1..3600)");
  c->add_option("-n,--count", *count,
                "refreshes to show, then exit (default 0: until interrupted); with --json one "
                "JSON line per refresh");
}

}  // namespace tessera::cli
