// The consistency check of a container (`tessera cont check`, rebuild/check.hpp) over real
// engines: copies made to disagree on purpose, as engine faults would leave them (a replica
// given a change the others never got, a replica that lost a value, an erasure-coded stripe
// whose parity disagrees with its data though every cell passes its own checksum), are found,
// named, and with `repair` rewritten from the good copies; the data then reads back as written,
// degraded reads of the stripe included.
#include <gtest/gtest.h>

#include <random>

#include "actors/object_service_util.hpp"
#include "client/container.hpp"
#include "core/checksum.hpp"
#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "security/system_key.hpp"
#include "tests/integration/local_cluster.hpp"
#include "tests/integration/raw_peer.hpp"
#include "tests/test_util.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

constexpr uint64_t kCell = 4096;

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

struct CheckSystem {
  TempDir dir;
  std::unique_ptr<LocalSystem> sys;
  std::unique_ptr<MgmtClient> mc;
  std::unique_ptr<Client> client;
  std::unique_ptr<Container> rp, ec;
};

void start(CheckSystem& h) {
  h.sys = std::make_unique<LocalSystem>(h.dir.path(), 4, 1);
  ASSERT_TRUE(h.sys->wait_joined(4));
  h.mc = std::make_unique<MgmtClient>(h.sys->mgmt());
  ASSERT_TRUE(h.mc->pool_create("tank", 4 * (64ull << 20)));
  ASSERT_TRUE(h.mc->cont_create("tank", cont_props("rp", "RP_3GX", 2)));
  ASSERT_TRUE(
      h.mc->cont_create("tank", cont_props("ec", "EC_2P1G1", 1, mgmt::ContType::array, kCell)));
  ClientOptions co;
  co.engine = h.sys->mgmt();
  co.timeout = std::chrono::milliseconds(20000);
  auto client = Client::connect_system(co);
  ASSERT_TRUE(client) << client.status().to_string();
  h.client = std::move(*client);
  for (auto [name, c] : {std::pair{"rp", &h.rp}, {"ec", &h.ec}}) {
    auto o = h.client->open_container("tank", name, true);
    ASSERT_TRUE(o) << o.status().to_string();
    *c = std::move(*o);
  }
}

// The whole container's check, summed over the targets (every one must answer).
CheckInfo check(CheckSystem& h, Container& c, bool repair) {
  auto v = h.mc->pool_query("tank");
  EXPECT_TRUE(v) << v.status().to_string();
  CheckInfo sum;
  if (!v) return sum;
  for (auto& r : h.client->cont_check(*v, c.handle().cont.c.id, repair, 1.0,
                                      std::chrono::minutes(5), {})) {
    EXPECT_TRUE(r.answer) << "rank " << r.rank << " target " << r.target << ": "
                          << r.answer.status().to_string();
    if (!r.answer) continue;
    sum.dkeys += r.answer->dkeys;
    sum.compared += r.answer->compared;
    sum.stripes += r.answer->stripes;
    sum.inconsistent += r.answer->inconsistent;
    sum.fixed += r.answer->fixed;
    sum.unchecked += r.answer->unchecked;
    sum.damaged += r.answer->damaged;
    for (auto& f : r.answer->findings) sum.findings.push_back(f);
  }
  return sum;
}

// Sends `m` as an engine (the raw peer holds the engines' key) and checks the answer.
Status send(RawPeer& peer, Message m) {
  auto r = run_on(peer.target, [&] { return peer.rt.ask(std::move(m), std::chrono::seconds(20)); });
  if (!r) return r.status();
  return r->status == Errc::ok ? Status() : Status(r->status, r->error);
}

Message to(const placement::Shard& at, uint16_t method, Buffer body, Buffer bulk = {}) {
  Message m;
  m.dst = ActorAddr{at.rank, static_cast<uint16_t>(at.target), proto::kObjectServiceActor};
  m.protocol = proto::kProtoObject;
  m.method = method;
  m.body = std::move(body);
  m.bulk = std::move(bulk);
  return m;
}

void set_ctx(schema::IoCtx::Builder ctx, const mgmt::HandleView& h) {
  ctx.setPool(h.pool.pool.id);
  ctx.setMapVersion(h.pool.pool.map.version);
  ctx.setHandle(h.cookie);
  ctx.setCont(h.cont.c.id);
  ctx.setReplica(true);  // as a leader forwards it: applied there only
}

