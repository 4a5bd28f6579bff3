// Distributed transactions: every replicated or erasure-coded update is one (docs/TRANSACTIONS.md).
//
// The group's leader stamps the epoch, which with its own name is the transaction's id. Every
// participant (the leader too) stages its change and logs it as prepared: durable, invisible.
// Once every participant answered "prepared", the leader commits its own part, replies to the
// client, and tells the others later: the commit rides on the next request it forwards to each
// of them, or goes by the notice fiber within milliseconds. A reader that meets a prepared
// change asks the leader, which answers once it has decided. A transaction left prepared (the
// leader died, a notice was lost) is resolved by the background fiber: its leader answers, or,
// when the leader is no longer a member of the group, the participants decide by vote (any
// that never prepared it aborts it, and remembers the abort so that a late prepare is refused;
// otherwise it commits). A leader that restarts with a transaction prepared decides the same
// way. Nothing on a target thread blocks: every wait is a fiber suspension.
#include <boost/fiber/future.hpp>

#include <algorithm>

#include "actors/object_service.hpp"
#include "actors/object_service_util.hpp"
#include "core/crash_point.hpp"
#include "core/log.hpp"
#include "core/no_lock.hpp"
#include "placement/layout.hpp"
#include "proto/protocol.hpp"

namespace tessera {

using namespace objsvc;
using capn::BodyReader;
using storage::DtxId;
using storage::DtxState;

namespace {
constexpr auto kDtxAsk = std::chrono::seconds(2);            // one question to a participant
constexpr auto kDtxWait = std::chrono::seconds(5);           // a reader waiting for a decision
constexpr auto kNoticeBatch = std::chrono::milliseconds(2);  // commits gathered per notice
constexpr auto kResolveAfter = std::chrono::seconds(1);      // prepared this long: resolve it
constexpr size_t kMaxNotices = 4096;                         // per participant (then it asks)

std::string member_name(uint64_t m) {
  return fmt::format("rank {} target {}", m >> 32, m & 0xffffffffu);
}

ActorAddr member_addr(uint64_t m) {
  return ActorAddr{static_cast<uint32_t>(m >> 32), static_cast<uint16_t>(m & 0xffffu),
                   proto::kObjectServiceActor};
}

// The decision on `ids` for `member` (kObjDtxOutcome).
Message outcome_message(uint32_t pool, uint64_t member, const std::vector<DtxId>& ids,
                        bool commit) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::DtxOutcomeReq>();
  req.initCtx().setPool(pool);
  req.getCtx().setReplica(true);
  req.setCommit(commit);
  auto l = req.initIds(static_cast<unsigned>(ids.size()));
  for (size_t i = 0; i < ids.size(); ++i) dtx_to(l[static_cast<unsigned>(i)], ids[i]);
  Message m;
  m.dst = member_addr(member);
  m.protocol = proto::kProtoObject;
  m.method = proto::kObjDtxOutcome;
  m.body = capn::to_body(b);
  return m;
}

// Waits (suspending the fiber) until the transaction is decided in `store` or Env time reaches
// `until`.
DtxState wait_decided(Target& t, storage::TargetStore& store, const DtxId& id, Nanos until) {
  NoLock nl;
  DtxState s = store.dtx_state(id);
  while (s == DtxState::prepared || s == DtxState::unknown) {
    if (t.wait_until(store.dtx_decided_cv(), nl, until)) return store.dtx_state(id);
    s = store.dtx_state(id);
  }
  return s;
}
// Holds `id` in one of a shard's sets of transactions a fiber is deciding (led here, being
// resolved here); when it ends, the fibers waiting for a decision look again.
class Marked {
 public:
  Marked(std::set<DtxId>& set, storage::TargetStore& store, const DtxId& id)
      : set_(set), store_(store), id_(id) {
    set_.insert(id_);
  }
  ~Marked() {
    set_.erase(id_);
    store_.dtx_decided_cv().notify_all();
  }
  Marked(const Marked&) = delete;
  Marked& operator=(const Marked&) = delete;

 private:
  std::set<DtxId>& set_;
  storage::TargetStore& store_;
  DtxId id_;
};
}  // namespace

// ---- leader -----------------------------------------------------------------------------------

