// tessera cont check POOL CONT [--repair]: every serving target checks the container's objects
// it holds (rebuild/check.hpp): stored pieces against their checksums, replicas against each
// other, erasure-coded cells against their parity. Prints each inconsistency; fails while any
// stays (or a target could not check its part).
#include <fmt/format.h>

#include <cstdio>

#include "apps/cli/common.hpp"
#include "apps/cli/progress.hpp"

namespace tessera::cli {

namespace {

struct CheckArgs {
  std::string pool;
  std::string cont;
  bool repair = false;
  double share_pct = 100;
  double wait_s = 3600;
};

json finding_json(const CheckFindingInfo& f) {
  json j{{"oid", oid_str(f.oid)}, {"what", f.what}, {"copies", f.copies},
         {"repaired", f.repaired}};
  put_bytes(j, "dkey", f.dkey);
  put_bytes(j, "akey", f.akey);
  if (f.length > 0) {
    j["offset"] = f.offset;
    j["length"] = f.length;
  }
  return j;
}

// "[#########...............]  37%  1234 of 3300 dkeys"
std::string count_bar(uint64_t done, uint64_t total, const char* unit, int width = 24) {
  const uint64_t shown = std::min(done, total);
  const int fill = total == 0 ? 0 : static_cast<int>(width * shown / total);
  std::string bar(static_cast<size_t>(fill), '#');
  bar.resize(static_cast<size_t>(width), '.');
  const int pct = total == 0 ? 0 : static_cast<int>(100 * shown / total);
  return fmt::format("[{}] {:3}%  {} of {} {}", bar, pct, done, total, unit);
}

int cont_check(Globals& g, const CheckArgs& a) {
  const std::string what = a.repair ? "cont check --repair" : "cont check";
  if (!(a.share_pct > 0 && a.share_pct <= 100)) {
    return fail(g, Status(Errc::invalid_argument, "--share must be in (0, 100] percent"), what);
  }
  if (!(a.wait_s > 0)) return fail(g, Status(Errc::invalid_argument, "--wait must be > 0"), what);
  auto addr = mgmt_address(g);
  if (!addr) return fail(g, addr.status(), what);
  MgmtClient mc(*addr, g.timeout());
  auto view = mc.pool_query(a.pool);
  if (!view) return fail(g, view.status(), what);
  const mgmt::ContView* cont = nullptr;
  for (const auto& c : view->conts) {
    if (c.c.props.label == a.cont || c.c.uuid == a.cont) cont = &c;
  }
  if (cont == nullptr) {
    return fail(g, Status(Errc::not_found, fmt::format("no container '{}' in pool {}", a.cont,
                                                       view->pool.label)),
                what);
  }
  ClientOptions co;
  co.engine = *addr;
  co.timeout = g.timeout();
  auto client = Client::connect_system(co);
  if (!client) return fail(g, client.status(), what);

  ProgressLine line(g);
  auto last_poll = std::chrono::steady_clock::now() - std::chrono::hours(1);
  std::string shown = "starting";
  auto progress = [&](size_t targets_done, size_t targets) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_poll >= line.poll()) {
      last_poll = now;
      uint64_t done = 0, total = 0;
      for (const auto& t : (*client)->pool_space(*view)) {
        if (!t.stats) continue;
        done += t.stats->check_done;
        total += t.stats->check_total;
      }
      shown = count_bar(done, total, "dkeys");
    }
    line.working(fmt::format("{}  {} of {} targets done", shown, targets_done, targets));
  };
  const auto results = (*client)->cont_check(
      *view, cont->c.id, a.repair, a.share_pct / 100.0,
      std::chrono::milliseconds(static_cast<int64_t>(a.wait_s * 1000)), progress);
  line.finish();

