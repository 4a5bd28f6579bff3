// Seeded simulation of the real failure detector (actors/swim.cpp) on virtual time.
//
// Eight engines each run the production SwimActor on its own Target, over the simulated
// fabric of tests/sim/dtx_cluster.hpp (messages lost and held back as the seed draws) and a
// SimEnv on virtual time: the clock moves in steps only while every target sleeps and no
// message is in flight, so a slow thread on a loaded machine never turns into a missed ping.
// The management service is a model: the member list is the ranks that joined, and a report
// that a rank is dead takes it out of the list if it is truly down, and is refused otherwise (as
// the real service refuses when it heard from the rank itself).
//
// The seed draws the faults: kills of one or two engines at random moments, restarts soon after
// (before SWIM could notice: a rolling restart) or after the rank was reported, and message loss.
// Checked against the model:
// - completeness: every rank down for longer than the detection bound was reported dead;
// - accuracy: no rank that had been up long enough to refute a suspicion is reported dead.
// Printed: detection times, messages per engine per second.
//
// A failure prints its seed and the command that runs it again; TESSERA_SWIM_SIM_SEEDS=N runs N
// seeds, TESSERA_SWIM_SIM_SEED=S one.
#include <gtest/gtest.h>
#include <cstdlib>

#include <fmt/format.h>

#include <set>

#include "actors/swim.hpp"
#include "core/log.hpp"
#include "core/sim_env.hpp"
#include "tests/sim/dtx_cluster.hpp"
#include "tests/sim/seeds.hpp"

using namespace tessera;
using namespace tessera::sim;

namespace {

constexpr uint32_t kRanks = 8;  // of the fault simulation (the scale run names its own)
constexpr auto kStep = std::chrono::milliseconds(100);  // the virtual clock's longest step
constexpr auto kRun = std::chrono::seconds(240);        // virtual time under faults per seed

// The engine's defaults; TESSERA_SWIM_PERIOD_MS, _PING_TIMEOUT_MS and _SUSPICION_MS replace
// them (to compare settings at scale, perf/scale.sh).
SwimOptions options() {
  SwimOptions o;
  auto ms = [](const char* name, std::chrono::milliseconds& v) {
    if (const char* e = std::getenv(name)) v = std::chrono::milliseconds(std::atoll(e));
  };
  ms("TESSERA_SWIM_PERIOD_MS", o.period);
  ms("TESSERA_SWIM_PING_TIMEOUT_MS", o.ping_timeout);
  ms("TESSERA_SWIM_SUSPICION_MS", o.suspicion);
  return o;
}

// Down this long, a rank must have been reported: a prober reaches it within two rounds over
// the member list, then it waits out its ping, the suspicion, and the reporter's list refresh.
Nanos detection_bound(uint32_t ranks) {
  const SwimOptions o = options();
  return 2 * (ranks - 1) * o.period + o.period + o.ping_timeout + o.suspicion + o.refresh;
}
// Up this long, a rank is never reported dead: an engine that suspects a live rank (or catches
// by gossip a suspicion of the rank's earlier process) pings it every round, and the rank
// refutes at once, so no suspicion of it lasts `suspicion` unless it began within the rank's
// first round.
Nanos refute_bound() {
  const SwimOptions o = options();
  return o.suspicion + o.period;
}

// The management service, as SWIM sees it; the truth of who is up.
struct Model {
  std::mutex mu;
  std::set<uint32_t> joined;
  std::map<uint32_t, Nanos> down_since;  // ranks killed and not restarted
  std::map<uint32_t, Nanos> up_since;
  std::vector<Nanos> detections;
  std::vector<std::string> errors;
  uint64_t refused = 0;
  Nanos longest_refused{0};  // the longest a refused report's rank had been up
  std::map<uint32_t, uint64_t> life;  // joins of each rank, as the management service counts
  uint64_t stale = 0;                 // reports about an earlier life, refused
};

std::string addr_of(uint32_t rank) {
  return fmt::format("swim-{}", rank);
}

// One engine: a target running the real SwimActor; incarnations come and go.
class SwimNode {
 public:
  SwimNode(SimEnv& env, SimNet& net, Model& model, uint32_t rank)
      : env_(env), net_(net), model_(model), rank_(rank) {}

