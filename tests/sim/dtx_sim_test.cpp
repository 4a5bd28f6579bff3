// Seeded simulation of the real transaction code under faults (tests/sim/dtx_cluster.hpp has
// the pool: engines running the real ObjectService and TargetStore on simulated wires and
// disks).
//
// Clients run bank transfers as user transactions: begin (an epoch from a target's clock), read
// two accounts at that epoch (the read leaves its stamp), commit both new balances to the
// coordinator (the leader of the first account's group). Half the accounts live in erasure-coded
// objects (EC_2P1GX: a single value kept whole on the first data position and the parity, one
// change per position, as libtessera sends it), so transfers span both kinds. Meanwhile the
// seed draws the faults: messages lost or held back, engines killed at random moments or at a
// crash point of the protocol (the coordinator before or after its own prepare, after all
// prepared, after the commit, while aborting, a participant once prepared, after the reply),
// each death either a kill -9 (the disk keeps every completed write) or a power loss (it keeps
// what the last sync made durable, and a random choice of the blocks written since), then a
// restart on what the disk kept.
//
// Checked against a model once the faults stop, every engine is back and every prepared
// transaction is decided, from each replica's own store:
// - replicas agree: every replica of an account shows the same value at every epoch asked;
// - atomicity: a transaction is applied on both accounts or on neither;
// - what the client heard holds: committed ⇒ applied; refused (restart) ⇒ applied nowhere;
// - serializability: replaying the applied transactions in epoch order from the initial
//   balances, each one read exactly the balances the replay has before it, and the replay ends
//   at the balances every replica shows now (so the sum is kept).
//
// A failure names its seed. TESSERA_DTX_SIM_SEEDS=N runs N seeds; TESSERA_DTX_SIM_SECONDS
// sets each seed's time under faults. The seed fixes the workload and the faults drawn; thread
// timing is real, so a failing seed is run again to reproduce, not replayed step by step.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <thread>

#include "client/container_impl.hpp"
#include "core/checksum.hpp"
#include "core/crash_point.hpp"
#include "mgmt/state.hpp"
#include "placement/layout.hpp"
#include "proto/tx_ops.hpp"
#include "shard/keys.hpp"
#include "tests/sim/dtx_cluster.hpp"
#include "tests/sim/history.hpp"
#include "tests/sim/seeds.hpp"

using namespace tessera;
using namespace tessera::sim;
using nlohmann::json;
using tessera::contimpl::decoded;

namespace {

constexpr uint32_t kEngines = 5;
constexpr uint32_t kClients = 3;
constexpr uint32_t kObjects = 4;
constexpr uint32_t kDkeys = 4;  // accounts per object
constexpr uint32_t kAccounts = kObjects * kDkeys;
constexpr int64_t kInitial = 100;
constexpr uint32_t kPlainKeys = 8;  // keys of plain (single-update) writes, in their own object
constexpr const char* kAkey = "bal";

struct Account {
  ObjectId oid;
  std::string dkey;
};

std::vector<uint32_t> holders(const Account& a) {
  return sim::holders(a.oid, a.dkey);
}

struct TxRecord {
  enum Outcome { committed, refused, unknown };
  uint32_t client = 0;
  uint64_t epoch = 0;
  uint64_t tag = 0;        // written beside each balance: which transaction wrote it
  uint32_t a = 0, b = 0;   // accounts
  int64_t ra = 0, rb = 0;  // balances read at the epoch
  int64_t wa = 0, wb = 0;  // balances written
  Outcome outcome = unknown;
  std::string why;
};

// An account's value: its balance and the tag of the transaction that wrote it (epochs of
// different targets' clocks can be equal, so the epoch alone does not say whose version it is).
struct Value {
  int64_t balance = INT64_MIN;
  uint64_t tag = 0;
  uint64_t epoch = 0;  // the version's (when read from a store)
  bool operator==(const Value&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Value& v) {
  return os << fmt::format("{{balance {}, tag {:#x}, epoch {}}}", v.balance, v.tag, v.epoch);
}
std::string encode(int64_t balance, uint64_t tag) {
  std::string s(16, '\0');
  std::memcpy(s.data(), &balance, 8);
  std::memcpy(s.data() + 8, &tag, 8);
  return s;
}
Value decode(const Buffer& b) {
  Value v;
  if (b.size() == 16) {
    std::memcpy(&v.balance, b.data(), 8);
    std::memcpy(&v.tag, b.data() + 8, 8);
  }
  return v;
}

bool retry_read(Errc e) {
  return e == Errc::busy || e == Errc::timeout || e == Errc::unreachable ||
         e == Errc::unavailable || e == Errc::shutdown;
}

// A client: its own target, speaking the object protocol as libtessera does.
class SimClient {
 public:
  SimClient(Env& env, SimNet& net, const SimPool& pool, const std::vector<Account>& accounts,
            uint32_t id, uint64_t seed)
      : pool_(pool),
        accounts_(accounts),
        id_(id),
        rng_(seed),
        node_(env, net, fmt::format("sim-c{}", id), fmt::format("sim-client-{}", id), id) {
    mgmt::learn_view(*node_.rt, *pool.view());
  }
  void wake() { node_.target->wake(true); }

