// A hostile client against real engines: it speaks the wire format directly (raw control-socket
// frames, a bare fabric endpoint without the system key), forges identities and asks for what
// only engines may do. Each attempt is refused with a clear error, nothing on disk changes,
// and the engine keeps serving.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "client/client.hpp"
#include "client/mgmt_client.hpp"
#include "core/checksum.hpp"
#include "mgmt/codec.hpp"
#include "net/stream.hpp"
#include "placement/layout.hpp"
#include "proto/auth.capnp.h"
#include "proto/capnp_util.hpp"
#include "proto/mgmt.capnp.h"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "security/credential.hpp"
#include "security/system_key.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/integration/raw_peer.hpp"
#include "tests/integration/server_process.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;
namespace fs = std::filesystem;

namespace {

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// One engine hosting the management service, trusting the agent key of node "node-a".
struct SecureEngine {
  TempDir dir;
  std::string nodes = dir.path() + "/nodes";
  std::string node_key = dir.path() + "/node-a.key";
  std::string storage = dir.path() + "/rank0";
  std::unique_ptr<ServerProcess> engine;
  std::optional<security::NodeSigner> signer;

  explicit SecureEngine(uint32_t targets = 2) {
    fs::create_directories(nodes);
    fs::create_directories(storage);
    EXPECT_TRUE(security::NodeSigner::generate(node_key, nodes + "/node-a.pub").is_ok());
    auto s = security::NodeSigner::load(node_key, "node-a");
    EXPECT_TRUE(s.is_ok());
    if (s) signer.emplace(std::move(*s));
    auto o = ServerOptions::in(storage);
    o.storage_size = "64M";
    o.targets = targets;
    o.extra = {"--rank", "0", "--mgmt-host", "--node-keys", nodes};
    engine = std::make_unique<ServerProcess>(o);
    Status st = engine->start();
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    // The port is published before the engine's own join completes.
    EXPECT_TRUE(wait_joined_at(addr(), 1)) << "the engine did not join its own system";
  }
  std::string addr() const { return engine->address(); }
};

// One request on a fresh control connection, framed by hand: `key` (or none) MACs it.
Result<Message> raw_call(const std::string& addr, Message m,
                         const security::SystemKey* key = nullptr) {
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  auto ep = net::parse_endpoint(addr);
  if (!ep) return ep.status();
  boost::system::error_code ec;
  sock.connect(*ep, ec);
  if (ec) return Status(Errc::unreachable, ec.message());
  if (m.corr == 0) m.corr = 1;
  TESSERA_TRY(net::write_message(sock, m, key));
  return net::read_message(sock, 1u << 20);
}

using Fill = std::function<void(schema::MgmtReq::Builder)>;

// A management request whose body claims `claimed`, with credential `cred` (may be empty).
Message mgmt_msg(const Fill& fill, const mgmt::Cred& claimed, std::string cred = {}) {
  capnp::MallocMessageBuilder b(256);
  auto r = b.initRoot<schema::MgmtReq>();
  mgmt::encode_cred(r.initCred(), claimed);
  fill(r);
  Message m;
  m.protocol = proto::kProtoMgmt;
  m.method = proto::kMgmtCall;
  m.body = capn::to_body(b);
  m.cred = std::move(cred);
  return m;
}

// The agent's credential for `m` as node `signer` would sign it for uid/gid.
std::string credential(const security::NodeSigner& signer, const Message& m, uint32_t uid,
                       uint64_t at_ms = now_ms()) {
  return signer.sign(security::credential_for(uid, uid, 4242, signer.node(),
                                              security::hash_body(m.body.span()), at_ms));
}

mgmt::Cred root_claim() {
  mgmt::Cred c;
  c.uid = 0;
  c.gid = 0;
  c.user = "root";
  return c;
}

Fill pool_create(const std::string& label) {
  return [label](schema::MgmtReq::Builder r) {
    auto pc = r.initPoolCreate();
    pc.setLabel(label);
    pc.setTargetBytes(64ull << 20);
  };
}

size_t pools_on_disk(const std::string& storage) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(storage + "/pools", ec); !ec && it != fs::end(it); ++it) {
    ++n;
  }
  return n;
}

size_t pool_count(const std::string& mgmt);

