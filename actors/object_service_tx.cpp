// User transactions (docs/TRANSACTIONS.md, "User transactions").
//
// A transaction takes its epoch E from a target's clock (kObjTxBegin) and reads at E from the
// leader of each group it reads, which stamps what was read (storage/read_stamps.hpp) and
// moves its clock past E. Its changes wait in the client until commit, which goes to one
// coordinator: the leader of the first change's group. The coordinator splits the changes by
// the targets that hold them and runs one distributed transaction over all of them (the same
// protocol as a single update, actors/object_service_dtx.cpp): every participant stages its
// share at E and prepares it, checked once registered against the reads stamped there (a
// later transaction read a key this one changes: `restart`) and against newer changes of its
// keys (`restart`); conditions are decided by the first writer of each group. All prepared:
// committed at E; otherwise aborted everywhere, and the client hears the first failure. A
// change of an erasure-coded akey comes cut into its positions' pieces (TxOp.pos), each held by
// the writers of its position.
#include <cstring>
#include <map>
#include <set>

#include "actors/object_service.hpp"
#include "actors/object_service_util.hpp"
#include "core/checksum.hpp"
#include "core/crash_point.hpp"
#include "placement/layout.hpp"
#include "proto/protocol.hpp"
#include "proto/tx_ops.hpp"

