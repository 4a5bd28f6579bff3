// Container handles: the capabilities that let a client do I/O on a container.
//
// - Opening a handle checks the pool's and the container's ACLs for the caller (whose identity
//   a credential proves) and records a random cookie (the capability, libsodium's CSPRNG) and
//   a public id (what operators see). Engines learn a handle from the service (handleQuery)
//   when a request first presents it, and check it on every I/O.
// - A handle ends when its holder closes it, when its lease runs out (the client died), when an
//   administrator evicts it (`pool evict`), when an ACL change no longer grants what it holds,
//   or with its container or pool. Every one of those is a state command that removes the
//   handle; `commit` sees which handles a command removed and tells the pool's engines to
//   forget them (revoke_removed). An engine that misses the message re-checks every cached
//   handle with the service within ObjectService's recheck interval, so a revocation reaches
//   every engine within a bounded time.
// - Leases: a client renews the handles it holds (one request for all of them, every quarter
//   of the lease); a handle not renewed for a whole lease belongs to a client that died, and
//   the monitor closes it. The lease clock is the service's own (steady, not persisted): a
//   restarted or paused service gives every holder a whole lease again before it judges.
#include <fmt/format.h>

#include <algorithm>

#include "actors/mgmt/reply.hpp"
#include "actors/mgmt/service.hpp"
#include "core/log.hpp"
#include "mgmt/codec_state.hpp"
#include "proto/capnp_util.hpp"
#include "security/sodium_init.hpp"

