// Seeded simulation of the real rebuild code under sequences of failures (tests/sim/dtx_cluster.hpp
// has the pool: engines running the real ObjectService and TargetStore on simulated wires and
// disks).
//
// Real: the engines' update, forwarding and transaction code; each target's part of a rebuild
// generation (rebuild::run_generation: waiting out requests under older maps, settling prepared
// transactions, the scan, the pushes and their import), exactly as an engine runs it when the
// management service starts a generation; the pool map changes, which come from the management
// service's own state machine (mgmt::MgmtState: leave, join, target_state, rebuild_start,
// rebuild_done); and the service's rebuild decisions (mgmt::RebuildDriver, as actors/mgmt/ runs
// it): which engines a generation is sent to, which targets it waits for, when it completes or
// fails, and when a failed one starts again after its back-off, on the simulated clock.
// The service's monitor is its own judgement too (mgmt::Liveness): running engines are heard
// from, a killed one is declared dead once silent for long enough (a rolling restart may beat
// it), and a clock skip counts as the service not running (every engine a new grace period).
// Simulated: the fabric, the devices, and the engines' heartbeats (the test thread hears every
// running engine at each round of the monitor).
//
// Writers keep updating keys while the seed draws a sequence of faults: an engine killed
// (kill -9, or a power loss) and found dead by the monitor (its targets leave the map when the
// state machine allows it and a rebuild starts), killed and restarted on its disk soon after,
// often before the monitor noticed (a rolling restart), a dead engine reintegrated (its stale
// store dropped, a rebuild fills it), the clock jumping, messages lost or held back, log writes
// refused and sends failed at the production code's fault points. Faults strike while generations
// run, so a second failure during a rebuild, a reintegration followed by another kill and a restart
// in the middle of a scan all happen. After the first quarter of the faults half the keys go cold
// (no longer written), so that what a lost position held of them comes back from rebuild alone.
//
// Five tests, one per variant of the container and the workload:
// - replicated objects (RP_3GX, rf 2), single values;
// - erasure-coded objects (EC_2P1GX, rf 1), single values, kept whole on a data position and the
//   parity position and sent as libtessera sends them (kObjEcUpdate);
// - erasure-coded objects, full stripes of an array encoded by libtessera's own code
//   (contimpl::ec_update_pieces: cells, parity, the stripe's checksum record): a lost position's
//   cells are reconstructed from the others (rebuild_cells); every store aggregates in the
//   background;
// - replicated objects with every store aggregating in the background and snapshots taken
//   between faults, their epochs fenced as the management service fences them (where stores
//   aggregate, an operator asks an engine for a pass between faults too: refused while the map
//   moves data);
// - erasure-coded arrays as above, half of the updates writing one data cell of the stripe (a
//   partial-stripe write, kept as copies), every engine re-encoding fully copied stripes into
//   cells and parity in the background (rebuild::reencode_loop, as an engine runs it).
// In every variant a reader runs libtessera's read path (contimpl::fetch_once: replicas, or
// ec_fetch with its pinned epoch, degraded reads, copies over cells) while the faults run.
//
// Checked against a model once the faults stop, every engine is back in the map and the last
// generation completed: every replica of every key in the settled map holds every acknowledged
// update at the epoch it was acknowledged with, the replicas agree, and each key's newest value
// is its last acknowledged update or one sent after it. With aggregation, older versions are
// merged away: each snapshot must show the last update acknowledged at or below its epoch (or
// one whose acknowledgement was lost), and the newest value as above. A stripe: every position
// holds its cell of the same update's stripe, byte for byte (data and parity), at the newest
// epoch (older versions of rebuilt cells are not kept, docs/REBUILD.md); with partial writes,
// whose copies may still lie over the cells, the stripes are compared through the reader
// instead. The reader's reads (check_reads): each cell shows the last update acknowledged
// before the read began or one sent after it, whole-stripe updates are never seen in part, and
// at the end a read around each engine in turn shows what a whole read shows.
//
// A failure names its seed and the command that runs it again. TESSERA_REBUILD_SIM_SEEDS=N runs
// N seeds, TESSERA_REBUILD_SIM_SEED=S one; TESSERA_REBUILD_SIM_STEPS sets each seed's faults;
// TESSERA_REBUILD_SIM_LOG=1 prints the faults and generations of a seed that passed, too.
// Thread timing is real: a failing seed is run again to reproduce, not replayed step by step.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "client/container_impl.hpp"
#include "core/checksum.hpp"
#include "mgmt/liveness.hpp"
#include "mgmt/rebuild_driver.hpp"
#include "mgmt/state.hpp"
#include "placement/layout.hpp"
#include "rebuild/reclaim.hpp"
#include "rebuild/reencode.hpp"
#include "rebuild/run.hpp"
#include "shard/keys.hpp"
#include "tests/sim/dtx_cluster.hpp"
#include "tests/sim/history.hpp"
#include "tests/sim/rebuild_sim_workload.hpp"
#include "tests/sim/seeds.hpp"

using namespace tessera;
using namespace tessera::sim;
using namespace tessera::sim::rebuild_sim;
using nlohmann::json;
using tessera::contimpl::decoded;