Status ObjectService::lead_dtx(PoolShard& sh, storage::TargetStore& store, const DtxId& id,
                               std::string_view key, const std::vector<uint64_t>& participants,
                               bool sequential, const std::function<Status()>& prepare_local,
                               const std::vector<DtxPart>& remote, bool confirm) {
  Marked leading(sh.dtx_leading, store, id);
  crash_point("dtx.leader.start", key);
  // The participants asked so far (only they can hold the transaction prepared).
  std::vector<uint64_t> asked{me()};
  auto on_this_engine = [&](const DtxPart& p) { return (p.member >> 32) == rank_; };
  Status first;  // the first failure, here or of a part asked
  // Asks the parts on this engine (`here`) or on the others, in parallel; the call it returns
  // waits for their answers.
  auto ask = [&](bool here) {
    std::vector<std::shared_ptr<boost::fibers::promise<Status>>> done;
    for (const auto& part : remote) {
      if (on_this_engine(part) != here) continue;
      asked.push_back(part.member);
      auto p = std::make_shared<boost::fibers::promise<Status>>();
      done.push_back(p);
      rt_.target().spawn([p, prepare = part.prepare] { p->set_value(prepare()); });
    }
    return [&first, done = std::move(done)] {
      for (auto& p : done) {
        Status st = p->get_future().get();
        if (!st.is_ok() && first.is_ok()) first = st;
      }
    };
  };
  if (sequential) {
    // A conditional change is decided here first: nobody else hears of a refused one.
    first = prepare_local();
    if (!first.is_ok()) {
      (void)store.dtx_abort(id);
      return first;
    }
  }
  // This engine first: a refusal here, or a part not durable when the engine dies, is then one
  // no other engine heard of. Without parts here the local part runs beside the others.
  const bool siblings = std::any_of(remote.begin(), remote.end(), on_this_engine);
  if (siblings) {
    auto wait = ask(true);
    if (!sequential) first = prepare_local();
    wait();
  }
  if (first.is_ok()) {
    auto wait = ask(false);
    if (!sequential && !siblings) first = prepare_local();
    crash_point("dtx.leader.local", key);
    wait();
  }
  if (first.is_ok()) {
    // Every participant holds its part durably: the transaction is committed. The others
    // learn it with the next request to them or from the notice fiber.
    crash_point("dtx.leader.prepared", key);
    Status st = store.dtx_commit(id);
    if (!st.is_ok()) return st;  // decided aborted meanwhile by a resolver: not acknowledged
    crash_point("dtx.leader.committed", key);
    for (uint64_t p : participants) {
      if (p == me()) continue;
      auto& q = sh.dtx_notices[p];
      if (q.size() >= kMaxNotices) q.erase(q.begin());  // that one asks when it needs to
      q.push_back(id);
    }
    dtx_wake_.notify_all();
    return Status();
  }
  if (confirm) return confirm_abort(sh, store, id, key, asked, first);
  // Not every part is prepared: abort everywhere it was asked (a participant that missed this
  // notice asks, and hears "aborted").
  (void)store.dtx_abort(id);
  for (uint64_t p : asked) {
    if (p != me()) send_outcome(sh.id, p, {id}, false);
  }
  return first;
}

Status ObjectService::confirm_abort(PoolShard& sh, storage::TargetStore& store, const DtxId& id,
                                    std::string_view key, const std::vector<uint64_t>& participants,
                                    const Status& why) {
  // The others abort first, durably; this target's own part stays prepared until every one of
  // them confirmed. A coordinator that dies meanwhile comes back with its part prepared and
  // decides with the others (decide_by_vote), as they decide without it: an abort logged here
  // first would be an outcome nobody else can see, and they could commit by vote.
  crash_point("dtx.leader.aborting", key);
  std::vector<std::shared_ptr<boost::fibers::promise<Status>>> acks;
  for (uint64_t p : participants) {
    if (p == me()) continue;
    auto done = std::make_shared<boost::fibers::promise<Status>>();
    acks.push_back(done);
    auto m = std::make_shared<Message>(outcome_message(sh.id, p, {id}, false));
    rt_.target().spawn([this, m, done] {
      auto r = rt_.ask(std::move(*m), kDtxAsk, proto::kObjectServiceActor);
      done->set_value(!r                      ? r.status()
                      : r->status != Errc::ok ? Status(r->status, r->error)
                                              : Status());
    });
  }
  Status missing;
  for (auto& a : acks) {
    Status st = a->get_future().get();
    if (!st.is_ok() && missing.is_ok()) missing = st;
  }
  if (missing.is_ok()) missing = store.dtx_abort_durable(id);
  if (missing.is_ok()) return why;
  return Status(Errc::uncertain,
                fmt::format("{}; then the abort could not be confirmed everywhere ({}): the "
                            "transaction may still commit",
                            why.message(), missing.to_string()));
}

