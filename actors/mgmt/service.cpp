#include "actors/mgmt/service.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include <future>
#include <random>
#include <variant>

#include "actors/mgmt/reply.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "mgmt/codec_state.hpp"
#include "net/stream.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"

namespace tessera::mgmt {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string new_uuid() {
  std::random_device rd;
  std::mt19937_64 g((uint64_t{rd()} << 32) ^ rd() ^
                    static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  uint64_t a = g(), b = g();
  a = (a & ~0xf000ull) | 0x4000ull;                         // version 4
  b = (b & 0x3fffffffffffffffull) | 0x8000000000000000ull;  // variant
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xffff,
                     b >> 48, b & 0xffffffffffffull);
}

Result<std::unique_ptr<MgmtService>> MgmtService::open(MgmtOptions opts) {
  std::unique_ptr<MgmtService> s(new MgmtService(std::move(opts)));
  if (s->replicated()) {
    // The state is raft's: its snapshot and log, applied as the replica starts.
    TESSERA_TRY(s->start_replica());
    s->live_.begin(Clock::now().time_since_epoch());
    s->monitor_ = std::thread([p = s.get()] { p->monitor(); });
    s->worker_ = std::thread([p = s.get()] { p->worker(); });
    log::info("management service: access point rank {} of {} ({}), raft log in {}",
              s->opts_.self_rank, s->opts_.access_points.size(),
              access_points_text(s->opts_.access_points), s->opts_.raft_dir);
    return s;
  }
  auto st = s->file_.load();
  if (!st) return st.status();
  s->state_ = std::move(*st);
  // Every member gets a grace period to reconnect after the service restarts.
  s->live_.restart(s->state_, Clock::now().time_since_epoch());
  s->monitor_ = std::thread([p = s.get()] { p->monitor(); });
  s->worker_ = std::thread([p = s.get()] { p->worker(); });
  {
    // Rebuilds that were running when the service stopped go on.
    std::lock_guard lk(s->mu_);
    s->drive_rebuilds();
  }
  log::info("management service: state {} ({} engines, {} pools, {} commands applied)",
            s->file_.path(), s->state_.members().size(), s->state_.pools().size(),
            s->state_.applied());
  return s;
}

MgmtService::~MgmtService() {
  {
    std::lock_guard lk(mu_);
    quit_ = true;
    closing_ = true;
  }
  cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  {
    std::lock_guard lk(jobs_mu_);
    jobs_quit_ = true;
  }
  jobs_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // Raft's loop thread applies under mu_.state(): stopped while nothing holds it.
  std::shared_ptr<Replica> rep;
  {
    std::lock_guard lk(mu_);
    rep = std::move(replica_);
  }
  rep.reset();
}

void MgmtService::post(std::function<void()> job) {
  {
    std::lock_guard lk(jobs_mu_);
    jobs_.push_back(std::move(job));
  }
  jobs_cv_.notify_all();
}

void MgmtService::worker() {
  std::unique_lock lk(jobs_mu_);
  while (true) {
    jobs_cv_.wait(lk, [&] { return jobs_quit_ || !jobs_.empty() || !revokes_.empty(); });
    if (jobs_quit_) return;
    auto jobs = std::move(jobs_);
    jobs_.clear();
    auto revokes = std::move(revokes_);
    revokes_.clear();
    lk.unlock();
    for (auto& j : jobs) j();
    for (auto& [rank, r] : revokes) send_revokes(std::move(r));
    lk.lock();
  }
}

void MgmtService::drive_rebuilds() {
  // The driver's whole answer first: a commit that fails restores the whole state.
  RebuildDriver::Actions a = rebuilds_.after_change(state_, wall_ms());
  for (const auto& s : a.starts) {
    log::info("management service: pool {} rebuild generation {} (map version {}) on {} engines",
              s.pool, s.gen, s.version, s.ranks.size());
    send_rebuild(s);
  }
  for (const auto& c : a.commands) (void)commit(c);  // generations with nothing to wait for
}

void MgmtService::retry_rebuilds(std::chrono::steady_clock::time_point now) {
  std::vector<RebuildDriver::Scheduled> planned;
  auto cmd = rebuilds_.tick(state_, now.time_since_epoch(), wall_ms(), &planned);
  for (const auto& r : planned) {
    const Pool* p = state_.pool(r.pool);
    log::warn("management service: pool {} rebuild generation {} failed ({}); retry {} in {} s",
              p->label, r.gen, p->rebuild.error, r.attempt,
              std::chrono::duration_cast<std::chrono::seconds>(r.wait).count());
  }
  if (!cmd) return;
  const std::string label = state_.pool(cmd->command["pool"].get<uint32_t>())->label;
  Status st = commit(cmd->command);
  if (!st.is_ok()) {
    log::warn("management service: pool {}: starting rebuild retry {}: {}", label, cmd->attempt,
              st.to_string());
    return;
  }
  log::info("management service: pool {}: rebuild retry {} started", label, cmd->attempt);
}

void MgmtService::send_rebuild(const RebuildDriver::Start& s) {
  // The engine answers at once (its targets scan in the background). An engine that cannot be
  // reached (its host cut off: a connect may wait a minute and more for "no route to host")
  // must not hold back the next generation's start, which the same worker sends: it is given
  // kRebuildStartTimeout, and is sent the generation when it joins again.
  std::vector<Member> to;
  for (uint32_t rank : s.ranks) {
    auto m = state_.members().find(rank);
    if (m != state_.members().end()) to.push_back(m->second);
  }
  post([this, s, to = std::move(to)] {
    for (const Member& m : to) {
      capnp::MallocMessageBuilder b(128);
      auto r = b.initRoot<schema::EngineReq>().initRebuildStart();
      r.setPool(s.pool);
      r.setGen(s.gen);
      r.setVersion(s.version);
      Status st = engine_call(m, b, kRebuildStartTimeout);
      if (!st.is_ok()) {
        log::warn("pool {} rebuild generation {}: {}", s.pool, s.gen, st.to_string());
      }
    }
  });
}

Buffer MgmtService::pool_reply(const Pool& p, bool with_conts) const {
  return reply([&](schema::MgmtRep::Builder r) {
    encode_pool(r.initPool(), p, state_, with_conts);
    encode_progress(r.getPool(), p);
  });
}

Status MgmtService::own_connection(uint32_t rank, uint64_t session,
                                   std::string_view reports) const {
  if (auto live = rank_session_.find(rank);
      live == rank_session_.end() || live->second != session) {
    return Status(Errc::permission,
                  fmt::format("only rank {} reports {} of its own targets, on the connection it "
                              "joined with",
                              rank, reports));
  }
  return Status();
}

std::string MgmtService::reclaim_pending_text(const Pool& p) const {
  auto done = reclaimed_.find(p.id);
  return targets_text(
      reclaim_pending(p, done == reclaimed_.end() ? ReclaimReports{} : done->second));
}

void MgmtService::encode_progress(schema::PoolInfo::Builder b, const Pool& p) const {
  auto rb = b.getRebuild();
  if (p.rebuild.state == "done") rb.setReclaimPending(reclaim_pending_text(p));
  if (p.rebuild.state != "busy") return;
  const RebuildProgress sum = rebuilds_.progress(p);
  rb.setTargetsTotal(sum.targets_total);
  if (sum.targets_reported == 0) return;
  rb.setObjects(sum.objects);
  rb.setRecords(sum.records);
  rb.setBytes(sum.bytes);
  rb.setLost(sum.lost);
  rb.setBytesTotal(sum.bytes_total);
  rb.setTargetsReported(sum.targets_reported);
  rb.setTargetsDone(sum.targets_done);
}

Status MgmtService::rebuild_report(schema::MgmtReq::RebuildReport::Reader r) {
  if (state_.pool(r.getPool()) == nullptr) {
    return Status(Errc::not_found, fmt::format("no pool {}", r.getPool()));
  }
  RebuildDriver::Report rep{r.getPool(),    r.getGen(),     r.getRank(),  r.getTarget(),
                            r.getObjects(), r.getRecords(), r.getBytes(), r.getLost(),
                            r.getPlanned(), r.getDone(),    r.getError()};
  auto cmd = rebuilds_.report(state_, rep, wall_ms());
  if (!cmd) return Status();
  if ((*cmd)["op"] == "rebuild_failed") {
    log::warn("management service: pool {} rebuild generation {} failed on rank {} target {}: {}",
              rep.pool, rep.gen, rep.rank, rep.target, rep.error);
  } else {
    log::info(
        "management service: pool {} rebuild generation {} done: {} objects, {} records, "
        "{} bytes, {} lost",
        rep.pool, rep.gen, (*cmd)["objects"].get<uint64_t>(), (*cmd)["records"].get<uint64_t>(),
        (*cmd)["bytes"].get<uint64_t>(), (*cmd)["lost"].get<uint64_t>());
  }
  return commit(*cmd);
}

Status MgmtService::commit(const json& cmd) {
  if (replicated()) {
    TESSERA_TRY(propose(cmd));  // applied here once a majority has it in its log
  } else {
    if (!unpersisted_.is_ok()) return unpersisted_;
    TESSERA_TRY(state_.apply(cmd));
    Status st = file_.record(state_, cmd);
    if (!st.is_ok()) {
      // Not durable: not done. The state is what the disk holds.
      log::error("management service: cannot persist a command: {}", st.to_string());
      auto back = file_.load();
      if (back) {
        state_ = std::move(*back);
      } else {
        unpersisted_ =
            Status(Errc::io_error, fmt::format("the management service cannot keep its state ({}; "
                                               "then {}): restart it once its disk is healthy",
                                               st.to_string(), back.status().to_string()));
        log::error("management service: {}", unpersisted_.to_string());
      }
      return st;
    }
  }
  // (Raft applied this leader's commands in order: the last one applied is this one.)
  revoke_removed(state_.removed_handles());
  drive_rebuilds();
  return Status();
}

Result<const Pool*> MgmtService::find_pool(const std::string& key) const {
  const Pool* p = state_.pool(key);
  if (p == nullptr) {
    return Status(Errc::not_found, fmt::format("unknown pool '{}' (tessera pool list)", key));
  }
  return p;
}

Result<const Container*> MgmtService::find_cont(const Pool& p, const std::string& key) const {
  const Container* c = p.container(key);
  if (c == nullptr) {
    return Status(Errc::not_found, fmt::format("pool '{}' has no container '{}'", p.label, key));
  }
  return c;
}

Result<MgmtService::PoolCont> MgmtService::find_pool_cont(const std::string& pool,
                                                          const std::string& cont, const Cred& cred,
                                                          uint32_t perms) const {
  auto p = find_pool(pool);
  if (!p) return p.status();
  TESSERA_TRY(need((*p)->acl, cred, kRead, fmt::format("pool '{}'", (*p)->label)));
  auto c = find_cont(**p, cont);
  if (!c) return c.status();
  if (perms != 0) {
    TESSERA_TRY(need((*c)->acl, cred, perms, fmt::format("container '{}'", (*c)->props.label)));
  }
  return PoolCont{*p, *c};
}

Status MgmtService::engine_call(const Member& m, capnp::MessageBuilder& req,
                                std::chrono::milliseconds timeout) {
  return engine_ask(m, req, timeout).status();
}

Result<Buffer> MgmtService::engine_ask(const Member& m, capnp::MessageBuilder& req,
                                       std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) timeout = opts_.engine_timeout;
  auto r = net::control_call(m.control_addr, timeout, proto::kProtoMgmt, proto::kEngineCall,
                             capn::to_body(req));
  if (!r) {
    return Status(r.status().code(), fmt::format("rank {}: {}", m.rank, r.status().message()));
  }
  return std::move(r->body);
}

