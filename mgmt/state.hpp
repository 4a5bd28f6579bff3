// The management service's state: system membership, pools (with their pool maps and ACLs),
// containers (properties, ACLs, attributes, snapshots) and open container handles.
//
// Built to be replicated later: every change is a command (a JSON object, {"op": ..., args})
// applied by apply(), which is deterministic: it reads no clock, no random source and no
// environment; whatever a change needs (UUIDs, epochs, the caller's uid) is in the command.
// Raft's log carries these commands verbatim on the access points (mgmt/replica.hpp), and a
// standalone service journals them (mgmt/state_file.hpp); either way every copy applies them in
// order.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "mgmt/types.hpp"
#include "core/status.hpp"
#include "placement/layout.hpp"

namespace tessera::mgmt {

class MgmtState {
 public:
  // Applies one command; an error leaves the state unchanged.
  Status apply(const nlohmann::json& cmd);
  // The handles the last command applied took away (closed, or their container or pool
  // destroyed): the engines that cache them must forget them.
  const std::vector<Handle>& removed_handles() const { return removed_; }

  const std::map<uint32_t, Member>& members() const { return members_; }
  const std::map<uint32_t, Pool>& pools() const { return pools_; }
  const std::map<uint64_t, Handle>& handles() const { return handles_; }
  const Pool* pool(const std::string& label_or_uuid) const;
  const Pool* pool(uint32_t id) const;
  uint64_t applied() const { return applied_; }
  uint32_t next_pool_id() const { return next_pool_id_; }
  size_t open_handles(uint32_t pool, uint32_t cont = UINT32_MAX) const;
  // Ranks that are not joined (stopped, dead, excluded): their targets may still be in maps.
  std::set<uint32_t> gone_ranks() const;

  nlohmann::json to_json() const;
  static Result<MgmtState> from_json(const nlohmann::json& j);

