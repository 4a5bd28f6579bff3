// Pool commands of the management service that change who holds what: pool creation and
// destruction (on every engine, then in the records), ACL edits (closing the handles they no
// longer grant) and the data-moving operations (exclude, drain, reintegrate, extend, rebuild),
// one at a time. The other pool commands are in pool_cmds.cpp.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "actors/mgmt/reply.hpp"
#include "actors/mgmt/service.hpp"
#include "core/log.hpp"
#include "mgmt/codec_state.hpp"
#include "proto/capnp_util.hpp"
#include "proto/protocol.hpp"

namespace tessera::mgmt {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

Result<Buffer> MgmtService::pool_op(schema::MgmtReq::PoolOp::Reader r, const Cred& cred) {
  if (!is_admin(cred)) return denied(cred, 0, "pool maps (exclude, drain, reintegrate, extend)");
  std::lock_guard create_lk(create_mu_);  // one data-moving change at a time
  const std::string op = r.getOp();
  const int32_t target = r.getTarget();
  std::vector<uint32_t> ranks;
  for (uint32_t x : r.getRanks()) ranks.push_back(x);
  uint32_t id;
  std::string uuid;
  uint64_t bytes, floor;
  std::vector<Member> engines;  // engines to call before the change
  // Reintegration: per rank, the targets that move (down or down-out) and, among them, those
  // whose data is kept because no rebuild has copied it elsewhere (still `down`).
  std::map<uint32_t, std::vector<uint32_t>> moving, keep;
  {
    std::lock_guard lk(mu_);
    auto p = find_pool(r.getPool());
    if (!p) return p.status();
    id = (*p)->id;
    uuid = (*p)->uuid;
    bytes = (*p)->target_bytes;
    floor = (*p)->newest_snapshot();
    if (op == "rebuild") {
      TESSERA_TRY(commit({{"op", "rebuild_start"}, {"pool", id}, {"now_ms", wall_ms()}}));
      return pool_reply(**p, false);
    }
    if (ranks.empty()) return Status(Errc::invalid_argument, "name at least one rank");
    using placement::TargetState;
    // Which states each operation moves targets from, and to.
    std::vector<TargetState> from;
    TargetState to = TargetState::down;
    if (op == "exclude") {
      from = {TargetState::up_in, TargetState::up, TargetState::drain};
    } else if (op == "drain") {
      from = {TargetState::up_in};
      to = TargetState::drain;
    } else if (op == "reintegrate") {
      from = {TargetState::down_out, TargetState::down};
      to = TargetState::up;
    } else if (op != "extend") {
      return Status(Errc::invalid_argument,
                    fmt::format("unknown pool operation '{}' (exclude, drain, reintegrate, "
                                "extend, rebuild)",
                                op));
    }
    for (uint32_t rank : ranks) {
      auto m = state_.members().find(rank);
      if (m == state_.members().end()) {
        return Status(Errc::not_found, fmt::format("no rank {} in the system", rank));
      }
      const placement::MapEngine* e = (*p)->map.engine(rank);
      if (op == "extend") {
        if (e != nullptr) {
          return Status(Errc::exists,
                        fmt::format("rank {} is already in pool '{}'", rank, (*p)->label));
        }
      } else {
        if (e == nullptr) {
          return Status(Errc::not_found,
                        fmt::format("rank {} is not in pool '{}'", rank, (*p)->label));
        }
        bool any = false;
        for (const auto& t : e->targets) {
          if (target >= 0 && t.index != static_cast<uint32_t>(target)) continue;
          const bool applies = std::find(from.begin(), from.end(), t.state) != from.end();
          // Reintegrating a rank takes back those of its targets that are out; the others
          // keep serving (and keep their data).
          if (op == "reintegrate" && target < 0 && !applies) continue;
          any = true;
          if (op == "reintegrate") {
            moving[rank].push_back(t.index);
            // Its data may be the last up-to-date copy when no rebuild copied it elsewhere
            // (still down), or when a rebuild of the pool found data it could not copy (a
            // container lost data): then it is kept, never dropped as stale.
            // A damaged store is never kept: nothing of it can be read.
            bool lost = false;
            for (const auto& [cid, c] : (*p)->containers) lost |= c.lost_data;
            if ((t.state == TargetState::down || lost) && (*p)->damage(rank, t.index) == nullptr) {
              keep[rank].push_back(t.index);
            }
          }
          if (!applies) {
            return Status(
                Errc::invalid_argument,
                fmt::format("pool '{}': target {}:{} is {}; {} applies to {}", (*p)->label, rank,
                            t.index, placement::state_name(t.state), op,
                            op == "exclude" ? "up-in, up or drain targets"
                            : op == "drain" ? "up-in targets"
                                            : "down or down-out targets"));
          }
        }
        if (!any && op == "reintegrate" && target < 0) {
          return Status(Errc::invalid_argument,
                        fmt::format("pool '{}': rank {} has no down or down-out target to "
                                    "reintegrate",
                                    (*p)->label, rank));
        }
        if (!any) {
          return Status(Errc::not_found, fmt::format("rank {} has no target {}", rank, target));
        }
      }
      if (op == "extend" || op == "reintegrate") {
        if (m->second.state != MemberState::joined) {
          return Status(Errc::unavailable, fmt::format("rank {} is {}: start it first", rank,
                                                       member_state_name(m->second.state)));
        }
        engines.push_back(m->second);
      }
    }
    if (op == "exclude" || op == "drain") {
      for (uint32_t rank : ranks) {
        TESSERA_TRY(commit({{"op", "target_state"},
                            {"pool", id},
                            {"rank", rank},
                            {"target", target},
                            {"state", std::string(placement::state_name(to))},
                            {"rebuild", true},
                            {"now_ms", wall_ms()}}));
      }
      log::warn("management service: pool {} {} of ranks {} by uid {}", id, op,
                fmt::join(ranks, ","), cred.uid);
      const Pool* q = state_.pool(id);
      return pool_reply(*q, false);
    }
  }
  // Reintegration drops the targets' stale data; extension creates the new engines' shards.
  for (const Member& m : engines) {
    capnp::MallocMessageBuilder b(256);
    auto req = b.initRoot<schema::EngineReq>();
    if (op == "extend") {
      auto s = req.initPoolShardCreate();
      s.setId(id);
      s.setUuid(uuid);
      s.setTargetBytes(bytes);
      s.setEpochFloor(floor);
    } else {
      auto s = req.initPoolShardReset();
      s.initShard().setId(id);
      s.getShard().setUuid(uuid);
      s.getShard().setTargetBytes(bytes);
      s.getShard().setEpochFloor(floor);
      // A target that was never rebuilt elsewhere may hold the only up-to-date copy of some of
      // its data: it is kept (rebuild brings what it missed); the others start empty.
      std::vector<uint32_t> drop, kept = keep[m.rank];
      for (uint32_t t : moving[m.rank]) {
        if (std::find(kept.begin(), kept.end(), t) == kept.end()) drop.push_back(t);
      }
      auto l = s.initTargets(static_cast<unsigned>(drop.size()));
      for (size_t i = 0; i < drop.size(); ++i) l.set(static_cast<unsigned>(i), drop[i]);
      auto k = s.initKeep(static_cast<unsigned>(kept.size()));
      for (size_t i = 0; i < kept.size(); ++i) k.set(static_cast<unsigned>(i), kept[i]);
      if (!kept.empty()) {
        log::warn(
            "management service: pool {} reintegration of rank {}: targets {} may hold "
            "the only up-to-date copy of some data (never rebuilt elsewhere, or the pool "
            "lost data); their data is kept",
            id, m.rank, fmt::join(kept, ","));
      }
    }
    Status st = engine_call(m, b);
    if (!st.is_ok()) return Status(st.code(), fmt::format("pool {}: {}", op, st.message()));
  }
  std::lock_guard lk(mu_);
  if (op == "extend") {
    TESSERA_TRY(
        commit({{"op", "pool_extend"}, {"pool", id}, {"ranks", ranks}, {"now_ms", wall_ms()}}));
  } else {
    for (uint32_t rank : ranks) {
      TESSERA_TRY(commit({{"op", "target_state"},
                          {"pool", id},
                          {"rank", rank},
                          {"target", target},
                          {"targets", moving[rank]},
                          {"state", "up"},
                          {"rebuild", true},
                          {"now_ms", wall_ms()}}));
    }
  }
  log::warn("management service: pool {} {} of ranks {} by uid {}", id, op, fmt::join(ranks, ","),
            cred.uid);
  const Pool* q = state_.pool(id);
  if (q == nullptr) return Status(Errc::not_found, "the pool was destroyed");
  return pool_reply(*q, false);
}

Result<Buffer> MgmtService::pool_create(schema::MgmtReq::PoolCreate::Reader r, const Cred& cred) {
  if (!is_admin(cred)) return denied(cred, 0, "the system (creating pools needs an administrator)");
  std::lock_guard create_lk(create_mu_);
  std::vector<Member> engines;
  uint32_t id;
  std::string uuid = new_uuid();
  std::string label = r.getLabel();
  uint64_t bytes = r.getTargetBytes();
  {
    std::unique_lock lk(mu_);
    if (r.getRanks().size() == 0) await_rejoins(lk);
    if (label.empty()) return Status(Errc::invalid_argument, "a pool needs a label");
    if (state_.pool(label) != nullptr) {
      return Status(Errc::exists, fmt::format("a pool labelled '{}' exists", label));
    }
    if (bytes < (64ull << 20)) {
      return Status(Errc::invalid_argument, "a pool needs at least 64 MiB per target");
    }
    std::vector<uint32_t> ranks;
    for (uint32_t x : r.getRanks()) ranks.push_back(x);
    if (ranks.empty()) {
      // Every joined engine that is connected to this service: after a change of leader, one
      // that has not joined the new leader within the rejoin window (the old leader's own
      // engine, dead) is left out until its heartbeat timeout decides.
      for (const auto& [rank, m] : state_.members()) {
        if (m.state == MemberState::joined &&
            (rank_session_.count(rank) != 0 || rank == opts_.self_rank))
          ranks.push_back(rank);
      }
    }
    if (ranks.empty()) return Status(Errc::unavailable, "no engine has joined the system");
    for (uint32_t rank : ranks) {
      auto it = state_.members().find(rank);
      if (it == state_.members().end()) {
        return Status(Errc::not_found, fmt::format("no rank {} in the system", rank));
      }
      if (it->second.state != MemberState::joined) {
        return Status(Errc::unavailable,
                      fmt::format("rank {} is {}", rank, member_state_name(it->second.state)));
      }
      engines.push_back(it->second);
    }
    id = state_.next_pool_id();
  }
  // Every engine creates its shards (files sized and formatted) in parallel, without the lock.
  Status failed;
  for (const auto& r : ask_engines(engines, [&](schema::EngineReq::Builder q) {
         auto s = q.initPoolShardCreate();
         s.setId(id);
         s.setUuid(uuid);
         s.setTargetBytes(bytes);
       })) {
    if (!r && failed.is_ok()) failed = r.status();
  }
  if (!failed.is_ok()) {
    for (const Member& m : engines) {
      capnp::MallocMessageBuilder b(256);
      auto s = b.initRoot<schema::EngineReq>().initPoolShardDestroy();
      s.setId(id);
      s.setUuid(uuid);
      (void)engine_call(m, b);
    }
    return Status(failed.code(), "pool create failed: " + failed.message());
  }
  std::lock_guard lk(mu_);
  json ranks = json::array();
  for (const Member& m : engines) ranks.push_back(m.rank);
  TESSERA_TRY(commit({{"op", "pool_create"},
                      {"uuid", uuid},
                      {"label", label},
                      {"target_bytes", bytes},
                      {"ranks", ranks},
                      {"acl", acl_json(default_pool_acl(cred))}}));
  const Pool* p = state_.pool(label);
  log::info("management service: pool {} '{}' created on {} engines, {} per target", p->id, label,
            engines.size(), bytes);
  return reply(
      [&](schema::MgmtRep::Builder rep) { encode_pool(rep.initPool(), *p, state_, true); });
}

Result<Buffer> MgmtService::pool_destroy(schema::MgmtReq::Destroy::Reader r, const Cred& cred) {
  std::vector<Member> engines;
  uint32_t id;
  std::string uuid;
  {
    std::lock_guard lk(mu_);
    auto p = find_pool(r.getPool());
    if (!p) return p.status();
    if (!is_admin(cred)) {
      TESSERA_TRY(need((*p)->acl, cred, kDelete, fmt::format("pool '{}'", (*p)->label)));
    }
    if (!(*p)->containers.empty() && !r.getRecursive()) {
      std::vector<std::string> labels;
      for (const auto& [cid, c] : (*p)->containers) labels.push_back(c.props.label);
      return Status(Errc::busy,
                    fmt::format("pool '{}' still has {} container(s) ({}); destroy them first or "
                                "destroy the pool with --recursive",
                                (*p)->label, labels.size(), fmt::join(labels, ", ")));
    }
    size_t open = state_.open_handles((*p)->id);
    if (open > 0 && !r.getForce()) {
      return Status(Errc::busy, fmt::format("pool '{}' has {} open container handle(s); close "
                                            "them or destroy with --force",
                                            (*p)->label, open));
    }
    id = (*p)->id;
    uuid = (*p)->uuid;
    for (const auto& e : (*p)->map.engines) {
      auto it = state_.members().find(e.rank);
      if (it != state_.members().end()) engines.push_back(it->second);
    }
    TESSERA_TRY(commit({{"op", "pool_destroy"}, {"pool", id}}));
    reclaimed_.erase(id);
  }
  // The pool is gone from the state; engines free their shards (one that is down frees them
  // when it next joins and does not find the pool in its list).
  for (const Member& m : engines) {
    if (m.state != MemberState::joined) continue;
    capnp::MallocMessageBuilder b(256);
    auto s = b.initRoot<schema::EngineReq>().initPoolShardDestroy();
    s.setId(id);
    s.setUuid(uuid);
    Status st = engine_call(m, b);
    if (!st.is_ok()) log::warn("pool {} destroy on rank {}: {}", id, m.rank, st.to_string());
  }
  return none();
}

Result<Buffer> MgmtService::update_acl(schema::MgmtReq::AclEdit::Reader r, const Cred& cred) {
  std::lock_guard lk(mu_);
  auto p = find_pool(r.getPool());
  if (!p) return p.status();
  const Pool& pool = **p;
  const Container* c = nullptr;
  std::string what = fmt::format("pool '{}'", pool.label);
  if (r.hasCont() && r.getCont().size() > 0) {
    TESSERA_TRY(need(pool.acl, cred, kRead, what));
    auto k = find_cont(pool, r.getCont());
    if (!k) return k.status();
    c = *k;
    what = fmt::format("container '{}'", c->props.label);
  }
  const Acl& cur = c != nullptr ? c->acl : pool.acl;
  if (r.getGet()) {
    TESSERA_TRY(need(cur, cred, kGetAcl, what));
    return reply([&](schema::MgmtRep::Builder rep) { encode_acl(rep.initAcl(), cur); });
  }
  if (!(c == nullptr && is_admin(cred))) TESSERA_TRY(need(cur, cred, kSetAcl, what));
  Acl next = cur;
  if (r.getReplace()) next.entries.clear();
  for (auto a : r.getSet()) {
    auto ace = decode_ace(a);
    if (!ace) return ace.status();
    next.update(*ace);
  }
  for (auto a : r.getRemove()) {
    auto ace = decode_ace(a);
    if (!ace) return ace.status();
    if (!next.remove(*ace)) {
      return Status(Errc::not_found, fmt::format("{} has no entry {}", what, ace_text(*ace)));
    }
  }
  json cmd =
      c != nullptr
          ? json{{"op", "cont_acl"}, {"pool", pool.id}, {"cont", c->id}, {"acl", acl_json(next)}}
          : json{{"op", "pool_acl"}, {"pool", pool.id}, {"acl", acl_json(next)}};
  TESSERA_TRY(commit(cmd));
  close_disallowed_handles(pool.id);  // a removed entry takes its holders' handles with it
  return reply([&](schema::MgmtRep::Builder rep) { encode_acl(rep.initAcl(), next); });
}

}  // namespace tessera::mgmt