std::vector<Result<Buffer>> MgmtService::ask_engines(
    const std::vector<Member>& to, const std::function<void(schema::EngineReq::Builder)>& build,
    std::chrono::milliseconds timeout) {
  std::vector<std::future<Result<Buffer>>> calls;
  for (const Member& m : to) {
    calls.push_back(std::async(std::launch::async, [this, &build, m, timeout] {
      capnp::MallocMessageBuilder b(256);
      build(b.initRoot<schema::EngineReq>());
      return engine_ask(m, b, timeout);
    }));
  }
  std::vector<Result<Buffer>> out;
  for (auto& f : calls) out.push_back(f.get());
  return out;
}

Result<Buffer> MgmtService::handle(const Message& m, uint64_t session) {
  if (m.protocol != proto::kProtoMgmt || m.method != proto::kMgmtCall) {
    return Status(Errc::unsupported, fmt::format("the management service does not serve protocol "
                                                 "{} method {}",
                                                 m.protocol, m.method));
  }
  try {
    capn::BodyReader br(m.body);
    auto req = br.root<schema::MgmtReq>();
    auto cred = caller(m, req);
    if (!cred) return cred.status();
    if (req.isReplicaInfo()) return on_replica_info();  // any access point answers
    if (!leading_.load()) return not_leader_reply();
    return dispatch(req, *cred, session);
  } catch (const kj::Exception& e) {
    return Status(Errc::protocol,
                  fmt::format("malformed management request: {}", e.getDescription().cStr()));
  }
}

