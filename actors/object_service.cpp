#include "actors/object_service.hpp"

#include <isa-l/crc.h>

#include "actors/protocol.hpp"
#include "actors/schema/capnp_util.hpp"
#include "actors/schema/object.capnp.h"
#include "core/log.hpp"

namespace tessera {

using capn::as_data;
using capn::BodyReader;
using capn::from_data;

namespace {
storage::ObjectId oid_of(schema::ObjId::Reader r) {
  return {r.getHi(), r.getLo()};
}
storage::ValueKind kind_of(schema::ValueKind k) {
  return k == schema::ValueKind::ARRAY ? storage::ValueKind::array : storage::ValueKind::single;
}
}  // namespace

void ObjectService::receive(Message& m) {
  Status st;
  try {
    st = handle(m);
  } catch (const kj::Exception& e) {
    st = Status(Errc::protocol,
                fmt::format("malformed request body: {}", e.getDescription().cStr()));
  }
  if (!st.is_ok()) {
    ++rejected_;
    if (st.code() == Errc::protocol) log::warn("request rejected: {}", st.to_string());
    if (m.corr != 0) (void)rt_.reply(m, st);
  }
}

namespace {
// Every keyed request names (oid, dkey, akey) the same way.
struct Key {
  storage::ObjectId oid;
  std::string dkey;
  std::string akey;
};
template <typename Req>
Key key_of(Req req) {
  return {oid_of(req.getOid()), from_data(req.getDkey()), from_data(req.getAkey())};
}

// Update and punch both answer with the epoch they were stored at.
Buffer epoch_body(uint64_t epoch) {
  capnp::MallocMessageBuilder b(64);
  b.initRoot<schema::UpdateRep>().setEpoch(epoch);
  return capn::to_body(b);
}

Status malformed(const capn::DecodeScope& ds) {
  return Status(Errc::protocol, fmt::format("malformed request body: {}", ds.what()));
}
}  // namespace

Status ObjectService::handle(Message& m) {
  if (m.protocol != proto::kProtoObject) {
    return Status(Errc::protocol, fmt::format("object service got protocol {}", m.protocol));
  }
  // Each case decodes into plain values inside a DecodeScope (no suspension there), then runs.
  switch (m.method) {
    case proto::kObjPing:
      return rt_.reply(m, Status(), {}, std::move(m.bulk));

    case proto::kObjUpdate: {
      Key k;
      storage::ValueKind kind;
      uint64_t offset;
      uint32_t crc;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::UpdateReq>();
        k = key_of(req);
        kind = kind_of(req.getKind());
        offset = req.getOffset();
        crc = req.getCrc();
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.update(k.oid, k.dkey, k.akey, kind, offset, m.bulk.span(), crc);
      if (!r) return r.status();
      return rt_.reply(m, Status(), epoch_body(*r));
    }

    case proto::kObjFetch: {
      Key k;
      storage::ValueKind kind;
      uint64_t offset, length, epoch;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::FetchReq>();
        k = key_of(req);
        kind = kind_of(req.getKind());
        offset = req.getOffset();
        length = req.getLength();
        epoch = req.getEpoch();
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.fetch(k.oid, k.dkey, k.akey, kind, offset, length, epoch);
      if (!r) return r.status();
      capnp::MallocMessageBuilder b(256);
      auto rep = b.initRoot<schema::FetchRep>();
      rep.setSize(r->size);
      rep.setEpoch(r->epoch);
      rep.setCrc(crc32_iscsi(r->data.data(), static_cast<int>(r->data.size()), 0));
      auto holes = rep.initHoles(static_cast<unsigned>(r->holes.size()));
      for (size_t i = 0; i < r->holes.size(); ++i) {
        holes[i].setOffset(r->holes[i].first);
        holes[i].setLength(r->holes[i].second);
      }
      return rt_.reply(m, Status(), capn::to_body(b), std::move(r->data));
    }

    case proto::kObjPunch: {
      Key k;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        k = key_of(br.root<schema::PunchReq>());
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.punch(k.oid, k.dkey, k.akey);
      if (!r) return r.status();
      return rt_.reply(m, Status(), epoch_body(*r));
    }

    case proto::kObjList: {
      storage::ListScope scope = storage::ListScope::objects;
      storage::ObjectId oid;
      std::string dkey, anchor;
      uint32_t limit;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::ListReq>();
        if (req.getScope() == schema::ListReq::Scope::DKEYS) scope = storage::ListScope::dkeys;
        if (req.getScope() == schema::ListReq::Scope::AKEYS) scope = storage::ListScope::akeys;
        oid = oid_of(req.getOid());
        dkey = from_data(req.getDkey());
        anchor = from_data(req.getAnchor());
        limit = std::min<uint32_t>(req.getLimit(), 10000);
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.list(scope, oid, dkey, anchor, limit);
      if (!r) return r.status();
      capnp::MallocMessageBuilder b(1024);
      auto rep = b.initRoot<schema::ListRep>();
      auto keys = rep.initKeys(static_cast<unsigned>(r->entries.size()));
      for (size_t i = 0; i < r->entries.size(); ++i) {
        const auto& e = r->entries[i];
        keys[i].setKey(as_data(e.key));
        keys[i].initOid().setHi(e.oid.hi);
        keys[i].getOid().setLo(e.oid.lo);
        keys[i].setKind(e.kind == storage::ValueKind::array ? schema::ValueKind::ARRAY
                                                            : schema::ValueKind::SINGLE);
        keys[i].setSize(e.size);
      }
      rep.setAnchor(as_data(r->anchor));
      rep.setDone(r->done);
      return rt_.reply(m, Status(), capn::to_body(b));
    }

    case proto::kObjStats: {
      auto s = store_.stats();
      capnp::MallocMessageBuilder b(128);
      auto rep = b.initRoot<schema::TargetStatsRep>();
      rep.setCapacity(s.capacity);
      rep.setUsed(s.used);
      rep.setWalUsed(s.wal_used);
      rep.setWalCapacity(s.wal_capacity);
      rep.setObjects(s.objects);
      rep.setUpdates(s.updates);
      rep.setFetches(s.fetches);
      rep.setBackend(backend_);
      return rt_.reply(m, Status(), capn::to_body(b));
    }
  }
  return Status(Errc::protocol, fmt::format("unknown object method {}", m.method));
}

}  // namespace tessera