  // Runs `fn` in a fiber on the client's target; the future is ready when it returned.
  std::future<void> run(std::function<void(SimClient&)> fn) {
    auto p = std::make_shared<std::promise<void>>();
    auto f = p->get_future();
    node_.target->post([this, p, fn = std::move(fn)] {
      fn(*this);
      p->set_value();
    });
    return f;
  }

  // ---- client target only ----
  Result<Message> ask(uint32_t rank, uint16_t method, Buffer body, Buffer bulk, Nanos timeout) {
    Message m;
    m.dst = ActorAddr{rank, 0, proto::kObjectServiceActor};
    m.protocol = proto::kProtoObject;
    m.method = method;
    m.body = std::move(body);
    m.bulk = std::move(bulk);
    auto r = node_.rt->ask(std::move(m), timeout);
    if (!r) return r.status();
    if (r->status != Errc::ok) return Status(r->status, r->error);
    return r;
  }
  // The account's leader: the first holder of its value with complete data (the map never
  // changes here).
  uint32_t leader(const Account& a) const {
    auto place = placement::place(a.oid, pool_.view()->pool.map);
    const auto group = place->dkey(a.dkey);
    const auto hs = holders(a);
    for (uint32_t i : hs) {
      if (group[i].complete) return group[i].home.rank;
    }
    return group[hs.front()].home.rank;
  }
  IoCtxValues ctx(uint64_t tx_read = 0) const {
    return {pool_.view()->pool.id, pool_.view()->pool.map.version, pool_.cookie, pool_.cont,
            tx_read};
  }
  // An epoch and reader id from a target drawn by the seed.
  Result<std::pair<uint64_t, uint64_t>> begin() {
    capnp::MallocMessageBuilder b(128);
    set_ctx(b.initRoot<schema::TxBeginReq>().initCtx(), ctx());
    auto m = ask(static_cast<uint32_t>(rng_() % kEngines), proto::kObjTxBegin, capn::to_body(b), {},
                 std::chrono::seconds(1));
    if (!m) return m.status();
    return decoded<std::pair<uint64_t, uint64_t>>(
        *m, +[](Message& msg) -> Result<std::pair<uint64_t, uint64_t>> {
          capn::BodyReader br(msg.body);
          auto rep = br.root<schema::TxBeginRep>();
          return std::make_pair(rep.getEpoch(), rep.getOwner());
        });
  }
  // An account's balance at `epoch` (a transaction's read when `owner` is set), retried while
  // a decision is pending or the leader is away.
  Result<int64_t> read(uint32_t acct, uint64_t epoch, uint64_t owner) {
    const Account& a = accounts_[acct];
    Status last;
    for (int attempt = 0; attempt < 200; ++attempt) {
      auto m = ask(leader(a), proto::kObjFetch,
                   fetch_body(a.oid, a.dkey, kAkey, ValueKind::single, 0, 0, epoch, FetchFlags{},
                              ctx(owner)),
                   {}, std::chrono::seconds(1));
      if (m) {
        auto r = decoded(*m, decode_fetch);
        if (!r) return r.status();
        return decode(r->data).balance;
      }
      last = m.status();
      if (!retry_read(last.code())) return last;
      node_.target->sleep_for(std::chrono::milliseconds(10));
    }
    return last;
  }
  // A change (a commit or a plain update) sent once to `rank`, its epoch when acknowledged: a
  // retry could apply it twice as far as the client knows. `busy` (refused before anything was
  // done) is sent again.
  Result<uint64_t> change(uint32_t rank, uint16_t method, const Buffer& body, const Buffer& bulk) {
    for (int attempt = 0;; ++attempt) {
      auto m = ask(rank, method, Buffer(body.data(), body.size()), Buffer(bulk.data(), bulk.size()),
                   std::chrono::seconds(10));
      if (!m && m.status().code() == Errc::busy && attempt < 50) {
        node_.target->sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      if (!m) return m.status();
      return decoded(*m, decode_epoch);
    }
  }
  // Commits `writes` (account, balance) at `epoch` (change()). A write of an erasure-coded
  // account goes as libtessera sends it: a whole copy for each position holding it.
  Result<uint64_t> commit(uint64_t epoch, uint64_t owner, uint64_t tag,
                          const std::vector<std::pair<uint32_t, int64_t>>& writes) {
    std::vector<proto::TxChange> changes;
    std::string bulk;
    for (const auto& [acct, balance] : writes) {
      const Account& a = accounts_[acct];
      const std::string v = encode(balance, tag);
      proto::TxChange c;
      c.update = true;
      c.oid = a.oid;
      c.dkey = a.dkey;
      c.akey = kAkey;
      c.data_len = v.size();
      c.crc =
          crc32c(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size()));
      for (uint32_t pos : erasure_coded(a.oid) ? holders(a) : std::vector<uint32_t>{~0u}) {
        c.pos = pos + 1;  // 0 for a replicated key
        c.data_off = bulk.size();
        changes.push_back(c);
        bulk += v;
      }
    }
    capnp::MallocMessageBuilder b(1024);
    auto req = b.initRoot<schema::TxReq>();
    set_ctx(req.initCtx(), ctx());
    req.setEpoch(epoch);
    req.setOwner(owner);
    auto ops = req.initOps(static_cast<unsigned>(changes.size()));
    for (size_t i = 0; i < changes.size(); ++i) {
      proto::set_tx_op(ops[static_cast<unsigned>(i)], changes[i]);
    }
    // The coordinator holds the first change: the first account's leader.
    return change(leader(accounts_[writes.front().first]), proto::kObjTxCommit, capn::to_body(b),
                  Buffer(bulk.data(), bulk.size()));
  }

