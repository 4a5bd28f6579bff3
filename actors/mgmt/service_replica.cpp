// The replicated management service: its raft state machine, leadership and the followers'
// answer (actors/mgmt/service.hpp, "Two ways to keep the state").
#include <fmt/format.h>

#include "actors/mgmt/reply.hpp"
#include "actors/mgmt/service.hpp"
#include "core/log.hpp"

namespace tessera::mgmt {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {
uint64_t raft_id(uint32_t rank) {
  return uint64_t{rank} + 1;  // raft ids start at 1
}
}  // namespace

Status MgmtService::start_replica() {
  Replica::Options ro;
  const AccessPoint* self = nullptr;
  for (const auto& ap : opts_.access_points) {
    ro.voters.push_back({raft_id(ap.rank), ap.raft});
    if (ap.rank == opts_.self_rank) self = &ap;
  }
  if (self == nullptr) {
    return Status(Errc::invalid_argument,
                  fmt::format("rank {} is not one of the access points", opts_.self_rank));
  }
  ro.id = raft_id(self->rank);
  ro.address = self->raft;
  ro.dir = opts_.raft_dir;
  ro.key = opts_.key;
  ro.election_timeout = opts_.election_timeout;
  ro.heartbeat = std::max(std::chrono::milliseconds(20), opts_.election_timeout / 10);
  // Raft's apply runs on the replica's loop thread: it takes the state half of mu_, which a
  // request thread that waits in propose() has lent (it keeps the command half).
  Replica::Fsm fsm;
  fsm.apply = [this](std::string_view cmd) -> Status {
    json j = json::parse(cmd, nullptr, false);
    if (j.is_discarded()) return Status(Errc::protocol, "a management log entry is not JSON");
    std::lock_guard lk(mu_.state());
    return state_.apply(j);
  };
  fsm.snapshot = [this] {
    std::lock_guard lk(mu_.state());
    return state_.to_json().dump();
  };
  fsm.restore = [this](std::string_view text) -> Status {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return Status(Errc::protocol, "a management snapshot is not JSON");
    auto s = MgmtState::from_json(j);
    if (!s) return s.status();
    std::lock_guard lk(mu_.state());
    state_ = std::move(*s);
    return Status();
  };
  auto r = Replica::start(std::move(ro), std::move(fsm));
  if (!r) return r.status();
  replica_ = std::move(*r);
  leading_ = false;
  return Status();
}

Result<Replica::Info> MgmtService::replica_info() {
  std::shared_ptr<Replica> rep;
  {
    std::lock_guard lk(mu_.state());
    rep = replica_;
  }
  if (!replicated()) {
    return Status(Errc::unsupported, "this management service stands alone (no access points)");
  }
  if (!rep) return Status(Errc::shutdown, "this access point is stopping");
  return rep->info();
}

Result<Buffer> MgmtService::on_replica_info() {
  auto info = replica_info();
  if (!info) return info.status();
  return reply([&](schema::MgmtRep::Builder r) {
    auto b = r.initReplica();
    b.setRank(opts_.self_rank);
    b.setRole(role_name(info->role));
    b.setServing(leading_.load());
    b.setLeaderRank(info->leader_id == 0 ? -1 : static_cast<int64_t>(info->leader_id) - 1);
    b.setTerm(info->term);
    b.setLastIndex(info->last_index);
    b.setApplied(info->applied);
  });
}

// The monitor's check, every round, without mu_: raft's view of the leader, and the change
// of this access point's part when it changed.
void MgmtService::follow_leadership() {
  std::shared_ptr<Replica> rep;
  {
    std::lock_guard lk(mu_);
    if (closing_) return;
    rep = replica_;
  }
  if (!rep) return;
  auto info = rep->info();
  if (!info) return;
  std::string hint;
  for (const auto& ap : opts_.access_points) {
    if (raft_id(ap.rank) == info->leader_id) hint = ap.control;
  }
  {
    std::lock_guard lk(hint_mu_);
    leader_hint_ = hint;
  }
  const bool leads = info->role == Replica::Role::leader;
  if (leads == leading_.load()) return;
  if (!leads) {
    std::lock_guard lk(mu_);
    stop_leading("raft chose another leader");
    return;
  }
  // Everything committed before this term must be applied here before the service decides
  // anything on this state.
  Status st = rep->barrier(opts_.propose_timeout);
  if (!st.is_ok()) {
    log::warn("management service: elected, but the log is not caught up: {}", st.to_string());
    return;
  }
  std::lock_guard lk(mu_);
  if (!closing_) become_leader(info->term);
}

void MgmtService::become_leader(uint64_t term) {
  // As a restarted service: the engines join this access point again, and nobody is judged
  // by a silence that began before it led.
  const auto now = Clock::now();
  session_rank_.clear();
  rank_session_.clear();
  live_.restart(state_, now.time_since_epoch());
  for (const auto& [r, m] : state_.members()) {
    if (m.state == MemberState::stopped) live_.stopped(r, now.time_since_epoch());
  }
  renewed_.clear();
  rebuilds_.reset();
  led_at_ = now;
  leading_ = true;
  log::info(
      "management service: this access point (rank {}) leads, term {} ({} engines, {} "
      "pools, {} commands applied)",
      opts_.self_rank, term, state_.members().size(), state_.pools().size(), state_.applied());
  drive_rebuilds();  // rebuilds that were running under the previous leader go on
}

void MgmtService::await_rejoins(std::unique_lock<ServiceMutex>& lk) {
  // A live engine finds the new leader within about two heartbeats (its heartbeat to the old
  // one fails, it joins again); wait until every joined engine has, or the window passed.
  const auto until = led_at_ + kRejoinWindow;
  auto missing = [&] {
    for (const auto& [rank, m] : state_.members()) {
      if (m.state == MemberState::joined && rank_session_.count(rank) == 0) return true;
    }
    return false;
  };
  while (replicated() && leading_.load() && missing() && Clock::now() < until) {
    cv_.wait_until(lk, until);
  }
}

void MgmtService::stop_leading(const char* why) {
  if (!leading_.load()) return;
  leading_ = false;
  session_rank_.clear();
  rank_session_.clear();
  log::warn("management service: this access point (rank {}) no longer leads: {}", opts_.self_rank,
            why);
}

Status MgmtService::not_leader_reply() {
  std::lock_guard lk(hint_mu_);
  std::string hint = leader_hint_;
  for (const auto& ap : opts_.access_points) {
    if (ap.rank == opts_.self_rank && ap.control == hint) hint.clear();  // not yet, or no more
  }
  return not_leader(hint, fmt::format("the access point on rank {} does not lead the management "
                                      "service",
                                      opts_.self_rank));
}

// Under mu_: the command goes through the log. The apply (loop thread) changes state_ under
// mu_.state(), lent meanwhile; requests stay in order under the command half.
Status MgmtService::propose(const json& cmd) {
  if (!replica_ || !leading_.load()) return not_leader_reply();
  std::string text = cmd.dump();
  mu_.state().unlock();
  Status st = replica_->propose(std::move(text), opts_.propose_timeout);
  mu_.state().lock();
  if (st.code() == Errc::not_leader || st.code() == Errc::uncertain || st.code() == Errc::timeout) {
    // Lost, or unsure of, the lead: the state may take commands this service did not make.
    // It serves again only after the monitor's barrier.
    stop_leading(st.code() == Errc::not_leader ? "raft chose another leader"
                                               : "a command's outcome is unknown");
  }
  if (st.code() == Errc::not_leader) return not_leader_reply();
  return st;
}

}  // namespace tessera::mgmt