// A change one replica gets and the others never do (what an engine fault could leave).
Status replica_update(RawPeer& peer, const Container& c, const placement::Shard& at, ObjectId oid,
                      const std::string& dkey, const std::string& akey, const std::string& value,
                      uint64_t epoch) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::UpdateReq>();
  req.initOid().setHi(oid.hi);
  req.getOid().setLo(oid.lo);
  req.setDkey(capn::as_data(dkey));
  req.setAkey(capn::as_data(akey));
  req.setKind(schema::ValueKind::SINGLE);
  req.setCrc(crc32c(value));
  req.setEpoch(epoch);
  set_ctx(req.initCtx(), c.handle());
  return send(peer, to(at, proto::kObjUpdate, capn::to_body(b), Buffer(value.data(), value.size())));
}

Status replica_punch(RawPeer& peer, const Container& c, const placement::Shard& at, ObjectId oid,
                     const std::string& dkey, const std::string& akey, uint64_t epoch) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::PunchReq>();
  req.initOid().setHi(oid.hi);
  req.getOid().setLo(oid.lo);
  req.setDkey(capn::as_data(dkey));
  req.setAkey(capn::as_data(akey));
  req.setEpoch(epoch);
  set_ctx(req.initCtx(), c.handle());
  return send(peer, to(at, proto::kObjPunch, capn::to_body(b)));
}

// A raw peer that speaks as an engine (it holds the engines' key) and routes to the pool's.
std::unique_ptr<RawPeer> engine_peer(const mgmt::PoolView& v) {
  auto key = security::SystemKey::load(test_system_key());
  EXPECT_TRUE(key.is_ok()) << key.status().to_string();
  if (!key.is_ok()) return nullptr;
  auto peer = std::make_unique<RawPeer>(v.provider, *key);
  EXPECT_TRUE(peer->status.is_ok()) << peer->status.to_string();
  if (!peer->status.is_ok()) return nullptr;
  mgmt::learn_view(peer->rt, v);
  return peer;
}

std::string all_findings(const CheckInfo& c) {
  std::string s;
  for (const auto& f : c.findings) s += "\n  dkey '" + f.dkey + "' akey '" + f.akey + "': " + f.what;
  return s;
}

}  // namespace