 private:
  // Finds the command's handler and scope and runs it. Unless the handler changes nothing
  // before it can no longer fail, it first keeps the whole state in `saved`, for apply to put
  // back when it fails.
  Status apply_op(const nlohmann::json& c, std::optional<MgmtState>& saved);
  void remove_handle(std::map<uint64_t, Handle>::iterator it);
  // The handlers, one per command (state.cpp).
  Status op_join(const nlohmann::json& c);
  Status op_leave(const nlohmann::json& c);
  Status op_exclude(const nlohmann::json& c);
  Status op_target_down(const nlohmann::json& c);
  Status op_clear_exclude(const nlohmann::json& c);
  Status op_pool_create(const nlohmann::json& c);
  Status op_pool_destroy(Pool* p, const nlohmann::json& c);
  Status op_shard_damaged(Pool* p, const nlohmann::json& c);
  Status op_pool_acl(Pool* p, const nlohmann::json& c);
  Status op_pool_set_prop(Pool* p, const nlohmann::json& c);
  Status op_target_state(Pool* p, const nlohmann::json& c);
  Status op_pool_extend(Pool* p, const nlohmann::json& c);
  Status op_rebuild_start(Pool* p, const nlohmann::json& c);
  Status op_rebuild_end(Pool* p, const nlohmann::json& c);
  Status op_cont_create(Pool* p, const nlohmann::json& c);
  Status op_handle_close(Pool* p, const nlohmann::json& c);
  Status op_cont_destroy(Pool* p, Container& k, const nlohmann::json& c);
  Status op_cont_set_prop(Pool* p, Container& k, const nlohmann::json& c);
  Status op_cont_acl(Pool* p, Container& k, const nlohmann::json& c);
  Status op_cont_attr(Pool* p, Container& k, const nlohmann::json& c);
  Status op_snap_create(Pool* p, Container& k, const nlohmann::json& c);
  Status op_snap_destroy(Pool* p, Container& k, const nlohmann::json& c);
  Status op_handle_open(Pool* p, Container& k, const nlohmann::json& c);
  // A member (or one of its targets, `target` >= 0) failed or was excluded: its serving targets
  // go `to` in every pool that has them (`always`: whatever the pool's self_heal says; else only
  // where it includes "exclude", and only while the pool's not-yet-rebuilt failures stay
  // within what every one of its containers' object classes tolerates).
  void mark_targets(uint32_t rank, int64_t target, placement::TargetState to, uint64_t now_ms,
                    bool always);
  std::map<uint32_t, Member> members_;
  std::map<uint32_t, Pool> pools_;
  std::map<uint64_t, Handle> handles_;
  // Open handles by (pool, container): what open_handles() answers without walking handles_
  // (every open's and every engine's handle check's answer carries the count).
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> handle_counts_;
  void add_handle(const Handle& h);
  void uncount_handle(const Handle& h);
  uint32_t next_pool_id_ = 1;
  uint64_t applied_ = 0;
  std::vector<Handle> removed_;  // by the last command applied
};

// A pool property an administrator may set, and its value: invalid_argument naming both.
Status check_pool_prop(const std::string& name, const std::string& value);
// Engine failures every container of the pool tolerates (its object class's, else its rf);
// UINT32_MAX for a pool without containers.
uint32_t pool_tolerance(const Pool& p);
// A target whose data is incomplete with nothing serving its positions instead: `down` (failed,
// not rebuilt yet), or `up` after a reintegration that kept its data (it missed what was
// written while it was away, and it is its positions' settled holder itself) until a rebuild
// completes. A target reset and refilled from a former holder, or added by extension, is not.
bool failed_target(const Pool& p, uint32_t rank, const placement::MapTarget& t);
// The pool's damaged targets for a message: "" without any, else " (damaged: target R:T:
// reason; ...)".
std::string damage_text(const Pool& p);
// Engines of the pool with a failed target, counting `also` as one.
uint32_t unrebuilt_failures(const Pool& p, uint32_t also = UINT32_MAX);
// Whether taking `rank`'s targets out automatically would leave some object of the pool
// without an up-to-date copy: more failures not yet rebuilt than the containers tolerate, or a
// container whose health would count more failed engines than its class survives.
bool exclusion_strands_data(const Pool& p, uint32_t rank);

// Reclaim passes the targets reported (rebuild/reclaim.hpp, MgmtReq.reclaimDone): by (rank,
// target), the newest map version, not moving data, on which a pass completed and made its drops
// durable. The management leader's memory only: a new leader waits for the next passes.
using ReclaimReports = std::map<std::pair<uint32_t, uint32_t>, uint32_t>;
// The targets of `p` that may still keep a former home's copy of the pool's last data movement:
// after a generation completed, every target of the map that is not `down`, `down-out` or `new`
// and has not reported a pass on a map version after the one that generation rebuilt. While any
// is left, the pool's aggregation keeps every punch (as it does while the map moves): a former
// home's copy merged into a later fill must find every punch that hides what it kept. Empty while
// no generation has completed (nothing was moved off a target) or while the map is moving (the hold
// is the move's). In map order.
std::vector<std::pair<uint32_t, uint32_t>> reclaim_pending(const Pool& p,
                                                           const ReclaimReports& done);
// "rank R target T, ..." (at most `most` named, then "and N more").
std::string targets_text(const std::vector<std::pair<uint32_t, uint32_t>>& targets,
                         size_t most = 4);

// Raw bytes <-> base-16 text (fabric addresses in JSON).
std::string to_hex(std::string_view raw);
std::optional<std::string> from_hex(std::string_view hex);

// JSON forms shared by the state file and the commands.
nlohmann::json acl_json(const Acl& a);
Result<Acl> acl_from_json(const nlohmann::json& j);
nlohmann::json props_json(const ContProps& p);
Result<ContProps> props_from_json(const nlohmann::json& j);
// A handle (pool and cont are the caller's to set when reading: a command names them apart).
nlohmann::json handle_json(const Handle& h);
Handle handle_from_json(const nlohmann::json& j);

}  // namespace tessera::mgmt
