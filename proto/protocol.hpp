// Protocol numbers and well-known actor ids shared by engines and clients.
#pragma once

#include <cstdint>
#include <string_view>

namespace tessera::proto {

// Envelope.protocol values (mirror proto/envelope.capnp Protocol).
inline constexpr uint16_t kProtoObject = 1;
inline constexpr uint16_t kProtoSystem = 2;
inline constexpr uint16_t kProtoMgmt = 3;
inline constexpr uint16_t kProtoSwim = 4;

// Methods of the failure detector (proto/swim.capnp).
enum SwimMethod : uint16_t {
  kSwimPing = 0,     // SwimPing -> SwimAck
  kSwimPingReq = 1,  // SwimPing (target set) -> SwimAck once the target answered
};

// Methods of the management protocol (proto/mgmt.capnp).
enum MgmtMethod : uint16_t {
  kMgmtCall = 0,    // MgmtReq -> MgmtRep (to the management service)
  kEngineCall = 1,  // EngineReq -> (empty) (management service -> an engine)
};

// Methods of the object protocol (proto/object.capnp).
enum ObjMethod : uint16_t {
  kObjPing = 0,        // echo the bulk back (round-trip benchmark)
  kObjUpdate = 1,      // UpdateReq + bulk -> UpdateRep
  kObjFetch = 2,       // FetchReq -> FetchRep + bulk
  kObjPunch = 3,       // PunchReq -> UpdateRep
  kObjList = 4,        // ListReq -> ListRep
  kObjStats = 5,       // (empty) -> TargetStatsRep
  kObjQueryMax = 6,    // QueryMaxReq -> QueryMaxRep
  kObjAggregate = 7,   // AggregateReq -> AggregateRep (then a checkpoint)
  kObjCheckpoint = 8,  // (empty) -> (empty)
  kObjEcUpdate = 9,    // EcUpdateReq + bulk -> UpdateRep (erasure-coded objects)
  // Rebuild, engine to engine (no container handle: the store key names the container).
  kObjRebuildPush = 10,  // RebuildPush + bulk -> (empty): import one akey's history
  kObjShardFetch = 11,   // FetchReq (oid = store key) -> FetchRep + bulk
  kObjScrub = 12,        // ScrubReq -> ScrubRep: check every stored piece, repair the damaged
  // Distributed transactions, engine to engine (docs/TRANSACTIONS.md).
  kObjDtxOutcome = 13,  // DtxOutcomeReq -> (empty): commit or abort prepared transactions
  kObjDtxQuery = 14,    // DtxQueryReq -> DtxQueryRep: a transaction's state here (the leader
                        // answers once it has decided)
  // Consistency check (docs/TRANSACTIONS.md, "Consistency check").
  kObjDigest = 15,       // DigestReq -> DigestRep: what a copy of a dkey shows at an epoch
  kObjShardExport = 16,  // FetchReq (oid = store key, epoch: up to) -> RebuildPush + bulk
  kObjCheck = 17,        // CheckReq -> CheckRep: check (and repair) a container's objects here
  // User transactions (docs/TRANSACTIONS.md): an epoch, a commit at a coordinator, and a
  // participant's share of it (engines only).
  kObjTxBegin = 18,    // TxBeginReq -> TxBeginRep
  kObjTxCommit = 19,   // TxReq + bulk -> UpdateRep
  kObjTxPrepare = 20,  // TxReq + bulk -> UpdateRep
};
inline constexpr uint16_t kObjMethods = 21;

// An object method's name (metrics label; "unknown" beyond the table).
inline std::string_view obj_method_name(uint16_t m) {
  static constexpr std::string_view kNames[kObjMethods] = {
      "ping",      "update",       "fetch",       "punch",      "list",         "stats",
      "query_max", "aggregate",    "checkpoint",  "ec_update",  "rebuild_push", "shard_fetch",
      "scrub",     "dtx_outcome",  "dtx_query",   "digest",     "shard_export", "check",
      "tx_begin",  "tx_commit",    "tx_prepare"};
  return m < kObjMethods ? kNames[m] : std::string_view("unknown");
}

// Methods of the system protocol (proto/system.capnp).
enum SysMethod : uint16_t {
  kSysQuery = 0,  // (empty) -> SystemInfo
};

// Actor ids present on every engine target.
inline constexpr uint16_t kObjectServiceActor = 1;
// On target 0 of every engine.
inline constexpr uint16_t kSwimActor = 2;

}  // namespace tessera::proto
