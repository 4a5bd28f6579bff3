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
      storage::UpdateOptions uo;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::UpdateReq>();
        k = key_of(req);
        kind = kind_of(req.getKind());
        offset = req.getOffset();
        crc = req.getCrc();
        if (req.getCond() > 2) return Status(Errc::protocol, "unknown update condition");
        uo.cond = static_cast<Cond>(req.getCond());
        uo.rsize = req.getRsize();
        uo.epoch = req.getEpoch();
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.update(k.oid, k.dkey, k.akey, kind, offset, m.bulk.span(), crc, uo);
      if (!r) return r.status();
      return rt_.reply(m, Status(), epoch_body(*r));
    }

    case proto::kObjFetch: {
      Key k;
      storage::ValueKind kind;
      uint64_t offset, length, epoch;
      storage::FetchOptions fo;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::FetchReq>();
        k = key_of(req);
        kind = kind_of(req.getKind());
        offset = req.getOffset();
        length = req.getLength();
        epoch = req.getEpoch();
        fo.must_exist = req.getMustExist();
        fo.rsize = req.getRsize();
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.fetch(k.oid, k.dkey, k.akey, kind, offset, length, epoch, fo);
      if (!r) return r.status();
      capnp::MallocMessageBuilder b(256);
      auto rep = b.initRoot<schema::FetchRep>();
      rep.setSize(r->size);
      rep.setEpoch(r->epoch);
      rep.setExists(r->exists);
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
      uint64_t offset, length;
      uint32_t rsize;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::PunchReq>();
        k = key_of(req);
        offset = req.getOffset();
        length = req.getLength();
        rsize = req.getRsize();
        if (ds.failed()) return malformed(ds);
      }
      auto r = length == 0 ? store_.punch(k.oid, k.dkey, k.akey)
                           : store_.punch_range(k.oid, k.dkey, k.akey, offset, length, rsize);
      if (!r) return r.status();
      return rt_.reply(m, Status(), epoch_body(*r));
    }

    case proto::kObjList: {
      storage::ListScope scope = storage::ListScope::objects;
      storage::ObjectId oid;
      std::string dkey, akey, anchor;
      uint32_t limit;
      uint64_t epoch;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::ListReq>();
        if (req.getScope() == schema::ListReq::Scope::DKEYS) scope = storage::ListScope::dkeys;
        if (req.getScope() == schema::ListReq::Scope::AKEYS) scope = storage::ListScope::akeys;
        if (req.getScope() == schema::ListReq::Scope::RECX) scope = storage::ListScope::recx;
        oid = oid_of(req.getOid());
        dkey = from_data(req.getDkey());
        akey = from_data(req.getAkey());
        anchor = from_data(req.getAnchor());
        limit = std::min<uint32_t>(req.getLimit(), 10000);
        epoch = req.getEpoch();
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.list(scope, oid, dkey, akey, anchor, limit, epoch);
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
        keys[i].setOffset(e.offset);
        keys[i].setLength(e.length);
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
      rep.setCheckpointBytes(s.checkpoint_bytes);
      rep.setPendingFree(s.pending_free);
      rep.setVersions(s.versions);
      rep.setCheckpoints(s.checkpoints);
      rep.setAggregations(s.aggregations);
      rep.setAggregationEpoch(s.aggregation_epoch);
      rep.setRecoveryMs(s.recovery_ms);
      rep.setReserve(s.reserve);
      return rt_.reply(m, Status(), capn::to_body(b));
    }

    case proto::kObjQueryMax: {
      Key k;
      uint64_t epoch;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::QueryMaxReq>();
        k = key_of(req);
        epoch = req.getEpoch();
        if (ds.failed()) return malformed(ds);
      }
      capnp::MallocMessageBuilder b(128);
      auto rep = b.initRoot<schema::QueryMaxRep>();
      if (k.dkey.empty()) {
        auto r = store_.max_dkey(k.oid, epoch);
        if (!r && r.status().code() != Errc::not_found) return r.status();
        rep.setFound(r.is_ok());
        if (r) rep.setDkey(as_data(*r));
      } else {
        auto r = store_.max_recx(k.oid, k.dkey, k.akey, epoch);
        if (!r) return r.status();
        rep.setFound(*r != 0);
        rep.setRecxEnd(*r);
      }
      return rt_.reply(m, Status(), capn::to_body(b));
    }

    case proto::kObjAggregate: {
      uint64_t epoch;
      std::vector<uint64_t> prot;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::AggregateReq>();
        epoch = req.getEpoch();
        for (uint64_t e : req.getProtected()) prot.push_back(e);
        if (ds.failed()) return malformed(ds);
      }
      auto r = store_.aggregate(epoch, std::move(prot));
      if (!r) return r.status();
      capnp::MallocMessageBuilder b(128);
      auto rep = b.initRoot<schema::AggregateRep>();
      rep.setEpoch(r->epoch);
      rep.setAkeysScanned(r->akeys_scanned);
      rep.setVersionsDropped(r->versions_dropped);
      rep.setVersionsTrimmed(r->versions_trimmed);
      rep.setPunchesDropped(r->punches_dropped);
      rep.setKeysRemoved(r->keys_removed);
      rep.setBytesFreed(r->bytes_freed);
      return rt_.reply(m, Status(), capn::to_body(b));
    }

    case proto::kObjCheckpoint:
      TESSERA_TRY(store_.checkpoint());
      return rt_.reply(m, Status());
  }
  return Status(Errc::protocol, fmt::format("unknown object method {}", m.method));
}

}  // namespace tessera
