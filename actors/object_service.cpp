#include "actors/object_service.hpp"

#include <cstring>

#include "actors/object_service_util.hpp"
#include "core/anchor.hpp"
#include "core/checksum.hpp"
#include "core/crash_point.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"
#include "net/frame.hpp"
#include "placement/layout.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/protocol.hpp"
#include "rebuild/rebuild.hpp"

namespace tessera {

using capn::as_data;
using capn::BodyReader;
using capn::from_data;

using namespace objsvc;

namespace {
// A change outside a user transaction is refused (`restart`: the client retries it at a new
// epoch) when a transaction read its key at or above its epoch before it was registered.
constexpr storage::DtxChecks kPlainChecks{false, true, 0, false};
// A listing's reply body: what a fabric frame carries, less room for the envelope.
constexpr size_t kListReplyBytes = net::kMaxHeaderBytes - 4096;

// A request forwarded by a leader: the same body with the leader's epoch, the replica flag, the
// transaction it is part of and the commits the receiver is told. A condition was decided by
// the leader: the replicas apply what it decided.
template <typename Req>
Buffer forwarded(const Buffer& body, uint64_t epoch, const storage::DtxId& id,
                 const std::vector<uint64_t>& participants,
                 const std::vector<storage::DtxId>& commits) {
  capn::DecodeScope ds;
  BodyReader br(body);
  // A first segment that holds the copy and the transaction's fields: not a zeroed 4 KiB per
  // replica and update.
  capnp::MallocMessageBuilder b(
      static_cast<unsigned>(body.size() / 8 + 32 + participants.size() + 2 * commits.size()));
  b.setRoot(br.root<Req>());
  auto w = b.getRoot<Req>();
  w.setEpoch(epoch);
  if constexpr (std::is_same_v<Req, schema::UpdateReq>) w.setCond(0);
  w.getCtx().setReplica(true);
  set_dtx(w.getCtx(), id, participants, commits);
  return capn::to_body(b);
}
}  // namespace

void ObjectService::receive(Message& m) {
  const Nanos began = rt_.target().env().now();
  OpStats* op = op_stats(m);  // null: a method beyond the table, refused below
  if (op != nullptr) op->bytes_in += m.bulk.size();
  ++stats_.inflight;
  Status st;
  try {
    st = handle(m);
  } catch (const kj::Exception& e) {
    st = Status(Errc::protocol,
                fmt::format("malformed request body: {}", e.getDescription().cStr()));
  }
  --stats_.inflight;
  if (op != nullptr) ++op->count;
  if (!st.is_ok()) {
    if (op != nullptr) ++op->errors;
    ++stats_.rejected;
    static log::RateLimit limit(5);
    uint64_t skipped = 0;
    if ((st.code() == Errc::protocol || st.code() == Errc::unauthenticated) &&
        limit.allow(&skipped)) {
      log::warn("request rejected: {} ({} more not shown)", st.to_string(), skipped);
    }
    if (m.corr != 0) (void)rt_.reply(m, st);
  }
  if (op != nullptr) op->latency.observe(rt_.target().env().now() - began);
}

ObjectService::OpStats* ObjectService::op_stats(const Message& m) {
  if (m.method >= proto::kObjMethods) return nullptr;
  return &stats_.ops[m.method][m.trusted() ? 1 : 0];
}

Status ObjectService::reply_bulk(const Message& m, Buffer body, Buffer bulk) {
  if (OpStats* op = op_stats(m)) op->bytes_out += bulk.size();
  return rt_.reply(m, Status(), std::move(body), std::move(bulk));
}

Result<ObjectService::Where> ObjectService::resolve(const Ctx& ctx, ObjectId oid, uint32_t need) {
  if (ctx.pool == 0) {
    if (pools_.scratch == nullptr)
      return Status(Errc::not_found, "this engine has no scratch store");
    return Where{pools_.scratch, nullptr, oid, CsumType::crc32c, {}};
  }
  // The shard takes a map of the request's version or newer when its own is older (the one the
  // engine's first target already fetched, if it is; 0 would ask the service again).
  auto use = shard_for(ctx.pool, ctx.map_version);
  if (!use) return use.status();
  PoolShard& sh = **use;
  if (!pools_.fetch_view && (!sh.view || ctx.map_version > sh.view->pool.map.version)) {
    return Status(Errc::unavailable, "engine has no management service");
  }
  auto older = [&] {
    return Status(Errc::stale, fmt::format("pool {} map version {} is older than the target's {}",
                                           ctx.pool, ctx.map_version, sh.view->pool.map.version));
  };
  if (ctx.map_version < sh.view->pool.map.version) return older();
  // Counted from here (no suspension since the check) to the reply: a rebuild scan on a newer
  // map waits for this request to end (PoolShard::admitted).
  use->admit(ctx.map_version);
  auto h = sh.handles.find(ctx.handle);
  const Nanos now = rt_.target().env().now();
  if (h == sh.handles.end() ||
      (!h->second.checking && now - h->second.checked > pools_.handle_recheck)) {
    TESSERA_TRY(check_handle(sh, ctx, now));
    h = sh.handles.find(ctx.handle);  // the check suspended: a revocation may have come
    if (h == sh.handles.end()) return Status(Errc::permission, "container handle revoked");
  }
  // The handle's fetch suspended: a newer map may have arrived meanwhile.
  if (ctx.map_version < sh.view->pool.map.version) return older();
  if (h->second.cont != ctx.cont) {
    return Status(Errc::permission, "the container handle belongs to another container");
  }
  if ((h->second.perms & need) != need) {
    return Status(Errc::permission,
                  fmt::format("the container handle lacks {} (open the container with {})",
                              mgmt::perm_words(need & ~h->second.perms),
                              (need & mgmt::kWrite) != 0 ? "write access" : "read access"));
  }
  if ((need & mgmt::kWrite) != 0 && !ctx.replica) TESSERA_TRY(takes_writes(sh, ctx.cont));
  return Where{sh.store.get(), &sh, store_key(oid, ctx.cont), static_cast<CsumType>(h->second.csum),
               std::move(*use)};
}

Status ObjectService::takes_writes(const PoolShard& sh, uint32_t cont) {
  // A handle opened for writing outlives the health it was opened in: every client write
  // (update, punch, a cell, a transaction's commit) is checked against the pool map it is
  // served in (decided once per map: PoolShard::set_view). From the map alone, with the
  // container's record: a stopped engine kept in the map is not counted here, and needs none,
  // since the writes forwarded to it fail.
  auto it = sh.write_refusals.find(cont);
  return it == sh.write_refusals.end() ? Status() : it->second;
}

Status ObjectService::check_handle(PoolShard& sh, const Ctx& ctx, Nanos now) {
  if (!pools_.fetch_handle) return Status(Errc::unavailable, "engine has no management service");
  const bool cached = sh.handles.count(ctx.handle) != 0;
  if (cached) sh.handles[ctx.handle].checking = true;
  auto hv = pools_.fetch_handle(ctx.pool, ctx.handle);  // suspends
  auto h = sh.handles.find(ctx.handle);
  if (!hv) {
    const Errc e = hv.status().code();
    if (e == Errc::permission || e == Errc::not_found) {  // closed, evicted or never valid
      if (h != sh.handles.end()) sh.handles.erase(h);
      return hv.status();
    }
    if (h == sh.handles.end()) return hv.status();
    // The service cannot be asked (down, restarting): data I/O of open handles goes on with
    // what it granted; the next request after the interval asks again.
    h->second.checking = false;
    h->second.checked = now;
    return Status();
  }
  if (cached && h == sh.handles.end()) {
    return Status(Errc::permission, "container handle revoked");  // while the service answered
  }
  if (h == sh.handles.end() && sh.handles.size() >= kMaxCachedHandles) {
    // Bounded: forget the entries not checked for longest (they are fetched again if used).
    for (auto it = sh.handles.begin(); it != sh.handles.end();) {
      it = now - it->second.checked > pools_.handle_recheck ? sh.handles.erase(it) : std::next(it);
    }
    if (sh.handles.size() >= kMaxCachedHandles) {
      return Status(Errc::busy, "too many open container handles on this target; retry");
    }
  }
  sh.handles[ctx.handle] = PoolShard::HandleEntry{
      hv->cont.c.id, hv->perms, static_cast<uint16_t>(csum_of(hv->cont.c.props)), now, false};
  return Status();
}

Result<uint64_t> ObjectService::replicate(Message& m, const Where& w, ObjectId oid,
                                          const std::string& dkey, bool sequential,
                                          const Local& local) {
  const uint64_t epoch = w.store->new_epoch();
  if (w.shard == nullptr) return local(epoch, nullptr);
  auto place = w.shard->place(oid);
  if (!place) return place.status();
  std::vector<placement::Shard> peers;
  bool member = false;
  for (const auto& pos : (*place)->dkey(dkey)) {
    for (const auto& s : pos.writers()) {
      if (s.rank == rank_ && s.target == target_) {
        member = true;
        continue;
      }
      placement::add_unique(peers, s);
    }
  }
  if (!member) {
    return Status(Errc::stale, fmt::format("rank {} target {} holds no shard of this object's "
                                           "group in pool map version {}",
                                           rank_, target_, w.shard->view->pool.map.version));
  }
  // One distributed transaction over the group's members (actors/object_service_dtx.cpp),
  // even a group of one: its prepare is checked against transactions' reads once registered.
  const storage::DtxId id{epoch, me()};
  std::vector<uint64_t> participants{me()};
  for (const auto& p : peers) participants.push_back(storage::dtx_member(p.rank, p.target));
  auto prepare_local = [&]() -> Status {
    storage::DtxStage stage;
    auto r = local(epoch, &stage);
    if (!r) {
      w.store->dtx_discard(stage);
      return r.status();
    }
    return w.store->dtx_prepare(id, participants, std::move(stage), kPlainChecks);
  };
  std::vector<DtxPart> remote;
  for (const auto& peer : peers) {
    const uint64_t who = storage::dtx_member(peer.rank, peer.target);
    auto commits = take_notices(*w.shard, who);
    Message f;
    f.dst = ActorAddr{peer.rank, static_cast<uint16_t>(peer.target), proto::kObjectServiceActor};
    f.protocol = proto::kProtoObject;
    f.method = m.method;
    f.body = m.method == proto::kObjUpdate
                 ? forwarded<schema::UpdateReq>(m.body, epoch, id, participants, commits)
                 : forwarded<schema::PunchReq>(m.body, epoch, id, participants, commits);
    f.bulk = Buffer(m.bulk.data(), m.bulk.size());
    remote.push_back({who, [this, f = std::make_shared<Message>(std::move(f)), peer]() -> Status {
                        auto r =
                            rt_.ask(std::move(*f), kForwardTimeout, proto::kObjectServiceActor);
                        if (!r) {
                          return Status(r.status().code(),
                                        fmt::format("replica rank {} target {}: {}", peer.rank,
                                                    peer.target, r.status().message()));
                        }
                        if (r->status != Errc::ok) {
                          return Status(r->status, fmt::format("replica rank {} target {}: {}",
                                                               peer.rank, peer.target, r->error));
                        }
                        return Status();
                      }});
  }
  TESSERA_TRY(
      lead_dtx(*w.shard, *w.store, id, dkey, participants, sequential, prepare_local, remote));
  return epoch;
}

namespace {
// Methods that only engines (rebuild, scrub, the background passes) and administrators use.
bool engine_only(uint16_t method) {
  switch (method) {
    case proto::kObjAggregate:
    case proto::kObjCheckpoint:
    case proto::kObjRebuildPush:
    case proto::kObjShardFetch:
    case proto::kObjScrub:
    case proto::kObjDigest:
    case proto::kObjShardExport:
    case proto::kObjCheck:
    case proto::kObjDtxOutcome:
    case proto::kObjDtxQuery:
    case proto::kObjTxPrepare:
      return true;
    default:
      return false;
  }
}

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

}  // namespace

Status ObjectService::handle(Message& m) {
  if (m.protocol != proto::kProtoObject) {
    return Status(Errc::protocol, fmt::format("object service got protocol {}", m.protocol));
  }
  if (pools_.stopped && m.method != proto::kObjPing && m.method != proto::kObjStats) {
    return Status(Errc::unavailable,
                  fmt::format("rank {} target {} is stopped (until reintegrated)", rank_, target_));
  }
  if (!m.trusted() && engine_only(m.method)) {
    return Status(Errc::unauthenticated,
                  fmt::format("object method {} is served only to engines and administrators (a "
                              "message authenticated with the system key)",
                              m.method));
  }
  // Each case decodes into plain values inside a DecodeScope (no suspension there), then runs.
  switch (m.method) {
    case proto::kObjPing:
      return reply_bulk(m, {}, std::move(m.bulk));

    case proto::kObjUpdate: {
      Key k;
      storage::ValueKind kind;
      uint64_t offset;
      uint32_t crc;
      storage::UpdateOptions uo;
      Ctx ctx;
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
        ctx = ctx_of(req.getCtx());
        if (ds.failed()) return malformed(ds);
      }
      TESSERA_TRY(client_may_write(m, ctx.replica, uo.epoch));
      if (!ctx.replica && ctx.pool != 0) {
        const auto* cls = placement::find_class(placement::oid_class(k.oid));
        if (cls != nullptr && cls->redundancy == placement::Redundancy::erasure) {
          return Status(Errc::invalid_argument,
                        fmt::format("object class {} is erasure-coded: its updates are cut into "
                                    "cells by the client (EcUpdateReq)",
                                    cls->name));
        }
      }
      auto w = resolve(ctx, k.oid, mgmt::kWrite);
      if (!w) return w.status();
      if (ctx.pool != 0) uo.csum = w->csum;
      auto local = [&](uint64_t epoch, storage::DtxStage* stage) {
        storage::UpdateOptions o = uo;
        o.epoch = epoch;
        o.stage = stage;
        return w->store->update(w->key, k.dkey, k.akey, kind, offset, m.bulk.span(), crc, o);
      };
      if (ctx.replica && ctx.dtx.epoch != 0 && w->shard != nullptr) {
        TESSERA_TRY(prepare_part(
            *w->shard, *w->store, ctx, k.dkey,
            [&](storage::DtxStage& stage) { return local(uo.epoch, &stage).status(); },
            kPlainChecks));
        return rt_.reply(m, Status(), epoch_body(uo.epoch));
      }
      auto r = ctx.replica ? local(uo.epoch, nullptr)
                           : replicate(m, *w, k.oid, k.dkey, uo.cond != Cond::none, local);
      if (!r) return r.status();
      TESSERA_TRY(rt_.reply(m, Status(), epoch_body(*r)));
      if (!ctx.replica) crash_point("dtx.leader.replied", k.dkey);
      return Status();
    }

    case proto::kObjFetch:
    case proto::kObjShardFetch: {
      Key k;
      storage::ValueKind kind;
      uint64_t offset, length, epoch;
      storage::FetchOptions fo;
      Ctx ctx;
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
        ctx = ctx_of(req.getCtx());
        if (ds.failed()) return malformed(ds);
      }
      storage::TargetStore* store = nullptr;
      ObjectId key = k.oid;
      ShardUse use;  // the shard stays open until the reply is built
      if (m.method == proto::kObjShardFetch) {
        auto sh = shard_for(ctx.pool, ctx.map_version);
        if (!sh) return sh.status();
        use = std::move(*sh);
        store = use->store.get();
      } else {
        auto w = resolve(ctx, k.oid, mgmt::kRead);
        if (!w) return w.status();
        store = w->store;
        key = w->key;
        use = std::move(w->use);
      }
      if (use.get() != nullptr) {
        // A transaction's read, or an engine's that must not have changes slide under it (the
        // re-encoder's read of the copies it replaces: rebuild/reencode.hpp).
        TESSERA_TRY(note_tx_read(ctx, *store, key, k.dkey, k.akey, epoch));
        TESSERA_TRY(settle(*use, key, k.dkey, k.akey, epoch));
      }
      auto r = store->fetch(key, k.dkey, k.akey, kind, offset, length, epoch, fo);
      if (!r) {
        if (r.status().code() == Errc::checksum || r.status().code() == Errc::io_error) {
          // Damage is worth a line every time: the client reads another replica, and this
          // copy is repaired from a good one in the background.
          log::error("{}", r.status().to_string());
          if (ctx.pool != 0) schedule_repair(ctx.pool, key, k.dkey, k.akey);
        }
        return r.status();
      }
      capnp::MallocMessageBuilder b(256);
      auto rep = b.initRoot<schema::FetchRep>();
      rep.setSize(r->size);
      rep.setEpoch(r->epoch);
      rep.setExists(r->exists);
      rep.setCrc(crc32c(r->data.span()));
      auto holes = rep.initHoles(static_cast<unsigned>(r->holes.size()));
      for (size_t i = 0; i < r->holes.size(); ++i) {
        holes[i].setOffset(r->holes[i].first);
        holes[i].setLength(r->holes[i].second);
      }
      return reply_bulk(m, capn::to_body(b), std::move(r->data));
    }