// Nothing the hostile requests asked for happened, and the engine still runs.
void expect_untouched(SecureEngine& s) {
  EXPECT_EQ(pool_count(s.addr()), 0u);
  EXPECT_EQ(pools_on_disk(s.storage), 0u);
  EXPECT_TRUE(s.engine->alive());
}

size_t pool_count(const std::string& mgmt) {
  MgmtClient mc(mgmt);  // the test process is the administrator (its system key)
  auto l = mc.pool_list();
  EXPECT_TRUE(l.is_ok()) << l.status().to_string();
  return l ? l->size() : SIZE_MAX;
}

}  // namespace

TEST(Security, AForgedRootClaimWithoutCredentialIsRefused) {
  SecureEngine s;
  auto m = mgmt_msg(pool_create("stolen"), root_claim());
  auto r = raw_call(s.addr(), std::move(m));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, Errc::unauthenticated) << r->error;
  EXPECT_NE(r->error.find("no credential"), std::string::npos) << r->error;
  // Another system's key: a MAC that does not verify is no better than none.
  std::array<uint8_t, security::SystemKey::kBytes> other{};
  other[7] = 42;
  auto forged = raw_call(s.addr(), mgmt_msg(pool_create("stolen"), root_claim()),
                         security::SystemKey::from_bytes(other).get());
  ASSERT_TRUE(forged.is_ok());
  EXPECT_EQ(forged->status, Errc::unauthenticated) << forged->error;
  EXPECT_NE(forged->error.find("another system's key"), std::string::npos) << forged->error;
  expect_untouched(s);
}

TEST(Security, CredentialsAreCheckedForNodeSignatureExpiryBodyAndReplay) {
  SecureEngine s;
  ASSERT_TRUE(s.signer.has_value());
  auto list = [](schema::MgmtReq::Builder r) { r.setPoolList(); };

  // A good credential for root from a trusted node: served (the control for what follows).
  auto good = mgmt_msg(list, root_claim());
  good.cred = credential(*s.signer, good, 0);
  Message replay = mgmt_msg(list, root_claim(), good.cred);
  auto ok = raw_call(s.addr(), std::move(good));
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->status, Errc::ok) << ok->error;

  auto refused = [&](Message m, const char* why) {
    auto r = raw_call(s.addr(), std::move(m));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, Errc::unauthenticated) << why << ": " << r->error;
    EXPECT_NE(r->error.find(why), std::string::npos) << r->error;
  };
  refused(std::move(replay), "replayed");

  auto expired = mgmt_msg(list, root_claim());
  expired.cred = credential(*s.signer, expired, 0, now_ms() - 10 * 60 * 1000);
  refused(std::move(expired), "expired");

  // A node the service does not trust, and a stranger's key claiming a trusted node's name.
  TempDir other;
  ASSERT_TRUE(security::NodeSigner::generate(other.path() + "/k", other.path() + "/k.pub").is_ok());
  auto stranger = security::NodeSigner::load(other.path() + "/k", "node-b");
  ASSERT_TRUE(stranger.is_ok());
  auto from_b = mgmt_msg(list, root_claim());
  from_b.cred = credential(*stranger, from_b, 0);
  refused(std::move(from_b), "not trusted");
  auto impostor = security::NodeSigner::load(other.path() + "/k", "node-a");
  ASSERT_TRUE(impostor.is_ok());
  auto as_a = mgmt_msg(list, root_claim());
  as_a.cred = credential(*impostor, as_a, 0);
  refused(std::move(as_a), "signature");

  // Unsigned: the credential without its signature.
  auto unsigned_m = mgmt_msg(list, root_claim());
  {
    std::string sc = credential(*s.signer, unsigned_m, 0);
    Buffer raw(sc.data(), sc.size());
    capn::BodyReader br(raw);
    auto in = br.root<schema::SignedCredential>();
    capnp::MallocMessageBuilder b;
    b.initRoot<schema::SignedCredential>().setCredential(in.getCredential());
    Buffer out = capn::to_body(b);
    unsigned_m.cred.assign(reinterpret_cast<const char*>(out.data()), out.size());
  }
  refused(std::move(unsigned_m), "unsigned");

  // A credential moved to another request.
  auto donor = mgmt_msg(list, root_claim());
  auto moved = mgmt_msg(pool_create("moved"), root_claim(), credential(*s.signer, donor, 0));
  refused(std::move(moved), "another request");

  // The body claims root; the credential proves uid 65534: the proven uid decides.
  auto claim = mgmt_msg(pool_create("claimed"), root_claim());
  claim.cred = credential(*s.signer, claim, 65534);
  auto denied = raw_call(s.addr(), std::move(claim));
  ASSERT_TRUE(denied.is_ok());
  EXPECT_EQ(denied->status, Errc::permission) << denied->error;

  expect_untouched(s);
}

