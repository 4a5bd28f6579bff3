// MgmtClient: the management service's requests as blocking calls (any thread but a target's).
// Every call presents the credentials given at construction (default: the calling process's
// uid, gid and groups) and returns the service's error text as it is.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "mgmt/leader.hpp"
#include "mgmt/types.hpp"

namespace tessera {

struct AclChange {
  std::vector<mgmt::Ace> set;
  std::vector<mgmt::Ace> remove;
  bool replace = false;
};

// One access point's replica of the management service (`tessera system query`).
struct ReplicaView {
  std::string address;  // where it was asked
  uint32_t rank = 0;
  std::string role;      // leader | follower | candidate | unavailable
  bool serving = false;  // it leads and serves requests
  int64_t leader_rank = -1;
  uint64_t term = 0;
  uint64_t last_index = 0;
  uint64_t applied = 0;
};

class MgmtClient {
 public:
  // `addr`: the management service's access points (control addresses, comma-separated).
  explicit MgmtClient(std::string addr,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(30000),
                      mgmt::Cred cred = mgmt::Cred::current())
      : addr_(addr), timeout_(timeout), cred_(std::move(cred)) {}

  Result<std::vector<mgmt::Member>> system_query() const;
  Status system_stop() const;
  // Takes a rank out of the system (its targets go down in every pool map; it may not join
  // again), or clears that (exclude false).
  Status rank_exclude(uint32_t rank, bool exclude) const;
  // Stops one target (a failed device): its engine refuses I/O on it and every pool map that
  // has it marks it down (a rebuild follows); `pool reintegrate` brings it back.
  Status target_stop(uint32_t rank, uint32_t target) const;

  // target_bytes: store size per target; ranks empty: every joined engine.
  Result<mgmt::PoolView> pool_create(const std::string& label, uint64_t target_bytes,
                                     const std::vector<uint32_t>& ranks = {}) const;
  Result<std::vector<mgmt::PoolView>> pool_list() const;
  Result<mgmt::PoolView> pool_query(const std::string& pool) const;
  // force: even with open container handles; recursive: with the containers it still has.
  Status pool_destroy(const std::string& pool, bool force = false, bool recursive = false) const;
  Status pool_set_prop(const std::string& pool, const std::string& name,
                       const std::string& value) const;
  Result<mgmt::PoolView> target_state(const std::string& pool, uint32_t rank, int32_t target,
                                      placement::TargetState state) const;

  // cont empty: the pool's ACL.
  // Data-moving pool operations: "exclude", "drain", "reintegrate" (ranks, optionally one
  // target of each), "extend" (ranks to add), "rebuild" (start a rebuild again).
  Result<mgmt::PoolView> pool_op(const std::string& pool, const std::string& op,
                                 const std::vector<uint32_t>& ranks, int32_t target = -1) const;
  Result<mgmt::Acl> get_acl(const std::string& pool, const std::string& cont = {}) const;
  Result<mgmt::Acl> update_acl(const std::string& pool, const std::string& cont,
                               const AclChange& change) const;

  Result<mgmt::ContView> cont_create(const std::string& pool, const mgmt::ContProps& props) const;
  Result<mgmt::ContView> cont_query(const std::string& pool, const std::string& cont) const;
  Status cont_destroy(const std::string& pool, const std::string& cont, bool force = false) const;
  // `healthy`: clear UNCLEAN after a rebuild found the container beyond its rf (status=healthy).
  Status cont_set_prop(const std::string& pool, const std::string& cont,
                       const mgmt::ContProps& props, bool healthy = false) const;
  // Changes properties by name (`label=...`, `status=healthy`, and the layout's, which the
  // service refuses to change): reads the container's, applies `changes` in order, sends them.
  Status cont_set_props(const std::string& pool, const std::string& cont,
                        const std::vector<std::pair<std::string, std::string>>& changes) const;
  Status cont_set_attr(const std::string& pool, const std::string& cont, const std::string& name,
                       std::optional<std::string> value) const;
  Result<mgmt::ContView> snap_create(const std::string& pool, const std::string& cont,
                                     const std::string& name, uint64_t epoch = 0) const;
  Result<mgmt::ContView> snap_destroy(const std::string& pool, const std::string& cont,
                                      uint64_t epoch) const;
  // Makes the state of snapshot `snap` (by name), or else of `epoch`, the container's newest
  // state, as a new epoch (docs/TRANSACTIONS.md). `force`: even with open handles.
  Result<mgmt::RollbackView> cont_rollback(const std::string& pool, const std::string& cont,
                                           const std::string& snap, uint64_t epoch,
                                           bool force = false) const;
  Result<mgmt::HandleView> cont_open(const std::string& pool, const std::string& cont,
                                     bool write) const;
  Status cont_close(uint32_t pool_id, uint64_t cookie) const;
  // Closes other clients' container handles (administrators): every handle of the pool, of
  // one container (`cont`), or the one whose public id (ContView::handles) is `handle_id`.
  // Their holders' I/O is refused from then on. Answers how many were closed.
  Result<uint32_t> pool_evict(const std::string& pool, const std::string& cont = {},
                              uint64_t handle_id = 0) const;
  // The replica of the access point at `addr` itself (not the leader's): unsupported from a
  // management service that stands alone.
  Result<ReplicaView> replica_info(const std::string& addr) const;

  // Keeps the caller's open handles alive (their lease, HandleView::lease_ms).
  Status handle_renew(const std::vector<uint64_t>& cookies) const;

  // The access point tried first (the leader last found).
  std::string address() const { return addr_.current(); }
  const mgmt::Cred& cred() const { return cred_; }

 private:
  mgmt::LeaderFinder addr_;
  std::chrono::milliseconds timeout_;
  mgmt::Cred cred_;
};

}  // namespace tessera