    case proto::kObjPunch: {
      Key k;
      uint64_t offset, length, at;
      uint32_t rsize;
      Ctx ctx;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::PunchReq>();
        k = key_of(req);
        offset = req.getOffset();
        length = req.getLength();
        rsize = req.getRsize();
        at = req.getEpoch();
        ctx = ctx_of(req.getCtx());
        if (ds.failed()) return malformed(ds);
      }
      TESSERA_TRY(client_may_write(m, ctx.replica, at));
      auto w = resolve(ctx, k.oid, mgmt::kWrite);
      if (!w) return w.status();
      auto local = [&](uint64_t epoch, storage::DtxStage* stage) {
        return length == 0 ? w->store->punch(w->key, k.dkey, k.akey, epoch, false, stage)
                           : w->store->punch_range(w->key, k.dkey, k.akey, offset, length, rsize,
                                                   epoch, false, stage);
      };
      if (ctx.replica && ctx.dtx.epoch != 0 && w->shard != nullptr) {
        TESSERA_TRY(prepare_part(
            *w->shard, *w->store, ctx, k.dkey,
            [&](storage::DtxStage& stage) { return local(at, &stage).status(); }, kPlainChecks));
        return rt_.reply(m, Status(), epoch_body(at));
      }
      Result<uint64_t> r = ctx.replica ? local(at, nullptr) : Result<uint64_t>(Status());
      if (!ctx.replica) {
        if (k.dkey.empty() && w->shard != nullptr) {
          // A whole-object punch touches every group: each member punches its own shard.
          r = local(w->store->new_epoch(), nullptr);
        } else {
          r = replicate(m, *w, k.oid, k.dkey, false, local);
        }
      }
      if (!r) return r.status();
      return rt_.reply(m, Status(), epoch_body(*r));
    }

    case proto::kObjList: {
      storage::ListScope scope = storage::ListScope::objects;
      storage::ObjectId oid;
      std::string dkey, akey, anchor;
      uint32_t limit;
      uint64_t epoch;
      Ctx ctx;
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
        ctx = ctx_of(req.getCtx());
        if (ds.failed()) return malformed(ds);
      }
      auto w = resolve(ctx, oid, mgmt::kRead);
      if (!w) return w.status();
      if (w->shard != nullptr && scope != storage::ListScope::objects) {
        TESSERA_TRY(note_tx_read(ctx, *w->store, w->key,
                                 scope == storage::ListScope::dkeys ? "" : dkey,
                                 scope == storage::ListScope::recx ? akey : "", epoch));
      } else if (ctx.tx_read != 0) {
        return Status(Errc::unsupported, "a transaction does not list a container's objects");
      }
      if (w->shard != nullptr) {
        if (scope == storage::ListScope::objects) {
          // Any prepared transaction may create an object of the container.
          TESSERA_TRY(settle_all(*w->shard));
        } else {
          TESSERA_TRY(settle(*w->shard, w->key, scope == storage::ListScope::dkeys ? "" : dkey,
                             scope == storage::ListScope::recx ? akey : "", epoch));
        }
      }
      if (scope == storage::ListScope::objects && w->shard != nullptr && anchor.size() == 16) {
        // A client pages on from the last object it was given, in the container's own ids
        // (no container bits); a page's own anchor is a store key (container bits set, ids
        // start at 1) and is taken as it is.
        const ObjectId from = *oid_of_anchor(anchor);
        if (cont_of(from) == 0) anchor = oid_anchor(shard_keys::store_key(from, ctx.cont));
      }
      // One page's reply, of at most n entries.
      auto page = [&](uint32_t n) -> Result<Buffer> {
        auto r = w->store->list(scope, w->key, dkey, akey, anchor, n, epoch);
        if (!r) return r.status();
        if (scope == storage::ListScope::objects && w->shard != nullptr) {
          // A shard's store holds every container of the pool: keep this container's objects.
          std::erase_if(r->entries,
                        [&](const storage::ListEntry& e) { return cont_of(e.oid) != ctx.cont; });
          for (auto& e : r->entries) e.oid = user_oid(e.oid);
        }
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
        return capn::to_body(b);
      };
      // A page fits one reply frame: while it would not, the store is asked again for half as
      // many entries (keys of up to 4 KiB make any fixed count too many for some listing).
      for (;;) {
        auto body = page(limit);
        if (!body) return body.status();
        if (body->size() <= kListReplyBytes || limit <= 1)
          return rt_.reply(m, Status(), std::move(*body));
        limit /= 2;
      }
    }

    case proto::kObjStats:
      return on_stats(m);
    case proto::kObjAggregate:
      return on_aggregate(m);
    case proto::kObjCheckpoint:
      return on_checkpoint(m);
    case proto::kObjScrub:
      return on_scrub(m);
    case proto::kObjDigest:
      return on_digest(m);
    case proto::kObjShardExport:
      return on_shard_export(m);
    case proto::kObjCheck:
      return on_check(m);

    case proto::kObjQueryMax: {
      Key k;
      uint64_t epoch;
      Ctx ctx;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto req = br.root<schema::QueryMaxReq>();
        k = key_of(req);
        epoch = req.getEpoch();
        ctx = ctx_of(req.getCtx());
        if (ds.failed()) return malformed(ds);
      }
      auto w = resolve(ctx, k.oid, mgmt::kRead);
      if (!w) return w.status();
      if (w->shard != nullptr) TESSERA_TRY(settle(*w->shard, w->key, k.dkey, k.akey, epoch));
      capnp::MallocMessageBuilder b(128);
      auto rep = b.initRoot<schema::QueryMaxRep>();
      if (k.dkey.empty()) {
        auto r = w->store->max_dkey(w->key, epoch);
        if (!r && r.status().code() != Errc::not_found) return r.status();
        rep.setFound(r.is_ok());
        if (r) rep.setDkey(as_data(*r));
      } else {
        auto r = w->store->max_recx(w->key, k.dkey, k.akey, epoch);
        if (!r) return r.status();
        rep.setFound(*r != 0);
        rep.setRecxEnd(*r);
      }
      return rt_.reply(m, Status(), capn::to_body(b));
    }

    case proto::kObjEcUpdate:
      return ec_update(m);
    case proto::kObjDtxOutcome:
      return on_dtx_outcome(m);
    case proto::kObjDtxQuery:
      return on_dtx_query(m);
    case proto::kObjTxBegin:
      return on_tx_begin(m);
    case proto::kObjTxCommit:
      return on_tx_commit(m);
    case proto::kObjTxPrepare:
      return on_tx_prepare(m);

    case proto::kObjRebuildPush: {
      uint32_t pool, version;
      {
        capn::DecodeScope ds;
        BodyReader br(m.body);
        auto ctx = br.root<schema::RebuildPush>().getCtx();
        pool = ctx.getPool();
        version = ctx.getMapVersion();
        if (ds.failed()) return malformed(ds);
      }
      auto sh = shard_for(pool, version);
      if (!sh) return sh.status();
      TESSERA_TRY(rebuild::apply_push(*(*sh)->store, m.body, std::move(m.bulk)));
      return rt_.reply(m, Status());
    }
  }
  return Status(Errc::protocol, fmt::format("unknown object method {}", m.method));
}

