// scale_bench: the control path's production code at the size of a large system, on one core.
// For N engines of T targets (no engine runs: the management state machine, its encoders and
// decoders, and placement are called directly), it prints one JSON line per N:
//   - the management state machine's time to take N joins and create a pool over them;
//   - the pool's map on the wire (the PoolInfo a pool query or an engine's refresh carries) and
//     the time to decode it, and to apply it (decode it and learn the routes to every engine
//     on a running target, mgmt::learn_view): what an engine or a client does with each new map;
//   - placement lookups per second (an object's layout, then one dkey's group) for RP_3GX and
//     EC_4P2GX objects, and for RP_3GX through a PlacementCache over a working set of 8 objects;
//   - the state machine's time to take an engine's death (its targets leave the map, the
//     rebuild is planned), and the fraction of shards whose home moves, beside the ideal (the
//     shards the dead engine held);
//   - the same for 10% more engines added to the pool (ideal: the new engines' share);
//   - a connect storm: the production management service (MgmtService, standalone, its state
//     file in a temporary directory) holding that pool and one container answers --opens
//     container opens from 4 threads (the control server's workers), each a durable command
//     whose answer carries the pool's map: opens per second, their latency, and the time
//     100,000 clients' opens would take at that rate.
// Usage: scale_bench [--engines 8,64,256,1024] [--targets 16] [--objects 20000]
//                    [--lookups 200000] [--opens 2000]
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include "actors/mgmt/service.hpp"
#include "core/actor.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "core/target.hpp"
#include "mgmt/codec.hpp"
#include "mgmt/codec_state.hpp"
#include "mgmt/state.hpp"
#include "mgmt/state_file.hpp"
#include "placement/cache.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/mgmt.capnp.h"
#include "proto/protocol.hpp"

using namespace tessera;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Engine `rank` of `targets` targets joining, with fabric addresses of a tcp provider's size
// (a sockaddr_in, 16 bytes, in base 16: family, port, IPv4 address 10.x.y.z, padding).
json join_cmd(uint32_t rank, uint32_t targets) {
  json addrs = json::array();
  for (uint32_t t = 0; t < targets; ++t) {
    addrs.push_back(fmt::format("0200{:04x}0a{:06x}0000000000000000", 20000 + t, rank));
  }
  return {{"op", "join"},
          {"rank", rank},
          {"host", fmt::format("host-{:05}", rank)},
          {"control_addr", fmt::format("10.{}.{}.{}:10001", rank >> 16, (rank >> 8) & 255,
                                       rank & 255)},
          {"provider", "tcp;ofi_rxm"},
          {"fabric_addrs", addrs}};
}

void must(const Status& st, const char* what) {
  if (!st.is_ok()) {
    std::fprintf(stderr, "scale_bench: %s: %s\n", what, st.to_string().c_str());
    std::exit(1);
  }
}

// Every shard's home (rank, target) for `n` objects of class `cls`, one dkey each.
std::vector<std::pair<uint32_t, uint32_t>> homes(const placement::PoolMap& map, uint16_t cls,
                                                 uint32_t n) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (uint32_t o = 0; o < n; ++o) {
    auto p = placement::place(placement::with_class({1, o}, cls), map);
    if (!p) must(p.status(), "place");
    for (const auto& pos : p->dkey(fmt::format("d{}", o % 64))) {
      out.emplace_back(pos.home.rank, pos.home.target);
    }
  }
  return out;
}

// Lookups per second: `n` placements of the objects `next` names (a placement, then one dkey's
// group), or as many as fit in `seconds`.
double rate_of(const std::function<const placement::Placement&(uint32_t i)>& next, uint32_t n,
               double seconds) {
  uint64_t sink = 0;
  const auto t0 = Clock::now();
  uint32_t i = 0;
  for (; i < n && (i % 16 != 0 || ms_since(t0) < seconds * 1000); ++i) {
    sink += next(i).dkey(fmt::format("k{}", i & 1023)).front().home.target;
  }
  const double s = ms_since(t0) / 1000.0;
  if (sink == UINT64_MAX) std::puts("");  // keeps the loop
  return i / s;
}