TEST(Security, EngineOnlyRequestsAreRefusedEvenToAVouchedRoot) {
  SecureEngine s;
  const Fill shard_damaged = [](schema::MgmtReq::Builder r) {
    auto d = r.initShardDamaged();
    d.setPool(1);
    d.setRank(0);
    d.setTarget(0);
    d.setReason("forged");
  };
  // A forged reclaim report would end the hold on a pool's aggregation while a former home
  // still keeps what a later fill would merge with (docs/REBUILD.md).
  const Fill reclaim_done = [](schema::MgmtReq::Builder r) {
    auto d = r.initReclaimDone();
    d.setPool(1);
    d.setRank(0);
    d.setTarget(0);
    d.setVersion(1);
  };
  ASSERT_TRUE(s.signer.has_value());
  std::vector<std::pair<const char*, Fill>> engine_only = {
      {"heartbeat", [](schema::MgmtReq::Builder r) { r.setHeartbeat(0); }},
      {"rank dead",
       [](schema::MgmtReq::Builder r) {
         auto d = r.initRankDead();
         d.setRank(0);
         d.setReporter(1);
       }},
      {"leave", [](schema::MgmtReq::Builder r) { r.setLeave(0); }},
      {"shard damaged", shard_damaged},
      {"reclaim done", reclaim_done},
      {"pool map", [](schema::MgmtReq::Builder r) { r.setPoolMap(1); }},
      {"pool properties", [](schema::MgmtReq::Builder r) { r.setPoolProps(1); }},
      {"handle query",
       [](schema::MgmtReq::Builder r) {
         auto h = r.initHandleQuery();
         h.setPool(1);
         h.setCookie(1);
       }},
  };
  for (auto& [what, fill] : engine_only) {
    auto m = mgmt_msg(fill, root_claim());
    m.cred = credential(*s.signer, m, 0);  // root, vouched for by a trusted agent
    auto r = raw_call(s.addr(), std::move(m));
    ASSERT_TRUE(r.is_ok()) << what;
    EXPECT_EQ(r->status, Errc::unauthenticated) << what << ": " << r->error;
    EXPECT_NE(r->error.find("engines"), std::string::npos) << r->error;
  }
  // Even with the system key, a heartbeat, a stop, a damage or a reclaim report speaks only for
  // the rank that joined on that connection: another engine (or an administrator) cannot keep
  // rank 0 alive, stop it, take its targets out as damaged, or say they reclaimed.
  auto key = security::SystemKey::load(test_system_key());
  ASSERT_TRUE(key.is_ok()) << key.status().to_string();
  std::vector<std::pair<const char*, Fill>> for_another_rank = {
      {"heartbeat", [](schema::MgmtReq::Builder r) { r.setHeartbeat(0); }},
      {"leave", [](schema::MgmtReq::Builder r) { r.setLeave(0); }},
      {"shard damaged", shard_damaged},
      {"reclaim done", reclaim_done},
  };
  for (auto& [what, fill] : for_another_rank) {
    auto r = raw_call(s.addr(), mgmt_msg(fill, root_claim()), key->get());
    ASSERT_TRUE(r.is_ok()) << what;
    EXPECT_EQ(r->status, Errc::permission) << what << ": " << r->error;
    EXPECT_NE(r->error.find("connection"), std::string::npos) << r->error;
  }
  // Rank 0 is still joined and alive: nobody declared it dead or stopped.
  MgmtClient mc(s.addr());
  auto members = mc.system_query();
  ASSERT_TRUE(members.is_ok());
  ASSERT_EQ(members->size(), 1u);
  EXPECT_EQ((*members)[0].state, mgmt::MemberState::joined);
}

