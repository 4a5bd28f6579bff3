// A system of four engines for transaction tests (dtx_test.cpp, tx_test.cpp): rank 0 hosts the
// management service and holds no pool shard, ranks 1..3 hold pool "tank" with container "c";
// a client with a short timeout (a dead leader's request fails soon).
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "client/container.hpp"
#include "client/tessera.h"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/test_util.hpp"

namespace tessera::testing {

constexpr uint64_t kCell = 4096;

inline std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct SystemHarness {
  TempDir dir;
  std::unique_ptr<LocalSystem> sys;
  std::unique_ptr<MgmtClient> mc;
  std::unique_ptr<Client> cl;
  std::unique_ptr<Container> c;
  bool ec = false;
  // The client's: short, so that a dead leader's update fails soon (connect() again after a
  // change).
  std::chrono::milliseconds timeout{4000};

  // Rank 0 hosts the management service and holds no pool shard: the kills hit ranks 1..3.
  // `rf`: the failures the container tolerates. With 0 the pool keeps a dead engine's targets
  // in its map (self_heal none): it restarts with its own state (prepared transactions
  // included) and resolves them; an exclusion would leave the container beyond its rf, UNCLEAN
  // and refusing writes for good. With 1 a dead engine is excluded and comes back by
  // reintegration, refilled by a rebuild.
  // `extra`: more tessera-server arguments for every engine.
  explicit SystemHarness(const char* oclass, uint32_t rf = 1, uint32_t targets = 1,
                         const std::vector<std::string>& extra = {})
      : ec(std::string(oclass).rfind("EC_", 0) == 0) {
    sys = std::make_unique<LocalSystem>(dir.path(), 4, targets, extra);
    EXPECT_TRUE(sys->wait_joined(4));
    mc = std::make_unique<MgmtClient>(sys->mgmt());
    EXPECT_TRUE(mc->pool_create("tank", 64ull << 20, {1, 2, 3}));
    if (rf == 0) {
      EXPECT_TRUE(mc->pool_set_prop("tank", "self_heal", "none").is_ok());
    }
    EXPECT_TRUE(mc->cont_create("tank", cont_props("c", oclass, rf, mgmt::ContType::kv, kCell)));
    connect();
  }
  void connect() {
    c.reset();  // a container goes before the client it belongs to
    cl.reset();
    ClientOptions co;
    co.engine = sys->mgmt();
    co.timeout = timeout;
    auto k = Client::connect_system(co);
    ASSERT_TRUE(k) << k.status().to_string();
    cl = std::move(*k);
    auto o = cl->open_container("tank", "c", true);
    ASSERT_TRUE(o) << o.status().to_string();
    c = std::move(*o);
  }
  ObjectId oid() { return *c->make_oid(1, 1); }
  Result<uint64_t> put(const std::string& dkey, const std::string& v, Cond cond = Cond::none) {
    return ec ? c->update(oid(), dkey, "data", ValueKind::array, 0, bytes(v))
              : c->update(oid(), dkey, "v", ValueKind::single, 0, bytes(v), {.cond = cond});
  }
  Result<std::string> get(const std::string& dkey) {
    auto r = ec ? c->fetch(oid(), dkey, "data", ValueKind::array, 0, 2 * kCell)
                : c->fetch(oid(), dkey, "v", ValueKind::single, 0, 0, 0, {.must_exist = true});
    if (!r) return r.status();
    return std::string(r->data.view());
  }
  // The ranks holding (o, dkey)'s group: its leader (the first member holding complete data)
  // first, then the other available members.
  std::vector<uint32_t> group_ranks(ObjectId o, const std::string& dkey) {
    const auto group = positions(o, dkey);
    std::vector<uint32_t> out;
    if (const placement::Shard* l = leader_of(group)) out.push_back(l->rank);
    for (const auto& p : group) {
      if (p.home.available && std::find(out.begin(), out.end(), p.home.rank) == out.end()) {
        out.push_back(p.home.rank);
      }
    }
    return out;
  }
  // The leader (rank, target) of (o, dkey)'s group: where transactions read the dkey, and the
  // coordinator of a transaction whose first change it is ({0, 0} when none).
  std::pair<uint32_t, uint32_t> leader(ObjectId o, const std::string& dkey) {
    const auto group = positions(o, dkey);
    const placement::Shard* l = leader_of(group);
    return l == nullptr ? std::make_pair(0u, 0u) : std::make_pair(l->rank, l->target);
  }
  // The positions of (o, dkey)'s group in the pool map now.
  std::vector<placement::Position> positions(ObjectId o, const std::string& dkey) {
    auto view = mc->pool_query("tank");
    EXPECT_TRUE(view);
    if (!view) return {};
    auto place = placement::place(o, view->pool.map);
    EXPECT_TRUE(place);
    if (!place) return {};
    return place->dkey(dkey);
  }
  // A group's leader: its first member holding complete data.
  static const placement::Shard* leader_of(const std::vector<placement::Position>& group) {
    for (const auto& p : group) {
      if (p.complete && p.home.available) return &p.home;
    }
    return nullptr;
  }
  // The group of the victims (one group: every dkey of the object): its leader and another
  // member.
  std::pair<uint32_t, uint32_t> leader_and_member() {
    auto g = group_ranks(oid(), "victim-0");
    return {g.empty() ? 0 : g[0], g.size() < 2 ? 0 : g[1]};
  }
  // Restarts `rank` cleanly (a clean stop keeps its targets in the pool map) with the crash
  // points `spec` armed (core/crash_point.hpp): only that engine has them.
  void arm(uint32_t rank, const std::string& spec) {
    restart_armed(*sys, rank, spec);
    EXPECT_TRUE(sys->wait_joined(4));
  }
  // Restarts the engines that died; those the system excluded meanwhile are reintegrated, and
  // the rebuild that fills them again runs to its end.
  void restart_dead() {
    std::vector<uint32_t> restarted;
    for (uint32_t r = 1; r < 4; ++r) {
      if (!sys->engine(r).alive()) {
        Status st = sys->engine(r).start();
        EXPECT_TRUE(st.is_ok()) << "rank " << r << ": " << st.to_string();
        restarted.push_back(r);
      }
    }
    ASSERT_TRUE(sys->wait_joined(4));
    for (uint32_t r : restarted) {
      auto view = mc->pool_query("tank");
      ASSERT_TRUE(view);
      auto st = view->pool.map.state(r, 0);
      if (st && *st != placement::TargetState::up_in) {
        auto op = mc->pool_op("tank", "reintegrate", {r});
        ASSERT_TRUE(op) << op.status().to_string();
      }
    }
    auto v = wait_pool(*mc, "tank", [](const mgmt::PoolView& p) {
      return p.pool.rebuild.state != "busy" && !p.pool.map.moving();
    });
    ASSERT_FALSE(v.pool.map.moving()) << "the rebuild after the restart did not finish: "
                                      << rebuild_story(v);
  }
  // What a rebuild that did not finish was doing: the pool's record, and every engine's log
  // lines about rebuilds and reintegration (the last ones).
  std::string rebuild_story(const mgmt::PoolView& v) {
    std::string out = fmt::format(
        "map version {}, generation {} ({}) of version {}, targets done {}/{}, error '{}'\n",
        v.pool.map.version, v.pool.rebuild.gen, v.pool.rebuild.state, v.pool.rebuild.version,
        v.progress.targets_done, v.progress.targets_total, v.pool.rebuild.error);
    for (uint32_t r = 0; r < 4; ++r) {
      std::vector<std::string> lines;
      std::istringstream in(sys->engine(r).log());
      for (std::string line; std::getline(in, line);) {
        if (line.find("rebuild") != std::string::npos ||
            line.find("reintegrat") != std::string::npos ||
            line.find("generation") != std::string::npos) {
          lines.push_back(line.substr(0, 300));
        }
      }
      out += fmt::format("rank {} ({} lines about rebuilds; the last ones):\n", r, lines.size());
      for (size_t i = lines.size() > 20 ? lines.size() - 20 : 0; i < lines.size(); ++i) {
        out += "  " + lines[i] + "\n";
      }
    }
    return out;
  }
  // One check pass without repair over container "c", every target's answer.
  Result<std::vector<PoolTargetCheck>> check_pass() {
    auto view = mc->pool_query("tank");
    if (!view) return view.status();
    return cl->cont_check(*view, c->handle().cont.c.id, false, 1.0, std::chrono::minutes(2), {});
  }
  // Whether a check pass (without repair) reached every copy of every dkey. An engine killed
  // and restarted at the same address, with no map change between, may not hear its peers'
  // first sends for a while (the fabric reconnects): a test waits for this first.
  bool check_reaches_all() {
    auto pass = check_pass();
    if (!pass) return false;
    for (const auto& r : *pass) {
      if (!r.answer || r.answer->unchecked != 0) return false;
    }
    return true;
  }
  // `tessera cont check`'s pass over the whole container (rebuild/check.hpp): no copy disagrees
  // with the others, no stored piece is damaged, every dkey was checked.
  void expect_consistent(const std::string& when) {
    auto pass = check_pass();
    ASSERT_TRUE(pass) << pass.status().to_string();
    uint64_t compared = 0;
    for (const auto& r : *pass) {
      if (r.answer) compared += r.answer->compared + r.answer->stripes;
      ASSERT_TRUE(r.answer) << when << ": rank " << r.rank << ": " << r.answer.status().to_string();
      std::string found;
      for (const auto& f : r.answer->findings) found += "\n  dkey " + f.dkey + ": " + f.what;
      EXPECT_EQ(r.answer->inconsistent, 0u) << when << ", rank " << r.rank << found;
      EXPECT_EQ(r.answer->unchecked, 0u) << when << ", rank " << r.rank << found;
      EXPECT_EQ(r.answer->damaged, 0u) << when << ", rank " << r.rank << found;
    }
    EXPECT_GT(compared, 0u) << when << ": the check compared nothing";
  }
  // Every copy of `dkey` holds the same bytes: reads rotate over the three replicas; an
  // erasure-coded stripe reads the same from its data cells and, with a data position's engine
  // down, rebuilt from parity.
  std::vector<std::string> copies(const std::string& dkey) {
    std::vector<std::string> out;
    for (int i = 0; i < 3; ++i) {
      auto v = get(dkey);
      out.push_back(v ? *v : v.status().to_string());
      if (ec) break;
    }
    if (!ec) return out;
    auto view = mc->pool_query("tank");
    EXPECT_TRUE(view);
    auto place = placement::place(oid(), view->pool.map);
    EXPECT_TRUE(place);
    const auto g = placement::ec_geometry(2, 1, kCell, dkey);
    const uint32_t rank = place->dkey(dkey)[g.data_pos(0)].home.rank;
    sys->engine(rank).kill9();
    EXPECT_TRUE(wait_gone(*mc, {rank}));
    auto v = get(dkey);
    out.push_back(v ? *v : v.status().to_string());
    restart_dead();
    return out;
  }
};

// A C API client of a harness's system with container "c" open for writing, and the id of
// object (oid_hi, oid_lo) of its default class: the start of the C API tests.
struct COpen {
  tessera_client* cl = nullptr;
  tessera_cont* co = nullptr;
  uint64_t hi = 0, lo = 0;
};
inline void c_open(const SystemHarness& h, uint32_t oid_hi, uint64_t oid_lo, COpen& out) {
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &out.cl), 0) << tessera_last_error();
  ASSERT_EQ(tessera_cont_open(out.cl, "tank", "c", 1, &out.co), 0) << tessera_last_error();
  ASSERT_EQ(tessera_cont_oid(out.co, oid_hi, oid_lo, nullptr, &out.hi, &out.lo), 0)
      << tessera_last_error();
}

}  // namespace tessera::testing