namespace tessera::mgmt {

using nlohmann::json;

namespace {
// The identity a handle was opened with, to check it against a changed ACL.
Cred opener(const Handle& h) {
  Cred c;
  c.uid = h.uid;
  c.gid = h.gid;
  c.groups = h.groups;
  return c;
}

// How long the service waits for one engine to take a revocation: a stopped engine must not
// hold the worker (its cache dies with it; a paused one re-checks when it runs again).
constexpr std::chrono::milliseconds kRevokeTimeout{5000};
constexpr size_t kRevokeBatch = 1024;  // cookies per engine request
// Cookies waiting to be revoked on one engine at most.
constexpr size_t kMaxRevokesPending = 64 * 1024;
}  // namespace

Result<Buffer> MgmtService::on_cont_open(schema::MgmtReq::ContOpen::Reader r, const Cred& cred) {
  std::lock_guard lk(mu_);
  uint32_t want = kRead | (r.getWrite() ? kWrite : 0u);
  auto pc = find_pool_cont(r.getPool(), r.getCont(), cred, want);
  if (!pc) return pc.status();
  if (r.getWrite()) {  // opens read-only only while UNCLEAN (the engines refuse writes too)
    TESSERA_TRY(write_refusal(*pc->pool, *pc->cont, state_.gone_ranks()));
  }
  const uint32_t granted = want;  // find_pool_cont checked that the ACL allows all of it
  Handle h;
  h.cookie = security::random_nonzero_u64();
  h.id = security::random_nonzero_u64();
  h.perms = granted;
  h.uid = cred.uid;
  h.gid = cred.gid;
  h.groups = cred.groups;
  h.host = std::string(r.getHost()).substr(0, 255);
  h.pid = r.getPid();
  h.opened_ms = wall_ms();
  json cmd = handle_json(h);
  cmd["op"] = "handle_open";
  cmd["pool"] = pc->pool->id;
  cmd["cont"] = pc->cont->id;
  TESSERA_TRY(commit(cmd));
  renewed_[h.cookie] = std::chrono::steady_clock::now();
  return reply([&](schema::MgmtRep::Builder rep) {
    auto b = rep.initHandle();
    b.setCookie(h.cookie);
    b.setPerms(granted);
    b.setLeaseMs(static_cast<uint32_t>(opts_.handle_lease.count()));
    encode_pool(b.initPool(), *pc->pool, state_, false);
    encode_cont(b.initCont(), *pc->pool, *pc->cont, state_);
  });
}

Result<Buffer> MgmtService::on_cont_close(schema::MgmtReq::HandleRef::Reader r, const Cred& cred) {
  std::lock_guard lk(mu_);
  auto it = state_.handles().find(r.getCookie());
  if (it == state_.handles().end()) return none();  // closing twice is fine
  if (it->second.uid != cred.uid && !is_admin(cred)) {
    return denied(cred, 0, "a container handle opened by another user");
  }
  TESSERA_TRY(
      commit({{"op", "handle_close"}, {"pool", it->second.pool}, {"cookie", r.getCookie()}}));
  return none();
}

Result<Buffer> MgmtService::on_handle_query(schema::MgmtReq::HandleRef::Reader r,
                                            const Cred& cred) {
  std::lock_guard lk(mu_);
  if (!cred.system) return engines_only("container handle lookups");
  auto it = state_.handles().find(r.getCookie());
  if (it == state_.handles().end() || it->second.pool != r.getPool()) {
    return Status(Errc::permission, "unknown or closed container handle");
  }
  const Pool* p = state_.pool(it->second.pool);
  const Container& c = p->containers.at(it->second.cont);
  // The container and the rights, not the pool: the engine has the pool's map from its own
  // fetches, and asks this for every handle it meets and again every recheck interval (the
  // map is 674 KiB at 1,024 engines: docs/SCALE.md).
  return reply([&](schema::MgmtRep::Builder rep) {
    auto h = rep.initHandle();
    h.setCookie(it->second.cookie);
    h.setPerms(it->second.perms);
    encode_cont(h.initCont(), *p, c, state_);
  });
}

Result<Buffer> MgmtService::on_pool_evict(schema::MgmtReq::PoolEvict::Reader r, const Cred& cred) {
  std::lock_guard lk(mu_);
  auto p = find_pool(r.getPool());
  if (!p) return p.status();
  const Pool& pool = **p;
  if (!is_admin(cred))
    return denied(cred, 0, fmt::format("pool '{}' (evicting handles)", pool.label));
  const Container* only = nullptr;
  if (r.hasCont() && r.getCont().size() > 0) {
    auto k = find_cont(pool, r.getCont());
    if (!k) return k.status();
    only = *k;
  }
  std::vector<Handle> victims;
  for (const auto& [cookie, h] : state_.handles()) {
    if (h.pool != pool.id || (only != nullptr && h.cont != only->id)) continue;
    if (r.getHandle() != 0 && h.id != r.getHandle()) continue;
    victims.push_back(h);
  }
  if (r.getHandle() != 0 && victims.empty()) {
    return Status(Errc::not_found,
                  fmt::format("pool '{}' has no open handle {:016x}{} (tessera cont query)",
                              pool.label, r.getHandle(),
                              only != nullptr ? fmt::format(" in container '{}'", only->props.label)
                                              : std::string()));
  }
  uint32_t evicted = 0;
  for (const Handle& h : victims) {
    TESSERA_TRY(commit({{"op", "handle_close"}, {"pool", h.pool}, {"cookie", h.cookie}}));
    ++evicted;
    log::warn(
        "management service: container handle {:016x} (pool '{}', uid {}, {} pid {}) "
        "evicted by uid {}",
        h.id, pool.label, h.uid, h.host.empty() ? "unknown host" : h.host, h.pid, cred.uid);
  }
  return reply([&](schema::MgmtRep::Builder rep) { rep.setEvicted(evicted); });
}

void MgmtService::close_disallowed_handles(uint32_t pool_id) {
  const Pool* p = state_.pool(pool_id);
  if (p == nullptr) return;
  std::vector<Handle> lost;
  for (const auto& [cookie, h] : state_.handles()) {
    if (h.pool != pool_id) continue;
    auto c = p->containers.find(h.cont);
    const Cred who = opener(h);
    const bool pool_ok = (p->acl.perms_for(who) & kRead) != 0;
    const bool cont_ok =
        c != p->containers.end() && (c->second.acl.perms_for(who) & h.perms) == h.perms;
    if (!pool_ok || !cont_ok) lost.push_back(h);
  }
  for (const Handle& h : lost) {
    Status st = commit({{"op", "handle_close"}, {"pool", h.pool}, {"cookie", h.cookie}});
    if (!st.is_ok()) {
      log::error("management service: closing handle {:016x} after an ACL change: {}", h.id,
                 st.to_string());
      continue;
    }
    log::warn(
        "management service: container handle {:016x} (pool {} container {}, uid {}) "
        "closed: the ACL no longer grants its {}",
        h.id, h.pool, h.cont, h.uid, perm_words(h.perms));
  }
}

void MgmtService::revoke_removed(const std::vector<Handle>& removed) {
  if (removed.empty()) return;
  std::map<uint32_t, std::vector<uint64_t>> gone;  // by pool
  for (const Handle& h : removed) gone[h.pool].push_back(h.cookie);
  {
    std::lock_guard lk(jobs_mu_);
    for (const auto& [pool_id, cookies] : gone) {
      const Pool* p = state_.pool(pool_id);
      if (p == nullptr) continue;  // a destroyed pool's shards are gone, with their caches
      for (const auto& e : p->map.engines) {
        auto m = state_.members().find(e.rank);
        if (m == state_.members().end() || m->second.state != MemberState::joined) continue;
        Revokes& r = revokes_[e.rank];
        r.engine = m->second;
        auto& list = r.cookies[pool_id];
        for (uint64_t cookie : cookies) {
          if (r.count >= kMaxRevokesPending && !list.empty()) {
            list.pop_front();  // the oldest of this pool's: the engine re-checks it
          } else {
            ++r.count;
          }
          list.push_back(cookie);
        }
      }
    }
  }
  jobs_cv_.notify_all();
}

// The worker thread: one engine's gathered revocations, a request per pool and
// kRevokeBatch cookies.
void MgmtService::send_revokes(Revokes r) {
  for (const auto& [pool_id, cookies] : r.cookies) {
    for (size_t from = 0; from < cookies.size(); from += kRevokeBatch) {
      const size_t n = std::min(kRevokeBatch, cookies.size() - from);
      capnp::MallocMessageBuilder b(static_cast<unsigned>(64 + n));
      auto req = b.initRoot<schema::EngineReq>().initHandleRevoke();
      req.setPool(pool_id);
      auto l = req.initCookies(static_cast<unsigned>(n));
      for (size_t i = 0; i < n; ++i) l.set(static_cast<unsigned>(i), cookies[from + i]);
      Status st = engine_call(r.engine, b, kRevokeTimeout);
      if (!st.is_ok()) {
        log::warn(
            "pool {}: revoking {} container handle(s) on rank {}: {} (the engine re-checks its "
            "cached handles by itself)",
            pool_id, cookies.size() - from, r.engine.rank, st.to_string());
        return;  // a stopped engine must not hold the worker once per pool
      }
    }
  }
}

Result<Buffer> MgmtService::on_handle_renew(capnp::List<uint64_t>::Reader cookies,
                                            const Cred& cred) {
  if (cookies.size() > 65536) {
    return Status(Errc::invalid_argument, "a renewal names at most 65536 handles");
  }
  const auto now = std::chrono::steady_clock::now();
  uint32_t unknown = 0;
  for (uint64_t cookie : cookies) {
    auto it = state_.handles().find(cookie);
    // Only the user who opened a handle keeps it alive.
    if (it == state_.handles().end() || (it->second.uid != cred.uid && !is_admin(cred))) {
      ++unknown;
      continue;
    }
    renewed_[cookie] = now;
  }
  if (unknown > 0 && unknown == cookies.size()) {
    return Status(Errc::not_found,
                  "no open handle of yours among those renewed (closed or "
                  "expired)");
  }
  return none();
}

void MgmtService::expire_handles(std::chrono::steady_clock::time_point now) {
  if (opts_.handle_lease.count() <= 0) return;
  for (auto it = renewed_.begin(); it != renewed_.end();) {
    it = state_.handles().count(it->first) == 0 ? renewed_.erase(it) : std::next(it);
  }
  std::vector<Handle> expired;
  for (const auto& [cookie, h] : state_.handles()) {
    auto [at, fresh] = renewed_.try_emplace(cookie, now);
    if (!fresh && now - at->second > opts_.handle_lease) expired.push_back(h);
  }
  for (const Handle& h : expired) {
    Status st = commit({{"op", "handle_close"}, {"pool", h.pool}, {"cookie", h.cookie}});
    if (!st.is_ok()) {
      log::warn("management service: closing an expired handle: {}", st.to_string());
      continue;
    }
    renewed_.erase(h.cookie);
    log::warn(
        "management service: container handle {:016x} (pool {} container {}, uid {}, {} "
        "pid {}) not renewed for {} ms: its client is gone; closed",
        h.id, h.pool, h.cont, h.uid, h.host.empty() ? "unknown host" : h.host, h.pid,
        opts_.handle_lease.count());
  }
}

Result<Buffer> MgmtService::cmd_handle_renew(schema::MgmtReq::Reader req, const Cred& cred,
                                             uint64_t /*session*/) {
  std::lock_guard lk(mu_);
  return on_handle_renew(req.getHandleRenew(), cred);
}

}  // namespace tessera::mgmt