namespace tessera {

using namespace objsvc;
using capn::BodyReader;

namespace {
constexpr size_t kMaxTxOps = 4096;                       // changes per transaction
constexpr uint64_t kMaxTxBytes = 64ull << 20;            // bytes of data per transaction
constexpr auto kFutureSlack = std::chrono::seconds(10);  // clocks of hosts may disagree

using TxOp = proto::TxChange;

struct TxReq {
  ObjectService::Ctx ctx;
  uint64_t epoch = 0;
  uint64_t owner = 0;
  std::vector<TxOp> ops;
};

Result<TxReq> decode_tx(const Message& m) {
  capn::DecodeScope ds;
  BodyReader br(m.body);
  auto req = br.root<schema::TxReq>();
  TxReq t;
  t.ctx = ctx_of(req.getCtx());
  t.epoch = req.getEpoch();
  t.owner = req.getOwner();
  auto ops = req.getOps();
  if (ops.size() == 0)
    return Status(Errc::invalid_argument, "a transaction commit without changes");
  if (ops.size() > kMaxTxOps) {
    return Status(Errc::too_big, fmt::format("a transaction changes at most {} keys ({} given)",
                                             kMaxTxOps, ops.size()));
  }
  bool bad = false;
  for (auto o : ops) t.ops.push_back(proto::tx_op_of(o, bad));
  if (bad) return Status(Errc::protocol, "unknown update condition");
  if (ds.failed()) return malformed(ds);
  for (const TxOp& op : t.ops) {
    TESSERA_TRY(placement::check_oid(op.oid));
    const auto* cls = placement::find_class(placement::oid_class(op.oid));
    const bool ec = cls != nullptr && cls->redundancy == placement::Redundancy::erasure;
    if (op.pos != 0) {
      if (!ec) return Status(Errc::invalid_argument, "a position's piece of a replicated object");
      if (op.pos > cls->data + cls->parity || op.dkey.empty() || op.akey.empty()) {
        return Status(Errc::invalid_argument,
                      fmt::format("a piece for position {} of {} under dkey '{}' akey '{}'",
                                  op.pos - 1, cls->name, op.dkey, op.akey));
      }
      if (op.cond != Cond::none) {
        return Status(Errc::unsupported, "erasure-coded changes take no conditions");
      }
    } else if (ec && !op.akey.empty()) {
      return Status(Errc::invalid_argument,
                    fmt::format("a change of an akey of an erasure-coded object ({}) comes as its "
                                "positions' pieces",
                                cls->name));
    }
    if (op.update && (op.dkey.empty() || op.akey.empty())) {
      return Status(Errc::invalid_argument, "an update in a transaction needs a dkey and an akey");
    }
    if (!op.update && op.dkey.empty() && !op.akey.empty()) {
      return Status(Errc::invalid_argument, "punching an akey needs its dkey");
    }
    if (op.data_off > m.bulk.size() || op.data_len > m.bulk.size() - op.data_off) {
      return Status(Errc::protocol, "a transaction change's bytes lie outside the request");
    }
    if (op.update && crc32c({m.bulk.data() + op.data_off, op.data_len}) != op.crc) {
      return Status(Errc::checksum, "a transaction change's bytes fail their crc32c");
    }
  }
  return t;
}

// The request for participant `ops` of `t`, with their bytes gathered into `bulk`.
Buffer tx_body(const TxReq& t, const std::vector<const TxOp*>& ops, const std::vector<bool>& decide,
               const Buffer& src, Buffer& bulk, const storage::DtxId& id,
               const std::vector<uint64_t>& participants,
               const std::vector<storage::DtxId>& commits) {
  capnp::MallocMessageBuilder b(1024);
  auto req = b.initRoot<schema::TxReq>();
  auto c = req.initCtx();
  c.setPool(t.ctx.pool);
  c.setMapVersion(t.ctx.map_version);
  c.setHandle(t.ctx.handle);
  c.setCont(t.ctx.cont);
  c.setReplica(true);
  set_dtx(c, id, participants, commits);
  req.setEpoch(t.epoch);
  req.setOwner(t.owner);
  uint64_t bytes = 0;
  for (const TxOp* op : ops) bytes += op->data_len;
  bulk.reset(bytes);
  uint64_t at = 0;
  auto l = req.initOps(static_cast<unsigned>(ops.size()));
  for (size_t i = 0; i < ops.size(); ++i) {
    const TxOp& op = *ops[i];
    TxOp c = op;
    c.cond = decide[i] ? op.cond : Cond::none;
    c.data_off = at;
    proto::set_tx_op(l[static_cast<unsigned>(i)], c);
    if (op.data_len > 0) std::memcpy(bulk.data() + at, src.data() + op.data_off, op.data_len);
    at += op.data_len;
  }
  return capn::to_body(b);
}

// A transaction that ran so long that aggregation merged the versions at its epoch reads and
// writes nothing exact any more: it runs again at a new epoch.
Status not_too_old(const storage::TargetStore& store, uint64_t epoch) {
  if (epoch > store.aggregation_epoch()) return Status();
  return Status(Errc::restart,
                fmt::format("the transaction's epoch {} is at or below the aggregation epoch {} "
                            "(it ran too long): run it again",
                            epoch, store.aggregation_epoch()));
}

Status stage_op_at(storage::TargetStore& store, ObjectId key, CsumType csum, const TxOp& op,
                   bool decide, const Buffer& bulk, uint64_t epoch, storage::DtxStage& stage) {
  if (op.update) {
    storage::UpdateOptions o;
    o.cond = decide ? op.cond : Cond::none;
    o.rsize = op.rsize;
    o.epoch = epoch;
    o.csum = csum;
    o.stage = &stage;
    return store
        .update(key, op.dkey, op.akey, op.kind, op.offset,
                std::span<const uint8_t>(bulk.data() + op.data_off, op.data_len), op.crc, o)
        .status();
  }
  if (op.length == 0) return store.punch(key, op.dkey, op.akey, epoch, false, &stage).status();
  return store
      .punch_range(key, op.dkey, op.akey, op.offset, op.length, op.rsize, epoch, false, &stage)
      .status();
}

// Stages one change of a transaction at `epoch` in `store` (`key`: the store's key of its
// object; `decide`: this target decides its condition).
Status stage_op(storage::TargetStore& store, ObjectId key, CsumType csum, const TxOp& op,
                bool decide, const Buffer& bulk, uint64_t epoch, storage::DtxStage& stage) {
  TESSERA_TRY(not_too_old(store, epoch));
  Status st = stage_op_at(store, key, csum, op, decide, bulk, epoch, stage);
  // Below a rollback begun here: the transaction's snapshot is gone; it runs again.
  if (st.code() == Errc::stale) return Status(Errc::restart, st.message());
  return st;
}

// A transaction's epoch may lie in the past (it was taken at begin), not far in the future: a
// client must not push a target's clock ahead for good.
Status check_epoch(uint64_t epoch, Nanos wall) {
  if (epoch > epoch_at_wall(wall + kFutureSlack)) {
    return Status(Errc::invalid_argument,
                  fmt::format("transaction epoch {} lies in the future (take it from "
                              "kObjTxBegin)",
                              epoch));
  }
  return Status();
}

}  // namespace

Status ObjectService::note_tx_read(const Ctx& ctx, storage::TargetStore& store, ObjectId key,
                                   std::string_view dkey, std::string_view akey, uint64_t epoch) {
  if (ctx.tx_read == 0) return Status();
  if (epoch == 0) return Status(Errc::invalid_argument, "a transaction reads at its epoch, not 0");
  TESSERA_TRY(check_epoch(epoch, rt_.target().env().wall()));
  TESSERA_TRY(not_too_old(store, epoch));
  store.observe_epoch(epoch);
  store.read_stamps().note(key, dkey, akey, epoch, ctx.tx_read);
  return Status();
}

Status ObjectService::on_tx_begin(Message& m) {
  ObjectService::Ctx ctx;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    ctx = ctx_of(br.root<schema::TxBeginReq>().getCtx());
    if (ds.failed()) return malformed(ds);
  }
  if (ctx.pool == 0) return Status(Errc::unsupported, "transactions need a system pool");
  auto w = resolve(ctx, ObjectId{}, mgmt::kRead);
  if (!w) return w.status();
  capnp::MallocMessageBuilder b(64);
  auto rep = b.initRoot<schema::TxBeginRep>();
  rep.setEpoch(w->store->new_epoch());
  // Never 0, which marks a read that is no transaction's (rank 0 target 0 is member 0): such a
  // transaction's reads would leave no stamps, and a change could slide under them.
  rep.setOwner(me() + 1);
  return rt_.reply(m, Status(), capn::to_body(b));
}

