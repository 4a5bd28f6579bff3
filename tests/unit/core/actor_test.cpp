#include <gtest/gtest.h>

#include <thread>

#include "core/actor.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using tessera::testing::run_on;

namespace {

using Echo = tessera::testing::EchoActor;

class Recorder : public Actor {
 public:
  void receive(Message& m) override {
    uint32_t v;
    std::memcpy(&v, m.body.data(), 4);
    // Yield mid-message: a sequential actor must still see messages strictly in order.
    boost::this_fiber::yield();
    order.push_back(v);
  }
  bool concurrent() const override { return false; }
  std::vector<uint32_t> order;
};

class BlackHole : public Actor {
 public:
  void receive(Message&) override { ++seen; }
  int seen = 0;
};

struct TwoTargets {
  explicit TwoTargets(Env& env) {
    for (uint32_t i = 0; i < 2; ++i) {
      TargetOptions o;
      o.index = i;
      targets.push_back(std::make_unique<Target>(env, o));
      rts.push_back(std::make_unique<ActorRuntime>(*targets.back(), 0));
    }
    auto peers = std::make_shared<std::vector<ActorRuntime*>>();
    for (auto& r : rts) peers->push_back(r.get());
    for (auto& r : rts) r->set_local_peers(peers);
    for (auto& t : targets) EXPECT_TRUE(t->start().is_ok());
  }
  ~TwoTargets() {
    for (auto& t : targets) t->stop();
  }
  std::vector<std::unique_ptr<Target>> targets;
  std::vector<std::unique_ptr<ActorRuntime>> rts;
};

Message to(uint16_t target, uint16_t actor, uint32_t value) {
  Message m;
  m.dst = ActorAddr{0, target, actor};
  m.body = Buffer(&value, sizeof(value));
  return m;
}

}  // namespace

TEST(Actors, AskAcrossTargetsGetsTheReply) {
  TwoTargets s(RealEnv::instance());
  Echo echo(*s.rts[1]);
  run_on(*s.targets[1], [&] { s.rts[1]->register_actor(5, &echo); });
  auto r = run_on(*s.targets[0], [&] {
    Message m = to(1, 5, 1234);
    m.bulk = Buffer("payload", 7);
    return s.rts[0]->ask(std::move(m), std::chrono::seconds(5));
  });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  uint32_t v;
  std::memcpy(&v, r->body.data(), 4);
  EXPECT_EQ(v, 1234u);
  EXPECT_EQ(r->bulk.view(), "payload");
  EXPECT_EQ(r->src, (ActorAddr{0, 1, 5}));
  EXPECT_EQ(run_on(*s.targets[1], [&] { return echo.seen; }), 1);
}

TEST(Actors, SequentialActorSeesTellsInOrder) {
  TwoTargets s(RealEnv::instance());
  Recorder rec;
  run_on(*s.targets[1], [&] { s.rts[1]->register_actor(7, &rec); });
  run_on(*s.targets[0], [&] {
    for (uint32_t i = 0; i < 200; ++i) ASSERT_TRUE(s.rts[0]->tell(to(1, 7, i)).is_ok());
  });
  std::vector<uint32_t> order;
  for (int i = 0; i < 5000 && order.size() < 200; ++i) {
    order = run_on(*s.targets[1], [&] { return rec.order; });
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(order.size(), 200u);
  for (uint32_t i = 0; i < 200; ++i) EXPECT_EQ(order[i], i);
}

TEST(Actors, AskTimesOutDeterministicallyOnTheInjectedClock) {
  ManualEnv env;
  TwoTargets s(env);
  BlackHole hole;
  run_on(*s.targets[1], [&] { s.rts[1]->register_actor(9, &hole); });
  std::atomic<bool> done{false};
  Status result;
  s.targets[0]->post([&] {
    auto r = s.rts[0]->ask(to(1, 9, 1), std::chrono::seconds(30));
    result = r.status();
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load());
  env.advance(std::chrono::seconds(29));
  run_on(*s.targets[0], [] {});
  EXPECT_FALSE(done.load());
  env.advance(std::chrono::seconds(1));
  run_on(*s.targets[0], [] {});
  for (int i = 0; i < 2000 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(done.load());
  EXPECT_EQ(result.code(), Errc::timeout);
  EXPECT_EQ(run_on(*s.targets[1], [&] { return hole.seen; }), 1);
}

TEST(Actors, UnknownActorAnswersUnreachable) {
  TwoTargets s(RealEnv::instance());
  auto r =
      run_on(*s.targets[0], [&] { return s.rts[0]->ask(to(1, 99, 0), std::chrono::seconds(5)); });
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->status, Errc::unreachable);
  auto bad =
      run_on(*s.targets[0], [&] { return s.rts[0]->ask(to(7, 1, 0), std::chrono::seconds(5)); });
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), Errc::unreachable);
}