TEST(Check, DivergedCopiesAreFoundAndRepairedFromTheGoodOnes) {
  CheckSystem h;
  ASSERT_NO_FATAL_FAILURE(start(h));
  std::mt19937_64 rng(7);

  // Replicated: 12 objects, a single value and an array each.
  std::vector<ObjectId> oids;
  uint64_t epoch = 0;
  for (uint64_t i = 0; i < 12; ++i) {
    auto oid = h.rp->make_oid(1, i);
    ASSERT_TRUE(oid);
    oids.push_back(*oid);
    auto e = h.rp->update(*oid, "d", "a", ValueKind::single, 0,
                          bytes("value " + std::to_string(i)));
    ASSERT_TRUE(e) << e.status().to_string();
    auto e2 = h.rp->update(*oid, "d", "arr", ValueKind::array, 100, bytes(random_bytes(rng, 9000)));
    ASSERT_TRUE(e2) << e2.status().to_string();
    epoch = std::max(*e, *e2);
  }
  // Erasure-coded: one object written as full stripes by the client, one written below.
  auto ec_good = h.ec->make_oid(2, 1);
  ASSERT_TRUE(ec_good);
  const std::string good_data = random_bytes(rng, 4 * 2 * kCell);
  ASSERT_TRUE(h.ec->update(*ec_good, "d", "data", ValueKind::array, 0, bytes(good_data)));

  CheckInfo clean = check(h, *h.rp, false);
  EXPECT_EQ(clean.inconsistent, 0u) << all_findings(clean);
  EXPECT_EQ(clean.compared, 24u) << "every akey of every object compared once";
  EXPECT_EQ(clean.unchecked, 0u);
  CheckInfo ec_clean = check(h, *h.ec, false);
  EXPECT_EQ(ec_clean.inconsistent, 0u) << all_findings(ec_clean);
  EXPECT_EQ(ec_clean.stripes, 4u);

  auto v = h.mc->pool_query("tank");
  ASSERT_TRUE(v) << v.status().to_string();
  auto raw = engine_peer(*v);
  ASSERT_TRUE(raw);
  RawPeer& peer = *raw;

  // Object 3: its second replica gets a value the others never got; object 5: its third
  // replica loses its value.
  auto place3 = placement::place(oids[3], v->pool.map);
  auto place5 = placement::place(oids[5], v->pool.map);
  ASSERT_TRUE(place3 && place5);
  const auto pos3 = place3->dkey("d");
  const auto pos5 = place5->dkey("d");
  ASSERT_EQ(pos3.size(), 3u);
  Status st = replica_update(peer, *h.rp, pos3[1].home, oids[3], "d", "a", "evil", epoch + 1000);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  st = replica_punch(peer, *h.rp, pos5[2].home, oids[5], "d", "a", epoch + 2000);
  ASSERT_TRUE(st.is_ok()) << st.to_string();

  // Erasure coding: a stripe whose parity disagrees with its data, every cell of one epoch and
  // passing its own checksum (written as an engine re-encoding it would).
  auto ec_bad = h.ec->make_oid(2, 2);
  ASSERT_TRUE(ec_bad);
  auto ec_epoch = h.ec->update(*ec_bad, "other", "x", ValueKind::array, 0, bytes("x"));
  ASSERT_TRUE(ec_epoch) << ec_epoch.status().to_string();
  const auto g = placement::ec_geometry(2, 1, kCell, "d");
  const std::string data = random_bytes(rng, 2 * kCell);
  std::vector<std::string> cells(g.n(), std::string(kCell, '\0'));
  std::vector<const uint8_t*> d;
  for (uint32_t j = 0; j < g.k; ++j) {
    cells[j] = data.substr(j * kCell, kCell);
    d.push_back(reinterpret_cast<const uint8_t*>(cells[j].data()));
  }
  std::vector<uint8_t*> p{reinterpret_cast<uint8_t*>(cells[g.k].data())};
  placement::erasure_code(g.k, g.p).encode(kCell, d, p);
  std::string sums(placement::ec_sum_size(g.k), '\0');
  placement::ec_stripe_sums(kCell, d, reinterpret_cast<uint8_t*>(sums.data()));
  cells[g.k][77] ^= 0x3c;  // the parity is wrong
  auto place_ec = placement::place(*ec_bad, v->pool.map);
  ASSERT_TRUE(place_ec);
  const auto pos_ec = place_ec->dkey("d");
  const ObjectId ec_key = objsvc::store_key(*ec_bad, h.ec->handle().cont.c.id);
  std::vector<RawPiece> ec_pieces;
  for (uint32_t ci = 0; ci < g.n(); ++ci) {
    const uint32_t at = ci < g.k ? g.data_pos(ci) : g.parity_pos(ci - g.k);
    ec_pieces.push_back({at, placement::ec_cell_akey("data", at), 0, cells[ci]});
    ec_pieces.push_back({at, placement::ec_sum_akey("data"), 0, sums});
  }
  st = raw_ec_update(peer, *v, pos_ec[0].home, ec_key, "d", ec_pieces, *ec_epoch + 1);
  ASSERT_TRUE(st.is_ok()) << st.to_string();

  // Found and named: which object, which akey, which copy.
  CheckInfo found = check(h, *h.rp, false);
  EXPECT_EQ(found.inconsistent, 2u) << all_findings(found);
  EXPECT_EQ(found.fixed, 0u);
  std::string text = all_findings(found);
  EXPECT_NE(text.find(fmt::format("rank {} target {} holds a 4-byte value", pos3[1].home.rank,
                                  pos3[1].home.target)),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(fmt::format("rank {} target {} holds nothing", pos5[2].home.rank,
                                  pos5[2].home.target)),
            std::string::npos)
      << text;
  CheckInfo ec_found = check(h, *h.ec, false);
  EXPECT_EQ(ec_found.inconsistent, 1u) << all_findings(ec_found);
  EXPECT_NE(all_findings(ec_found).find("parity cell 0"), std::string::npos)
      << all_findings(ec_found);

  // Repaired from the good copies (the majority; for the stripe, what its record vouches for).
  CheckInfo fixed = check(h, *h.rp, true);
  EXPECT_EQ(fixed.inconsistent, 2u) << all_findings(fixed);
  EXPECT_EQ(fixed.fixed, 2u) << all_findings(fixed);
  CheckInfo ec_fixed = check(h, *h.ec, true);
  EXPECT_EQ(ec_fixed.fixed, 1u) << all_findings(ec_fixed);

  CheckInfo after = check(h, *h.rp, false);
  EXPECT_EQ(after.inconsistent, 0u) << all_findings(after);
  CheckInfo ec_after = check(h, *h.ec, false);
  EXPECT_EQ(ec_after.inconsistent, 0u) << all_findings(ec_after);

  for (uint64_t i = 0; i < oids.size(); ++i) {
    auto r = h.rp->fetch(oids[i], "d", "a", ValueKind::single, 0, 0);
    ASSERT_TRUE(r) << r.status().to_string();
    EXPECT_EQ(r->data.view(), "value " + std::to_string(i));
  }
  // The stripe's parity is right again: with a data position's engine dead, its cell is
  // rebuilt from the other one and the parity, and reads back as written.
  uint32_t lost = g.data_pos(0);
  if (pos_ec[lost].home.rank == 0) lost = g.data_pos(1);
  ASSERT_NE(pos_ec[lost].home.rank, 0u);
  h.sys->engine(pos_ec[lost].home.rank).kill9();
  ASSERT_TRUE(wait_gone(*h.mc, {pos_ec[lost].home.rank}));
  auto c = h.client->open_container("tank", "ec", false);
  ASSERT_TRUE(c) << c.status().to_string();
  auto r = (*c)->fetch(*ec_bad, "d", "data", ValueKind::array, 0, 2 * kCell);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_TRUE(r->data.view() == data) << "the degraded read differs from what was written";
}

