// Erasure-coded updates: the group's leader stamps one epoch and hands every available position
// its own pieces; a position applies its pieces at that epoch, all of them one distributed
// transaction. An engine's background re-encoding (`internal`) takes the same path with the
// epoch it read the copies at. docs/ERASURE_CODING.md.
#include <boost/fiber/future.hpp>

#include "actors/object_service.hpp"
#include "actors/object_service_util.hpp"
#include "core/crash_point.hpp"
#include "core/log.hpp"
#include "placement/layout.hpp"
#include "proto/protocol.hpp"

namespace tessera {

using namespace objsvc;
using capn::as_data;
using capn::BodyReader;
using capn::from_data;

namespace {

struct Piece {
  uint32_t pos = 0;
  std::string akey;
  storage::ValueKind kind = storage::ValueKind::array;
  bool punch = false;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t bulk_offset = 0;
  uint32_t crc = 0;
};

// An EcUpdateReq for one position: its pieces, their bytes packed into a new bulk.
std::pair<Buffer, Buffer> position_request(ObjectId oid, const std::string& dkey,
                                           const std::vector<const Piece*>& pieces, uint64_t epoch,
                                           const ObjectService::Ctx& ctx, bool internal,
                                           const Buffer& bulk, const storage::DtxId& id,
                                           const std::vector<uint64_t>& participants,
                                           const std::vector<storage::DtxId>& commits) {
  capnp::MallocMessageBuilder b(512);
  auto req = b.initRoot<schema::EcUpdateReq>();
  req.initOid().setHi(oid.hi);
  req.getOid().setLo(oid.lo);
  req.setDkey(as_data(dkey));
  req.setEpoch(epoch);
  req.setInternal(internal);
  auto c = req.initCtx();
  c.setPool(ctx.pool);
  c.setMapVersion(ctx.map_version);
  c.setHandle(ctx.handle);
  c.setCont(ctx.cont);
  c.setReplica(true);
  set_dtx(c, id, participants, commits);
  size_t bytes = 0;
  for (const Piece* p : pieces) bytes += p->punch ? 0 : p->length;
  Buffer out(bytes);
  auto list = req.initPieces(static_cast<unsigned>(pieces.size()));
  size_t at = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = *pieces[i];
    auto w = list[static_cast<unsigned>(i)];
    w.setPos(p.pos);
    w.setAkey(as_data(p.akey));
    w.setKind(p.kind == storage::ValueKind::array ? schema::ValueKind::ARRAY
                                                  : schema::ValueKind::SINGLE);
    w.setPunch(p.punch);
    w.setOffset(p.offset);
    w.setLength(p.length);
    w.setCrc(p.crc);
    if (!p.punch) {
      std::memcpy(out.data() + at, bulk.data() + p.bulk_offset, p.length);
      w.setBulkOffset(at);
      at += p.length;
    }
  }
  return {capn::to_body(b), std::move(out)};
}

}  // namespace

// An engine's re-encoding request addresses the shard directly (the oid is the store key) and
// only at the map version the target has: a leader or position that knows another map refuses
// it.
Result<ObjectService::Where> ObjectService::internal_where(const Ctx& ctx, ObjectId key) {
  auto sh = shard_for(ctx.pool, ctx.map_version);
  if (!sh) return sh.status();
  const uint32_t have = (*sh)->view ? (*sh)->view->pool.map.version : 0;
  if (have != ctx.map_version) {
    return Status(Errc::stale, fmt::format("re-encoding at pool map version {}; rank {} target {} "
                                           "has version {}",
                                           ctx.map_version, rank_, target_, have));
  }
  sh->admit(ctx.map_version);  // a rebuild scan on a newer map waits for it
  CsumType csum = CsumType::crc32c;
  for (const auto& c : (*sh)->view->conts) {
    if (c.c.id == cont_of(key)) csum = csum_of(c.c.props);
  }
  PoolShard* shard = sh->get();
  return Where{shard->store.get(), shard, key, csum, std::move(*sh)};
}

