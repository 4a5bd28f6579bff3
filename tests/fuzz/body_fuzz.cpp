// Fuzz target: every message body schema (proto/*.capnp), read as the services read them.
// The first input byte picks the schema, the rest is the body. The body is parsed with the
// reader options every service uses (capn::BodyReader: traversal and nesting limits) inside a
// DecodeScope, and every field is visited (Cap'n Proto's dynamic reflection), so each pointer,
// list and text the schema has is validated as a handler reading it would.
#include <capnp/dynamic.h>
#include <capnp/schema.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>

#include "proto/auth.capnp.h"
#include "proto/capnp_util.hpp"
#include "proto/envelope.capnp.h"
#include "proto/mgmt.capnp.h"
#include "proto/object.capnp.h"
#include "proto/swim.capnp.h"
#include "proto/system.capnp.h"
#include "tests/fuzz/fuzz_target.hpp"

using namespace tessera;

namespace {
uint64_t g_sink = 0;  // keeps the visited bytes observable

void visit(capnp::DynamicValue::Reader v);

void visit_struct(capnp::DynamicStruct::Reader s) {
  for (auto f : s.getSchema().getFields()) {
    if (!s.has(f)) continue;  // inactive union members and null pointers
    visit(s.get(f));
  }
}

void visit(capnp::DynamicValue::Reader v) {
  switch (v.getType()) {
    case capnp::DynamicValue::STRUCT:
      visit_struct(v.as<capnp::DynamicStruct>());
      break;
    case capnp::DynamicValue::LIST:
      for (auto e : v.as<capnp::DynamicList>()) visit(e);
      break;
    case capnp::DynamicValue::TEXT:
      for (char c : v.as<capnp::Text>()) g_sink += static_cast<uint8_t>(c);
      break;
    case capnp::DynamicValue::DATA:
      for (auto b : v.as<capnp::Data>()) g_sink += b;
      break;
    case capnp::DynamicValue::UINT:
      g_sink += v.as<uint64_t>();
      break;
    case capnp::DynamicValue::INT:
      g_sink += static_cast<uint64_t>(v.as<int64_t>());
      break;
    default:
      break;
  }
}

struct Schema {
  const char* name;
  std::function<void(capn::BodyReader&)> read;
  std::function<Buffer()> sample;  // a valid body (seed)
};

template <typename T>
Schema schema_of(const char* name, std::function<void(typename T::Builder)> fill) {
  return Schema{name,
                [](capn::BodyReader& r) { visit_struct(capnp::toDynamic(r.root<T>())); },
                [fill] {
                  capnp::MallocMessageBuilder b(256);
                  fill(b.initRoot<T>());
                  return capn::to_body(b);
                }};
}

const std::vector<Schema>& schemas() {
  static const std::vector<Schema> all = [] {
    std::vector<Schema> v;
    auto ctx = [](schema::IoCtx::Builder c) {
      c.setPool(1);
      c.setMapVersion(3);
      c.setHandle(0x1234);
      c.setCont(2);
    };
    v.push_back(schema_of<schema::UpdateReq>("UpdateReq", [&](auto r) {
      r.initOid().setLo(5);
      r.setDkey(capn::as_data("dkey"));
      r.setAkey(capn::as_data("akey"));
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::FetchReq>("FetchReq", [&](auto r) {
      r.initOid().setLo(5);
      r.setDkey(capn::as_data("dkey"));
      r.setAkey(capn::as_data("akey"));
      r.setLength(100);
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::FetchRep>("FetchRep", [](auto r) {
      r.setExists(true);
      r.initHoles(2)[1].setLength(9);
    }));
    v.push_back(schema_of<schema::PunchReq>("PunchReq", [&](auto r) {
      r.initOid().setLo(5);
      r.setDkey(capn::as_data("dkey"));
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::EcUpdateReq>("EcUpdateReq", [&](auto r) {
      r.initOid().setLo(5);
      r.setDkey(capn::as_data("dkey"));
      auto p = r.initPieces(2);
      p[0].setAkey(capn::as_data("cell"));
      p[1].setLength(4096);
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::ListReq>("ListReq", [&](auto r) {
      r.initOid().setLo(5);
      r.setAnchor(capn::as_data("anchor"));
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::ListRep>("ListRep", [](auto r) {
      auto e = r.initKeys(2);
      e[0].setKey(capn::as_data("k0"));
      r.setAnchor(capn::as_data("a"));
    }));
    v.push_back(schema_of<schema::UpdateRep>("UpdateRep", [](auto r) { r.setEpoch(9); }));
    v.push_back(schema_of<schema::StatsReq>("StatsReq", [&](auto r) { ctx(r.initCtx()); }));
    v.push_back(
        schema_of<schema::TargetStatsRep>("TargetStatsRep", [](auto r) { r.setBackend("uring"); }));
    v.push_back(schema_of<schema::ScrubReq>("ScrubReq", [&](auto r) { ctx(r.initCtx()); }));
    v.push_back(schema_of<schema::ScrubRep>("ScrubRep", [](auto r) { r.setLastError("e"); }));
    v.push_back(schema_of<schema::QueryMaxReq>("QueryMaxReq", [&](auto r) {
      r.initOid().setLo(5);
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::QueryMaxRep>("QueryMaxRep", [](auto r) { r.setFound(true); }));
    v.push_back(schema_of<schema::AggregateReq>("AggregateReq", [&](auto r) {
      r.initProtected(2);
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::AggregateRep>("AggregateRep", [](auto r) { r.setEpoch(3); }));
    v.push_back(schema_of<schema::RebuildPush>("RebuildPush", [&](auto r) {
      r.initOid().setLo(5);
      r.setDkey(capn::as_data("dkey"));
      r.initVersions(2)[0].setEpoch(7);
      ctx(r.initCtx());
    }));
    v.push_back(schema_of<schema::MgmtReq>("MgmtReq", [](auto r) {
      r.initCred().setUid(1000);
      auto o = r.initContOpen();
      o.setPool("p");
      o.setCont("c");
    }));
    v.push_back(schema_of<schema::MgmtReq>("MgmtReq.updateAcl", [](auto r) {
      auto a = r.initUpdateAcl();
      a.setPool("p");
      a.initSet(1)[0].setName("alice");
    }));
    v.push_back(schema_of<schema::MgmtReq>("MgmtReq.join", [](auto r) {
      auto j = r.initJoin();
      j.setRank(3);
      j.initFabricAddrs(2).set(0, capn::as_data("addr"));
    }));
    v.push_back(schema_of<schema::MgmtRep>("MgmtRep", [](auto r) {
      auto p = r.initPool();
      p.setLabel("tank");
      p.initMap().initEngines(2)[0].initTargets(2);
      p.initContainers(1)[0].initHandles(1)[0].setHost("h");
    }));
    v.push_back(schema_of<schema::EngineReq>("EngineReq", [](auto r) {
      auto s = r.initPoolShardReset();
      s.initShard().setUuid("u");
      s.initTargets(2);
    }));
    v.push_back(schema_of<schema::EngineReq>("EngineReq.revoke", [](auto r) {
      r.initHandleRevoke().initCookies(3);
    }));
    v.push_back(schema_of<schema::SwimPing>("SwimPing", [](auto r) { r.initUpdates(2); }));
    v.push_back(schema_of<schema::SwimAck>("SwimAck", [](auto r) { r.initUpdates(1); }));
    v.push_back(schema_of<schema::SystemInfo>("SystemInfo", [](auto r) {
      r.initTargets(2)[0].setFabricAddr(capn::as_data("a"));
    }));
    v.push_back(schema_of<schema::Credential>("Credential", [](auto r) {
      r.setUid(1000);
      r.setNode("node-a");
      r.initGroups(2);
    }));
    v.push_back(schema_of<schema::SignedCredential>("SignedCredential", [](auto r) {
      r.setCredential(capn::as_data("cred"));
      r.setSignature(capn::as_data("sig"));
    }));
    v.push_back(schema_of<schema::Envelope>("Envelope", [](auto r) {
      r.setError("e");
      r.setReplyTo(capn::as_data("addr"));
    }));
    return v;
  }();
  return all;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& all = schemas();
  const Schema& s = all[data[0] % all.size()];
  // Bodies arrive as whole words (the frame checks their length is a multiple of 8).
  Buffer body(data + 1, (size - 1) / 8 * 8);
  try {
    capn::DecodeScope ds;
    capn::BodyReader r(body);
    s.read(r);
  } catch (const kj::Exception&) {
    // Refused as a service refuses it (a protocol error), not a crash.
  }
  return 0;
}

namespace tessera::fuzz {
std::vector<std::vector<uint8_t>> seeds() {
  std::vector<std::vector<uint8_t>> out;
  const auto& all = schemas();
  for (size_t i = 0; i < all.size(); ++i) {
    Buffer b = all[i].sample();
    std::vector<uint8_t> in{static_cast<uint8_t>(i)};
    in.insert(in.end(), b.data(), b.data() + b.size());
    out.push_back(std::move(in));
  }
  return out;
}
}  // namespace tessera::fuzz
