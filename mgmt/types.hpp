// Records of the management service (membership, pools, containers, handles) and the views a
// caller gets of them. Plain values: the state machine (state.hpp), the wire codec (codec.hpp)
// and the client all use them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "mgmt/acl.hpp"
#include "placement/layout.hpp"

namespace tessera {
class ActorRuntime;
}

namespace tessera::mgmt {

enum class MemberState : uint8_t { joined, stopped, excluded, dead };
std::string_view member_state_name(MemberState s);
std::optional<MemberState> parse_member_state(std::string_view s);

struct Member {
  uint32_t rank = 0;
  std::string host;  // fault domain
  std::string control_addr;
  std::string metrics_addr;  // GET /metrics (empty: off)
  std::string provider;
  std::vector<std::string> fabric_addrs;  // per target, raw provider addresses
  MemberState state = MemberState::joined;
  uint64_t incarnation = 0;  // bumped on every join
  uint64_t pid = 0;
};

enum class ContType : uint8_t { posix, kv, array };
std::string_view cont_type_name(ContType t);
std::optional<ContType> parse_cont_type(std::string_view s);

// Pool and container labels: 1 to kMaxLabel bytes (the C API's info records hold them whole).
inline constexpr size_t kMaxLabel = 127;
// invalid_argument naming `what` ("pool", "container") when `label` is empty or too long.
Status check_label(const std::string& label, const char* what);

struct ContProps {
  std::string label;
  ContType type = ContType::kv;
  uint16_t oclass = 0;  // default object class id (0: chosen from rf at create)
  uint32_t rf = 0;      // redundancy factor: engine failures the container must survive
  std::string checksum = "crc32c";
  uint32_t cell_size = 128 * 1024;  // EC cell size
};

// Sets one property (label, type, oclass, rf, checksum, cell_size) from its text, as the CLI
// and drill files give it.
Status set_cont_prop(ContProps& p, const std::string& name, const std::string& value);

struct Snapshot {
  uint64_t epoch = 0;
  std::string name;
};

struct Container {
  uint32_t id = 0;  // unique inside the pool; stored in the OID's reserved bits
  std::string uuid;
  ContProps props;
  Acl acl;
  std::map<std::string, std::string> attrs;
  std::vector<Snapshot> snapshots;
  uint64_t created_epoch = 0;
  bool lost_data = false;  // a rebuild completed with more failures than rf: stays UNCLEAN
};

// The rebuild of a pool (persisted): the state of its current or last generation. A
// generation rebuilds one map version; a newer map change starts the next generation.
struct RebuildState {
  std::string state = "idle";  // idle | busy | done | failed
  uint32_t gen = 0;
  uint32_t version = 0;  // the map version this generation rebuilds
  uint64_t start_ms = 0, end_ms = 0;
  uint64_t objects = 0, records = 0, bytes = 0, lost = 0;  // totals when it finished
  uint64_t planned = 0;  // bytes the targets counted to send before sending (done: their sum)
  std::string error;
};

// A generation's progress (the management service's memory, summed over the targets).
struct RebuildProgress {
  uint64_t objects = 0, records = 0, bytes = 0, lost = 0;
  uint32_t targets_done = 0, targets_total = 0;
  // Bytes to send, summed over the targets that reported (each its plan, or what it sent when
  // that is more), and how many targets that is: the total is complete when every target
  // reported.
  uint64_t bytes_total = 0;
  uint32_t targets_reported = 0;
  // The bytes to move are known once every target has counted its part; never less than what
  // has moved.
  bool total_known() const { return targets_reported >= targets_total; }
  uint64_t total() const { return bytes > bytes_total ? bytes : bytes_total; }
};

// A target whose store of a pool failed its checks when its engine opened it (a damaged
// write-ahead log, checkpoint or superblock): not served; cleared when a reintegration formats
// it anew.
struct TargetDamage {
  uint32_t rank = 0;
  uint32_t target = 0;
  std::string reason;
  uint64_t at_ms = 0;  // wall clock, when the engine reported it
};

struct Pool {
  uint32_t id = 0;  // system-wide, never reused
  std::string uuid;
  std::string label;
  uint64_t target_bytes = 0;  // store size per target
  placement::PoolMap map;
  Acl acl;
  std::map<std::string, std::string> props;
  std::map<uint32_t, Container> containers;  // by id
  RebuildState rebuild;
  std::vector<TargetDamage> damaged;
  const Container* container(const std::string& label_or_uuid) const;
  // Every snapshot epoch of its containers, each once; newest_snapshot: the highest (0: none),
  // which its targets issue epochs above.
  std::set<uint64_t> snapshot_epochs() const;
  uint64_t newest_snapshot() const;
  const TargetDamage* damage(uint32_t rank, uint32_t target) const;
  // normal, degraded (a target down, an engine gone, data moving, a container short of
  // copies) or lost (a container beyond its redundancy factor). `gone`: ranks not joined.
  std::string redundancy(const std::set<uint32_t>& gone = {}) const;
};

// An open container handle. The cookie is the capability: whoever presents it to an engine may
// do what `perms` allow, so it is random (libsodium), never shown, and known only to the client
// that opened it and the engines. `id` names the handle to operators (cont query, pool evict).
// The opener's uid, gid and groups are kept so an ACL change can be checked against the handle.
struct Handle {
  uint64_t cookie = 0;
  uint32_t pool = 0;
  uint32_t cont = 0;
  uint32_t perms = 0;
  uint32_t uid = 0;
  std::string host;  // the client's host name and pid, as it reported them
  uint32_t pid = 0;
  uint64_t opened_ms = 0;  // wall clock
  uint64_t id = 0;         // public; 0 in records written before handles had one
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
};

// Health of a container in its pool map: engines with a target that does not serve I/O,
// against the redundancy factor. HEALTHY: within rf (redundancy `normal` with none failed,
// `degraded` with some); UNCLEAN: beyond it (redundancy `lost`; opening for writing is refused).
struct ContHealth {
  uint32_t failed_engines = 0;
  std::string status;      // HEALTHY | UNCLEAN
  std::string redundancy;  // normal | degraded | lost
};
ContHealth container_health(const Pool& p, const Container& c, const std::set<uint32_t>& gone = {});
// Whether the container takes writes in this pool map (`gone`: engines the service counts as
// stopped or dead): Status() while HEALTHY, else `rf_exceeded` saying why and how it ends (the
// engines back, or `status=healthy` after a rebuild found it beyond its rf). One rule for the
// management service at open and for the engines at every client write.
Status write_refusal(const Pool& p, const Container& c, const std::set<uint32_t>& gone = {});

// What a caller sees of a container: its record plus live facts.
struct ContView {
  Container c;
  uint32_t open_handles = 0;
  ContHealth health;
  std::vector<Handle> handles;  // the open handles and their owners
};

// What a container rollback did (summed over the engines).
struct RollbackView {
  uint64_t from = 0;  // the epoch whose state is now the newest
  uint64_t at = 0;    // the epoch of the rollback's changes
  uint64_t objects = 0, rewritten = 0, punched = 0, bytes = 0;
};

// Where an engine of a pool map is reached.
struct EngineAddr {
  std::string control_addr;
  std::vector<std::string> fabric_addrs;  // per target
  std::string state;                      // membership state
};

// What a caller sees of a pool: the record (with its map), the engines' addresses and the
// containers (when asked for).
struct PoolView {
  Pool pool;
  std::string provider;
  std::map<uint32_t, EngineAddr> addrs;
  uint32_t open_handles = 0;
  std::vector<ContView> conts;
  RebuildProgress progress;  // of the current generation (while busy)
  std::string redundancy;
  // After a generation: the targets whose reclaim pass the pool's aggregation waits for before
  // it drops punches again ("rank R target T, ..."; empty: none; mgmt::reclaim_pending).
  std::string reclaim_pending;
};

// What a runtime learns from a pool view: the fabric route to every target of its engines
// (but `self`'s), and that asks addressed to a target now down (or down-out) will not be
// answered: they fail at once with `unavailable`, so their askers retry on the new layout.
void learn_view(ActorRuntime& rt, const PoolView& v, uint32_t self = UINT32_MAX);

// An open container handle: the permissions granted at open and what it refers to.
struct HandleView {
  uint64_t cookie = 0;
  uint32_t perms = 0;
  uint32_t lease_ms = 0;  // the holder renews within this (0: no lease)
  PoolView pool;          // at container open (an engine's handle query leaves it empty)
  ContView cont;
};

}  // namespace tessera::mgmt