std::vector<DtxId> ObjectService::take_notices(PoolShard& sh, uint64_t member, size_t max) {
  auto it = sh.dtx_notices.find(member);
  if (it == sh.dtx_notices.end()) return {};
  std::vector<DtxId> out;
  if (it->second.size() <= max) {
    out = std::move(it->second);
    sh.dtx_notices.erase(it);
  } else {
    out.assign(it->second.begin(), it->second.begin() + static_cast<long>(max));
    it->second.erase(it->second.begin(), it->second.begin() + static_cast<long>(max));
  }
  return out;
}

void ObjectService::send_outcome(uint32_t pool, uint64_t member, std::vector<DtxId> ids,
                                 bool commit) {
  if (ids.empty()) return;
  rt_.target().spawn([this, m = outcome_message(pool, member, ids, commit)]() mutable {
    (void)rt_.ask(std::move(m), kDtxAsk, proto::kObjectServiceActor);
  });
}

// ---- participant ------------------------------------------------------------------------------

Status ObjectService::prepare_part(PoolShard& sh, storage::TargetStore& store, const Ctx& ctx,
                                   std::string_view key,
                                   const std::function<Status(storage::DtxStage&)>& stage_fn,
                                   const storage::DtxChecks& checks) {
  (void)sh;
  store.dtx_commit_prepared(ctx.commits);
  storage::DtxStage stage;
  Status st = stage_fn(stage);
  if (!st.is_ok()) {
    store.dtx_discard(stage);
    return st;
  }
  TESSERA_TRY(store.dtx_prepare(ctx.dtx, ctx.participants, std::move(stage), checks));
  crash_point("dtx.participant.prepared", key);
  return Status();
}

Status ObjectService::on_dtx_outcome(Message& m) {
  uint32_t pool;
  bool commit;
  std::vector<DtxId> ids;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::DtxOutcomeReq>();
    pool = req.getCtx().getPool();
    commit = req.getCommit();
    for (auto id : req.getIds()) ids.push_back(dtx_of(id));
    if (ds.failed()) return malformed(ds);
  }
  auto sh = shard_for(pool, 0);
  if (!sh) return sh.status();
  storage::TargetStore& store = *(*sh)->store;
  // Aborts are made durable before the answer: a coordinator may be waiting to tell its client
  // that nothing of the transaction applies (confirm_abort).
  Status st;
  if (commit) {
    store.dtx_commit_prepared(ids);
  } else {
    for (const DtxId& id : ids) {
      if (Status a = store.dtx_abort_durable(id);
          !a.is_ok() && a.code() != Errc::exists && st.is_ok()) {
        st = a;
      }
    }
  }
  return rt_.reply(m, st);
}

Status ObjectService::on_dtx_query(Message& m) {
  uint32_t pool;
  DtxId id;
  bool abort_unknown;
  {
    capn::DecodeScope ds;
    BodyReader br(m.body);
    auto req = br.root<schema::DtxQueryReq>();
    pool = req.getCtx().getPool();
    id = dtx_of(req.getId());
    abort_unknown = req.getAbortUnknown();
    if (ds.failed()) return malformed(ds);
  }
  auto use = shard_for(pool, 0);
  if (!use) return use.status();
  PoolShard& sh = **use;
  storage::TargetStore& store = *sh.store;
  DtxState s = store.dtx_state(id);
  if (id.leader == me()) {
    if (sh.dtx_leading.count(id) != 0) {
      // Still deciding: answer once decided.
      s = wait_decided(rt_.target(), store, id, rt_.target().env().now() + kDtxWait);
    } else if (s == DtxState::prepared) {
      // Prepared before a restart: decide it now, with the other participants.
      (void)resolve_dtx(sh, id);
      s = store.dtx_state(id);
    } else if (s == DtxState::unknown) {
      // Never prepared here (the leader failed before its own part was durable): it was never
      // acknowledged, and never will be.
      (void)store.dtx_abort(id);
      s = DtxState::aborted;
    }
  } else if ((s == DtxState::unknown || store.dtx_preparing(id)) && abort_unknown) {
    // Not prepared here, or still being prepared (logged, or checked against concurrent
    // transactions, which may refuse it): it counts as never prepared.
    (void)store.dtx_abort_durable(id);
    s = store.dtx_state(id);
  } else if (store.dtx_preparing(id)) {
    s = DtxState::unknown;
  }
  capnp::MallocMessageBuilder b(64);
  b.initRoot<schema::DtxQueryRep>().setState(static_cast<uint8_t>(s));
  return rt_.reply(m, Status(), capn::to_body(b));
}