  // A plain update of `a` to (0, tag) (change()).
  Result<uint64_t> put(const Account& a, uint64_t tag) {
    const std::string v = encode(0, tag);
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(v.data()), v.size());
    return change(leader(a), proto::kObjUpdate,
                  update_body(a.oid, a.dkey, kAkey, ValueKind::single, 0, crc32c(bytes),
                              UpdateFlags{}, ctx()),
                  Buffer(v.data(), v.size()));
  }
  // One plain update of a key the seed draws.
  void plain(const std::vector<Account>& keys, std::vector<PutRecord>& out) {
    PutRecord p;
    p.key = static_cast<uint32_t>(rng_() % keys.size());
    p.tag = (uint64_t{id_} + 1) << 40 | ++seq_;
    auto r = put(keys[p.key], p.tag);
    if (r) {
      p.acked = true;
      p.epoch = *r;
    } else {
      // A member of the group is away (the map keeps it): not in a tight loop.
      node_.target->sleep_for(std::chrono::milliseconds(5));
    }
    out.push_back(p);
  }

  // One transfer between two accounts the seed draws; recorded unless it never reached a
  // commit.
  void transfer(std::vector<TxRecord>& out) {
    TxRecord t;
    t.client = id_;
    t.tag = (uint64_t{id_} + 1) << 40 | ++seq_;
    t.a = static_cast<uint32_t>(rng_() % kAccounts);
    t.b = static_cast<uint32_t>((t.a + 1 + rng_() % (kAccounts - 1)) % kAccounts);
    const int64_t amount = static_cast<int64_t>(1 + rng_() % 20);
    auto e = begin();
    if (!e) return;
    t.epoch = e->first;
    auto ra = read(t.a, t.epoch, e->second);
    if (!ra) return;
    auto rb = read(t.b, t.epoch, e->second);
    if (!rb) return;
    t.ra = *ra;
    t.rb = *rb;
    t.wa = t.ra - amount;
    t.wb = t.rb + amount;
    auto r = commit(t.epoch, e->second, t.tag, {{t.a, t.wa}, {t.b, t.wb}});
    if (r) {
      t.outcome = TxRecord::committed;
      if (*r != t.epoch) t.why = fmt::format("committed at epoch {}, not its own", *r);
    } else {
      t.outcome = r.status().code() == Errc::restart ? TxRecord::refused : TxRecord::unknown;
      t.why = r.status().to_string();
    }
    out.push_back(std::move(t));
  }

