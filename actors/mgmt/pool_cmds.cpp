// Pool commands of the management service that read a pool or change one of its records:
// list, query, the engines' map fetch, properties, target states (an administrator's, a
// stopped device's) and the engines' rebuild reports. Creation, destruction, ACLs and the
// data-moving operations are in pool_ops.cpp.
#include <fmt/format.h>

#include <set>

#include "actors/mgmt/reply.hpp"
#include "actors/mgmt/service.hpp"
#include "core/log.hpp"
#include "mgmt/codec_state.hpp"
#include "proto/capnp_util.hpp"

namespace tessera::mgmt {

using nlohmann::json;

namespace {

// The pool with id `id` for an engine's request about `what` (engines only: ids are not names
// a user gives).
Result<const Pool*> engines_pool(const MgmtState& state, const Cred& cred, uint32_t id,
                                 const char* what) {
  if (!cred.system) return engines_only(what);
  const Pool* p = state.pool(id);
  if (p == nullptr) return Status(Errc::not_found, fmt::format("no pool {}", id));
  return p;
}

}  // namespace

Result<Buffer> MgmtService::cmd_pool_list(schema::MgmtReq::Reader /*req*/, const Cred& cred,
                                          uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  std::vector<const Pool*> visible;
  for (const auto& [id, p] : state_.pools()) {
    if (is_admin(cred) || (p.acl.perms_for(cred) & kRead) != 0) visible.push_back(&p);
  }
  return reply([&](schema::MgmtRep::Builder r) {
    auto l = r.initPools(static_cast<unsigned>(visible.size()));
    for (size_t i = 0; i < visible.size(); ++i) {
      encode_pool(l[static_cast<unsigned>(i)], *visible[i], state_, true);
      encode_progress(l[static_cast<unsigned>(i)], *visible[i]);  // as pool query
    }
  });
}

Result<Buffer> MgmtService::cmd_pool_query(schema::MgmtReq::Reader req, const Cred& cred,
                                           uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  auto p = find_pool(req.getPoolQuery());
  if (!p) return p.status();
  TESSERA_TRY(need((*p)->acl, cred, kRead, fmt::format("pool '{}'", (*p)->label)));
  return pool_reply(**p, true);
}

Result<Buffer> MgmtService::cmd_pool_map(schema::MgmtReq::Reader req, const Cred& cred,
                                         uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  auto p = engines_pool(state_, cred, req.getPoolMap(), "pool maps by id");
  if (!p) return p.status();
  // With the containers: rebuild needs their properties (EC cell size).
  return reply([&](schema::MgmtRep::Builder r) { encode_pool(r.initPool(), **p, state_, true); });
}

Result<Buffer> MgmtService::cmd_pool_snapshots(schema::MgmtReq::Reader req, const Cred& cred,
                                               uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  auto found = engines_pool(state_, cred, req.getPoolSnapshots(), "snapshot epochs by pool id");
  if (!found) return found.status();
  const Pool* p = *found;
  const std::set<uint64_t> epochs = p->snapshot_epochs();
  return reply([&](schema::MgmtRep::Builder r) {
    auto l = r.initEpochs(static_cast<unsigned>(epochs.size()));
    unsigned i = 0;
    for (uint64_t e : epochs) l.set(i++, e);
    r.setPoolMoving(p->map.moving());
    r.setPoolReclaimPending(reclaim_pending_text(*p));
  });
}

Result<Buffer> MgmtService::cmd_pool_props(schema::MgmtReq::Reader req, const Cred& cred,
                                           uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  auto found = engines_pool(state_, cred, req.getPoolProps(), "pool properties by id");
  if (!found) return found.status();
  const Pool* p = *found;
  return reply([&](schema::MgmtRep::Builder r) {
    auto l = r.initProps(static_cast<unsigned>(p->props.size()));
    unsigned i = 0;
    for (const auto& [k, v] : p->props) {
      l[i].setName(k);
      l[i++].setValue(v);
    }
  });
}

Result<Buffer> MgmtService::cmd_pool_set_prop(schema::MgmtReq::Reader req, const Cred& cred,
                                              uint64_t /*session*/) {
  auto r = req.getPoolSetProp();
  std::lock_guard lk(mu_);
  auto p = find_pool(r.getPool());
  if (!p) return p.status();
  TESSERA_TRY(need((*p)->acl, cred, kSetProp, fmt::format("pool '{}'", (*p)->label)));
  std::string name = r.getName();
  std::string value = r.getValue();
  TESSERA_TRY(check_pool_prop(name, value));
  TESSERA_TRY(
      commit({{"op", "pool_set_prop"}, {"pool", (*p)->id}, {"name", name}, {"value", value}}));
  return none();
}

Result<Buffer> MgmtService::cmd_target_state(schema::MgmtReq::Reader req, const Cred& cred,
                                             uint64_t /*session*/) {
  auto r = req.getTargetState();
  std::lock_guard lk(mu_);
  if (!is_admin(cred)) return denied(cred, 0, "pool maps (target states)");
  auto p = find_pool(r.getPool());
  if (!p) return p.status();
  if (r.getState() > static_cast<uint8_t>(placement::TargetState::new_)) {
    return Status(Errc::invalid_argument, "unknown target state");
  }
  TESSERA_TRY(commit({{"op", "target_state"},
                      {"pool", (*p)->id},
                      {"rank", r.getRank()},
                      {"target", r.getTarget()},
                      {"state", std::string(placement::state_name(
                                    static_cast<placement::TargetState>(r.getState())))},
                      {"now_ms", wall_ms()}}));
  return reply(
      [&](schema::MgmtRep::Builder rep) { encode_pool(rep.initPool(), **p, state_, false); });
}

Result<Buffer> MgmtService::cmd_target_stop(schema::MgmtReq::Reader req, const Cred& cred,
                                            uint64_t /*session*/) {
  auto r = req.getTargetStop();
  const uint32_t rank = r.getRank();
  const uint32_t target = r.getTarget();
  Member m;
  {
    std::lock_guard lk(mu_);
    if (!is_admin(cred)) return denied(cred, 0, "the system (stopping targets)");
    auto it = state_.members().find(rank);
    if (it == state_.members().end()) {
      return Status(Errc::not_found, fmt::format("no rank {} in the system", rank));
    }
    if (target >= it->second.fabric_addrs.size()) {
      return Status(Errc::not_found, fmt::format("rank {} has no target {} (it has {})", rank,
                                                 target, it->second.fabric_addrs.size()));
    }
    if (it->second.state != MemberState::joined) {
      return Status(Errc::unavailable, fmt::format("rank {} is not joined", rank));
    }
    m = it->second;
  }
  // The engine stops serving the target first, then the pools take it out (a rebuild).
  capnp::MallocMessageBuilder b(64);
  b.initRoot<schema::EngineReq>().setTargetStop(target);
  TESSERA_TRY(engine_call(m, b));
  std::lock_guard lk(mu_);
  TESSERA_TRY(
      commit({{"op", "target_down"}, {"rank", rank}, {"target", target}, {"now_ms", wall_ms()}}));
  log::warn("management service: rank {} target {} stopped by uid {}", rank, target, cred.uid);
  return none();
}

Result<Buffer> MgmtService::cmd_rebuild_report(schema::MgmtReq::Reader req, const Cred& cred,
                                               uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  if (!cred.system) return engines_only("rebuild reports");
  TESSERA_TRY(rebuild_report(req.getRebuildReport()));
  return none();
}

Result<Buffer> MgmtService::cmd_reclaim_done(schema::MgmtReq::Reader req, const Cred& cred,
                                             uint64_t session) {
  auto r = req.getReclaimDone();
  std::lock_guard lk(mu_);
  if (!cred.system) return engines_only("reclaim reports");
  const uint32_t rank = r.getRank();
  TESSERA_TRY(own_connection(rank, session, "reclaim passes"));
  const Pool* p = state_.pool(r.getPool());
  if (p == nullptr) return Status(Errc::not_found, fmt::format("no pool {}", r.getPool()));
  const uint32_t version = r.getVersion();
  if (version > p->map.version) {
    return Status(Errc::invalid_argument, fmt::format("pool {} has no map version {} (it is at {})",
                                                      p->id, version, p->map.version));
  }
  uint32_t& seen = reclaimed_[p->id][{rank, r.getTarget()}];
  seen = std::max(seen, version);
  return none();
}

}  // namespace tessera::mgmt