// ---- resolution -------------------------------------------------------------------------------

Result<DtxState> ObjectService::ask_dtx(uint32_t pool, uint64_t member, const DtxId& id,
                                        bool abort_unknown) {
  capnp::MallocMessageBuilder b(128);
  auto req = b.initRoot<schema::DtxQueryReq>();
  req.initCtx().setPool(pool);
  req.getCtx().setReplica(true);
  dtx_to(req.initId(), id);
  req.setAbortUnknown(abort_unknown);
  Message m;
  m.dst = member_addr(member);
  m.protocol = proto::kProtoObject;
  m.method = proto::kObjDtxQuery;
  m.body = capn::to_body(b);
  // The leader may wait up to kDtxWait for its decision before it answers.
  auto r = rt_.ask(std::move(m), kDtxWait + kDtxAsk, proto::kObjectServiceActor);
  if (!r) return r.status();
  if (r->status != Errc::ok) return Status(r->status, r->error);
  capn::DecodeScope ds;
  BodyReader br(r->body);
  uint8_t s = br.root<schema::DtxQueryRep>().getState();
  if (ds.failed() || s > static_cast<uint8_t>(DtxState::aborted)) {
    return Status(Errc::protocol, "malformed transaction state");
  }
  return static_cast<DtxState>(s);
}

bool ObjectService::is_writer(const PoolShard& sh, ObjectId key, const std::string& dkey,
                              uint64_t member) const {
  if (!sh.view) return true;
  auto place = sh.place(user_oid(key));
  if (!place) return false;
  for (const auto& pos : (*place)->dkey(dkey)) {
    for (const auto& s : pos.writers()) {
      if (storage::dtx_member(s.rank, s.target) == member) return true;
    }
  }
  return false;
}

bool ObjectService::must_answer(const PoolShard& sh, const storage::TargetStore::DtxInfo& info,
                                uint64_t member) const {
  if (!info.user) return is_writer(sh, info.oid, info.dkey, member);
  // A user transaction spans groups: a participant counts while the map serves its target.
  if (!sh.view) return true;
  auto s = sh.view->pool.map.state(static_cast<uint32_t>(member >> 32),
                                   static_cast<uint32_t>(member & 0xffffffffu));
  return s && placement::is_serving(*s);
}

Status ObjectService::decide_by_vote(PoolShard& sh, const storage::TargetStore::DtxInfo& info,
                                     bool skip_leader) {
  storage::TargetStore& store = *sh.store;
  const DtxId id = info.id;
  std::vector<uint64_t> others;
  for (uint64_t p : info.participants) {
    if (p != me() && !(skip_leader && p == id.leader)) others.push_back(p);
  }
  auto decide = [&](bool commit) {
    Status st = commit ? store.dtx_commit(id) : store.dtx_abort(id);
    if (!st.is_ok()) return st;
    for (uint64_t p : others) send_outcome(sh.id, p, {id}, commit);
    log::info("pool {} rank {} target {}: transaction {} of {} resolved {} by its participants",
              sh.id, rank_, target_, id.epoch, member_name(id.leader),
              commit ? "committed" : "aborted");
    return Status();
  };
  for (uint64_t p : others) {
    auto r = ask_dtx(sh.id, p, id, true);
    if (store.dtx_state(id) != DtxState::prepared) return Status();  // decided meanwhile
    if (!r) {
      // A participant that left the group no longer counts: rebuild refills its copy from
      // those that stay. One that is still a member must answer first.
      if (must_answer(sh, info, p)) {
        return Status(Errc::busy, fmt::format("transaction {}: participant {} does not answer ({})",
                                              id.epoch, member_name(p), r.status().to_string()));
      }
      continue;
    }
    if (*r == DtxState::committed) return decide(true);
    if (*r == DtxState::aborted || *r == DtxState::unknown) return decide(false);
  }
  // Every participant that counts holds it prepared: had the leader finished, it would have
  // committed; none can have aborted it alone.
  return decide(true);
}