// The background scrubber (pool properties scrub, scrub_freq, scrub_share): a replica made to
// disagree is found and repaired without anyone asking, and the pool's counters say so.
TEST(Check, ScrubberRepairsInTheBackground) {
  CheckSystem h;
  ASSERT_NO_FATAL_FAILURE(start(h));
  uint64_t epoch = 0;
  std::vector<ObjectId> oids;
  for (uint64_t i = 0; i < 6; ++i) {
    auto oid = h.rp->make_oid(1, i);
    ASSERT_TRUE(oid);
    oids.push_back(*oid);
    auto e = h.rp->update(*oid, "d", "a", ValueKind::single, 0,
                          bytes("value " + std::to_string(i)));
    ASSERT_TRUE(e) << e.status().to_string();
    epoch = *e;
  }
  EXPECT_FALSE(h.mc->pool_set_prop("tank", "scrub", "sometimes").is_ok());
  EXPECT_FALSE(h.mc->pool_set_prop("tank", "scrub_freq", "0").is_ok());
  EXPECT_FALSE(h.mc->pool_set_prop("tank", "scrub_share", "101").is_ok());

  auto v = h.mc->pool_query("tank");
  ASSERT_TRUE(v) << v.status().to_string();
  auto raw = engine_peer(*v);
  ASSERT_TRUE(raw);
  RawPeer& peer = *raw;
  auto place = placement::place(oids[2], v->pool.map);
  ASSERT_TRUE(place);
  const auto pos = place->dkey("d");
  Status st = replica_update(peer, *h.rp, pos[2].home, oids[2], "d", "a", "evil", epoch + 1000);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  ASSERT_EQ(check(h, *h.rp, false).inconsistent, 1u);

  ASSERT_TRUE(h.mc->pool_set_prop("tank", "scrub_freq", "1").is_ok());
  ASSERT_TRUE(h.mc->pool_set_prop("tank", "scrub_share", "50").is_ok());
  ASSERT_TRUE(h.mc->pool_set_prop("tank", "scrub", "timed").is_ok());
  uint64_t fixed = 0, scrubs = 0;
  EXPECT_TRUE(eventually(
      [&] {
        auto now = h.mc->pool_query("tank");
        if (!now) return false;
        fixed = scrubs = 0;
        for (const auto& t : h.client->pool_space(*now)) {
          if (!t.stats) continue;
          fixed += t.stats->check_fixed;
          scrubs += t.stats->check_scrubs;
        }
        return fixed >= 1;
      },
      std::chrono::seconds(60)))
      << "the scrubber repaired nothing (" << scrubs << " passes)";
  EXPECT_GT(scrubs, 0u);
  CheckInfo after = check(h, *h.rp, false);
  EXPECT_EQ(after.inconsistent, 0u) << all_findings(after);
  auto r = h.rp->fetch(oids[2], "d", "a", ValueKind::single, 0, 0);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->data.view(), "value 2");
}
