// A bare fabric endpoint on its own target: lets a test speak raw frames and requests to
// engines, as a peer the engines do not know would (or, given the system key, as an engine). The
// runtime routes to the engines of a pool view the test teaches it (mgmt::learn_view).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/actor.hpp"
#include "core/checksum.hpp"
#include "mgmt/types.hpp"
#include "net/fabric.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "tests/test_util.hpp"

namespace tessera::testing {

struct RawPeer {
  // Without `key`, a stranger (a client at most); with the engines' system key, it speaks as
  // one of them (fault injection that needs engine-internal methods).
  explicit RawPeer(const std::string& provider,
                   std::shared_ptr<const security::SystemKey> key = {}) {
    EXPECT_TRUE(target.start().is_ok());
    status = run_on(target, [&] {
      net::FabricOptions fo;
      fo.provider = provider;
      fo.key = key;
      auto e = net::FabricEndpoint::open(fo, [this](Message&& m) { rt.deliver(std::move(m)); });
      if (!e) return e.status();
      ep = std::move(*e);
      target.add_poller(ep.get());
      rt.set_transport(ep.get());
      return Status();
    });
  }
  ~RawPeer() {
    target.stop();
    ep.reset();
  }
  Target target{RealEnv::instance(), TargetOptions{}};
  ActorRuntime rt{target, kClientRankBase | 77};
  std::unique_ptr<net::FabricEndpoint> ep;
  Status status;
};

// One internal erasure-coded update (as an engine re-encoding stripes sends): to the group's
// leader `leader` (position 0's home), which forwards each position its pieces inside one
// transaction; the pieces' bytes back to back in the bulk.
struct RawPiece {
  uint32_t pos;
  std::string akey;
  uint64_t offset;
  std::string bytes;
};
inline Status raw_ec_update(RawPeer& peer, const mgmt::PoolView& v, const placement::Shard& leader,
                            ObjectId key, const std::string& dkey,
                            const std::vector<RawPiece>& pieces, uint64_t epoch) {
  capnp::MallocMessageBuilder b(512);
  auto req = b.initRoot<schema::EcUpdateReq>();
  req.initOid().setHi(key.hi);
  req.getOid().setLo(key.lo);
  req.setDkey(capn::as_data(dkey));
  req.setEpoch(epoch);
  req.setInternal(true);
  auto ctx = req.initCtx();
  ctx.setPool(v.pool.id);
  ctx.setMapVersion(v.pool.map.version);
  auto list = req.initPieces(static_cast<unsigned>(pieces.size()));
  std::string bulk;
  for (size_t i = 0; i < pieces.size(); ++i) {
    auto w = list[static_cast<unsigned>(i)];
    w.setPos(pieces[i].pos);
    w.setAkey(capn::as_data(pieces[i].akey));
    w.setKind(schema::ValueKind::ARRAY);
    w.setOffset(pieces[i].offset);
    w.setLength(pieces[i].bytes.size());
    w.setBulkOffset(bulk.size());
    w.setCrc(crc32c(pieces[i].bytes));
    bulk += pieces[i].bytes;
  }
  Message m;
  m.dst = ActorAddr{leader.rank, static_cast<uint16_t>(leader.target), proto::kObjectServiceActor};
  m.protocol = proto::kProtoObject;
  m.method = proto::kObjEcUpdate;
  m.body = capn::to_body(b);
  m.bulk = Buffer(bulk.data(), bulk.size());
  auto r = run_on(peer.target, [&] { return peer.rt.ask(std::move(m), std::chrono::seconds(20)); });
  if (!r) return r.status();
  return r->status == Errc::ok ? Status() : Status(r->status, r->error);
}

}  // namespace tessera::testing