// Placement lookups per second of random objects of class `cls` on `map`.
double lookups_per_s(const placement::PoolMap& map, uint16_t cls, uint32_t n, double seconds) {
  std::mt19937_64 rng(42);
  placement::Placement p;
  return rate_of(
      [&](uint32_t) -> const placement::Placement& {
        auto r = placement::place(placement::with_class({2, rng()}, cls), map);
        if (!r) must(r.status(), "place");
        p = std::move(*r);
        return p;
      },
      n, seconds);
}

// The same through a PlacementCache (what a client's container and an engine's pool shard
// keep), the objects drawn from a working set of `working` objects: after the first lookup of
// each, lookups are hits while the set fits in the cache.
double cached_lookups_per_s(const placement::PoolMap& map, uint16_t cls, uint32_t working,
                            uint32_t n, double seconds) {
  std::mt19937_64 rng(43);
  placement::PlacementCache cache;
  auto owner = std::make_shared<const placement::PoolMap>(map);
  std::shared_ptr<const placement::Placement> p;
  return rate_of(
      [&](uint32_t) -> const placement::Placement& {
        auto r = cache.place(placement::with_class({3, rng() % working}, cls), owner, *owner);
        if (!r) must(r.status(), "place");
        p = std::move(*r);
        return *p;
      },
      n, seconds);
}