  void start() {
    auto l = std::make_unique<Life>();
    wire_engine(*l, env_, net_, fmt::format("swim-r{}", rank_), rank_, addr_of(rank_));
    Life* lp = l.get();
    Model* model = &model_;
    SimEnv* env = &env_;
    const uint32_t self = rank_;
    // A dead incarnation's fibers may run on until its target stops: they reach nobody.
    const SimTransport* tp = l->tp.get();
    auto members = [model, tp]() -> Result<std::vector<SwimActor::Peer>> {
      if (tp->dead) return Status(Errc::unreachable, "this engine is dead");
      std::lock_guard lk(model->mu);
      std::vector<SwimActor::Peer> out;
      for (uint32_t r : model->joined) out.push_back({r, addr_of(r), model->life[r]});
      return out;
    };
    auto report = [model, env, self, tp](uint32_t rank, uint64_t life) -> Status {
      if (tp->dead) return Status(Errc::unreachable, "this engine is dead");
      std::lock_guard lk(model->mu);
      const Nanos now = env->now();
      // As the management service: a verdict about an earlier life of the rank is refused.
      if (life != model->life[rank]) {
        ++model->stale;
        return Status(Errc::stale, "the rank joined again since");
      }
      auto down = model->down_since.find(rank);
      if (down != model->down_since.end()) {
        if (model->joined.erase(rank) != 0) model->detections.push_back(now - down->second);
        return Status();  // (another engine reported it first)
      }
      ++model->refused;
      const Nanos up = now - model->up_since[rank];
      model->longest_refused = std::max(model->longest_refused, up);
      if (up > refute_bound()) {
        model->errors.push_back(fmt::format("rank {} reported rank {} dead after it was up {} ms",
                                            self, rank, up.count() / 1'000'000));
      }
      return Status(Errc::busy, "heard from the rank itself");
    };
    std::promise<void> ready;
    auto f = ready.get_future();
    ASSERT_TRUE(lp->target
                    ->start([lp, self, members, report, &ready] {
                      lp->swim =
                          std::make_unique<SwimActor>(*lp->rt, self, options(), members, report);
                      lp->rt->register_actor(proto::kSwimActor, lp->swim.get());
                      lp->swim->start();
                      ready.set_value();
                    })
                    .is_ok());
    f.wait();
    net_.add(addr_of(rank_), l->rt.get());
    {
      std::lock_guard lk(model_.mu);
      model_.joined.insert(rank_);
      ++model_.life[rank_];
      model_.down_since.erase(rank_);
      model_.up_since[rank_] = env_.now();
    }
    life_ = std::move(l);
  }

  // Dies at once (kill -9): off the net; its target is stopped by `reap` while time goes on.
  void kill(std::vector<std::unique_ptr<std::thread>>& reapers) {
    {
      std::lock_guard lk(model_.mu);
      model_.down_since[rank_] = env_.now();
    }
    life_->tp->dead = true;
    net_.remove(addr_of(rank_), life_->rt.get());
    dying_.push_back(std::move(life_));
    Life* l = dying_.back().get();
    reapers.push_back(std::make_unique<std::thread>([l] {
      l->target->stop();
      l->stopped = true;
    }));
  }
  bool up() const { return life_ != nullptr; }
  uint32_t rank() const { return rank_; }
  // The living incarnation's target. (Dead ones are off the net: they cannot change what the
  // living ones do, and stop while the clock goes on.)
  const Target* target() const { return life_ ? life_->target.get() : nullptr; }
  bool reaped() const {
    for (const auto& d : dying_) {
      if (!d->stopped) return false;
    }
    return true;
  }
  void wake() {
    if (life_) life_->target->wake(true);
    for (const auto& d : dying_) {
      if (!d->stopped) d->target->wake(true);
    }
  }
  void stop(std::vector<std::unique_ptr<std::thread>>& reapers) {
    if (life_) kill(reapers);
  }