  std::atomic<bool> stop{false};

 private:
  const SimPool& pool_;
  const std::vector<Account>& accounts_;
  uint32_t id_;
  uint64_t seq_ = 0;
  std::mt19937_64 rng_;
  SimClientNode node_;  // last: its target stops before the members its fibers use go
};

// The pool map, from the management service's own state machine.
void make_pool(SimPool& p) {
  mgmt::MgmtState st;
  ASSERT_TRUE(create_pool(st, kEngines, "RP_3GX", 2).is_ok());
  auto v = pool_view(st, kEngines);
  p.cont = v->conts.at(0).c.id;
  p.publish(std::move(v));
}

// The crash points of the transaction protocol (actors/object_service_dtx.cpp, _tx.cpp).
const std::vector<std::string> kPoints = {"dtx.leader.start",    "dtx.leader.local",
                                          "dtx.leader.prepared", "dtx.leader.committed",
                                          "dtx.leader.aborting", "dtx.participant.prepared",
                                          "dtx.leader.replied"};

// Fault points of the production code (Env::fault) the simulation turns on, per 100,000 times
// each is reached: a log write the device refuses, a message the fabric refuses, commit notices
// lost (participants must learn the outcome by asking).
const SimEnv::Rates kFaultRates = {
    {"wal.write", 300}, {"net.send", 100}, {"dtx.commit_notice", 2000}};

class Simulation {
 public:
  Simulation(uint64_t seed, double seconds)
      : seed_(seed),
        seconds_(seconds),
        rng_(seed),
        env_(SimEnv::Options{seed, true}),
        net_(seed ^ 0x9e3779b97f4a7c15ull) {
    make_pool(pool_);
    const uint16_t cls = placement::find_class("RP_3GX")->id;
    const uint16_t ec = placement::find_class("EC_2P1GX")->id;
    for (uint32_t o = 0; o < kObjects; ++o) {
      for (uint32_t d = 0; d < kDkeys; ++d) {
        // Odd objects are erasure-coded: a transfer may span both kinds.
        accounts_.push_back(Account{placement::with_class({0, 1000 + o}, o % 2 == 0 ? cls : ec),
                                    fmt::format("acct-{}", d)});
      }
    }
    for (uint32_t k = 0; k < kPlainKeys; ++k) {
      plain_keys_.push_back(Account{placement::with_class({0, 2000}, cls), fmt::format("k-{}", k)});
    }
    set_crash_hook([this](std::string_view point, std::string_view) { crash_point(point); });
    for (uint32_t r = 0; r < kEngines; ++r) {
      engines_.push_back(std::make_unique<SimEngine>(env_, net_, pool_, r, seed * 131 + r));
      EXPECT_TRUE(engines_.back()->start().is_ok());
    }
    // Clients 0..kClients-1 run transfers; the last one writes plain updates.
    for (uint32_t c = 0; c <= kClients; ++c) {
      clients_.push_back(
          std::make_unique<SimClient>(env_, net_, pool_, accounts_, c, seed * 7 + c));
    }
  }
  ~Simulation() {
    clients_.clear();
    engines_.clear();  // waits for the dead incarnations to stop, too
    set_crash_hook({});
  }