// A failure detector's verdict names the process it probed (the rank's join count): a verdict
// about an earlier process of a rank that has joined again since is refused as stale, whatever
// the heartbeats say; one about the current process goes on to the other checks.
TEST(Security, AVerdictAboutAnEarlierProcessOfARankIsStale) {
  SecureEngine s;
  auto key = security::SystemKey::load(test_system_key());
  ASSERT_TRUE(key.is_ok()) << key.status().to_string();
  MgmtClient mc(s.addr());
  auto members = mc.system_query();
  ASSERT_TRUE(members.is_ok());
  ASSERT_EQ(members->size(), 1u);
  const uint64_t life = (*members)[0].incarnation;
  auto verdict = [&](uint64_t about) {
    return raw_call(s.addr(),
                    mgmt_msg(
                        [about](schema::MgmtReq::Builder r) {
                          auto d = r.initRankDead();
                          d.setRank(0);
                          d.setReporter(1);
                          d.setIncarnation(about);
                        },
                        root_claim()),
                    key->get());
  };
  for (uint64_t earlier : {life + 1, life + 7}) {
    auto r = verdict(earlier);
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r->status, Errc::stale) << r->error;
    EXPECT_NE(r->error.find("previous process"), std::string::npos) << r->error;
  }
  auto current = verdict(life);
  ASSERT_TRUE(current.is_ok());
  EXPECT_NE(current->status, Errc::stale) << current->error;  // judged by the other rules
  members = mc.system_query();
  ASSERT_TRUE(members.is_ok());
  EXPECT_EQ((*members)[0].state, mgmt::MemberState::joined);
}

TEST(Security, EngineControlNeedsTheSystemKeyAndAUuidNeverBecomesAPath) {
  SecureEngine s;
  // A file beside the engine's directory that a "../" in a pool UUID would reach.
  const std::string victim = s.dir.path() + "/victim";
  fs::create_directories(victim);
  std::ofstream(victim + "/precious") << "keep me";
  auto engine_req = [](auto fill) {
    capnp::MallocMessageBuilder b(128);
    fill(b.initRoot<schema::EngineReq>());
    Message m;
    m.protocol = proto::kProtoMgmt;
    m.method = proto::kEngineCall;
    m.body = capn::to_body(b);
    return m;
  };
  auto shard = [](schema::PoolShard::Builder p, uint32_t id, const char* uuid) {
    p.setId(id);
    p.setUuid(uuid);
    p.setTargetBytes(64ull << 20);
  };
  auto create = [&](const char* uuid) {
    return engine_req(
        [&](schema::EngineReq::Builder r) { shard(r.initPoolShardCreate(), 7, uuid); });
  };
  auto destroy = [&](const char* uuid) {
    return engine_req(
        [&](schema::EngineReq::Builder r) { shard(r.initPoolShardDestroy(), 7, uuid); });
  };
  auto reset = [&](const char* uuid) {
    return engine_req([&](schema::EngineReq::Builder r) {
      auto x = r.initPoolShardReset();
      shard(x.initShard(), 7, uuid);
      x.initTargets(1).set(0, 0);
    });
  };
  const char* escape = "/../../../victim";
  // Without the key: refused before anything is read.
  for (auto mk :
       {std::function<Message()>([&] { return create(""); }),
        std::function<Message()>([&] { return destroy(escape); }),
        std::function<Message()>([&] { return reset(escape); }), std::function<Message()>([&] {
          return engine_req([](schema::EngineReq::Builder r) {
            auto p = r.initContPurge();
            p.setPool(1);
            p.setCont(1);
          });
        }),
        std::function<Message()>([&] {
          return engine_req([](schema::EngineReq::Builder r) { r.setTargetStop(0); });
        })}) {
    auto r = raw_call(s.addr(), mk());
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, Errc::unauthenticated) << r->error;
  }
  // With the key (an administrator's message): the names are still checked before any path.
  auto key = security::SystemKey::load(test_system_key());
  ASSERT_TRUE(key.is_ok());
  for (auto mk : {std::function<Message()>([&] { return create(""); }),
                  std::function<Message()>([&] { return destroy(escape); }),
                  std::function<Message()>([&] { return reset(escape); })}) {
    auto r = raw_call(s.addr(), mk(), key->get());
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, Errc::invalid_argument) << r->error;
    EXPECT_NE(r->error.find("is not a UUID"), std::string::npos) << r->error;
  }
  EXPECT_TRUE(fs::exists(victim + "/precious"));
  EXPECT_EQ(pools_on_disk(s.storage), 0u);
  // Target 0 was not stopped: the engine still serves.
  ClientOptions co;
  co.engine = s.addr();
  auto c = Client::connect(co);
  ASSERT_TRUE(c.is_ok());
  std::string v = "served";
  ASSERT_TRUE((*c)->update({1, 1}, "d", "a", ValueKind::single, 0,
                           {reinterpret_cast<const uint8_t*>(v.data()), v.size()})
                  .is_ok());
}