struct Args {
  std::vector<uint32_t> engines{8, 64, 256, 1024};
  uint32_t targets = 16;
  uint32_t objects = 20000;
  uint32_t lookups = 200000;
  uint32_t opens = 2000;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--engines") {
      a.engines.clear();
      size_t at = 0;
      while (at <= v.size()) {
        const size_t comma = std::min(v.find(',', at), v.size());
        a.engines.push_back(static_cast<uint32_t>(std::stoul(v.substr(at, comma - at))));
        at = comma + 1;
      }
    } else if (k == "--targets") {
      a.targets = static_cast<uint32_t>(std::stoul(v));
    } else if (k == "--objects") {
      a.objects = static_cast<uint32_t>(std::stoul(v));
    } else if (k == "--opens") {
      a.opens = static_cast<uint32_t>(std::stoul(v));
    } else if (k == "--lookups") {
      a.lookups = static_cast<uint32_t>(std::stoul(v));
    } else {
      std::fprintf(stderr, "scale_bench: unknown flag %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

// The fraction of shards whose home differs between `a` and `b` (same objects, same order).
double moved(const std::vector<std::pair<uint32_t, uint32_t>>& a,
             const std::vector<std::pair<uint32_t, uint32_t>>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return static_cast<double>(n) / static_cast<double>(a.size());
}

// The connect storm: `opens` container opens of pool 1's container "c" answered by the
// production management service over the state `st`, from 4 threads as the control server's
// workers call it (everything but the sockets). Fills `out`.
void connect_storm(const mgmt::MgmtState& st, uint32_t opens, json& out) {
  char tmpl[] = "/var/tmp/tessera-scale.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) must(Status(Errc::io_error, "mkdtemp"), "a state directory");
  const std::string dir = tmpl;
  const std::string path = dir + "/mgmt-state.json";
  {
    mgmt::StateFile f(path);
    must(f.save(st), "save the state");
  }
  mgmt::MgmtOptions o;
  o.state_path = path;
  // No engine runs: nobody is judged dead or stopped during the storm.
  o.dead_after = o.rejoin_grace = o.stop_grace = std::chrono::hours(24);
  o.handle_lease = std::chrono::milliseconds(0);
  const log::Level was = log::level();
  log::set_level(log::Level::warn);  // the service's start-up line, not the figures
  {
    auto svc = mgmt::MgmtService::open(o);
    if (!svc) must(svc.status(), "open the management service");
    auto open_msg = [](uint32_t i) {
      capnp::MallocMessageBuilder b(256);
      auto req = b.initRoot<schema::MgmtReq>();
      mgmt::encode_cred(req.initCred(), mgmt::Cred{});
      auto c = req.initContOpen();
      c.setPool("big");
      c.setCont("c");
      c.setWrite(true);
      c.setHost("client");
      c.setPid(i);
      Message m;
      m.protocol = proto::kProtoMgmt;
      m.method = proto::kMgmtCall;
      m.origin = Origin::local;  // the system key's: authenticated as an engine's would be
      m.body = capn::to_body(b);
      return m;
    };
    constexpr uint32_t kThreads = 4;
    std::vector<double> lat(opens);
    std::atomic<uint32_t> next{0};
    std::atomic<uint64_t> reply_bytes{0};
    std::atomic<uint32_t> failed{0};
    const auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (uint32_t t = 0; t < kThreads; ++t) {
      ts.emplace_back([&] {
        for (uint32_t i = next++; i < opens; i = next++) {
          Message m = open_msg(i);
          const auto began = Clock::now();
          auto r = (*svc)->handle(m, 0);
          lat[i] = ms_since(began);
          if (!r) {
            if (failed++ == 0) std::fprintf(stderr, "open: %s\n", r.status().to_string().c_str());
            continue;
          }
          reply_bytes += r->size();
        }
      });
    }
    for (auto& t : ts) t.join();
    const double secs = ms_since(t0) / 1000;
    std::sort(lat.begin(), lat.end());
    out["storm_opens"] = opens;
    out["storm_failed"] = failed.load();
    out["storm_opens_per_s"] = opens / secs;
    out["storm_open_p50_ms"] = lat[lat.size() / 2];
    out["storm_open_p99_ms"] = lat[lat.size() * 99 / 100];
    out["storm_reply_bytes"] = reply_bytes.load() / std::max<uint32_t>(1, opens);
    out["storm_100k_s"] = 100000.0 * secs / opens;
  }
  log::set_level(was);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

void run(uint32_t engines, const Args& a) {
  const uint16_t rp = placement::find_class("RP_3GX")->id;
  const uint16_t ec = placement::find_class("EC_4P2GX")->id;
  json out = {{"engines", engines}, {"targets_per_engine", a.targets}};

  // Joins and the pool.
  mgmt::MgmtState st;
  auto t0 = Clock::now();
  std::vector<uint32_t> ranks;
  for (uint32_t r = 0; r < engines; ++r) {
    must(st.apply(join_cmd(r, a.targets)), "join");
    ranks.push_back(r);
  }
  out["joins_ms"] = ms_since(t0);
  t0 = Clock::now();
  must(st.apply({{"op", "pool_create"},
                 {"uuid", "00000000-0000-4000-8000-000000000001"},
                 {"label", "big"},
                 {"target_bytes", uint64_t{1} << 40},
                 {"ranks", ranks},
                 {"acl", mgmt::acl_json(mgmt::default_pool_acl(mgmt::Cred{}))}}),
       "pool_create");
  out["pool_create_ms"] = ms_since(t0);
  const mgmt::Pool& pool = *st.pool(1);

  // The map on the wire, and decoding it.
  capnp::MallocMessageBuilder b;
  mgmt::encode_pool(b.initRoot<schema::PoolInfo>(), pool, st, false);
  const auto words = capnp::messageToFlatArray(b);
  out["map_bytes"] = words.asBytes().size();
  auto decode = [&words] {
    capnp::ReaderOptions ro;
    ro.traversalLimitInWords = 1ull << 30;
    capnp::FlatArrayMessageReader r(words, ro);
    auto v = mgmt::decode_pool(r.getRoot<schema::PoolInfo>());
    if (!v) must(v.status(), "decode_pool");
    return std::move(*v);
  };
  constexpr int kDecodes = 20;
  t0 = Clock::now();
  for (int i = 0; i < kDecodes; ++i) (void)decode();
  out["map_decode_ms"] = ms_since(t0) / kDecodes;

  // Applying a new map, as an engine's target or a client does with each one: decode it, learn
  // the routes to every engine (mgmt::learn_view: a route per target, and the requests to its
  // down targets failed over), on a running target's thread with its actor runtime.
  {
    Target tgt(RealEnv::instance(), TargetOptions{});
    if (!tgt.start().is_ok()) must(Status(Errc::internal, "target"), "start a target");
    ActorRuntime rt(tgt, 0);
    std::promise<double> took;
    auto f = took.get_future();
    tgt.post([&] {
      const auto start = Clock::now();
      for (int i = 0; i < kDecodes; ++i) mgmt::learn_view(rt, decode(), 0);
      took.set_value(ms_since(start) / kDecodes);
    });
    out["map_apply_ms"] = f.get();
    tgt.stop();
  }

  // Placement.
  const placement::PoolMap map = pool.map;
  const double rate = lookups_per_s(map, rp, a.lookups, 3.0);
  out["lookups_per_s_rp3gx"] = rate;
  out["lookups_per_s_ec4p2gx"] = lookups_per_s(map, ec, a.lookups, 3.0);
  out["cached_lookups_per_s_rp3gx"] = cached_lookups_per_s(map, rp, 8, 1000000, 3.0);

  // One engine dies: its targets leave the map, a rebuild is planned. The objects sampled for
  // movement: as many as about 20 s of lookups allow, up to --objects.
  const uint32_t objects = std::clamp<uint32_t>(static_cast<uint32_t>(rate * 20), 500, a.objects);
  out["objects_sampled"] = objects;
  const auto before = homes(map, rp, objects);
  {
    mgmt::MgmtState dead = st;
    t0 = Clock::now();
    must(dead.apply({{"op", "leave"}, {"pool", 1}, {"rank", engines / 2}, {"state", "dead"}}),
         "leave");
    out["exclusion_ms"] = ms_since(t0);
    const auto after = homes(dead.pool(1)->map, rp, objects);
    size_t on_dead = 0;
    for (const auto& h : before) on_dead += h.first == engines / 2;
    out["moved_on_exclusion"] = moved(before, after);
    out["ideal_on_exclusion"] = static_cast<double>(on_dead) / static_cast<double>(before.size());
  }
  // 10% more engines join and extend the pool.
  {
    mgmt::MgmtState grown = st;
    const uint32_t more = std::max<uint32_t>(1, engines / 10);
    std::vector<uint32_t> added;
    for (uint32_t r = engines; r < engines + more; ++r) {
      must(grown.apply(join_cmd(r, a.targets)), "join");
      added.push_back(r);
    }
    t0 = Clock::now();
    must(grown.apply({{"op", "pool_extend"}, {"pool", 1}, {"ranks", added}}), "pool_extend");
    out["extend_ms"] = ms_since(t0);
    const auto after = homes(grown.pool(1)->map, rp, objects);
    out["moved_on_extend"] = moved(before, after);
    out["ideal_on_extend"] = static_cast<double>(more) / static_cast<double>(engines + more);
  }
  // One container, then the storm of opens.
  mgmt::ContProps props;
  props.label = "c";
  props.oclass = rp;
  must(st.apply({{"op", "cont_create"},
                 {"pool", 1},
                 {"uuid", "00000000-0000-4000-8000-000000000002"},
                 {"props", mgmt::props_json(props)},
                 {"acl", mgmt::acl_json(mgmt::default_cont_acl(mgmt::Cred{}))},
                 {"epoch", 1}}),
       "cont_create");
  if (a.opens > 0) connect_storm(st, a.opens, out);
  std::puts(out.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  for (uint32_t n : a.engines) run(n, a);
  return 0;
}