namespace {

// Fault points of the production code (Env::fault) the simulation turns on, per 100,000 times
// each is reached: a log write the device refuses (an update, or a rebuild's import), a message
// the fabric refuses.
const SimEnv::Rates kFaultRates = {{"wal.write", 200}, {"net.send", 100}};

class Simulation {
 public:
  Simulation(uint64_t seed, int steps, Variant variant)
      : seed_(seed),
        steps_(steps),
        max_dead_(variant.rf),
        arrays_(variant.arrays),
        partial_(variant.partial),
        snapshots_(variant.aggregate && !variant.arrays),
        aggregate_(variant.aggregate),
        rng_(seed),
        ops_rng_(seed ^ 0x5bd1e995u),
        env_(SimEnv::Options{seed, true}),
        net_(seed ^ 0x9e3779b97f4a7c15ull) {
    must(create_pool(st_, kEngines, variant.oclass, variant.rf, kCell));
    live_.restart(st_, env_.now());
    publish();
    pool_.cont = st_.pool(1)->containers.begin()->second.id;
    const uint16_t cls = placement::find_class(variant.oclass)->id;
    for (uint32_t o = 0; o < kObjects; ++o) {
      for (uint32_t d = 0; d < kDkeys; ++d) {
        keys_.push_back(Key{placement::with_class({0, 3000 + o}, cls), fmt::format("d-{}", d)});
      }
    }
    for (uint32_t r = 0; r < kEngines; ++r) {
      engines_.push_back(std::make_unique<SimEngine>(env_, net_, pool_, r, seed * 131 + r));
      if (variant.aggregate) {
        engines_.back()->aggregation_interval = std::chrono::milliseconds(150);
        engines_.back()->aggregation_delay = std::chrono::milliseconds(600);
      }
      // As an engine runs them: the reclaim of what the map no longer places on a target,
      // and (partial-stripe writes) the re-encoding of their copies.
      engines_.back()->background = [partial = variant.partial](Target& t, ActorRuntime& rt,
                                                                TargetPools& pools, uint32_t rank) {
        t.spawn([&t, &pools, rank] {
          rebuild::reclaim_loop(t, pools, rank, std::chrono::milliseconds(200));
        });
        if (partial) rebuild::reencode_loop(t, rt, pools, rank, std::chrono::milliseconds(200));
      };
      EXPECT_TRUE(engines_.back()->start().is_ok());
    }
    for (uint32_t w = 0; w < kWriters; ++w) {
      writers_.push_back(
          std::make_unique<Writer>(env_, net_, pool_, keys_, w, seed * 7 + w, variant, acks_));
    }
    reader_ = std::make_unique<Reader>(env_, net_, pool_, keys_, acks_, seed * 11, variant.arrays);
  }
  ~Simulation() {
    reader_.reset();
    writers_.clear();
    engines_.clear();  // waits for the dead incarnations to stop, too
  }

  void run() {
    std::vector<std::future<void>> loops;
    for (auto& w : writers_) loops.push_back(w->start());
    loops.push_back(reader_->start());
    net_.set_faults({20, 3000, 2000});
    env_.set_faults(kFaultRates);
    for (int i = 0; i < steps_ && !::testing::Test::HasFailure(); ++i) {
      if (i == steps_ / 4) {
        for (auto& w : writers_) w->cold_stop = true;
      }
      step();
    }
    // Heal: no more faults; every engine back in the map; the writers stop once the last
    // generation began (writes meet it in flight).
    net_.set_faults({});
    env_.set_faults({});
    for (auto& e : engines_) {
      if (e->dead()) bring_back(*e);
    }
    for (auto& w : writers_) w->stop = true;
    reader_->stop = true;
    for (auto& l : loops) l.wait();
    if (::testing::Test::HasFailure()) return;
    ASSERT_TRUE(drive_until([&] { return !st_.pool(1)->map.moving(); }, "the map settles"));
    check();
  }

  const std::vector<std::string>& log() const { return log_; }
  static inline std::map<std::string, uint64_t> fired_;  // per fault point, over all seeds
  static inline uint64_t aggregations_ = 0;                // over all seeds
  static inline uint64_t snapshots_taken_ = 0;
  static inline uint64_t reencoded_ = 0;
  static inline uint64_t reclaimed_ = 0;          // dkeys, over all seeds
  static inline uint64_t generations_total_ = 0;  // completed, over all seeds

 private:
  static void must(Status st) { ASSERT_TRUE(st.is_ok()) << st.to_string(); }