Result<ShardUse> ObjectService::shard_for(uint32_t pool, uint32_t map_version) {
  if (auto d = pools_.damaged.find(pool); d != pools_.damaged.end()) {
    // A checksum error: a replicated read goes on to another copy; without one it is the
    // answer, and it names the damage.
    return Status(Errc::checksum,
                  fmt::format("rank {} target {} does not serve pool {}: its store is damaged "
                              "({}); `tessera pool query` lists it, a reintegration formats it "
                              "anew",
                              rank_, target_, pool, d->second));
  }
  auto it = pools_.shards.find(pool);
  if (it == pools_.shards.end() && pools_.opening) {
    return Status(Errc::unavailable, fmt::format("rank {} target {} is still opening its pool "
                                                 "shards",
                                                 rank_, target_));
  }
  if (it == pools_.shards.end() || it->second->closing) {
    return Status(it == pools_.shards.end() ? Errc::not_found : Errc::unavailable,
                  fmt::format("pool {} has no {}shard on rank {} target {}", pool,
                              it == pools_.shards.end() ? "" : "open ", rank_, target_));
  }
  // Held before the first suspension: a reset or destroy waits for it instead of freeing the
  // shard under this fiber.
  ShardUse use(*it->second);
  PoolShard& sh = *use;
  if ((!sh.view || map_version > sh.view->pool.map.version) && pools_.fetch_view) {
    // map_version 0 (a shard without a map, for a caller that needs the current one: the
    // resolution of transactions) asks the service; another may be answered by the newest view
    // the engine's first target holds (TargetPools::fetch_view).
    auto v = pools_.fetch_view(pool, map_version);
    if (!v) return v.status();
    sh.set_view(std::move(*v));
    if (pools_.learn) pools_.learn(*sh.view);
  }
  if (sh.closing) {
    return Status(Errc::unavailable, fmt::format("pool {} shard on rank {} target {} is closing",
                                                 pool, rank_, target_));
  }
  return use;
}

}  // namespace tessera