  CheckInfo total;
  json targets = json::array();
  json findings = json::array();
  std::string lines;
  size_t ok = 0;
  Status first;
  for (const auto& r : results) {
    json t{{"rank", r.rank}, {"target", r.target}, {"state", r.state}};
    if (!r.answer) {
      if (r.state == "down-out") {
        t["skipped"] = "down-out";  // holds nothing the pool uses
      } else {
        Status named = at_target(r.answer.status(), r.rank, r.target);
        t["error"] = named.to_string();
        if (first.is_ok()) first = named;
        lines += fmt::format("  {}\n", named.to_string());
      }
      targets.push_back(std::move(t));
      continue;
    }
    const CheckInfo& i = *r.answer;
    ++ok;
    for (auto [sum, part] : {std::pair{&total.objects, i.objects}, {&total.dkeys, i.dkeys},
                             {&total.akeys, i.akeys}, {&total.extents, i.extents},
                             {&total.bytes, i.bytes}, {&total.damaged, i.damaged},
                             {&total.repaired, i.repaired}, {&total.unrepaired, i.unrepaired},
                             {&total.compared, i.compared}, {&total.stripes, i.stripes},
                             {&total.inconsistent, i.inconsistent}, {&total.fixed, i.fixed},
                             {&total.unchecked, i.unchecked}, {&total.left_off, i.left_off}}) {
      *sum += part;
    }
    t.update({{"dkeys", i.dkeys},           {"akeys", i.akeys},
              {"extents", i.extents},       {"bytes", i.bytes},
              {"damaged", i.damaged},       {"repaired", i.repaired},
              {"unrepaired", i.unrepaired}, {"compared", i.compared},
              {"stripes", i.stripes},       {"inconsistent", i.inconsistent},
              {"fixed", i.fixed},           {"unchecked", i.unchecked}});
    if (!i.last_error.empty()) t["last_error"] = i.last_error;
    for (const auto& f : i.findings) {
      findings.push_back(finding_json(f));
      std::string where = fmt::format("object {} dkey '{}'", oid_str(f.oid), f.dkey);
      if (!f.akey.empty()) where += fmt::format(" akey '{}'", f.akey);
      lines += fmt::format("  {}: {}{}\n", where, f.what, f.repaired ? " [repaired]" : "");
    }
    if (i.left_off > 0) {
      lines += fmt::format("  ... and {} more on rank {} target {} (see its log)\n", i.left_off,
                           r.rank, r.target);
    }
    targets.push_back(std::move(t));
  }
  const uint64_t left = total.inconsistent - std::min(total.inconsistent, total.fixed);
  json j{{"pool", view->pool.label},
         {"container", cont->c.props.label},
         {"repair", a.repair},
         {"objects", total.objects},
         {"dkeys", total.dkeys},
         {"akeys", total.akeys},
         {"extents", total.extents},
         {"bytes", total.bytes},
         {"compared", total.compared},
         {"stripes", total.stripes},
         {"damaged", total.damaged},
         {"repaired", total.repaired},
         {"unrepaired", total.unrepaired},
         {"inconsistent", total.inconsistent},
         {"fixed", total.fixed},
         {"unchecked", total.unchecked},
         {"findings", findings},
         {"findings_left_off", total.left_off},
         {"targets", targets}};
  const bool clean = first.is_ok() && left == 0 && total.unrepaired == 0 && total.unchecked == 0;
  j["consistent"] = clean;
  const std::string summary = fmt::format(
      "container {} of pool {}: {} dkeys, {} akeys and {} stored pieces ({}) checked on {} "
      "targets; {} akeys compared across copies, {} erasure-coded stripes against their parity",
      cont->c.props.label, view->pool.label, total.dkeys, total.akeys, total.extents,
      human(total.bytes), ok, total.compared, total.stripes);
  if (clean) {
    return done(g, j, [&] {
      fmt::print("{}\n{}", summary, lines);  // keys may hold any byte
      if (total.inconsistent + total.damaged == 0) {
        std::printf("consistent: 0 inconsistencies, 0 damaged pieces\n");
      } else {
        std::printf("repaired: %lu inconsistencies and %lu damaged pieces; consistent now\n",
                    static_cast<unsigned long>(total.fixed),
                    static_cast<unsigned long>(total.repaired));
      }
    });
  }
  Status st = !first.is_ok() ? Status(first.code(), fmt::format("{} (checked on {} targets)",
                                                                first.message(), ok))
              : left > 0 || total.unrepaired > 0
                  ? Status(Errc::checksum,
                           fmt::format("{} inconsistencies and {} damaged pieces remain{}", left,
                                       total.unrepaired,
                                       a.repair ? "" : " (tessera cont check --repair rewrites "
                                                       "bad copies from good ones)"))
                  : Status(Errc::unavailable,
                           fmt::format("{} dkeys could not be checked: {}", total.unchecked,
                                       total.last_error));
  if (g.json) {
    j["ok"] = false;
    j["error"] = std::string(errc_name(st.code()));
    j["message"] = st.message();
    j["operation"] = what;
    std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
    return 1;
  }
  fmt::print("{}\n{}", summary, lines);
  return fail(g, st, what);
}

}  // namespace

void add_cont_check_command(CLI::App* cont, Globals& g) {
  auto a = std::make_shared<CheckArgs>();
  auto* check = leaf(cont, g, "check",
                     "check a container's copies: every stored piece against its checksum, "
                     "replicas against each other, erasure-coded cells against their parity; "
                     "fails while an inconsistency stays",
                     [&g, a] { return cont_check(g, *a); });
  check->add_option("pool", a->pool, "pool label or UUID")->required();
  check->add_option("cont", a->cont, "container label or UUID")->required();
  check->add_flag("--repair", a->repair,
                  "rewrite bad copies from good ones (the majority's; with two copies, the "
                  "group's first position's), damaged pieces from a good copy");
  check->add_option("--share", a->share_pct,
                    "percent of each target's time the check may use (default 100)");
  check->add_option("--wait", a->wait_s,
                    "seconds to wait for each target's part (default 3600)");
}

}  // namespace tessera::cli