namespace {
// A single-value update of `oid`/"d"/`akey` to target 0 of `rank`; `fill` sets its context
// (pool, handle, the replica flag) and its epoch.
Message update_msg(uint32_t rank, ObjectId oid, const std::string& akey, const std::string& v,
                   const std::function<void(schema::UpdateReq::Builder)>& fill) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::UpdateReq>();
  req.initOid().setHi(oid.hi);
  req.getOid().setLo(oid.lo);
  req.setDkey(capn::as_data(std::string("d")));
  req.setAkey(capn::as_data(akey));
  req.setKind(schema::ValueKind::SINGLE);
  req.setCrc(crc32c(v.data(), v.size()));
  fill(req);
  Message m;
  m.dst = ActorAddr{rank, 0, proto::kObjectServiceActor};
  m.protocol = proto::kProtoObject;
  m.method = proto::kObjUpdate;
  m.body = capn::to_body(b);
  m.bulk = Buffer(v.data(), v.size());
  return m;
}

// An update to target 0's scratch store, with the replica flag and an epoch as given.
Message scratch_update(uint32_t rank, bool replica, uint64_t epoch, const std::string& akey) {
  return update_msg(rank, {0, 99}, akey, "forged", [&](schema::UpdateReq::Builder req) {
    req.setEpoch(epoch);
    req.initCtx().setReplica(replica);
  });
}
}  // namespace

TEST(Security, EngineInternalMethodsReplicaFlagAndEpochsAreRefusedFromClients) {
  SecureEngine s;
  auto sys = query_system(s.addr(), std::chrono::seconds(10));
  ASSERT_TRUE(sys.is_ok());
  RawPeer peer("tcp;ofi_rxm");  // a bare endpoint: no system key
  ASSERT_TRUE(peer.status.is_ok()) << peer.status.to_string();
  peer.rt.set_route(sys->rank, 0, sys->targets[0].fabric_addr);
  auto ask = [&](Message m) {
    return run_on(peer.target, [&] { return peer.rt.ask(std::move(m), std::chrono::seconds(10)); });
  };
  for (uint16_t method : {proto::kObjAggregate, proto::kObjCheckpoint, proto::kObjRebuildPush,
                          proto::kObjShardFetch, proto::kObjScrub}) {
    Message m;
    m.dst = ActorAddr{sys->rank, 0, proto::kObjectServiceActor};
    m.protocol = proto::kProtoObject;
    m.method = method;
    uint64_t zero = 0;
    m.body = Buffer(&zero, sizeof(zero));
    auto r = ask(std::move(m));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, Errc::unauthenticated) << "method " << method << ": " << r->error;
  }
  const uint64_t far_future = ~0ull - (1ull << 32);  // centuries ahead (core/env.hpp)
  for (auto [replica, epoch] :
       {std::pair{true, uint64_t{0}}, std::pair{true, far_future}, std::pair{false, far_future}}) {
    auto r = ask(scratch_update(sys->rank, replica, epoch, "forged"));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, Errc::unauthenticated) << replica << " " << epoch << ": " << r->error;
  }
  // Failure detection is spoken among engines only.
  Message ping;
  ping.dst = ActorAddr{sys->rank, 0, proto::kSwimActor};
  ping.protocol = proto::kProtoSwim;
  ping.method = proto::kSwimPing;
  auto pr = ask(std::move(ping));
  ASSERT_TRUE(pr.is_ok());
  EXPECT_EQ(pr->status, Errc::unauthenticated) << pr->error;

  // Nothing was stored, the target's clock was not pushed ahead, and the engine serves.
  ClientOptions co;
  co.engine = s.addr();
  auto c = Client::connect(co);
  ASSERT_TRUE(c.is_ok());
  auto f = (*c)->fetch({0, 99}, "d", "forged", ValueKind::single);
  EXPECT_FALSE(f.is_ok() && f->exists) << "a forged write was stored";
  std::string v = "honest";
  auto e = (*c)->update({0, 99}, "d", "honest", ValueKind::single, 0,
                        {reinterpret_cast<const uint8_t*>(v.data()), v.size()});
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_LT(*e, far_future);
  EXPECT_TRUE(s.engine->alive());
}

