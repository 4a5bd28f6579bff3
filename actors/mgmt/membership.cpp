// Membership decisions of the management service: who is joined, stopped or dead.
//
// The rules (docs/OPERATIONS.md, "Membership and failures"):
// - a join connection that closes, heartbeat silence for `dead_after`, or a failure
//   detector's verdict (not contradicted by a recent heartbeat) make a joined engine dead;
// - an engine that stops cleanly announces it (`leave`): it is `stopped`, its targets stay in
//   the pool maps, and it is dead only if it has not joined again after `stop_grace`;
// - a service that is shutting down decides nothing (the connections it closes are not the
//   engines' deaths), and one that finds it has not run for `pause_after` gives every engine
//   a new grace period before it judges silence;
// - whether a death takes an engine's targets out of a pool map is the state machine's
//   decision (MgmtState::mark_targets): never beyond what the pool's containers tolerate.
// The timing of these judgements is mgmt::Liveness's (mgmt/liveness.hpp), which the seeded
// simulation runs too.
#include <fmt/format.h>

#include "actors/mgmt/reply.hpp"
#include "actors/mgmt/service.hpp"
#include "core/log.hpp"
#include "mgmt/codec.hpp"
#include "proto/capnp_util.hpp"

namespace tessera::mgmt {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {
long long ms(Clock::duration d) {
  return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}
}  // namespace

void MgmtService::shutdown() {
  std::shared_ptr<Replica> rep;
  {
    std::lock_guard lk(mu_);
    if (!closing_) {
      log::info("management service: shutting down; no membership decisions from now");
    }
    closing_ = true;
    if (replicated()) {
      stop_leading("this access point is stopping");
      rep = std::move(replica_);
    }
  }
  // Raft stops (a leader hands leadership on) without mu_: its loop thread applies under it.
  rep.reset();
}

Liveness::Options MgmtService::liveness_options(const MgmtOptions& o) {
  return Liveness::Options{o.dead_after,  o.rejoin_grace,         o.stop_grace,
                           o.pause_after, o.dead_confirm_silence, o.self_rank};
}

void MgmtService::check_pause(Clock::time_point now) {
  const auto gap = live_.round(now.time_since_epoch());
  if (!gap) return;
  log::warn(
      "management service: did not run for {} ms (paused or starved); every engine gets "
      "a new grace period",
      ms(*gap));
  for (auto& [cookie, at] : renewed_) at = now;
}

Status MgmtService::declare_gone(uint32_t rank, const std::string& why) {
  if (rank == opts_.self_rank && !stopping_) {
    // This service runs, so the engine hosting it does: its silence (a starved or paused
    // process, a link that timed out on a loaded machine) is its own, not a death.
    log::warn("management service: rank {} (its own host) {}: not marking it dead", rank, why);
    return Status(Errc::exists,
                  fmt::format("rank {} hosts the management service, which runs", rank));
  }
  const char* to = stopping_ ? "stopped" : "dead";
  log::warn("management service: rank {} {}: marking it {}", rank, why, to);
  return commit({{"op", "leave"}, {"rank", rank}, {"state", to}, {"now_ms", wall_ms()}});
}

void MgmtService::monitor() {
  std::unique_lock lk(mu_);
  while (!quit_) {
    cv_.wait_for(lk, std::chrono::milliseconds(500));
    if (quit_) break;
    if (replicated()) {
      lk.unlock();
      follow_leadership();
      lk.lock();
      if (quit_) break;
    }
    auto now = Clock::now();
    check_pause(now);
    if (closing_ || !leading_.load()) continue;  // a follower judges nobody
    expire_handles(now);
    retry_rebuilds(now);
    // Not joined to this leader yet: it may still be waiting on the previous one.
    auto verdict = live_.judge(state_, now.time_since_epoch(), [this](uint32_t rank) {
      return replicated() && rank_session_.count(rank) == 0;
    });
    if (verdict) (void)declare_gone(verdict->rank, verdict->why);
  }
}

void MgmtService::on_close(uint64_t session) {
  std::lock_guard lk(mu_);
  auto it = session_rank_.find(session);
  if (it == session_rank_.end()) return;
  uint32_t rank = it->second;
  session_rank_.erase(it);
  auto cur = rank_session_.find(rank);
  if (cur == rank_session_.end() || cur->second != session) return;  // rejoined since
  rank_session_.erase(cur);
  if (closing_) return;
  auto m = state_.members().find(rank);
  if (m == state_.members().end() || m->second.state != MemberState::joined) return;
  (void)declare_gone(rank, "disconnected");
}

Result<Buffer> MgmtService::on_heartbeat(uint32_t rank, uint64_t session) {
  auto s = session_rank_.find(session);
  if (s == session_rank_.end() || s->second != rank) {
    return Status(Errc::permission,
                  fmt::format("a heartbeat for rank {} must come on the connection that joined "
                              "as rank {}",
                              rank, rank));
  }
  auto m = state_.members().find(rank);
  if (m == state_.members().end() || m->second.state != MemberState::joined) {
    // Declared dead while it ran (a pause, a lost link): it joins again.
    return Status(
        Errc::stale,
        fmt::format("rank {} is {} in the system: join again", rank,
                    m == state_.members().end() ? "unknown" : member_state_name(m->second.state)));
  }
  live_.heard(rank, Clock::now().time_since_epoch());
  return none();
}

Result<Buffer> MgmtService::on_leave(uint32_t rank, uint64_t session) {
  auto s = session_rank_.find(session);
  if (s == session_rank_.end() || s->second != rank) {
    return Status(Errc::permission, fmt::format("only rank {} itself, on the connection it joined "
                                                "with, may announce its stop",
                                                rank));
  }
  auto m = state_.members().find(rank);
  if (m == state_.members().end() || m->second.state != MemberState::joined) return none();
  TESSERA_TRY(
      commit({{"op", "leave"}, {"rank", rank}, {"state", "stopped"}, {"now_ms", wall_ms()}}));
  if (!stopping_) {
    live_.stopped(rank, Clock::now().time_since_epoch());
    log::info(
        "management service: rank {} stops cleanly; its targets stay in the pool maps for "
        "{} ms while it restarts",
        rank, opts_.stop_grace.count());
  }
  return none();
}

Result<Buffer> MgmtService::on_rank_dead(uint32_t rank, uint32_t reporter, uint64_t incarnation) {
  if (closing_) return Status(Errc::shutdown, "the management service is shutting down");
  auto now = Clock::now();
  check_pause(now);
  auto m = state_.members().find(rank);
  if (m == state_.members().end() || m->second.state != MemberState::joined) return none();
  // A verdict about an earlier process of the rank (it stopped, restarted and joined again
  // while the detector still suspected the old one) says nothing about the one now joined.
  if (incarnation != 0 && incarnation != m->second.incarnation) {
    return Status(Errc::stale,
                  fmt::format("rank {} joined again (join {}) since rank {} probed it (join {}): "
                              "the verdict is about its previous process",
                              rank, m->second.incarnation, reporter, incarnation));
  }
  // A rank that has not connected since this service started (it restarted too) is left to
  // the heartbeat timeout: the detector may be probing an address it no longer has.
  if (rank_session_.count(rank) == 0) {
    return Status(Errc::unavailable,
                  fmt::format("rank {} has not connected since the management service "
                              "started; its heartbeat timeout decides",
                              rank));
  }
  // The failure detector's verdict stands unless this service heard from the rank itself
  // very recently (then the detector's peer is the one cut off).
  if (auto ago = live_.heard_recently(rank, now.time_since_epoch())) {
    return Status(Errc::exists,
                  fmt::format("rank {} sent a heartbeat {} ms ago: not dead", rank, ms(*ago)));
  }
  TESSERA_TRY(declare_gone(
      rank, fmt::format("declared dead by the failure detector of rank {}", reporter)));
  return none();
}

Result<Buffer> MgmtService::cmd_join(schema::MgmtReq::Reader req, const Cred& cred,
                                     uint64_t session) {
  auto mem = decode_member(req.getJoin());
  if (!mem) return mem.status();
  std::lock_guard lk(mu_);
  if (!cred.system) return engines_only("joining as an engine");
  if (auto m = state_.members().find(mem->rank);
      m != state_.members().end() && m->second.state == MemberState::excluded) {
    return Status(Errc::unavailable,
                  fmt::format("rank {} is excluded from the system (tessera system "
                              "clear-exclude --rank {})",
                              mem->rank, mem->rank));
  }
  if (auto live = rank_session_.find(mem->rank);
      live != rank_session_.end() && live->second != session) {
    const auto& cur = state_.members().at(mem->rank);
    // The same engine process again, or a rank no longer counted as joined (declared dead
    // or stopped): its old connection is stale (a host cut off: nothing closed it) and
    // the new one replaces it. Another process claiming a joined rank is refused.
    const bool same = cur.pid == mem->pid && cur.control_addr == mem->control_addr;
    if (cur.state == MemberState::joined && !same) {
      return Status(Errc::exists, fmt::format("rank {} is already joined from {} (pid {})",
                                              mem->rank, cur.control_addr, cur.pid));
    }
    log::info(
        "management service: rank {} joins again on a new connection; its old one "
        "is stale",
        mem->rank);
    session_rank_.erase(live->second);
    rank_session_.erase(live);
  }
  json hex = json::array();  // fabric addresses are raw bytes: base 16 in commands
  for (const auto& a : mem->fabric_addrs) hex.push_back(to_hex(a));
  TESSERA_TRY(commit({{"op", "join"},
                      {"rank", mem->rank},
                      {"host", mem->host},
                      {"control_addr", mem->control_addr},
                      {"metrics_addr", mem->metrics_addr},
                      {"provider", mem->provider},
                      {"fabric_addrs", hex},
                      {"pid", mem->pid}}));
  session_rank_[session] = mem->rank;
  rank_session_[mem->rank] = session;
  live_.joined(mem->rank, Clock::now().time_since_epoch());
  cv_.notify_all();  // a pool create may wait for the engines to join a new leader
  log::info("management service: rank {} joined from {} ({} targets)", mem->rank, mem->control_addr,
            mem->fabric_addrs.size());
  std::vector<const Pool*> mine;
  for (const auto& [id, p] : state_.pools()) {
    if (p.map.engine(mem->rank) != nullptr) mine.push_back(&p);
  }
  // A rebuild running in a pool of the rank: the rank scans too (its shards open first).
  for (const auto& s : rebuilds_.on_join(state_, mem->rank)) send_rebuild(s);
  return reply([&](schema::MgmtRep::Builder r) {
    auto l = r.initJoined(static_cast<unsigned>(mine.size()));
    for (size_t i = 0; i < mine.size(); ++i) {
      l[static_cast<unsigned>(i)].setId(mine[i]->id);
      l[static_cast<unsigned>(i)].setUuid(mine[i]->uuid);
      l[static_cast<unsigned>(i)].setTargetBytes(mine[i]->target_bytes);
      l[static_cast<unsigned>(i)].setEpochFloor(mine[i]->newest_snapshot());
    }
  });
}

Result<Buffer> MgmtService::cmd_heartbeat(schema::MgmtReq::Reader req, const Cred& cred,
                                          uint64_t session) {
  if (!cred.system) return engines_only("heartbeats");
  std::lock_guard lk(mu_);
  return on_heartbeat(req.getHeartbeat(), session);
}

Result<Buffer> MgmtService::cmd_leave(schema::MgmtReq::Reader req, const Cred& cred,
                                      uint64_t session) {
  std::lock_guard lk(mu_);
  if (!cred.system) return engines_only("announcing an engine's stop");
  return on_leave(req.getLeave(), session);
}

Result<Buffer> MgmtService::cmd_system_query(schema::MgmtReq::Reader /*req*/, const Cred& /*cred*/,
                                             uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  return reply([&](schema::MgmtRep::Builder r) {
    auto l = r.initMembers(static_cast<unsigned>(state_.members().size()));
    unsigned i = 0;
    for (const auto& [rank, mem] : state_.members()) encode_member(l[i++], mem);
  });
}

Result<Buffer> MgmtService::cmd_system_stop(schema::MgmtReq::Reader /*req*/, const Cred& cred,
                                            uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  if (!is_admin(cred)) return denied(cred, 0, "the system (stop)");
  stopping_ = true;
  return none();
}

Result<Buffer> MgmtService::cmd_rank_dead(schema::MgmtReq::Reader req, const Cred& cred,
                                          uint64_t /*session*/) {
  auto r = req.getRankDead();
  std::lock_guard lk(mu_);
  if (!cred.system) return engines_only("declaring ranks dead");
  return on_rank_dead(r.getRank(), r.getReporter(), r.getIncarnation());
}

Result<Buffer> MgmtService::cmd_rank_exclude(schema::MgmtReq::Reader req, const Cred& cred,
                                             uint64_t /*session*/) {
  auto r = req.getRankExclude();
  std::lock_guard lk(mu_);
  if (!is_admin(cred)) return denied(cred, 0, "the system (excluding ranks)");
  uint32_t rank = r.getRank();
  if (state_.members().count(rank) == 0) {
    return Status(Errc::not_found, fmt::format("no rank {} in the system", rank));
  }
  if (r.getExclude()) {
    TESSERA_TRY(commit({{"op", "exclude"}, {"rank", rank}, {"now_ms", wall_ms()}}));
    log::warn("management service: rank {} excluded by uid {}", rank, cred.uid);
  } else {
    TESSERA_TRY(commit(
        {{"op", "clear_exclude"}, {"rank", rank}, {"connected", rank_session_.count(rank) != 0}}));
    log::info("management service: rank {} no longer excluded", rank);
  }
  return none();
}

}  // namespace tessera::mgmt