  // The state machine's pool as the engines and clients see it (test thread).
  void publish() { pool_.publish(pool_view(st_, kEngines)); }
  const mgmt::Pool& pool() const { return *st_.pool(1); }
  // A command of the management service; the new map is published, and what the service's
  // rebuild driver decides after it is done: a new generation sent, one with nothing to wait
  // for completed (test thread).
  void apply(json cmd) {
    if (!cmd.contains("pool")) cmd["pool"] = 1;
    must(st_.apply(cmd));
    publish();
    const mgmt::RebuildDriver::Actions a = driver_.after_change(st_, wall_ms());
    for (const auto& s : a.starts) dispatch(s);
    for (const auto& c : a.commands) apply(c);
  }
  uint64_t wall_ms() const {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(env_.wall()).count());
  }
  // A generation the driver sends: each engine it names runs it, as an engine does when the
  // service's start reaches it; an engine that is down misses it (it is sent the generation
  // when it joins again). Each target's reports go to the driver (drive()).
  void dispatch(const mgmt::RebuildDriver::Start& s) {
    for (uint32_t rank : s.ranks) {
      SimEngine* eng = engines_[rank].get();
      if (eng->dead()) continue;
      rebuild::RunOptions o{s.pool, s.gen, s.version, rng_() % 3 == 0 ? 0.5 : 1.0};
      eng->post([this, eng, rank, o](ActorRuntime& rt, TargetPools& pools) {
        rebuild::run_generation(rt, pools, rank, o,
                                [this, eng, rank, o](const auto& r, bool done) {
                                  // Only the living incarnation speaks (a dead one's fibers may run
                                  // on, but nothing they send arrives): checked on the engine's
                                  // thread, where it dies.
                                  if (eng->dead() || !eng->owns(Target::current())) return;
                                  std::lock_guard lk(mu_);
                                  reports_.push_back(mgmt::RebuildDriver::Report{
                                      o.pool, o.gen, rank, 0, r.objects, r.records, r.bytes,
                                      r.lost, r.planned, done, r.error});
                                });
      });
    }
  }
  // The service's part, by its own driver (mgmt::RebuildDriver, as actors/mgmt/ runs it): the
  // targets' reports complete or fail the generation; the monitor's round starts a failed one
  // again after its back-off, on the simulated clock (test thread).
  void drive() {
    judge_liveness();
    std::vector<mgmt::RebuildDriver::Report> reports;
    {
      std::lock_guard lk(mu_);
      reports.swap(reports_);
    }
    for (const auto& r : reports) {
      auto cmd = driver_.report(st_, r, wall_ms());
      if (!cmd) continue;
      if ((*cmd)["op"] == "rebuild_failed") {
        log_.push_back(fmt::format("  generation {} failed: {}", r.gen,
                                   (*cmd)["error"].get<std::string>()));
      } else {
        EXPECT_EQ((*cmd)["lost"], 0u) << "generation " << r.gen << " found data no one holds";
        log_.push_back(fmt::format("  generation {} done: {} objects, {} records, {} bytes",
                                   r.gen, (*cmd)["objects"].get<uint64_t>(),
                                   (*cmd)["records"].get<uint64_t>(),
                                   (*cmd)["bytes"].get<uint64_t>()));
        ++generations_;
      }
      apply(*cmd);
    }
    if (auto retry = driver_.tick(st_, env_.now(), wall_ms())) {
      log_.push_back(fmt::format("  retry {} of failed generation {}", retry->attempt,
                                 pool().rebuild.gen));
      apply(retry->command);
    }
  }
  // The service's monitor round, by its own judgement (mgmt::Liveness, as actors/mgmt/ runs
  // it), on the simulated clock: every running engine's heartbeat is heard; one that is silent
  // for its dead_after is declared dead. A clock skip, or the test thread held up, is a gap
  // between rounds longer than pause_after: every engine then gets a new grace period, as a
  // paused service gives them (test thread).
  void judge_liveness() {
    const Nanos now = env_.now();
    (void)live_.round(now);
    for (auto& e : engines_) {
      if (!e->dead()) live_.heard(e->rank(), now);
    }
    if (auto v = live_.judge(st_, now, [](uint32_t) { return false; })) {
      log_.push_back(fmt::format("  rank {} declared dead: {}", v->rank, v->why));
      apply({{"op", "leave"}, {"rank", v->rank}, {"state", "dead"}});
    }
  }
  // Drives the rebuild until `done()` or a minute of wall time passed (test thread).
  template <typename F>
  bool drive_until(F done, const std::string& what) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!done()) {
      if (::testing::Test::HasFailure()) return false;
      if (std::chrono::steady_clock::now() > end) {
        ADD_FAILURE() << what << ": not within 120 s (rebuild " << pool().rebuild.state
                      << ", generation " << pool().rebuild.gen << ")";
        return false;
      }
      drive();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }
  // Lets time pass for `ms` while driving the rebuild.
  void pass(int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end && !::testing::Test::HasFailure()) {
      drive();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // Whether the map still counts on the rank's target (it serves its data, or is being filled):
  // a generation waits for it.
  bool in_map(uint32_t rank) const { return mgmt::RebuildDriver::waits_for(pool(), rank, 0); }
  size_t dead_count() const {
    return static_cast<size_t>(
        std::count_if(engines_.begin(), engines_.end(), [](const auto& e) { return e->dead(); }));
  }
  // A dead engine comes back: restarted on its disk while the map still counts on it, else
  // reintegrated (its target up again, a rebuild fills it). As the management service does
  // (docs/REBUILD.md, "Reintegration never discards the last copy"), its store is dropped only
  // once a rebuild copied its data elsewhere (down-out); a target still down keeps what it had.
  void bring_back(SimEngine& e) {
    const uint32_t r = e.rank();
    const bool reint = !in_map(r);
    const bool drop =
        reint && pool().map.engine(r)->targets[0].state == placement::TargetState::down_out;
    if (drop) e.wipe();
    ASSERT_TRUE(e.restart().is_ok()) << "rank " << r << " restarts";
    apply(join_cmd(r));
    live_.joined(r, env_.now());
    for (const auto& s : driver_.on_join(st_, r)) dispatch(s);  // a generation under way
    if (reint) {
      log_.push_back(
          fmt::format("reintegrate rank {} ({})", r, drop ? "store dropped" : "data kept"));
      apply({{"op", "target_state"},
             {"rank", r},
             {"target", -1},
             {"state", std::string(placement::state_name(placement::TargetState::up))},
             {"rebuild", true}});
    } else {
      log_.push_back(fmt::format("restart rank {} on its disk", r));
    }
  }

  // A snapshot of the container, as the management service takes one (MgmtService::snap_create):
  // refused while an engine the map counts on is down; else the clocks of the engines fenced in
  // two rounds (each issues an epoch, the highest is the snapshot's; each then observes it) and
  // the epoch recorded in the container, which aggregation passes then keep readable. An engine
  // that starts later moves its clock past it first (SimEngine::init).
  void take_snapshot() {
    for (auto& e : engines_) {
      if (e->dead() && in_map(e->rank())) {
        log_.push_back(fmt::format("snapshot refused: rank {} is down", e->rank()));
        return;
      }
    }
    uint64_t snap = 0;
    for (auto& e : engines_) {
      if (e->dead()) continue;
      snap = std::max(snap, e->on_target([](PoolShard& sh, ObjectService&) {
        return sh.store->new_epoch();
      }));
    }
    for (auto& e : engines_) {
      if (e->dead()) continue;
      e->on_target([snap](PoolShard& sh, ObjectService&) {
        sh.store->observe_epoch(snap);
        return 0;
      });
    }
    apply({{"op", "snap_create"}, {"cont", pool_.cont}, {"epoch", snap}});
    snaps_.push_back(snap);
    log_.push_back(fmt::format("snapshot at epoch {}", snap));
  }

  // An operator's `tessera pool aggregate` on one running engine: what kObjAggregate runs
  // (ObjectService::aggregate_now) up to the newest epoch, keeping the snapshots, as the CLI asks.
  // While the map moves data it must keep every punch: a punch aggregated away before the
  // rebuilt history it hides arrives would not hide it (docs/REBUILD.md); and after a move,
  // until every target reported a reclaim pass (mgmt::reclaim_pending): a former home's copy
  // merged into a later fill must find the punches that hide it. It runs, or fails at a fault
  // point. The test thread publishes every map: none changes meanwhile; reclaim reports arrive
  // from the engines meanwhile, and only end the hold.
  void operator_aggregates() {
    std::vector<SimEngine*> live;
    for (auto& e : engines_) {
      if (!e->dead()) live.push_back(e.get());
    }
    if (live.empty()) return;
    SimEngine& e = *live[ops_rng_() % live.size()];
    const bool moving = pool().map.moving();
    const bool pending_before = !pool_.reclaim_pending(pool()).empty();
    const auto epochs = pool().snapshot_epochs();
    const std::vector<uint64_t> keep(epochs.begin(), epochs.end());
    auto r = e.on_target(
        [&keep](PoolShard& sh, ObjectService& svc) { return svc.aggregate_now(sh.id, 0, keep); });
    const bool pending_after = !pool_.reclaim_pending(pool()).empty();
    if (r) {
      if (moving) {
        ASSERT_TRUE(r->punches_kept)
            << "rank " << e.rank() << " dropped punches on demand while the map moved data";
      } else if (pending_after) {
        ASSERT_TRUE(r->punches_kept) << "rank " << e.rank()
                                     << " dropped punches on demand before every former home "
                                        "reclaimed";
      } else if (!pending_before) {
        ASSERT_FALSE(r->punches_kept)
            << "rank " << e.rank() << " kept punches on a settled, reclaimed map";
      }
    }
    log_.push_back(fmt::format("operator aggregates rank {}: {}", e.rank(),
                               r ? fmt::format("to epoch {}", r->epoch) : r.status().to_string()));
  }

  // One fault the seed draws, then time passing (test thread).
  void step() {
    pass(20 + static_cast<int>(rng_() % 300));
    if (aggregate_ && ops_rng_() % 4 == 0) operator_aggregates();
    if (snapshots_ && rng_() % 4 == 0) {
      take_snapshot();
      return;
    }
    const uint32_t draw = rng_() % 10;
    const bool power = rng_() % 2 == 0;
    if (draw < 2) {
      const auto d = std::chrono::milliseconds(100 + rng_() % 8000);
      env_.skip(d);
      for (auto& e : engines_) e->wake();
      for (auto& w : writers_) w->wake();
      reader_->wake();
      log_.push_back(fmt::format("clock skips {} ms", d.count()));
      return;
    }
    if (draw < 7 && dead_count() < max_dead_) {
      SimEngine& v = *engines_[rng_() % kEngines];
      if (v.dead()) return;
      v.kill(power);
      if (rng_() % 3 == 0) {
        // A rolling restart: back on its disk before the failure detector noticed.
        log_.push_back(
            fmt::format("kill rank {}{}, restart", v.rank(), power ? " (power loss)" : ""));
        pass(static_cast<int>(rng_() % 200));
        bring_back(v);
        return;
      }
      // The monitor declares it dead once it has been silent for long enough.
      log_.push_back(fmt::format("kill rank {}{}", v.rank(), power ? " (power loss)" : ""));
      return;
    }
    if (draw < 9) {
      // A dead engine returns, maybe in the middle of a generation.
      for (auto& e : engines_) {
        if (e->dead()) {
          bring_back(*e);
          return;
        }
      }
      return;
    }
    // The current generation completes before the next fault (the engines it waits for back).
    for (auto& e : engines_) {
      if (e->dead() && in_map(e->rank())) bring_back(*e);
    }
    drive_until([&] { return pool().rebuild.state != "busy"; }, "the generation completes");
  }

  // The value of a key at each of `epochs` (0: newest) in rank's store.
  std::vector<Value> read_replica(uint32_t rank, const Key& k,
                                  const std::vector<uint64_t>& epochs) {
    const uint32_t cont = pool_.cont;
    return engines_[rank]->on_target([&](PoolShard& sh, ObjectService&) {
      std::vector<Value> out;
      for (uint64_t e : epochs) {
        auto r = sh.store->fetch(shard_keys::store_key(k.oid, cont), k.dkey, kAkey,
                                 ValueKind::single, 0, 0, e);
        Value v;
        if (r && r->data.size() == 8) {
          std::memcpy(&v.tag, r->data.data(), 8);
          v.epoch = r->epoch;
        }
        out.push_back(v);
      }
      return out;
    });
  }
  // An array key's newest stripe at every position of its group in the settled map: each
  // position holds its cell of one update's stripe (data or parity, byte for byte), every
  // position the same update, and that update is the last acknowledged or one sent after it.
  // (A lost position's cells are rebuilt at their newest version only, docs/REBUILD.md: older
  // versions are not compared.)
  void check_stripe(uint32_t k, const KeyHistory& h) {
    const Key& key = keys_[k];
    const placement::EcGeometry g = geometry_of(key.oid, key.dkey);
    auto place = placement::place(key.oid, pool().map);
    ASSERT_TRUE(place);
    const auto group = place->dkey(key.dkey);
    std::vector<std::optional<Buffer>> held(g.n());  // by position; nullopt: never written
    uint64_t tag = 0;
    for (uint32_t pos = 0; pos < g.n(); ++pos) {
      ASSERT_TRUE(group[pos].complete) << "key " << k << ": a home is not complete in a settled map";
      const uint32_t rank = group[pos].home.rank;
      const uint32_t cont = pool_.cont;
      auto got = engines_[rank]->on_target([&](PoolShard& sh, ObjectService&) {
        return sh.store->fetch(shard_keys::store_key(key.oid, cont), key.dkey,
                               placement::ec_cell_akey(kAkey, pos), ValueKind::array, 0, kCell, 0);
      });
      ASSERT_TRUE(got || got.status().code() == Errc::not_found)
          << "key " << k << " position " << pos << " on rank " << rank << ": "
          << got.status().to_string();
      if (!got || (got->holes.size() == 1 && got->holes[0].second == kCell)) continue;
      ASSERT_TRUE(got->holes.empty() && got->data.size() == kCell)
          << "key " << k << " position " << pos << " on rank " << rank << ": a partial cell ("
          << got->holes.size() << " holes)";
      const uint32_t ci = g.cell_at(pos);
      if (ci < g.k && tag == 0) {
        std::memcpy(&tag, got->data.data(), 8);
        tag ^= (uint64_t{ci} * kCell / 8) * kWordMix;
      }
      held[pos] = std::move(got->data);
    }
    ASSERT_TRUE(h.newest_shown_by(tag)) << "key " << k;
    if (tag == 0) {
      for (uint32_t pos = 0; pos < g.n(); ++pos) {
        ASSERT_FALSE(held[pos]) << "key " << k << ": position " << pos
                                << " holds a cell while no data position does";
      }
      return;
    }
    const std::vector<Buffer> want = cells_of(tag, g);
    for (uint32_t pos = 0; pos < g.n(); ++pos) {
      const uint32_t ci = g.cell_at(pos);
      ASSERT_TRUE(held[pos] && std::memcmp(held[pos]->data(), want[ci].data(), kCell) == 0)
          << "key " << k << ": position " << pos << " (rank " << group[pos].home.rank
          << (ci < g.k ? ", data" : ", parity") << " cell " << ci << ") "
          << (held[pos] ? "holds another stripe's cell" : "holds nothing")
          << " than the update with tag " << fmt::format("{:#x}", tag);
    }
  }

  // What a replica shows of key k at each epoch the check reads: without aggregation, every
  // acknowledged update at its epoch and the newest value (KeyHistory::shown_by); with it
  // (older versions are merged away), each snapshot the last update acknowledged at or below
  // its epoch or one whose acknowledgement was lost, and the newest value as before.
  std::vector<uint64_t> epochs_read(const KeyHistory& h) const {
    if (!snapshots_) return h.epochs();
    std::vector<uint64_t> e = snaps_;
    e.push_back(0);
    return e;
  }
  ::testing::AssertionResult shows(const KeyHistory& h, const std::vector<Value>& got) const {
    if (!snapshots_) {
      std::vector<uint64_t> tags;
      for (const auto& v : got) tags.push_back(v.tag);
      return h.shown_by(tags);
    }
    for (size_t s = 0; s < snaps_.size(); ++s) {
      auto r = h.shown_at(snaps_[s], got[s].tag);
      if (!r) return r << " (snapshot " << s << ")";
    }
    return h.newest_shown_by(got.back().tag);
  }
  // Every replica of key k in the settled map against the model, and the replicas agree (on the
  // versions too where nothing was aggregated).
  void check_replicas(uint32_t k, const KeyHistory& h) {
    auto place = placement::place(keys_[k].oid, pool().map);
    ASSERT_TRUE(place);
    const std::vector<uint64_t> epochs = epochs_read(h);
    std::vector<Value> first;
    std::string where;
    const auto group = place->dkey(keys_[k].dkey);
    for (uint32_t i : holders(keys_[k].oid, keys_[k].dkey)) {
      const placement::Position& pos = group[i];
      ASSERT_TRUE(pos.complete) << "key " << k << ": a home is not complete in a settled map";
      const auto got = read_replica(pos.home.rank, keys_[k], epochs);
      ASSERT_TRUE(shows(h, got)) << "key " << k << " on rank " << pos.home.rank;
      if (first.empty()) {
        first = got;
        where = fmt::format("rank {}", pos.home.rank);
        continue;
      }
      for (size_t e = 0; e < got.size(); ++e) {
        ASSERT_TRUE(got[e].tag == first[e].tag && (snapshots_ || got[e] == first[e]))
            << "replicas of key " << k << " disagree at epoch " << epochs[e]
            << (epochs[e] == 0 ? " (newest)" : "") << ": rank " << pos.home.rank << " shows "
            << got[e] << ", " << where << " " << first[e];
      }
    }
  }

  // The settled map against what the engines keep: after one reclaim pass on each (on the
  // newest map), no engine keeps a dkey of which it holds no position, nor an erasure-coded
  // cell of a position it does not hold (a former home's data, which a later fill of the same
  // target would merge with: rebuild/reclaim.hpp).
  void check_reclaimed() {
    struct Kept {
      std::shared_ptr<const mgmt::PoolView> view;
      std::vector<std::tuple<ObjectId, std::string, std::string>> akeys;
    };
    for (auto& e : engines_) {
      const uint32_t r = e->rank();
      auto kept = e->on_pools([r](TargetPools& pools) -> Result<Kept> {
        PoolShard& sh = *pools.shards.at(1);
        auto v = pools.fetch_view(1, 0);
        if (!v) return v.status();
        if (!sh.view || (*v)->pool.map.version > sh.view->pool.map.version) sh.set_view(*v);
        ShardUse use(sh);
        auto c = rebuild::reclaim(r, 0, sh, {});
        if (!c) return c.status();
        Kept out{sh.view, {}};
        for (const ObjectId& key : sh.store->object_keys()) {
          for (const auto& dk : sh.store->dkey_names(key)) {
            for (const auto& [ak, kind] : sh.store->akey_names(key, dk)) {
              out.akeys.emplace_back(key, dk, ak);
            }
          }
        }
        return out;
      });
      ASSERT_TRUE(kept) << "rank " << r << ": reclaim: " << kept.status().to_string();
      const placement::PoolMap& map = kept->view->pool.map;
      for (const auto& [key, dk, ak] : kept->akeys) {
        const uint32_t cont = shard_keys::cont_of(key);
        bool lost = false;
        for (const auto& k : kept->view->conts) lost |= k.c.id == cont && k.c.lost_data;
        auto place = placement::place(shard_keys::user_oid(key), map);
        ASSERT_TRUE(place);
        const auto group = place->dkey(dk);
        if (lost || !placement::settled(group, map)) continue;
        std::vector<uint32_t> held;
        for (uint32_t i = 0; i < group.size(); ++i) {
          if (group[i].home.rank == r) held.push_back(i);
        }
        ASSERT_FALSE(held.empty())
            << "rank " << r << " keeps dkey " << dk << " of object " << shard_keys::user_oid(key).lo
            << " after a reclaim pass, and holds no position of it";
        if (auto cell = placement::parse_ec_cell_akey(ak)) {
          ASSERT_TRUE(std::count(held.begin(), held.end(), cell->second) > 0)
              << "rank " << r << " keeps the cells of position " << cell->second << " of dkey "
              << dk << " after a reclaim pass, and holds positions "
              << fmt::format("{}", fmt::join(held, ","));
        }
      }
    }
  }

  // What every position of array key k's group holds (its cells' and the checksum record's
  // versions: epoch, byte range, the update a data cell names), the copies on every engine (a
  // former home keeps what it took) and the key's updates in the model: printed beside a
  // failed check of a read.
  std::string dump_array(uint32_t k, const std::vector<PutRecord>& all) {
    const Key& key = keys_[k];
    const placement::EcGeometry g = geometry_of(key.oid, key.dkey);
    std::string out = fmt::format("\nkey {} (stripe of {} cells):\n", k, g.k);
    // One akey's history on `rank`, a line per version; `base`: where the akey's bytes lie in
    // the stripe, to name the update of a version's first word (-1: parity or a record).
    auto versions = [&](uint32_t rank, const std::string& akey, int64_t base,
                        const std::string& indent) {
      auto x = engines_[rank]->on_target([&](PoolShard& sh, ObjectService&) {
        return sh.store->export_akey(shard_keys::store_key(key.oid, pool_.cont), key.dkey, akey);
      });
      if (!x) return fmt::format("{}{}\n", indent, x.status().to_string());
      std::string lines = x->akey_punches.empty() ? std::string()
                                                  : fmt::format("{}akey punches {}\n", indent,
                                                                fmt::join(x->akey_punches, ","));
      for (const auto& v : x->versions) {
        std::string what;
        if (!v.punch && base >= 0 && v.hi - v.lo >= 8) {
          uint64_t w = 0;
          std::memcpy(&w, x->data.data() + v.data_at, 8);
          w ^= ((static_cast<uint64_t>(base) + v.lo) / 8) * kWordMix;
          what = fmt::format(" tag {:#x}", w);
        }
        lines += fmt::format("{}epoch {} [{}, {}){}{}\n", indent, v.epoch, v.lo, v.hi,
                             v.punch ? " punch" : "", what);
      }
      return lines;
    };
    auto place = placement::place(key.oid, pool().map);
    if (!place) return out + place.status().to_string();
    const auto group = place->dkey(key.dkey);
    for (uint32_t pos = 0; pos < g.n(); ++pos) {
      const uint32_t rank = group[pos].home.rank;
      const uint32_t ci = g.cell_at(pos);
      out += fmt::format("  position {} (cell {}) on rank {}{}:\n", pos, ci, rank,
                         group[pos].complete ? "" : " (not complete)");
      out += fmt::format("    akey {:?}:\n", placement::ec_cell_akey(kAkey, pos));
      out += versions(rank, placement::ec_cell_akey(kAkey, pos),
                      ci < g.k ? int64_t{ci} * kCell : -1, "      ");
      out += fmt::format("    akey {:?}:\n", placement::ec_sum_akey(kAkey));
      out += versions(rank, placement::ec_sum_akey(kAkey), -1, "      ");
    }
    out += "  the copies on every engine:\n";
    for (uint32_t rank = 0; rank < kEngines; ++rank) {
      if (engines_[rank]->dead()) continue;
      out += fmt::format("    rank {}:\n", rank);
      out += versions(rank, placement::ec_copy_akey(kAkey), 0, "      ");
    }
    out += "  updates:\n";
    for (const auto& p : all) {
      if (p.key != k) continue;
      out += fmt::format("    tag {:#x} cells {:#x} {} epoch {} (ack {})\n", p.tag, p.cells,
                         p.acked ? "acked" : "not acked", p.epoch, p.acked_at);
    }
    return out;
  }

  // The reads against the model, a single value as one cell and a stripe cell by cell (a
  // partial write updates one cell): every read made while the faults ran that succeeded shows,
  // in each cell, the last update acknowledged before it began or one sent after that, never a
  // cell that mixes updates; a failed read failed with an error a new map or another position
  // cures. Then every key is read again through the settled map, once whole and once with each
  // engine shown dead (another replica; a degraded read: reconstruction from parity, or the
  // copies of a partial write): each must succeed and show the same, the newest acknowledged
  // update of each cell or one sent after it.
  void check_reads(const std::vector<PutRecord>& all) {
    constexpr uint32_t kSlots = 8;  // cells per stripe, at most
    std::vector<PutRecord> by_cell;
    for (const auto& p : all) {
      for (uint32_t c = 0; c < kSlots; ++c) {
        if (p.cells != 0 && (p.cells & (1u << c)) == 0) continue;
        PutRecord q = p;
        q.key = p.key * kSlots + c;
        by_cell.push_back(q);
      }
    }
    std::map<uint32_t, KeyHistory> hist;
    auto history = [&](uint32_t k, uint32_t c) -> const KeyHistory& {
      auto it = hist.find(k * kSlots + c);
      if (it == hist.end())
        it = hist.emplace(k * kSlots + c, KeyHistory(by_cell, k * kSlots + c)).first;
      return it->second;
    };
    uint64_t failed = 0;
    for (const ReadRecord& r : reader_->reads) {
      if (r.error) {
        ASSERT_TRUE(contimpl::retryable(r.error->code()))
            << "a read of key " << r.key << " failed: " << r.error->to_string();
        ++failed;
        continue;
      }
      ASSERT_TRUE(r.torn.empty()) << "a read of key " << r.key << ": " << r.torn;
      // Whole-stripe updates only: a read shows one update's stripe, never parts of two.
      ASSERT_TRUE(partial_ || std::adjacent_find(r.tags.begin(), r.tags.end(),
                                                 std::not_equal_to<>()) == r.tags.end())
          << "a read of key " << r.key
          << " shows cells of different updates: " << fmt::format("{:#x}", fmt::join(r.tags, ", "));
      for (uint32_t c = 0; c < r.tags.size(); ++c) {
        ASSERT_TRUE(history(r.key, c).read_shown_by(r.tags[c], r.before))
            << "key " << r.key << " cell " << c << dump_array(r.key, all);
      }
    }
    for (uint32_t k = 0; k < keys_.size(); ++k) {
      const ReadRecord whole = reader_->read_now(k, -1);
      ASSERT_FALSE(whole.error) << "key " << k << ": " << whole.error->to_string();
      ASSERT_TRUE(whole.torn.empty()) << "key " << k << ": " << whole.torn;
      for (uint32_t c = 0; c < whole.tags.size(); ++c) {
        ASSERT_TRUE(history(k, c).newest_shown_by(whole.tags[c]))
            << "key " << k << " cell " << c << dump_array(k, all);
      }
      for (uint32_t rank = 0; rank < kEngines; ++rank) {
        const ReadRecord d = reader_->read_now(k, rank);
        ASSERT_FALSE(d.error) << "key " << k << " without rank " << rank << ": "
                              << d.error->to_string();
        ASSERT_TRUE(d.torn.empty()) << "key " << k << " without rank " << rank << ": " << d.torn;
        ASSERT_EQ(d.tags, whole.tags)
            << "key " << k << ": a read without rank " << rank
            << " shows other updates than a whole read" << dump_array(k, all);
      }
    }
    (void)reader_->read_now(0, -1);  // the whole map again
    std::cout << fmt::format("  reads while the faults ran: {} ({} failed and were retryable)\n",
                             reader_->reads.size(), failed);
  }

  void check() {
    settle_engines(engines_);
    std::vector<PutRecord> all;
    for (auto& w : writers_) all.insert(all.end(), w->puts.begin(), w->puts.end());
    size_t acked = 0;
    for (uint32_t k = 0; k < keys_.size(); ++k) {
      const KeyHistory h(all, k);
      acked += h.acked();
      if (arrays_) {
        if (!partial_) check_stripe(k, h);
        if (::testing::Test::HasFailure()) return;
        continue;
      }
      check_replicas(k, h);
      if (::testing::Test::HasFailure()) return;
    }
    check_reads(all);
    if (::testing::Test::HasFailure()) return;
    check_reclaimed();
    if (::testing::Test::HasFailure()) return;
    expect_checked_consistent(engines_, pool_.cont);
    if (::testing::Test::HasFailure()) return;
    uint64_t power = 0, incarnations = 0, aggregations = 0, reencoded = 0, reclaimed = 0;
    for (auto& e : engines_) {
      power += e->power_losses();
      incarnations += e->incarnation();
      aggregations += e->on_target(
          [](PoolShard& sh, ObjectService&) { return sh.store->stats().aggregations; });
      reencoded += e->on_target([](PoolShard& sh, ObjectService&) { return sh.reencode.stripes; });
      reclaimed += e->on_target([](PoolShard& sh, ObjectService&) { return sh.reclaim.dkeys; });
    }
    aggregations_ += aggregations;
    reencoded_ += reencoded;
    reclaimed_ += reclaimed;
    snapshots_taken_ += snaps_.size();
    std::cout << fmt::format(
        "seed {}: {} updates ({} acknowledged); {} faults ({} power losses, {} engine starts); "
        "{} generations completed; map version {}; {} messages, {} dropped; {} snapshots; {} "
        "aggregation passes, {} stripes re-encoded and {} dkeys reclaimed since the last starts\n",
        seed_, all.size(), acked, log_.size(), power, incarnations, generations_,
        pool().map.version, net_.sent(), net_.dropped(), snaps_.size(), aggregations, reencoded,
        reclaimed);
    EXPECT_GT(acked, 0u);
    generations_total_ += generations_;
    std::string points;
    for (const auto& [site, n] : env_.fault_counts()) {
      points += fmt::format(" {} {}/{}", site, n.fired, n.asked);
      fired_[site] += n.fired;
    }
    std::cout << "  fault points (failed/reached):" << points << "\n";
  }

  uint64_t seed_;
  int steps_;
  uint32_t max_dead_;  // engines down at once: the container's redundancy factor
  bool arrays_;        // the writers update stripes of arrays
  bool partial_;       // some of them one cell (copies, re-encoded in the background)
  bool snapshots_;     // the seed takes snapshots (their epochs in snaps_)
  bool aggregate_;     // the stores aggregate, and an operator asks for passes too
  std::vector<uint64_t> snaps_;
  std::mt19937_64 rng_;
  std::mt19937_64 ops_rng_;  // the operator's passes: apart, so the faults a seed draws stay
  SimEnv env_;
  SimNet net_;
  mgmt::MgmtState st_;  // the management service's state machine (test thread)
  SimPool pool_;
  std::vector<Key> keys_;
  std::vector<std::unique_ptr<SimEngine>> engines_;
  std::vector<std::unique_ptr<Writer>> writers_;
  std::atomic<uint64_t> acks_{0};   // acknowledgements the writers heard
  std::unique_ptr<Reader> reader_;  // libtessera's read path
  // The service's judgement of who lives, with times of the simulation's size (test thread).
  mgmt::Liveness live_{mgmt::Liveness::Options{std::chrono::milliseconds(250), Nanos(0),
                                               std::chrono::seconds(1),
                                               std::chrono::milliseconds(90),
                                               std::chrono::milliseconds(50), UINT32_MAX}};
  // The service's rebuild decisions, with back-offs of the simulation's size (test thread).
  mgmt::RebuildDriver driver_{mgmt::RebuildDriver::Options{std::chrono::milliseconds(20),
                                                           std::chrono::milliseconds(300)}};
  std::mutex mu_;  // reports_: engine threads report, the test thread reads
  std::vector<mgmt::RebuildDriver::Report> reports_;
  uint64_t generations_ = 0;
  std::vector<std::string> log_;
};

}  // namespace