Result<Cred> MgmtService::caller(const Message& m, schema::MgmtReq::Reader req) {
  if (m.trusted()) {
    Cred c = decode_cred(req.getCred());
    c.system = true;
    return c;
  }
  if (m.origin == Origin::forged) {
    return Status(Errc::unauthenticated,
                  "the request's MAC does not verify: it was made with another system's key");
  }
  if (!opts_.verifier) {
    return Status(Errc::unauthenticated,
                  "this management service knows no node agents' keys: only engines and "
                  "administrators (the system key) are served");
  }
  auto c = opts_.verifier->verify(m.cred, m.body.span(), wall_ms());
  if (!c) {
    if (m.cred.empty()) {
      return Status(Errc::unauthenticated,
                    "the request carries no credential: users are vouched for by tessera-agent "
                    "on their node ($TESSERA_AGENT names its socket)");
    }
    return c.status();
  }
  Cred out;
  out.uid = c->uid;
  out.gid = c->gid;
  out.groups = std::move(c->groups);
  out.user = std::move(c->user);
  return out;
}

uint64_t wall_epoch() {
  return epoch_at_wall(RealEnv::instance().wall());
}

// One handler per command (the request's union member); each takes the state lock itself.
// Commands whose handler reads the whole request are named; the others are handed their part.
Result<Buffer> MgmtService::dispatch(schema::MgmtReq::Reader req, const Cred& cred,
                                     uint64_t session) {
  using W = schema::MgmtReq::Which;
  using Req = schema::MgmtReq::Reader;
  using Cmd = Result<Buffer> (MgmtService::*)(Req, const Cred&, uint64_t);
  using Fn = Result<Buffer> (*)(MgmtService&, Req, const Cred&, uint64_t);
  static const std::map<W, std::variant<Cmd, Fn>> kHandlers = {
      {W::JOIN, &MgmtService::cmd_join},
      {W::HANDLE_RENEW, &MgmtService::cmd_handle_renew},
      {W::HEARTBEAT, &MgmtService::cmd_heartbeat},
      {W::LEAVE, &MgmtService::cmd_leave},
      {W::SYSTEM_QUERY, &MgmtService::cmd_system_query},
      {W::SYSTEM_STOP, &MgmtService::cmd_system_stop},
      {W::POOL_CREATE, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.pool_create(q.getPoolCreate(), c);
       }}},
      {W::POOL_LIST, &MgmtService::cmd_pool_list},
      {W::POOL_QUERY, &MgmtService::cmd_pool_query},
      {W::POOL_MAP, &MgmtService::cmd_pool_map},
      {W::POOL_SNAPSHOTS, &MgmtService::cmd_pool_snapshots},
      {W::POOL_PROPS, &MgmtService::cmd_pool_props},
      {W::POOL_DESTROY, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.pool_destroy(q.getPoolDestroy(), c);
       }}},
      {W::UPDATE_ACL, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.update_acl(q.getUpdateAcl(), c);
       }}},
      {W::POOL_SET_PROP, &MgmtService::cmd_pool_set_prop},
      {W::CONT_CREATE, &MgmtService::cmd_cont_create},
      {W::CONT_QUERY, &MgmtService::cmd_cont_query},
      {W::CONT_DESTROY, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.cont_destroy(q.getContDestroy(), c);
       }}},
      {W::CONT_ROLLBACK, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.cont_rollback(q.getContRollback(), c);
       }}},
      {W::CONT_SET_PROP, &MgmtService::cmd_cont_set_prop},
      {W::CONT_SET_ATTR, &MgmtService::cmd_cont_set_attr},
      {W::SNAP_CREATE, &MgmtService::cmd_snap},
      {W::SNAP_DESTROY, &MgmtService::cmd_snap},
      {W::CONT_OPEN, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.on_cont_open(q.getContOpen(), c);
       }}},
      {W::CONT_CLOSE, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.on_cont_close(q.getContClose(), c);
       }}},
      {W::HANDLE_QUERY, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.on_handle_query(q.getHandleQuery(), c);
       }}},
      {W::POOL_EVICT, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.on_pool_evict(q.getPoolEvict(), c);
       }}},
      {W::RANK_DEAD, &MgmtService::cmd_rank_dead},
      {W::RANK_EXCLUDE, &MgmtService::cmd_rank_exclude},
      {W::TARGET_STATE, &MgmtService::cmd_target_state},
      {W::TARGET_STOP, &MgmtService::cmd_target_stop},
      {W::REPLICA_INFO,
       Fn{[](MgmtService& s, Req, const Cred&, uint64_t) { return s.on_replica_info(); }}},
      {W::SHARD_DAMAGED, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t n) {
         return s.on_shard_damaged(q.getShardDamaged(), c, n);
       }}},
      {W::POOL_OP, Fn{[](MgmtService& s, Req q, const Cred& c, uint64_t) {
         return s.pool_op(q.getPoolOp(), c);
       }}},
      {W::REBUILD_REPORT, &MgmtService::cmd_rebuild_report},
      {W::RECLAIM_DONE, &MgmtService::cmd_reclaim_done},
  };
  auto h = kHandlers.find(req.which());
  if (h == kHandlers.end()) return Status(Errc::unsupported, "unknown management request");
  if (const Cmd* cmd = std::get_if<Cmd>(&h->second)) return (this->**cmd)(req, cred, session);
  return std::get<Fn>(h->second)(*this, req, cred, session);
}