Status ObjectService::on_tx_commit(Message& m) {
  auto t = decode_tx(m);
  if (!t) return t.status();
  TESSERA_TRY(client_may_write(m, t->ctx.replica, 0));
  if (t->ctx.pool == 0) return Status(Errc::unsupported, "transactions need a system pool");
  if (m.bulk.size() > kMaxTxBytes) {
    return Status(Errc::too_big,
                  fmt::format("a transaction carries at most {} bytes of data", kMaxTxBytes));
  }
  if (t->epoch != 0) TESSERA_TRY(check_epoch(t->epoch, rt_.target().env().wall()));
  auto w = resolve(t->ctx, t->ops.front().oid, mgmt::kWrite);
  if (!w) return w.status();
  PoolShard& sh = *w->shard;
  // Who holds each change: the writers of its dkey's group (a whole-object punch: of every
  // group; an erasure-coded piece: of its position). The first writer of a group decides its
  // conditions (erasure-coded changes have none).
  std::map<ObjectId, std::shared_ptr<const placement::Placement>> places;
  std::set<std::pair<ObjectId, std::string>> ec_groups;  // checked for missing positions
  std::map<uint64_t, std::vector<size_t>> share;  // member -> its changes
  std::map<uint64_t, std::vector<bool>> decides;
  for (size_t i = 0; i < t->ops.size(); ++i) {
    const TxOp& op = t->ops[i];
    auto it = places.find(op.oid);
    if (it == places.end()) {
      auto p = sh.place(op.oid);
      if (!p) return p.status();
      it = places.emplace(op.oid, std::move(*p)).first;
    }
    std::vector<placement::Shard> writers;
    if (op.dkey.empty()) {
      writers = it->second->all_writers();
    } else if (op.pos != 0) {
      const auto group = it->second->dkey(op.dkey);
      if (op.pos > group.size()) {
        return Status(
            Errc::invalid_argument,
            fmt::format("a piece for position {} of a group of {}", op.pos - 1, group.size()));
      }
      if (ec_groups.emplace(op.oid, op.dkey).second) {
        const auto* cls = placement::find_class(placement::oid_class(op.oid));
        TESSERA_TRY(ec_group_writable(*cls, group));
      }
      writers = group[op.pos - 1].writers();
    } else {
      for (const auto& pos : it->second->dkey(op.dkey)) {
        for (const auto& s : pos.writers()) placement::add_unique(writers, s);
      }
    }
    if (writers.empty()) {
      return Status(Errc::unavailable, "no target takes writes of a key this transaction changes");
    }
    for (size_t k = 0; k < writers.size(); ++k) {
      const uint64_t who = storage::dtx_member(writers[k].rank, writers[k].target);
      share[who].push_back(i);
      decides[who].push_back(k == 0 || op.dkey.empty());
    }
  }
  if (share.count(me()) == 0) {
    return Status(Errc::stale, fmt::format("rank {} target {} holds none of this transaction's "
                                           "keys in pool map version {}",
                                           rank_, target_, sh.view->pool.map.version));
  }
  if (t->epoch == 0) t->epoch = w->store->new_epoch();  // one change over several groups
  // The id: a fresh epoch of this target's clock (the transaction's epoch came from another
  // target's), so that no transaction led here has the same.
  const storage::DtxId id{std::max(t->epoch, w->store->new_epoch()), me()};
  std::vector<uint64_t> participants{me()};
  for (const auto& [who, ops] : share) {
    if (who != me()) participants.push_back(who);
  }
  const storage::DtxChecks checks{true, true, t->owner, true};
  const std::string& key = t->ops.front().dkey;
  auto prepare_local = [&]() -> Status {
    storage::DtxStage stage;
    const auto& mine = share[me()];
    for (size_t j = 0; j < mine.size(); ++j) {
      const TxOp& op = t->ops[mine[j]];
      Status st = stage_op(*w->store, store_key(op.oid, t->ctx.cont), w->csum, op, decides[me()][j],
                           m.bulk, t->epoch, stage);
      if (!st.is_ok()) {
        w->store->dtx_discard(stage);
        return st;
      }
    }
    return w->store->dtx_prepare(id, participants, std::move(stage), checks);
  };
  std::vector<DtxPart> remote;
  for (const auto& [who, idx] : share) {
    if (who == me()) continue;
    std::vector<const TxOp*> ops;
    for (size_t i : idx) ops.push_back(&t->ops[i]);
    Message f;
    f.dst = ActorAddr{static_cast<uint32_t>(who >> 32), static_cast<uint16_t>(who & 0xffffu),
                      proto::kObjectServiceActor};
    f.protocol = proto::kProtoObject;
    f.method = proto::kObjTxPrepare;
    f.body =
        tx_body(*t, ops, decides[who], m.bulk, f.bulk, id, participants, take_notices(sh, who));
    remote.push_back({who, [this, f = std::make_shared<Message>(std::move(f)), who]() -> Status {
                        auto r =
                            rt_.ask(std::move(*f), kForwardTimeout, proto::kObjectServiceActor);
                        const uint32_t rank = static_cast<uint32_t>(who >> 32);
                        const uint32_t target = static_cast<uint32_t>(who & 0xffffffffu);
                        if (!r) return at_target(r.status(), rank, target);
                        if (r->status != Errc::ok)
                          return at_target(Status(r->status, r->error), rank, target);
                        return Status();
                      }});
  }
  // This target's own part first, then the parts on this engine's other targets, then the
  // rest: a part refused on this engine, or not durable when it dies, is then one no other
  // engine ever heard of, and its "aborted" (or "never prepared") is the outcome everyone
  // finds. Prepared in parallel, the others could hold their parts prepared while only this
  // engine knows of the refusal, and decide by vote to commit without it.
  TESSERA_TRY(lead_dtx(sh, *w->store, id, key, participants, true, prepare_local, remote, true));
  TESSERA_TRY(rt_.reply(m, Status(), epoch_body(t->epoch)));
  crash_point("dtx.leader.replied", key);
  return Status();
}

Status ObjectService::on_tx_prepare(Message& m) {
  auto t = decode_tx(m);
  if (!t) return t.status();
  if (!t->ctx.replica || t->ctx.dtx.epoch == 0 || t->epoch == 0) {
    return Status(Errc::protocol, "a transaction's share comes from its coordinator");
  }
  auto w = resolve(t->ctx, t->ops.front().oid, mgmt::kWrite);
  if (!w) return w.status();
  // Conditions: the coordinator left them on the changes this target decides.
  const storage::DtxChecks checks{true, true, t->owner, true};
  TESSERA_TRY(prepare_part(
      *w->shard, *w->store, t->ctx, t->ops.front().dkey,
      [&](storage::DtxStage& stage) -> Status {
        for (const TxOp& op : t->ops) {
          TESSERA_TRY(stage_op(*w->store, store_key(op.oid, t->ctx.cont), w->csum, op, true, m.bulk,
                               t->epoch, stage));
        }
        return Status();
      },
      checks));
  return rt_.reply(m, Status(), epoch_body(t->epoch));
}

}  // namespace tessera