namespace {
// Runs the variant's seeds (TESSERA_<name>_SEEDS of them, or TESSERA_<name>_SEED alone).
void run_seeds(const Variant& variant, const std::string& name, int count, uint64_t step,
               const std::string& filter) {
  const int steps = env_int("TESSERA_REBUILD_SIM_STEPS", 24);
  Simulation::fired_.clear();
  Simulation::aggregations_ = 0;
  Simulation::snapshots_taken_ = 0;
  Simulation::reencoded_ = 0;
  Simulation::reclaimed_ = 0;
  Simulation::generations_total_ = 0;
  const std::vector<uint64_t> run = seeds(name, count, step);
  for (uint64_t seed : run) {
    if (::testing::Test::HasFailure()) break;
    Simulation sim(seed, steps, variant);
    sim.run();
    if (::testing::Test::HasFailure()) {
      print_failed_seed(name, seed, "rebuild_sim", sim.log(), "--gtest_filter=" + filter);
    } else if (std::getenv("TESSERA_REBUILD_SIM_LOG") != nullptr) {
      for (const auto& l : sim.log()) std::cout << "  " << l << "\n";
    }
  }
  if (run.size() == 1 || ::testing::Test::HasFailure()) return;
  for (const auto& [site, rate] : kFaultRates) {
    EXPECT_GT(Simulation::fired_[site], 0u) << "fault point " << site << " never failed";
  }
  if (variant.aggregate) {
    EXPECT_GT(Simulation::aggregations_, 0u) << "nothing was aggregated";
  }
  if (variant.aggregate && !variant.arrays) {
    EXPECT_GT(Simulation::snapshots_taken_, 0u) << "no snapshot was taken";
  }
  if (variant.partial) {
    EXPECT_GT(Simulation::reencoded_, 0u) << "no stripe was re-encoded";
  }
  // Over the seeds, not per seed: on a slow machine (the sanitizers) every kill of a seed can
  // be a rolling restart, back before the monitor declared it dead.
  EXPECT_GT(Simulation::generations_total_, 0u) << "no rebuild generation completed";
}
}  // namespace

