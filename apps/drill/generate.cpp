#include "apps/drill/generate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "placement/layout.hpp"

namespace tessera::drill {

namespace {

// The generator's model of the system, from the management service's rules
// (mgmt/state.hpp, failed_target): an engine counts as failed while it is killed and not
// back, and after it is back while its data is stale: reintegrated before a rebuild completed
// for it (its data was kept), until a rebuild completes. Never more than `max_down` at once.
// Rank 0 hosts the management service: it is stopped cleanly, never killed.
struct Gen {
  std::mt19937_64 rng;
  uint32_t engines;
  uint32_t max_down;
  std::map<uint32_t, bool> down;  // killed rank -> a rebuild completed since
  std::set<uint32_t> stale;       // back, with kept data no rebuild has completed yet
  std::vector<std::string> steps;

  explicit Gen(uint64_t seed, uint32_t n, uint32_t most) : rng(seed), engines(n), max_down(most) {}

  uint32_t failed() const { return static_cast<uint32_t>(down.size() + stale.size()); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  uint32_t pick(const std::vector<uint32_t>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
  }
  std::vector<uint32_t> up(bool with_rank0) const {
    std::vector<uint32_t> out;
    for (uint32_t r = with_rank0 ? 0 : 1; r < engines; ++r) {
      if (down.count(r) == 0 && stale.count(r) == 0) out.push_back(r);
    }
    return out;
  }
  void add(std::string s) { steps.push_back(std::move(s)); }
  void rebuilt() {
    add("wait rebuild timeout 300s");
    for (auto& [r, done] : down) done = true;
    stale.clear();
  }

  // kill -9 of an engine; the next fault may land while its rebuild runs.
  void kill() {
    const uint32_t r = pick(up(false));
    down[r] = false;
    add(fmt::format("kill rank {}", r));
    add(fmt::format("wait down rank {} timeout 60s", r));
    const double x = std::uniform_real_distribution<double>(0, 1)(rng);
    if (x < 0.4) {
      add("wait rebuild busy timeout 60s");
    } else if (x < 0.8) {
      rebuilt();
    }
  }
  // A killed engine comes back: restarted and reintegrated (its data dropped and refilled when
  // a rebuild copied it elsewhere, else kept and brought up to date).
  void bring_back() {
    std::vector<uint32_t> ranks;
    for (const auto& [r, done] : down) ranks.push_back(r);
    const uint32_t r = pick(ranks);
    if (!down[r]) stale.insert(r);
    down.erase(r);
    add(fmt::format("restart rank {}", r));
    add(fmt::format("reintegrate rank {}", r));
    if (chance(0.6)) rebuilt();
  }
  // SIGTERM and a restart within the grace period: nothing moves, nothing took the rank out.
  void clean_restart() {
    const uint32_t r = pick(up(true));
    add(fmt::format("term rank {}", r));
    add(fmt::format("restart rank {}", r));
    add(fmt::format("wait joined rank {} timeout 90s", r));
    add(fmt::format("assert kept rank {}", r));
  }
};

}  // namespace

Result<std::string> generate_drill(const GenerateOptions& o) {
  const auto* cls = placement::find_class(o.oclass);
  if (cls == nullptr) {
    return Status(Errc::invalid_argument, fmt::format("unknown object class '{}'", o.oclass));
  }
  if (cls->tolerated() == 0) {
    return Status(Errc::invalid_argument,
                  fmt::format("object class {} survives no engine failure: a random drill "
                              "would lose data by design",
                              o.oclass));
  }
  if (o.engines < cls->group_size + 1 || o.engines > 64) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} needs {} engines per group: give between {} and 64 engines",
                              o.oclass, cls->group_size, cls->group_size + 1));
  }
  if (o.faults == 0 || o.faults > 100) {
    return Status(Errc::invalid_argument, "faults must be between 1 and 100");
  }
  // Never more engines down than the class survives, nor so many that a group no longer fits.
  const uint32_t most = std::min(cls->tolerated(), o.engines - cls->group_size);
  Gen g(o.seed, o.engines, most);
  g.add("sleep 2s");
  for (uint32_t f = 0; f < o.faults;) {
    const double x = std::uniform_real_distribution<double>(0, 1)(g.rng);
    if (!g.down.empty() && (g.failed() >= most || x < 0.35)) {
      g.bring_back();  // not a fault: the next event is
      continue;
    }
    if (g.failed() >= most) {
      g.rebuilt();  // only stale engines left: their rebuild must end before the next fault
      continue;
    }
    if (x < 0.8) {
      g.kill();
    } else {
      g.clean_restart();
    }
    ++f;
    if (g.chance(0.3)) g.add(fmt::format("sleep {}s", 1 + g.rng() % 3));
    if (g.chance(0.25)) g.add("verify");
  }
  while (!g.down.empty()) g.bring_back();
  g.rebuilt();
  g.add("verify");

  const bool ec = cls->redundancy == placement::Redundancy::erasure;
  std::string out = fmt::format(
      "# Generated by: tessera drill generate --seed {} --class {} --engines {} --faults {}\n"
      "# {} random faults under a verified load on a {} container, never more than {} engine(s)\n"
      "# down at once; every acknowledged write must read back.\n"
      "name: random faults {} seed {}\n"
      "system:\n  engines: {}\n  targets: 1\n  engine_args: [\"--rebuild-share-pct\", \"50\"]\n"
      "pool:\n  label: drill\n  size: 256M\n"
      "container:\n  label: data\n  class: {}\n  rf: {}\n{}"
      "load:\n  writers: 2\n  size: 16K\n  kind: array\n  rate: 10\n  preload: 300\n  seed: {}\n"
      "steps:\n",
      o.seed, o.oclass, o.engines, o.faults, o.faults, o.oclass, most, o.oclass, o.seed, o.engines,
      o.oclass, cls->tolerated(), ec ? "  cell_size: 4K\n" : "", o.seed);
  for (const auto& s : g.steps) out += "  - " + s + "\n";
  return out;
}

}  // namespace tessera::drill