  void run() {
    // Every account starts at kInitial, in one transaction.
    Status setup;
    clients_[0]
        ->run([&](SimClient& c) {
          std::vector<std::pair<uint32_t, int64_t>> all;
          for (uint32_t a = 0; a < kAccounts; ++a) all.emplace_back(a, kInitial);
          for (int attempt = 0; attempt < 20; ++attempt) {
            auto e = c.begin();
            if (!e) {
              setup = e.status();
              continue;
            }
            auto r = c.commit(e->first, e->second, 0, all);
            setup = r.status();
            if (r) return;
          }
        })
        .wait();
    ASSERT_TRUE(setup.is_ok()) << setup.to_string();

    std::vector<std::future<void>> loops;
    records_.resize(kClients);
    for (uint32_t c = 0; c < kClients; ++c) {
      loops.push_back(clients_[c]->run([this, c](SimClient& cl) {
        while (!cl.stop) cl.transfer(records_[c]);
      }));
    }
    loops.push_back(clients_[kClients]->run([this](SimClient& cl) {
      while (!cl.stop) cl.plain(plain_keys_, puts_);
    }));
    net_.set_faults({20, 5000, 2000});
    env_.set_faults(kFaultRates);
    const auto end = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(seconds_ * 1000));
    while (std::chrono::steady_clock::now() < end && !::testing::Test::HasFailure()) fault();
    // Heal: no more faults; the clients finish what they began; every engine is back.
    net_.set_faults({});
    env_.set_faults({});
    disarm();
    for (auto& c : clients_) c->stop = true;
    for (auto& l : loops) l.wait();
    for (auto& e : engines_) {
      if (e->dead()) {
        ASSERT_TRUE(e->restart().is_ok());
      }
    }
    settle();
    check();
  }