TEST(RebuildSim, AcknowledgedUpdatesSurviveSequencesOfFailuresAndRebuilds) {
  run_seeds(kReplicated, "REBUILD_SIM", 3, 7919, "RebuildSim.AcknowledgedUpdates*");
}

// The same with single values of erasure-coded objects (one engine down at a time).
TEST(RebuildSim, ErasureCodedValuesSurviveSequencesOfFailuresAndRebuilds) {
  run_seeds(kErasureCoded, "REBUILD_SIM_EC", 2, 7927, "RebuildSim.ErasureCodedValues*");
}

// The same with aggregation running on every engine and snapshots taken between faults: what a
// snapshot holds survives aggregation, rebuild's export and import, kills and power losses.
TEST(RebuildSim, SnapshotsSurviveAggregationAndSequencesOfFailures) {
  run_seeds(kReplicatedAggregated, "REBUILD_SIM_AGG", 2, 7949, "RebuildSim.Snapshots*");
}

// The same with full stripes of erasure-coded arrays: a lost position's cells are reconstructed
// from the others (rebuild::scan, rebuild_cells) and checked against the writer's checksums.
TEST(RebuildSim, ErasureCodedStripesSurviveSequencesOfFailuresAndRebuilds) {
  run_seeds(kErasureCodedArrays, "REBUILD_SIM_EC_ARRAYS", 2, 7937, "RebuildSim.ErasureCodedStripes*");
}

// The same with half of the updates writing one cell of the stripe: partial-stripe writes kept
// as copies, re-encoded into cells and parity by every engine in the background
// (rebuild::reencode_loop), rebuilt from copies or cells; libtessera's read path reads them
// while the faults run and, at the end, around each engine in turn.
TEST(RebuildSim, PartialStripesReencodedSurviveSequencesOfFailuresAndRebuilds) {
  run_seeds(kErasureCodedPartial, "REBUILD_SIM_EC_PARTIAL", 2, 7951, "RebuildSim.PartialStripes*");
}