Status ObjectService::ec_update(Message& m) {
  ObjectId oid;
  std::string dkey;
  std::vector<Piece> pieces;
  uint64_t given_epoch = 0;
  bool internal = false;
  Ctx ctx;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::EcUpdateReq>();
    oid = oid_of(req.getOid());
    dkey = from_data(req.getDkey());
    given_epoch = req.getEpoch();
    ctx = ctx_of(req.getCtx());
    internal = req.getInternal();
    for (auto p : req.getPieces()) {
      Piece v;
      v.pos = p.getPos();
      v.akey = from_data(p.getAkey());
      v.kind = kind_of(p.getKind());
      v.punch = p.getPunch();
      v.offset = p.getOffset();
      v.length = p.getLength();
      v.bulk_offset = p.getBulkOffset();
      v.crc = p.getCrc();
      pieces.push_back(std::move(v));
    }
    if (ds.failed()) return malformed(ds);
  }
  TESSERA_TRY(client_may_write(m, ctx.replica || internal, given_epoch));
  for (const auto& p : pieces) {
    if (!p.punch && (p.bulk_offset > m.bulk.size() || p.length > m.bulk.size() - p.bulk_offset)) {
      return Status(Errc::protocol, fmt::format("erasure-coded piece for position {} ({} bytes at "
                                                "{}) lies outside the {}-byte bulk",
                                                p.pos, p.length, p.bulk_offset, m.bulk.size()));
    }
  }
  if (internal && !ctx.replica && given_epoch == 0) {
    return Status(Errc::protocol, "an engine's erasure-coded update names its epoch");
  }
  auto w = internal ? internal_where(ctx, oid) : resolve(ctx, oid, mgmt::kWrite);
  if (!w) return w.status();
  if (w->shard == nullptr) {
    return Status(Errc::invalid_argument, "erasure-coded updates address a pool (pool 0 has none)");
  }
  // The object as placement knows it (an internal request names the store key).
  const ObjectId uoid = internal ? shard_keys::user_oid(oid) : oid;
  // The transaction's key at its crash points: a re-encoding's apart from a client's update of
  // the same dkey (tests kill an engine at a step of one of them).
  const std::string crash_key = internal ? "reencode/" + dkey : dkey;
  const auto* cls = placement::find_class(placement::oid_class(uoid));
  if (cls == nullptr || cls->redundancy != placement::Redundancy::erasure) {
    return Status(Errc::invalid_argument,
                  "an erasure-coded update names an object whose class "
                  "is not erasure-coded");
  }
  auto apply = [&](const std::vector<const Piece*>& mine, uint64_t epoch,
                   storage::DtxStage* stage) -> Status {
    for (const Piece* p : mine) {
      Result<uint64_t> r = Status();
      if (p->punch) {
        r = p->length == 0 ? w->store->punch(w->key, dkey, p->akey, epoch, false, stage)
                           : w->store->punch_range(w->key, dkey, p->akey, p->offset, p->length, 1,
                                                   epoch, false, stage);
      } else {
        storage::UpdateOptions o;
        o.epoch = epoch;
        o.csum = w->csum;
        o.stage = stage;
        r = w->store->update(w->key, dkey, p->akey, p->kind, p->offset,
                             m.bulk.span().subspan(p->bulk_offset, p->length), p->crc, o);
      }
      if (!r) return r.status();
    }
    return Status();
  };

  if (ctx.replica) {
    std::vector<const Piece*> mine;
    for (const auto& p : pieces) mine.push_back(&p);
    if (ctx.dtx.epoch == 0) {
      return Status(Errc::protocol,
                    "a position's erasure-coded update comes inside its leader's "
                    "transaction");
    }
    TESSERA_TRY(prepare_part(*w->shard, *w->store, ctx, crash_key, [&](storage::DtxStage& stage) {
      return apply(mine, given_epoch, &stage);
    }));
    return rt_.reply(m, Status(), epoch_body(given_epoch));
  }

  // Leader: which positions this target writes, which others take writes now.
  auto place = w->shard->place(uoid);
  if (!place) return place.status();
  auto group = (*place)->dkey(dkey);
  auto is_me = [&](const placement::Shard& s) { return s.rank == rank_ && s.target == target_; };
  std::vector<const Piece*> mine;
  bool member = false;
  for (const auto& pos : group) {
    for (const auto& s : pos.writers()) member |= is_me(s);
  }
  if (!member) {
    return Status(Errc::stale, fmt::format("rank {} target {} holds no position of this object's "
                                           "group in pool map version {}",
                                           rank_, target_, w->shard->view->pool.map.version));
  }
  std::vector<std::vector<const Piece*>> by_pos(group.size());
  for (const auto& p : pieces) {
    if (p.pos >= group.size()) {
      return Status(Errc::protocol, fmt::format("erasure-coded piece for position {} of a group "
                                                "of {}",
                                                p.pos, group.size()));
    }
    by_pos[p.pos].push_back(&p);
  }
  TESSERA_TRY(ec_group_writable(*cls, group));
  // A re-encoding writes at the epoch it read the copies at (rebuild/reencode.cpp).
  const uint64_t epoch = internal ? given_epoch : w->store->new_epoch();
  // In flight until every position answered (a re-encoding below this epoch waits for it).
  PoolShard& shard = *w->shard;
  auto inflight = shard.ec_inflight.insert(epoch);
  struct Done {
    PoolShard& sh;
    std::multiset<uint64_t>::iterator it;
    ~Done() { sh.ec_inflight.erase(it); }
  } finished{shard, inflight};
  // One distributed transaction over the serving positions (actors/object_service_dtx.cpp).
  // The leader always holds a part, empty or not: it answers for the transaction after a
  // restart.
  const storage::DtxId id{epoch, me()};
  std::vector<uint64_t> participants{me()};
  // One request per target: a target may hold two positions of the group (a fallback home
  // that held another position before), and a transaction has one part per target.
  struct Send {
    placement::Shard s;
    std::vector<const Piece*> pieces;
    std::string positions;
  };
  std::vector<Send> sends;
  for (size_t pos = 0; pos < group.size(); ++pos) {
    if (by_pos[pos].empty()) continue;
    for (const auto& s : group[pos].writers()) {
      if (is_me(s)) {
        mine.insert(mine.end(), by_pos[pos].begin(), by_pos[pos].end());
        continue;
      }
      auto to = std::find_if(sends.begin(), sends.end(), [&](const Send& x) {
        return x.s.rank == s.rank && x.s.target == s.target;
      });
      if (to == sends.end()) {
        to = sends.insert(sends.end(), Send{s, {}, {}});
        participants.push_back(storage::dtx_member(s.rank, s.target));
      }
      to->pieces.insert(to->pieces.end(), by_pos[pos].begin(), by_pos[pos].end());
      to->positions += fmt::format("{}{}", to->positions.empty() ? "" : ", ", pos);
    }
  }
  std::vector<DtxPart> remote;
  for (const auto& send : sends) {
    const auto& s = send.s;
    auto commits = take_notices(shard, storage::dtx_member(s.rank, s.target));
    auto [body, bulk] = position_request(oid, dkey, send.pieces, epoch, ctx, internal, m.bulk, id,
                                         participants, commits);
    auto f = std::make_shared<Message>();
    f->dst = ActorAddr{s.rank, static_cast<uint16_t>(s.target), proto::kObjectServiceActor};
    f->protocol = proto::kProtoObject;
    f->method = proto::kObjEcUpdate;
    f->body = std::move(body);
    f->bulk = std::move(bulk);
    remote.push_back(
        {storage::dtx_member(s.rank, s.target),
         [this, f, s, positions = send.positions]() -> Status {
           auto r = rt_.ask(std::move(*f), kForwardTimeout, proto::kObjectServiceActor);
           Status st = !r                      ? r.status()
                       : r->status != Errc::ok ? Status(r->status, r->error)
                                               : Status();
           if (!st.is_ok()) {
             st = Status(st.code(), fmt::format("position {} (rank {} target {}): {}", positions,
                                                s.rank, s.target, st.message()));
           }
           return st;
         }});
  }
  auto prepare_local = [&]() -> Status {
    storage::DtxStage stage;
    Status st = apply(mine, epoch, &stage);
    if (!st.is_ok()) {
      w->store->dtx_discard(stage);
      return st;
    }
    return w->store->dtx_prepare(id, participants, std::move(stage));
  };
  TESSERA_TRY(
      lead_dtx(shard, *w->store, id, crash_key, participants, false, prepare_local, remote));
  TESSERA_TRY(rt_.reply(m, Status(), epoch_body(epoch)));
  crash_point("dtx.leader.replied", crash_key);
  return Status();
}

}  // namespace tessera