TEST(Actors, PendingAsksFailWithShutdownWhenTheTargetStops) {
  ManualEnv env;
  TwoTargets s(env);
  BlackHole hole;
  run_on(*s.targets[1], [&] { s.rts[1]->register_actor(9, &hole); });
  Echo echo(*s.rts[0]);
  run_on(*s.targets[0], [&] { s.rts[0]->register_actor(1, &echo); });
  std::atomic<bool> done{false};
  Status result;
  s.targets[0]->post([&] {
    result = s.rts[0]->ask(to(1, 9, 1), std::chrono::hours(1)).status();
    done = true;
  });
  while (run_on(*s.targets[1], [&] { return hole.seen; }) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  s.targets[0]->stop();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(result.code(), Errc::shutdown);
}

// A target that left the pool map never answers: failing the asks addressed to it completes
// them at once (the asker retries on the new layout) and leaves asks to others alone.
TEST(Actors, FailAsksToCompletesOnlyTheAsksToThatTarget) {
  ManualEnv env;
  TwoTargets s(env);
  BlackHole hole;
  run_on(*s.targets[1], [&] { s.rts[1]->register_actor(9, &hole); });
  std::atomic<int> done{0};
  Status to_1, to_other;
  s.targets[0]->post([&] {
    to_1 = s.rts[0]->ask(to(1, 9, 1), std::chrono::seconds(30)).status();
    done++;
  });
  s.targets[0]->post([&] {
    Message m = to(1, 9, 2);
    m.dst.rank = 3;  // another rank: no route, so it fails on its own
    to_other = s.rts[0]->ask(std::move(m), std::chrono::seconds(30)).status();
    done++;
  });
  // Until the hole holds the first ask and the unroutable one has failed (two fibers: either may
  // finish first).
  for (int i = 0; i < 20000 && (run_on(*s.targets[1], [&] { return hole.seen; }) < 1 || done < 1);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(done.load(), 1);  // only the unroutable one
  EXPECT_EQ(run_on(*s.targets[0],
                   [&] { return s.rts[0]->fail_asks_to(0, 0, Status(Errc::unavailable, "x")); }),
            0u);  // nothing waits on target 0
  EXPECT_EQ(run_on(*s.targets[0],
                   [&] { return s.rts[0]->fail_asks_to(0, 1, Status(Errc::unavailable, "gone")); }),
            1u);
  for (int i = 0; i < 2000 && done < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(done.load(), 2);
  EXPECT_EQ(to_1.code(), Errc::unavailable);
  EXPECT_EQ(to_1.message(), "gone");
  EXPECT_EQ(to_other.code(), Errc::unreachable);
}

// An engine believes only an engine's reply: a reply a client forged (right corr, no valid MAC)
// must not complete the ask, or a client could acknowledge a replica write that never happened.
TEST(Actors, AnUntrustedReplyDoesNotCompleteAnEnginesAsk) {
  ManualEnv env;
  TwoTargets s(env);
  struct Keeper : Actor {
    void receive(Message& m) override { corr = m.corr; }
    std::atomic<uint64_t> corr{0};
  } keeper;
  run_on(*s.targets[1], [&] { s.rts[1]->register_actor(9, &keeper); });
  run_on(*s.targets[0], [&] { s.rts[0]->require_trusted_replies(true); });
  std::atomic<bool> done{false};
  Result<Message> result = Status(Errc::internal, "not yet");
  s.targets[0]->post([&] {
    result = s.rts[0]->ask(to(1, 9, 1), std::chrono::hours(1));
    done = true;
  });
  while (keeper.corr.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto reply = [&](Origin origin, const char* text) {
    Message r;
    r.dst = ActorAddr{0, 0, 0};
    r.corr = keeper.corr.load();
    r.flags = kMsgReply;
    r.error = text;
    r.origin = origin;
    run_on(*s.targets[0], [&] { s.rts[0]->deliver(std::move(r)); });
  };
  reply(Origin::peer, "forged by a client");
  reply(Origin::forged, "MAC under another key");
  run_on(*s.targets[0], [] { boost::this_fiber::yield(); });
  EXPECT_FALSE(done.load());
  EXPECT_EQ(run_on(*s.targets[0], [&] { return s.rts[0]->untrusted_replies(); }), 2u);
  reply(Origin::engine, "the engine's");
  for (int i = 0; i < 5000 && !done.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(done.load());
  ASSERT_TRUE(result.is_ok());
  EXPECT_EQ(result->error, "the engine's");
}