Status ObjectService::resolve_dtx(PoolShard& sh, const DtxId& id) {
  storage::TargetStore& store = *sh.store;
  if (store.dtx_state(id) != DtxState::prepared) return Status();
  const auto until = rt_.target().env().now() + kDtxWait;
  auto undecided = [&] {
    return Status(Errc::busy, fmt::format("transaction {} of {} is not decided yet; retry",
                                          id.epoch, member_name(id.leader)));
  };
  if (sh.dtx_leading.count(id) != 0 || sh.dtx_resolving.count(id) != 0) {
    // This target leads it, or another fiber here is asking: wait for that.
    return wait_decided(rt_.target(), store, id, until) == DtxState::prepared ? undecided()
                                                                              : Status();
  }
  const auto info = store.dtx_info(id);
  if (!info) return Status();
  Marked resolving(sh.dtx_resolving, store, id);
  if (id.leader == me()) return decide_by_vote(sh, *info, false);  // led here before a restart
  auto r = ask_dtx(sh.id, id.leader, id, false);
  if (store.dtx_state(id) != DtxState::prepared) return Status();
  if (r) {
    switch (*r) {
      case DtxState::committed:
        return store.dtx_commit(id);
      case DtxState::aborted:
      case DtxState::unknown:  // the leader never prepared it: it was never acknowledged
        return store.dtx_abort(id);
      case DtxState::prepared:
        return undecided();
    }
  }
  if (must_answer(sh, *info, id.leader)) {
    return Status(Errc::busy,
                  fmt::format("transaction {}: its leader {} does not answer ({}); "
                              "retry",
                              id.epoch, member_name(id.leader), r.status().to_string()));
  }
  return decide_by_vote(sh, *info, true);
}

Status ObjectService::settle(PoolShard& sh, ObjectId key, std::string_view dkey,
                             std::string_view akey, uint64_t epoch) {
  storage::TargetStore& store = *sh.store;
  // Each round decides one transaction; new ones prepared meanwhile are newer than the read.
  for (int round = 0; round < 64; ++round) {
    auto id = store.dtx_blocking(key, dkey, akey, epoch);
    if (!id) return Status();
    TESSERA_TRY(resolve_dtx(sh, *id));
  }
  return Status(Errc::busy, "too many transactions in flight on this key; retry");
}

Status ObjectService::settle_all(PoolShard& sh) {
  for (const auto& info : sh.store->dtx_prepared()) TESSERA_TRY(resolve_dtx(sh, info.id));
  return Status();
}

// ---- background -------------------------------------------------------------------------------

void ObjectService::run_dtx_background() {
  Target& t = rt_.target();
  NoLock nl;
  auto next_resolve = t.env().now() + kResolveAfter;
  auto resolving = std::make_shared<bool>(false);  // the resolver fiber may outlive this loop
  while (!t.stopping()) {
    bool notices = false;
    for (const auto& [id, sh] : pools_.shards) notices |= !sh->dtx_notices.empty();
    if (!notices) {
      // Woken by a commit decided here; looks at the target's stop every 100 ms.
      t.wait_until(dtx_wake_, nl,
                   std::min<Nanos>(next_resolve, t.env().now() + std::chrono::milliseconds(100)));
    }
    if (t.stopping()) break;
    // Gather the commits decided within a short window, then tell each participant at once.
    t.sleep_for(kNoticeBatch);
    for (auto& [pool, sh] : pools_.shards) {
      if (sh->closing) {
        sh->dtx_notices.clear();
        continue;
      }
      std::vector<uint64_t> members;
      for (const auto& [m, q] : sh->dtx_notices) members.push_back(m);
      for (uint64_t m : members) {
        auto ids = take_notices(*sh, m);
        // Fault point: the notices are lost; the participants learn the outcomes by asking
        // (a read that meets them, or their own resolver).
        if (!t.env().fault("dtx.commit_notice")) send_outcome(pool, m, std::move(ids), true);
      }
    }
    if (t.env().now() < next_resolve || *resolving || pools_.stopped) continue;
    next_resolve = t.env().now() + kResolveAfter;
    // Transactions prepared here for a while: learn their outcome (one fiber at a time).
    *resolving = true;
    t.spawn([this, &t, resolving] {
      std::vector<uint32_t> ids;
      for (const auto& [id, sh] : pools_.shards) ids.push_back(id);
      for (uint32_t pool : ids) {
        auto it = pools_.shards.find(pool);
        if (t.stopping() || it == pools_.shards.end() || it->second->closing) continue;
        ShardUse use(*it->second);
        const auto now = t.env().now();
        for (const auto& info : use->store->dtx_prepared()) {
          if (t.stopping() || use->closing) break;
          if (now - info.prepared < kResolveAfter) continue;
          Status st = resolve_dtx(*use, info.id);
          if (!st.is_ok() && st.code() != Errc::busy) {
            log::warn("pool {} rank {} target {}: transaction {} not resolved: {}", pool, rank_,
                      target_, info.id.epoch, st.to_string());
          }
        }
      }
      *resolving = false;
    });
  }
}

}  // namespace tessera