 private:
  // One fault the seed draws, and the restart that follows it (test thread).
  void fault() {
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng_() % 200));
    SimEngine* victim = nullptr;
    const bool power = rng_() % 2 == 0;
    if (rng_() % 4 == 0) {
      // The clock jumps (a stall of the whole pool, as the engines see it): requests in flight
      // time out, and the background work that waits (resolving transactions prepared for a
      // while, checkpoints, the log's group delay) is due at once.
      const auto d = std::chrono::milliseconds(100 + rng_() % 6000);
      env_.skip(d);
      for (auto& e : engines_) e->wake();
      for (auto& c : clients_) c->wake();
      log_.push_back(fmt::format("clock skips {} ms", d.count()));
      return;
    }
    if (rng_() % 3 == 0) {
      victim = engines_[rng_() % kEngines].get();
      victim->kill(power);
      log_.push_back(fmt::format("kill rank {}{}", victim->rank(), power ? " (power loss)" : ""));
    } else {
      const std::string& point = kPoints[rng_() % kPoints.size()];
      arm(point, power);
      // The first engine to reach it dies; if none does soon, the point is disarmed.
      for (int i = 0; i < 100 && dead_engine() == nullptr; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      disarm();  // a death under way ends first (crash_point holds the lock)
      victim = dead_engine();
      if (victim == nullptr) return;
      log_.push_back(
          fmt::format("rank {} dies at {}{}", victim->rank(), point, power ? " (power loss)" : ""));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 300));
    ASSERT_TRUE(victim->restart().is_ok()) << "rank " << victim->rank() << " restarts";
  }
  // The engine that died (one at most: a fault's victim restarts before the next fault).
  SimEngine* dead_engine() const {
    for (const auto& e : engines_) {
      if (e->dead()) return e.get();
    }
    return nullptr;
  }
  void arm(const std::string& point, bool power) {
    std::lock_guard lk(mu_);
    armed_ = point;
    armed_power_ = power;
  }
  void disarm() {
    std::lock_guard lk(mu_);
    armed_.clear();
  }
  // Every crash point of every engine comes here (the engine's thread). The death happens under
  // the lock, so a disarm() that returns has seen it whole.
  void crash_point(std::string_view point) {
    std::lock_guard lk(mu_);
    if (armed_.empty() || armed_ != point) return;
    for (auto& e : engines_) {
      if (e->owns(Target::current())) {
        armed_.clear();
        e->die(armed_power_);
      }
    }
  }

  // Every engine decides what it holds prepared (test thread).
  void settle() { settle_engines(engines_); }

  // The value of `acct` at each of `epochs` (0: newest) on replica `rank`.
  std::vector<Value> read_replica(uint32_t rank, const Account& a,
                                  const std::vector<uint64_t>& epochs) {
    const uint32_t cont = pool_.cont;
    return engines_[rank]->on_target([&](PoolShard& sh, ObjectService&) {
      std::vector<Value> out;
      for (uint64_t e : epochs) {
        auto r = sh.store->fetch(shard_keys::store_key(a.oid, cont), a.dkey, kAkey,
                                 ValueKind::single, 0, 0, e);
        EXPECT_TRUE(r) << r.status().to_string();
        Value v;
        if (r) {
          v = decode(r->data);
          v.epoch = r->epoch;
        }
        out.push_back(v);
      }
      return out;
    });
  }

  // Plain updates (kObjUpdate: a distributed transaction over the key's group, not a user
  // transaction): every replica of a key shows the same, and that holds the key's history
  // (tests/sim/history.hpp).
  void check_plain() {
    size_t acked = 0;
    for (uint32_t k = 0; k < kPlainKeys; ++k) {
      const KeyHistory h(puts_, k);
      acked += h.acked();
      auto place = placement::place(plain_keys_[k].oid, pool_.view()->pool.map);
      ASSERT_TRUE(place);
      std::vector<Value> first;
      for (const auto& pos : place->dkey(plain_keys_[k].dkey)) {
        auto got = read_replica(pos.home.rank, plain_keys_[k], h.epochs());
        if (first.empty()) first = got;
        ASSERT_EQ(got, first) << "replicas of plain key " << k << " disagree (rank "
                              << pos.home.rank << ")";
      }
      std::vector<uint64_t> tags;
      for (const auto& v : first) tags.push_back(v.tag);
      ASSERT_TRUE(h.shown_by(tags)) << "plain key " << k;
    }
    plain_acked_ = acked;
  }

  void check() {
    check_plain();
    if (::testing::Test::HasFailure()) return;
    expect_checked_consistent(engines_, pool_.cont);
    if (::testing::Test::HasFailure()) return;
    std::vector<TxRecord> all;
    for (auto& r : records_) all.insert(all.end(), r.begin(), r.end());
    std::sort(all.begin(), all.end(),
              [](const TxRecord& x, const TxRecord& y) { return x.epoch < y.epoch; });
    // The epochs to look at per account: each transaction's that touched it, and the newest.
    std::vector<std::vector<uint64_t>> epochs(kAccounts);
    for (const auto& t : all) {
      epochs[t.a].push_back(t.epoch);
      epochs[t.b].push_back(t.epoch);
    }
    for (auto& e : epochs) e.push_back(0);
    // What each replica shows; they must all agree.
    std::vector<std::vector<Value>> shown(kAccounts);
    for (uint32_t acct = 0; acct < kAccounts; ++acct) {
      auto place = placement::place(accounts_[acct].oid, pool_.view()->pool.map);
      ASSERT_TRUE(place);
      bool first = true;
      const auto group = place->dkey(accounts_[acct].dkey);
      for (uint32_t i : holders(accounts_[acct])) {
        const placement::Position& p = group[i];
        auto got = read_replica(p.home.rank, accounts_[acct], epochs[acct]);
        if (first) {
          shown[acct] = got;
          first = false;
          continue;
        }
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_EQ(got[i], shown[acct][i])
              << "replicas of account " << acct << " disagree at epoch " << epochs[acct][i]
              << " (rank " << p.home.rank << ")";
        }
      }
    }
    // Applied: the account's version at the transaction's epoch is its own.
    auto at = [&](uint32_t acct, uint64_t epoch) -> const Value& {
      const auto& es = epochs[acct];
      return shown[acct][std::find(es.begin(), es.end(), epoch) - es.begin()];
    };
    auto applied_on = [&](uint32_t acct, const TxRecord& t) {
      const Value& v = at(acct, t.epoch);
      return v.epoch == t.epoch && v.tag == t.tag;
    };
    std::vector<int64_t> bal(kAccounts, kInitial);
    size_t applied = 0, committed = 0, refused = 0, unknown = 0;
    for (const auto& t : all) {
      const bool on_a = applied_on(t.a, t), on_b = applied_on(t.b, t);
      const std::string what =
          fmt::format("transfer at epoch {} by client {}: account {} {}→{}, account {} {}→{} ({})",
                      t.epoch, t.client, t.a, t.ra, t.wa, t.b, t.rb, t.wb,
                      t.outcome == TxRecord::committed ? "committed"
                      : t.outcome == TxRecord::refused ? "refused"
                                                       : "unknown: " + t.why);
      ASSERT_EQ(on_a, on_b) << "half applied: " << what;
      ASSERT_TRUE(t.why.empty() || t.outcome != TxRecord::committed) << what << ": " << t.why;
      if (t.outcome == TxRecord::committed) {
        ++committed;
        ASSERT_TRUE(on_a) << "acknowledged, then lost: " << what;
      } else if (t.outcome == TxRecord::refused) {
        ++refused;
        ASSERT_FALSE(on_a) << "refused, yet applied: " << what;
      } else {
        ++unknown;
      }
      if (!on_a) continue;
      ++applied;
      if (t.ra != bal[t.a] || t.rb != bal[t.b]) {
        // The accounts' history up to this transfer, for the failure's reader.
        for (const auto& u : all) {
          if (u.epoch > t.epoch) break;
          if (u.a != t.a && u.b != t.a && u.a != t.b && u.b != t.b) continue;
          std::cout << fmt::format("  epoch {} client {}: account {} {}→{}, account {} {}→{}{}\n",
                                   u.epoch, u.client, u.a, u.ra, u.wa, u.b, u.rb, u.wb,
                                   applied_on(u.a, u) ? "" : " (not applied)");
        }
      }
      ASSERT_EQ(t.ra, bal[t.a]) << "not serializable (account " << t.a << "): " << what;
      ASSERT_EQ(t.rb, bal[t.b]) << "not serializable (account " << t.b << "): " << what;
      bal[t.a] = t.wa;
      bal[t.b] = t.wb;
    }
    int64_t sum = 0;
    for (uint32_t acct = 0; acct < kAccounts; ++acct) {
      EXPECT_EQ(shown[acct].back().balance, bal[acct]) << "account " << acct << " now";
      sum += shown[acct].back().balance;
    }
    EXPECT_EQ(sum, kInitial * kAccounts);
    uint64_t power = 0;
    for (auto& e : engines_) power += e->power_losses();
    std::cout << fmt::format(
        "seed {}: {} transfers ({} committed, {} refused, {} unknown; {} applied), {} plain "
        "updates ({} acknowledged); {} faults ({} power losses); {} messages, {} dropped\n",
        seed_, all.size(), committed, refused, unknown, applied, puts_.size(), plain_acked_,
        log_.size(), power, net_.sent(), net_.dropped());
    EXPECT_GT(committed, 0u);
    // The fault points reached, and how often they failed.
    std::string points;
    const auto counts = env_.fault_counts();
    for (const auto& [site, n] : counts) {
      points += fmt::format(" {} {}/{}", site, n.fired, n.asked);
    }
    std::cout << "  fault points (failed/reached):" << points << "\n";
    for (const auto& [site, rate] : kFaultRates) {
      auto it = counts.find(site);
      EXPECT_TRUE(it != counts.end() && it->second.asked > 0) << "fault point " << site;
      if (it != counts.end()) fired_[site] += it->second.fired;
    }
  }

  uint64_t seed_;
  double seconds_;
  std::mt19937_64 rng_;
  SimEnv env_;  // the production code's clock, randomness and fault points

 public:
  static inline std::map<std::string, uint64_t> fired_;  // per fault point, over all seeds

 private:
  SimNet net_;
  SimPool pool_;
  std::vector<Account> accounts_;
  std::vector<Account> plain_keys_;
  std::vector<PutRecord> puts_;  // the writer's thread until it stopped
  size_t plain_acked_ = 0;
  std::vector<std::unique_ptr<SimEngine>> engines_;
  std::vector<std::unique_ptr<SimClient>> clients_;
  std::vector<std::vector<TxRecord>> records_;
  std::vector<std::string> log_;
  std::mutex mu_;
  std::string armed_;
  bool armed_power_ = false;

 public:
  const std::vector<std::string>& log() const { return log_; }
};

}  // namespace

TEST(DtxSim, TransfersKeepSerializableHistoryThroughKillsAndPowerLoss) {
  const double seconds = env_int("TESSERA_DTX_SIM_SECONDS", 8);
  const std::vector<uint64_t> run = seeds("DTX_SIM", 3, 1000003ull);
  for (uint64_t seed : run) {
    if (HasFailure()) break;
    Simulation sim(seed, seconds);
    sim.run();
    if (HasFailure()) print_failed_seed("DTX_SIM", seed, "dtx_sim", sim.log());
  }
  if (run.size() == 1) return;
  // Every fault point failed at least once over the seeds: the runs above went through them.
  for (const auto& [site, rate] : kFaultRates) {
    EXPECT_GT(Simulation::fired_[site], 0u) << "fault point " << site << " never failed";
  }
}