 private:
  struct Life {
    std::unique_ptr<Target> target;
    std::unique_ptr<ActorRuntime> rt;
    std::unique_ptr<SimTransport> tp;
    std::unique_ptr<SwimActor> swim;
    std::atomic<bool> stopped{false};
    ~Life() {
      if (target) target->stop();
      swim.reset();
      rt.reset();
      tp.reset();
    }
  };
  SimEnv& env_;
  SimNet& net_;
  Model& model_;
  uint32_t rank_;
  std::unique_ptr<Life> life_;
  std::vector<std::unique_ptr<Life>> dying_;
};

class SwimSimulation {
 public:
  explicit SwimSimulation(uint64_t seed, uint32_t ranks = kRanks)
      : seed_(seed),
        ranks_(ranks),
        rng_(seed),
        env_(SimEnv::Options{seed, false}),
        net_(seed ^ 0x5111) {
    for (uint32_t r = 0; r < ranks_; ++r) {
      nodes_.push_back(std::make_unique<SwimNode>(env_, net_, model_, r));
      nodes_.back()->start();
    }
  }
  ~SwimSimulation() {
    for (auto& n : nodes_) n->stop(reapers_);
    // The stopping targets' fibers wait on timers: time goes on until they all ended.
    auto reaped = [&] {
      return std::all_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->reaped(); });
    };
    while (!reaped()) step();
    for (auto& t : reapers_) t->join();
  }

  void run() {
    net_.set_faults({500, 3000, 20000});  // 0.5% lost, 3% held back up to 20 ms
    const Nanos end = env_.now() + kRun;
    Nanos next_fault = env_.now() + std::chrono::seconds(5);
    std::map<uint32_t, Nanos> restart_at;
    while (env_.now() < end && !::testing::Test::HasFailure()) {
      step();
      const Nanos now = env_.now();
      for (auto it = restart_at.begin(); it != restart_at.end();) {
        if (now < it->second) {
          ++it;
          continue;
        }
        nodes_[it->first]->start();
        log_.push_back(fmt::format("{} ms: rank {} restarts", ms(now), it->first));
        it = restart_at.erase(it);
      }
      if (now < next_fault) continue;
      next_fault = now + std::chrono::milliseconds(2000 + rng_() % 10000);
      // At most two down at once: a majority of probers stays.
      if (restart_at.size() >= 2) continue;
      SwimNode& victim = *nodes_[rng_() % ranks_];
      if (!victim.up()) continue;
      victim.kill(reapers_);
      // Back soon (before SWIM can tell: a rolling restart) or after it surely was reported.
      const Nanos back = rng_() % 2 == 0
                             ? std::chrono::milliseconds(200 + rng_() % 2000)
                             : detection_bound(ranks_) + std::chrono::seconds(rng_() % 10);
      restart_at[victim.rank()] = now + back;
      log_.push_back(
          fmt::format("{} ms: rank {} killed, back in {} ms", ms(now), victim.rank(), ms(back)));
    }
    net_.set_faults({});
    check();
  }
  const std::vector<std::string>& log() const { return log_; }

  // The scale run (perf/scale.sh): no message faults; after a warm-up, the load of a quiet
  // system over `quiet`, then `kills` engines (a quarter of them at most) killed one at a time,
  // each once the one before was reported. Prints one JSON line.
  void run_for(Nanos d) {
    const Nanos end = env_.now() + d;
    while (env_.now() < end && !::testing::Test::HasFailure()) step();
  }
  Nanos now() const { return env_.now(); }  // virtual time
  void watch(std::function<void(const Message&)> w) { net_.watch(std::move(w)); }

  void scale(int kills, Nanos quiet) {
    const auto wall0 = std::chrono::steady_clock::now();
    const SwimOptions o = options();
    run_for(2 * o.refresh + 2 * o.period);  // every list refreshed, the first rounds done
    const uint64_t sent0 = net_.sent(), bytes0 = net_.bytes();
    run_for(quiet);
    const double msgs = static_cast<double>(net_.sent() - sent0);
    const double bytes = static_cast<double>(net_.bytes() - bytes0);
    const double secs = std::chrono::duration<double>(quiet).count();
    std::vector<double> detect_ms;
    kills = std::min(kills, static_cast<int>(std::max<uint32_t>(1, ranks_ / 4)));  // most stay
    for (int k = 0; k < kills && !::testing::Test::HasFailure(); ++k) {
      SwimNode* victim = nullptr;
      while (victim == nullptr || !victim->up()) victim = nodes_[rng_() % ranks_].get();
      victim->kill(reapers_);
      const Nanos at = env_.now();
      auto reported = [&] {
        std::lock_guard lk(model_.mu);
        return model_.joined.count(victim->rank()) == 0;
      };
      while (!reported() && env_.now() - at < detection_bound(ranks_) &&
             !::testing::Test::HasFailure()) {
        step();
      }
      if (!reported()) {
        ADD_FAILURE() << fmt::format("rank {} not reported within {} ms", victim->rank(),
                                     ms(detection_bound(ranks_)));
        break;
      }
      std::lock_guard lk(model_.mu);
      detect_ms.push_back(static_cast<double>(model_.detections.back().count()) / 1e6);
    }
    {
      std::lock_guard lk(model_.mu);
      for (const auto& e : model_.errors) ADD_FAILURE() << e;
    }
    double sum = 0, worst = 0;
    for (double d : detect_ms) {
      sum += d;
      worst = std::max(worst, d);
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    std::cout << fmt::format(
        "SWIM_SCALE {{\"engines\":{},\"messages_per_engine_s\":{:.2f},\"bytes_per_message\":{:.0f},"
        "\"bytes_per_engine_s\":{:.0f},\"kills\":{},\"detect_mean_ms\":{:.0f},"
        "\"detect_worst_ms\":{:.0f},\"refused\":{},\"wall_s\":{:.1f}}}\n",
        ranks_, msgs / ranks_ / secs, msgs > 0 ? bytes / msgs : 0.0, bytes / ranks_ / secs,
        detect_ms.size(), detect_ms.empty() ? 0.0 : sum / static_cast<double>(detect_ms.size()),
        worst, model_.refused, wall);
  }

 private:
  static int64_t ms(Nanos t) { return t.count() / 1'000'000; }

  std::vector<const Target*> living() const {
    std::vector<const Target*> out;
    for (const auto& n : nodes_) {
      if (const Target* t = n->target()) out.push_back(t);
    }
    return out;
  }
  // Waits until nothing moves, then advances the clock to the next timer of a living target (at
  // most kStep) and wakes every target. (After a failure it waits no more: time runs on so that
  // the targets can stop.)
  void step() {
    const auto limit = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    const auto targets = living();
    while (!::testing::Test::HasFailure() && !net_.quiet(targets)) {
      if (std::chrono::steady_clock::now() > limit) {
        ADD_FAILURE() << "the engines never went quiet";
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    Nanos next = env_.now() + kStep;
    for (const Target* t : targets) next = std::min(next, t->next_timer());
    env_.skip(std::max(next - env_.now(), Nanos(1000)));
    for (auto& n : nodes_) n->wake();
  }

  void check() {
    std::lock_guard lk(model_.mu);
    const Nanos now = env_.now();
    for (const auto& [rank, since] : model_.down_since) {
      if (model_.joined.count(rank) != 0 && now - since > detection_bound(ranks_)) {
        ADD_FAILURE() << fmt::format("rank {} down for {} ms and never reported (bound {} ms)",
                                     rank, ms(now - since), ms(detection_bound(ranks_)));
      }
    }
    for (const auto& e : model_.errors) ADD_FAILURE() << e;
    Nanos worst{0}, sum{0};
    for (Nanos d : model_.detections) {
      worst = std::max(worst, d);
      sum += d;
    }
    const double secs = std::chrono::duration<double>(kRun).count();
    std::cout << fmt::format(
        "seed {}: {} kills, {} detected (mean {} ms, worst {} ms, bound {} ms), {} reports "
        "refused (up at most {} ms), {} about an earlier life; {:.1f} messages per engine per "
        "second, {} dropped\n",
        seed_,
        std::count_if(log_.begin(), log_.end(),
                      [](const std::string& l) { return l.find("killed") != l.npos; }),
        model_.detections.size(),
        model_.detections.empty() ? 0 : ms(sum) / static_cast<int64_t>(model_.detections.size()),
        ms(worst), ms(detection_bound(ranks_)), model_.refused, ms(model_.longest_refused),
        model_.stale, static_cast<double>(net_.sent()) / ranks_ / secs, net_.dropped());
    EXPECT_FALSE(model_.detections.empty()) << "no kill was ever detected";
  }

  uint64_t seed_;
  uint32_t ranks_;
  std::mt19937_64 rng_;
  SimEnv env_;
  SimNet net_;
  Model model_;
  std::vector<std::unique_ptr<SwimNode>> nodes_;
  std::vector<std::unique_ptr<std::thread>> reapers_;
  std::vector<std::string> log_;
};

}  // namespace

TEST(SwimSim, DetectsEveryDeathAndAccusesNoLiveEngine) {
  // Every suspicion is logged; the summary line says what a reader needs.
  const log::Level level = log::level();
  if (std::getenv("TESSERA_SWIM_SIM_LOG") == nullptr) log::set_level(log::Level::error);
  for (uint64_t seed : seeds("SWIM_SIM", 16, 7919)) {
    if (HasFailure()) break;
    SwimSimulation sim(seed);
    sim.run();
    if (HasFailure()) print_failed_seed("SWIM_SIM", seed, "swim_sim", sim.log());
  }
  log::set_level(level);
}

// In every round of a quiet system each engine is probed by exactly one other (the ring
// schedule, actors/swim.hpp), so a dead one is probed within a round. (Each engine probing its
// own shuffled order left an engine unprobed in a round with probability 1/e: a death waited
// a geometric number of rounds for its first probe, 6.6 s to report at worst among 64 engines
// with a period of 1 s, against 5 s now.)
TEST(SwimScale, EveryEngineIsProbedOnceInEveryRound) {
  const log::Level level = log::level();
  if (std::getenv("TESSERA_SWIM_SIM_LOG") == nullptr) log::set_level(log::Level::error);
  for (uint64_t seed : seeds("SWIM_SCALE", 2, 17)) {
    constexpr uint32_t kRanks = 64;
    constexpr uint64_t kRounds = 20;
    SwimSimulation sim(seed, kRanks);
    const SwimOptions o = options();
    sim.run_for(2 * o.refresh + 2 * o.period);  // every list refreshed, the first rounds done
    // Rounds begin at the multiples of the period on the (virtual) clock; a probe is sent and
    // delivered at its round's beginning.
    const int64_t first = sim.now() / o.period + 1;  // whole rounds only
    std::mutex mu;
    std::map<std::pair<int64_t, uint32_t>, int> probes;  // (round, rank) -> pings received
    sim.watch([&](const Message& m) {
      if (m.is_reply() || m.protocol != proto::kProtoSwim || m.method != proto::kSwimPing) return;
      std::lock_guard lk(mu);
      ++probes[{sim.now() / o.period, m.dst.rank}];
    });
    sim.run_for(kRounds * o.period);
    sim.watch(nullptr);
    std::lock_guard lk(mu);
    const int64_t last = sim.now() / o.period - 1;
    for (int64_t r = first; r < last; ++r) {
      for (uint32_t rank = 0; rank < kRanks; ++rank) {
        auto it = probes.find({r, rank});
        const int n = it == probes.end() ? 0 : it->second;
        EXPECT_EQ(n, 1) << "seed " << seed << ": rank " << rank << " was probed " << n
                        << " times in round " << r;
      }
    }
    if (HasFailure()) break;
  }
  log::set_level(level);
}

// perf/scale.sh's SWIM figures: TESSERA_SWIM_SCALE_RANKS=N engines on virtual time, the load of
// a quiet system and the time to report each of TESSERA_SWIM_SCALE_KILLS (default 10) deaths.
// Skipped unless N is set.
TEST(SwimScale, DetectionTimeAndLoad) {
  const int ranks = env_int("TESSERA_SWIM_SCALE_RANKS", 0);
  if (ranks <= 1) GTEST_SKIP() << "perf/scale.sh runs this with TESSERA_SWIM_SCALE_RANKS=N";
  const log::Level level = log::level();
  if (std::getenv("TESSERA_SWIM_SIM_LOG") == nullptr) log::set_level(log::Level::error);
  {
    SwimSimulation sim(env_int("TESSERA_SWIM_SCALE_SEED", 1), static_cast<uint32_t>(ranks));
    sim.scale(env_int("TESSERA_SWIM_SCALE_KILLS", 10), std::chrono::seconds(20));
  }
  log::set_level(level);
}