namespace {
// An update presenting container handle `h`, to rank 0 target 0 (the only target of a
// one-target engine, so every object lives there).
Message handle_update(const mgmt::HandleView& h, const std::string& akey) {
  const ObjectId oid = placement::with_class({0, 7}, placement::find_class("S1")->id);
  return update_msg(0, oid, akey, "value", [&](schema::UpdateReq::Builder req) {
    auto ctx = req.initCtx();
    ctx.setPool(h.pool.pool.id);
    ctx.setMapVersion(h.pool.pool.map.version);
    ctx.setHandle(h.cookie);
    ctx.setCont(h.cont.c.id);
  });
}
}  // namespace

// A container handle is a capability the engines check on every I/O: once closed, evicted,
// no longer granted by the ACL, or its container destroyed, an engine that had cached it
// refuses it (the service tells the engines; an engine that missed that asks again within its
// re-check interval). Operators see a handle's public id, never the cookie that grants I/O.
TEST(Security, HandlesAreRevokedOnCloseEvictionAclChangeAndContainerDestroy) {
  SecureEngine s(1);
  MgmtClient admin(s.addr());
  ASSERT_TRUE(admin.pool_create("tank", 64ull << 20));
  ASSERT_TRUE(admin.cont_create("tank", cont_props("c", "S1", 0)));
  mgmt::Cred alice;
  alice.uid = alice.gid = 4321;
  alice.user = "alice";
  MgmtClient as_alice(s.addr(), std::chrono::milliseconds(30000), alice);
  AclChange pool_read, cont_rw, cont_forget;
  pool_read.set.push_back({mgmt::Principal::user, 4321, "4321", mgmt::kRead});
  cont_rw.set.push_back({mgmt::Principal::user, 4321, "4321", mgmt::kRead | mgmt::kWrite});
  cont_forget.remove.push_back({mgmt::Principal::user, 4321, "4321", 0});
  ASSERT_TRUE(admin.update_acl("tank", "", pool_read));
  ASSERT_TRUE(admin.update_acl("tank", "c", cont_rw));

  RawPeer peer("tcp;ofi_rxm");  // the client: no system key
  ASSERT_TRUE(peer.status.is_ok()) << peer.status.to_string();
  auto pv = admin.pool_query("tank");
  ASSERT_TRUE(pv);
  mgmt::learn_view(peer.rt, *pv);
  int n = 0;
  auto io = [&](const mgmt::HandleView& h) {
    auto r = run_on(peer.target, [&] {
      return peer.rt.ask(handle_update(h, "k" + std::to_string(n++)), std::chrono::seconds(30));
    });
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r ? r->status : Errc::internal;
  };
  // The engine refuses the handle from now on (the revocation travels asynchronously).
  auto refused = [&](const mgmt::HandleView& h) {
    for (int i = 0; i < 600; ++i) {  // a backstop only: refused within the re-check interval
      if (io(h) == Errc::permission) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  auto open = [&](const char* cont = "c") {
    auto h = as_alice.cont_open("tank", cont, true);
    EXPECT_TRUE(h) << h.status().to_string();
    return h ? *h : mgmt::HandleView{};
  };

  // Closed by its holder.
  auto h = open();
  ASSERT_EQ(io(h), Errc::ok);
  ASSERT_TRUE(as_alice.cont_close(h.pool.pool.id, h.cookie).is_ok());
  EXPECT_TRUE(refused(h)) << "a closed handle still writes";

  // Evicted by an administrator, named by its public id (never by the cookie).
  h = open();
  ASSERT_EQ(io(h), Errc::ok);
  auto q = admin.cont_query("tank", "c");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->handles.size(), 1u);
  EXPECT_NE(q->handles[0].id, 0u);
  EXPECT_NE(q->handles[0].id, h.cookie) << "cont query shows the capability";
  EXPECT_EQ(q->handles[0].cookie, 0u);
  EXPECT_EQ(as_alice.pool_evict("tank", "", q->handles[0].id).status().code(), Errc::permission);
  EXPECT_EQ(admin.pool_evict("tank", "", q->handles[0].id + 1).status().code(), Errc::not_found);
  auto ev = admin.pool_evict("tank", "", q->handles[0].id);
  ASSERT_TRUE(ev) << ev.status().to_string();
  EXPECT_EQ(*ev, 1u);
  EXPECT_TRUE(refused(h)) << "an evicted handle still writes";

  // The ACL entry that granted it is removed.
  h = open();
  ASSERT_EQ(io(h), Errc::ok);
  ASSERT_TRUE(admin.update_acl("tank", "c", cont_forget));
  // Closed by the service before it answers the ACL change (not later, by the lease).
  q = admin.cont_query("tank", "c");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->open_handles, 0u) << "the ACL change left the handle open";
  EXPECT_TRUE(refused(h)) << "a handle the ACL no longer grants still writes";

  // Its container is destroyed (forced, with the handle open).
  ASSERT_TRUE(admin.update_acl("tank", "c", cont_rw));
  h = open();
  ASSERT_EQ(io(h), Errc::ok);
  ASSERT_TRUE(admin.cont_destroy("tank", "c", true).is_ok());
  EXPECT_TRUE(refused(h)) << "a handle of a destroyed container still writes";

  // A guessed cookie is refused too, and the engine serves on.
  ASSERT_TRUE(admin.cont_create("tank", cont_props("c2", "S1", 0)));
  EXPECT_EQ(as_alice.cont_open("tank", "c2", true).status().code(), Errc::permission);
  ASSERT_TRUE(admin.update_acl("tank", "c2", cont_rw));
  h = open("c2");
  ASSERT_EQ(io(h), Errc::ok);
  mgmt::HandleView guess = h;
  guess.cookie ^= 1;
  EXPECT_EQ(io(guess), Errc::permission);
  EXPECT_TRUE(s.engine->alive());
}

