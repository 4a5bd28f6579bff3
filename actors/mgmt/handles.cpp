// Container handle leases: a client renews the handles it holds (one request for all of them,
// every quarter of the lease); a handle not renewed for a whole lease belongs to a client that
// died, and the monitor closes it, so `cont destroy` and `pool destroy` are not refused for good
// by handles nobody holds. The lease clock is the service's own (steady, not persisted): a
// restarted or paused service gives every holder a whole lease again before it judges.
#include <fmt/format.h>

#include "actors/mgmt/service.hpp"
#include "proto/capnp_util.hpp"
#include "core/log.hpp"

namespace tessera::mgmt {

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
    return Status(Errc::not_found, "no open handle of yours among those renewed (closed or "
                                   "expired)");
  }
  capnp::MallocMessageBuilder b(64);
  b.initRoot<schema::MgmtRep>().setNone();
  return capn::to_body(b);
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
    log::warn("management service: container handle {:016x} (pool {} container {}, uid {}, {} "
              "pid {}) not renewed for {} ms: its client is gone; closed",
              h.cookie, h.pool, h.cont, h.uid, h.host.empty() ? "unknown host" : h.host, h.pid,
              opts_.handle_lease.count());
  }
}

}  // namespace tessera::mgmt