Result<Buffer> MgmtService::on_shard_damaged(schema::MgmtReq::ShardDamaged::Reader r,
                                             const Cred& cred, uint64_t session) {
  std::lock_guard lk(mu_);
  if (!cred.system) return engines_only("reporting damaged targets");
  const uint32_t rank = r.getRank();
  TESSERA_TRY(own_connection(rank, session, "damage"));
  const Pool* p = state_.pool(r.getPool());
  if (p == nullptr) return Status(Errc::not_found, fmt::format("no pool {}", r.getPool()));
  const std::string reason = r.getReason();
  TESSERA_TRY(commit({{"op", "shard_damaged"},
                      {"pool", p->id},
                      {"rank", rank},
                      {"target", r.getTarget()},
                      {"reason", reason},
                      {"now_ms", wall_ms()}}));
  const Pool* q = state_.pool(p->id);
  const auto st = q->map.state(rank, r.getTarget());
  log::error("management service: pool {} target {}:{} is damaged ({}); it is {}", q->label, rank,
             r.getTarget(), reason,
             st == placement::TargetState::down
                 ? "down, and rebuilt from the other copies"
                 : "kept in the map: taking it out would leave data without an up-to-date copy; "
                   "exclude it to accept the loss, or reintegrate it to format it anew");
  return none();
}

}  // namespace tessera::mgmt