// Closes from many clients at once: the service gathers the revocations by engine and sends
// them together (one connection per engine and round, not one per engine and close), and
// every closed handle reaches the engine: its log counts every revoked cookie.
TEST(Security, ConcurrentClosesAreAllRevokedOnTheEngines) {
  SecureEngine s(1);
  MgmtClient admin(s.addr());
  ASSERT_TRUE(admin.pool_create("tank", 64ull << 20));
  ASSERT_TRUE(admin.cont_create("tank", cont_props("c", "S1", 0)));
  constexpr int kThreads = 8, kEach = 8;
  std::vector<mgmt::HandleView> handles;
  for (int i = 0; i < kThreads * kEach; ++i) {
    auto h = admin.cont_open("tank", "c", true);
    ASSERT_TRUE(h) << h.status().to_string();
    handles.push_back(*h);
  }
  std::vector<std::thread> closers;
  std::atomic<int> failed{0};
  for (int t = 0; t < kThreads; ++t) {
    closers.emplace_back([&, t] {
      MgmtClient c(s.addr());
      for (int i = 0; i < kEach; ++i) {
        const auto& h = handles[static_cast<size_t>(t * kEach + i)];
        if (!c.cont_close(h.pool.pool.id, h.cookie).is_ok()) ++failed;
      }
    });
  }
  for (auto& t : closers) t.join();
  ASSERT_EQ(failed.load(), 0);
  // "pool P: N container handle(s) revoked", once per request the engine took.
  auto revoked = [&](int* requests) {
    static const std::regex line(R"(pool \d+: (\d+) container handle\(s\) revoked)");
    const std::string log = s.engine->log();
    int total = 0;
    *requests = 0;
    for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
      total += std::stoi((*it)[1].str());
      ++*requests;
    }
    return total;
  };
  int requests = 0;
  EXPECT_TRUE(
      eventually([&] { return revoked(&requests) >= kThreads * kEach; }, std::chrono::seconds(60)))
      << "revoked " << revoked(&requests) << " of " << kThreads * kEach << " closed handles";
  EXPECT_EQ(revoked(&requests), kThreads * kEach) << "a handle was revoked twice";
  EXPECT_LE(requests, kThreads * kEach);
  std::printf("%d closes revoked in %d engine requests\n", kThreads * kEach, requests);
  EXPECT_TRUE(s.engine->alive());
}
