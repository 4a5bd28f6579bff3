# Management protocol: what clients, the CLI and engines ask of the management service, over
# the control socket of the engine that hosts it. One request type with a union of operations;
# one reply type with a union of answers. Every request carries the caller's credentials.
@0xf795bfa085a3a087;

$import "/capnp/c++.capnp".namespace("tessera::schema");

struct Cred {
  uid    @0 :UInt32;
  gid    @1 :UInt32;
  groups @2 :List(UInt32);
  user   @3 :Text;
}

struct Ace {
  who   @0 :UInt8;    # 0 OWNER@, 1 GROUP@, 2 user, 3 group, 4 EVERYONE@
  id    @1 :UInt32;
  name  @2 :Text;
  perms @3 :UInt32;   # bits: read, write, create-cont, delete, get-prop, set-prop, get-acl, set-acl
}

struct Acl {
  ownerUid @0 :UInt32;
  ownerGid @1 :UInt32;
  entries  @2 :List(Ace);
}

struct MapTarget {
  index @0 :UInt32;
  state @1 :UInt8;    # placement::TargetState
}

struct MapEngine {
  rank        @0 :UInt32;
  host        @1 :Text;
  targets     @2 :List(MapTarget);
  fabricAddrs @3 :List(Data);   # per target
  controlAddr @4 :Text;
  state       @5 :Text;         # membership state of the engine
}

struct PoolMap {
  version  @0 :UInt32;
  provider @1 :Text;
  engines  @2 :List(MapEngine);
  settled  @3 :List(MapEngine);   # while data moves: the last map whose layouts are complete
}

# The pool's rebuild: the state of its current (or last) generation and its progress.
struct RebuildInfo {
  state        @0 :Text;     # idle | busy | done | failed
  gen          @1 :UInt32;
  version      @2 :UInt32;   # the map version this generation rebuilds
  startMs      @3 :UInt64;   # wall clock
  endMs        @4 :UInt64;
  objects      @5 :UInt64;   # object shards scanned
  records      @6 :UInt64;   # akeys and stripes sent
  bytes        @7 :UInt64;
  lost         @8 :UInt64;   # positions nothing could fill (beyond redundancy)
  error        @9 :Text;
  targetsDone  @10 :UInt32;
  targetsTotal @11 :UInt32;
  redundancy   @12 :Text;    # normal | degraded
  bytesTotal   @13 :UInt64;  # bytes to send as the targets counted them before sending (while
                             # busy: the targets that reported; done: all of them)
  targetsReported @14 :UInt32;  # while busy: targets whose count bytesTotal holds
  reclaimPending  @15 :Text;    # after a generation: targets with no reclaim pass reported yet;
                                # until then aggregation keeps punches (mgmt::reclaim_pending)
}

struct KeyValue {
  name  @0 :Text;
  value @1 :Text;
}

struct ContProps {
  label    @0 :Text;
  type     @1 :Text;     # POSIX | KV | ARRAY
  oclass   @2 :UInt16;   # default object class id
  rf       @3 :UInt32;   # redundancy factor
  checksum @4 :Text;
  cellSize @5 :UInt32;
}

struct Snap {
  epoch @0 :UInt64;
  name  @1 :Text;
}

struct ContInfo {
  id            @0 :UInt32;
  uuid          @1 :Text;
  props         @2 :ContProps;
  acl           @3 :Acl;
  attrs         @4 :List(KeyValue);
  snapshots     @5 :List(Snap);
  openHandles   @6 :UInt32;
  health        @7 :Text;     # HEALTHY | DEGRADED | UNCLEAN
  redundancy    @8 :Text;     # normal | degraded | lost
  failedEngines @9 :UInt32;
  createdEpoch  @10 :UInt64;
  handles       @11 :List(HandleOwner);   # who holds the open handles
  lostData      @12 :Bool;    # a rebuild found it beyond its redundancy factor: UNCLEAN for good
}

# An open container handle and who opened it (uid from the request's credentials; host and pid
# as the client reported them, for operators to find the process). `id` names the handle to
# operators (`pool evict --handle`); the secret cookie that grants I/O is never shown.
struct HandleOwner {
  id       @0 :UInt64;
  uid      @1 :UInt32;
  host     @2 :Text;
  pid      @3 :UInt32;
  perms    @4 :UInt32;
  openedMs @5 :UInt64;   # wall clock, ms since the epoch
}

struct PoolInfo {
  id          @0 :UInt32;
  uuid        @1 :Text;
  label       @2 :Text;
  targetBytes @3 :UInt64;
  map         @4 :PoolMap;
  acl         @5 :Acl;
  props       @6 :List(KeyValue);
  containers  @7 :List(ContInfo);
  openHandles @8 :UInt32;
  rebuild     @9 :RebuildInfo;
  damaged     @10 :List(TargetDamage);
}

# A target whose store of this pool failed its checks when its engine opened it (a damaged
# write-ahead log, checkpoint or superblock): the engine does not serve it, and every request
# for it is answered with the reason. Cleared when a reintegration formats it anew.
struct TargetDamage {
  rank   @0 :UInt32;
  target @1 :UInt32;
  reason @2 :Text;
  atMs   @3 :UInt64;   # wall clock, when the engine reported it
}

struct Member {
  rank        @0 :UInt32;
  host        @1 :Text;
  controlAddr @2 :Text;
  provider    @3 :Text;
  fabricAddrs @4 :List(Data);
  state       @5 :Text;
  incarnation @6 :UInt64;
  pid         @7 :UInt64;
  metricsAddr @8 :Text;   # the engine's Prometheus endpoint (empty: off)
}

struct PoolShard {
  id          @0 :UInt32;
  uuid        @1 :Text;
  targetBytes @2 :UInt64;
  epochFloor  @3 :UInt64;   # the pool's newest snapshot: its targets issue epochs above it
}

struct Handle {
  cookie  @0 :UInt64;
  perms   @1 :UInt32;
  pool    @2 :PoolInfo;  # at container open; not in the answer to an engine's handleQuery
  cont    @3 :ContInfo;
  leaseMs @4 :UInt32;   # renew (handleRenew) well within this, or the handle is closed
}

struct MgmtReq {
  cred @0 :Cred;
  union {
    join          @1 :Member;
    heartbeat     @2 :UInt32;       # rank
    systemQuery   @3 :Void;
    systemStop    @4 :Void;         # engines that leave from now on are stopped, not dead
    poolCreate    @5 :PoolCreate;
    poolList      @6 :Void;
    poolQuery     @7 :Text;         # label or UUID
    poolDestroy   @8 :Destroy;
    updateAcl     @9 :AclEdit;
    poolSetProp   @10 :PropSet;
    contCreate    @11 :ContCreate;
    contQuery     @12 :ContRef;
    contDestroy   @13 :Destroy;
    contSetProp   @14 :ContCreate;  # props given replace the old ones (label included)
    contSetAttr   @15 :PropSet;     # value unset (hasValue false): delete
    snapCreate    @16 :SnapReq;
    snapDestroy   @17 :SnapReq;
    contOpen      @18 :ContOpen;
    contClose     @19 :HandleRef;
    handleQuery   @20 :HandleRef;
    poolMap       @21 :UInt32;      # by pool id (engines refreshing their cache)
    targetState   @22 :TargetStateReq;
    rankExclude   @23 :RankExclude;
    rankDead      @24 :RankDead;   # an engine's failure detector declares a rank dead
    poolOp        @25 :PoolOp;     # exclude, drain, reintegrate, extend, rebuild
    rebuildReport @26 :RebuildReport;  # an engine target's rebuild progress
    targetStop    @27 :TargetRef;      # stop one target (it refuses I/O) and take it out of the pools
    leave         @28 :UInt32;         # rank: a clean stop announced by the engine itself
    handleRenew   @29 :List(UInt64);   # container handle cookies whose holder is alive
    poolEvict     @30 :PoolEvict;      # close other clients' handles (administrators)
    contRollback  @31 :ContRollback;   # make a snapshot's state the container's newest
    shardDamaged  @32 :ShardDamaged;   # an engine found a pool's store on a target damaged
    replicaInfo   @33 :Void;           # this access point's replica (any access point answers)
    poolSnapshots @34 :UInt32;         # by pool id: its containers' snapshot epochs (engines'
                                       # aggregation keeps them; the pool map would carry all of
                                       # the pool's containers) and whether its map is moving
                                       # data (MgmtRep.poolMoving)
    reclaimDone   @35 :ReclaimDone;    # a target's reclaim pass over a settled map completed
    poolProps     @36 :UInt32;         # by pool id: the pool's properties alone (each engine's
                                       # scrubber, every few seconds: a property change does
                                       # not change the map, and the whole view is 42 bytes a
                                       # target)
  }

  # A target dropped what pool map `version` (not moving data) no longer places on it, and made
  # the drops durable (rebuild/reclaim.hpp). After a move, aggregation keeps every punch until
  # every target that may hold a former home's copy said so (MgmtRep.poolReclaimPending).
  struct ReclaimDone {
    pool    @0 :UInt32;
    rank    @1 :UInt32;                # must be the reporting engine's own rank
    target  @2 :UInt32;
    version @3 :UInt32;
  }

  struct ShardDamaged {
    pool   @0 :UInt32;
    rank   @1 :UInt32;                 # must be the reporting engine's own rank
    target @2 :UInt32;
    reason @3 :Text;
  }

  struct ContRollback {
    pool  @0 :Text;
    cont  @1 :Text;
    snap  @2 :Text;                  # a snapshot's name, or empty: `epoch`
    epoch @3 :UInt64;
    force @4 :Bool;                  # even with open handles
  }

  struct PoolEvict {
    pool   @0 :Text;
    cont   @1 :Text;                 # empty: every container of the pool
    handle @2 :UInt64;               # a handle's public id (HandleOwner.id); 0: all of them
  }

  struct TargetRef {
    rank   @0 :UInt32;
    target @1 :UInt32;
  }

  struct PoolOp {
    pool   @0 :Text;
    op     @1 :Text;                 # exclude | drain | reintegrate | extend | rebuild
    ranks  @2 :List(UInt32);
    target @3 :Int32;                # -1: every target of the ranks
  }
  struct RebuildReport {
    pool    @0 :UInt32;
    gen     @1 :UInt32;
    rank    @2 :UInt32;
    target  @3 :UInt32;
    done    @4 :Bool;
    error   @5 :Text;                # set: the scan failed
    objects @6 :UInt64;
    records @7 :UInt64;
    bytes   @8 :UInt64;
    lost    @9 :UInt64;
    planned @10 :UInt64;             # bytes the target counted to send before sending any
  }

  struct PoolCreate {
    label       @0 :Text;
    targetBytes @1 :UInt64;
    ranks       @2 :List(UInt32);   # empty: every joined engine
  }
  struct Destroy {
    pool      @0 :Text;
    cont      @1 :Text;
    force     @2 :Bool;   # even with open handles
    recursive @3 :Bool;   # a pool: with the containers it still has
  }
  struct AclEdit {
    pool    @0 :Text;
    cont    @1 :Text;                # empty: the pool's ACL
    set     @2 :List(Ace);           # added or replacing the same principal
    remove  @3 :List(Ace);
    replace @4 :Bool;                # `set` becomes the whole ACL
    get     @5 :Bool;                # change nothing, answer the ACL (needs get-acl)
  }
  struct PropSet {
    pool     @0 :Text;
    cont     @1 :Text;
    name     @2 :Text;
    value    @3 :Text;
    hasValue @4 :Bool;
  }
  struct ContCreate {
    pool  @0 :Text;
    cont  @1 :Text;                  # set-prop: which container
    props @2 :ContProps;
    healthy @3 :Bool;                # set-prop: status=healthy, clear UNCLEAN after a rebuild
  }
  struct ContRef {
    pool @0 :Text;
    cont @1 :Text;
  }
  struct SnapReq {
    pool  @0 :Text;
    cont  @1 :Text;
    name  @2 :Text;
    epoch @3 :UInt64;                # destroy: which; create: 0 = now
  }
  struct ContOpen {
    pool  @0 :Text;
    cont  @1 :Text;
    write @2 :Bool;
    host  @3 :Text;     # the opening client's host name and process id (shown to operators)
    pid   @4 :UInt32;
  }
  struct HandleRef {
    pool   @0 :UInt32;
    cookie @1 :UInt64;
  }
  struct RankDead {
    rank     @0 :UInt32;
    reporter @1 :UInt32;
    incarnation @2 :UInt64;  # the rank's join count when the reporter probed it (0: unknown)
  }
  struct RankExclude {
    rank    @0 :UInt32;
    exclude @1 :Bool;                # false: clear the exclusion
  }
  struct TargetStateReq {
    pool   @0 :Text;
    rank   @1 :UInt32;
    target @2 :Int32;                # -1: every target of the rank
    state  @3 :UInt8;
  }
}

struct MgmtRep {
  union {
    none    @0 :Void;
    members @1 :List(Member);
    pool    @2 :PoolInfo;  # at container open; not in the answer to an engine's handleQuery
    pools   @3 :List(PoolInfo);
    cont    @4 :ContInfo;
    handle  @5 :Handle;
    joined  @6 :List(PoolShard);     # the pools this rank serves
    acl     @7 :Acl;
    evicted @8 :UInt32;              # how many handles a poolEvict closed
    rollback @9 :RollbackDone;
    replica  @10 :ReplicaInfo;
    epochs   @11 :List(UInt64);      # poolSnapshots: ascending, each once
    props    @14 :List(KeyValue);    # poolProps
  }
  # poolSnapshots: the pool's map is moving data (a rebuild generation runs); the engines'
  # aggregation keeps every punch until it settles.
  poolMoving @12 :Bool;
  # poolSnapshots: the targets that have not reported a reclaim pass since the pool's last
  # data movement ended, named ("rank 1 target 0, ..."); empty: none. Aggregation keeps
  # punches for them too: a former home's copy merged into a later fill must not miss one.
  poolReclaimPending @13 :Text;
}

# One access point's replica of the management service (raft).
struct ReplicaInfo {
  rank       @0 :UInt32;
  role       @1 :Text;                 # leader | follower | candidate | unavailable
  serving    @2 :Bool;                 # it leads and has applied the log: it serves requests
  leaderRank @3 :Int64;                # -1: no leader known
  term       @4 :UInt64;
  lastIndex  @5 :UInt64;               # raft log
  applied    @6 :UInt64;
}

# What a container rollback did, summed over the targets (also an engine's reply to contRollback).
struct RollbackDone {
  from      @0 :UInt64;              # the snapshot epoch whose state is now the newest
  at        @1 :UInt64;              # the epoch of the rollback's changes
  objects   @2 :UInt64;              # object shards looked at
  rewritten @3 :UInt64;              # akeys written again as they were
  punched   @4 :UInt64;              # objects, dkeys and akeys made after the snapshot, punched
  bytes     @5 :UInt64;
}

# An engine's reply to epochFence.
struct EpochFenced {
  highest @0 :UInt64;
}

# Engine control requests (management service -> engine).
struct EngineReq {
  union {
    poolShardCreate  @0 :PoolShard;
    poolShardDestroy @1 :PoolShard;
    shutdown         @2 :Void;
    contPurge        @3 :ContPurge;   # punch every object of a destroyed container
    rebuildStart     @4 :RebuildStart;  # scan the pool's shards for this generation
    poolShardReset   @5 :ShardReset;    # drop targets' data of a pool (reintegration)
    targetStop       @6 :UInt32;        # the target refuses I/O until reintegrated (a failed device)
    handleRevoke     @7 :HandleRevoke;  # forget these container handles (closed, evicted)
    contRollback     @8 :ContRollback;  # reply: RollbackDone
    epochFence       @9 :EpochFence;    # reply: EpochFenced
  }
  # Every target of the pool on the engine learns `observe` (issues epochs above it from now
  # on) and issues one epoch; the reply is the highest: above every epoch they issued before.
  struct EpochFence {
    pool    @0 :UInt32;
    observe @1 :UInt64;
  }
  struct ContRollback {
    pool @0 :UInt32;
    cont @1 :UInt32;
    snap @2 :UInt64;                 # the epoch whose state becomes the newest
    at   @3 :UInt64;                 # the epoch of the changes (above every target's clock)
    protect @4 :List(UInt64);        # every snapshot epoch of the pool (aggregation keeps them)
  }
  struct HandleRevoke {
    pool    @0 :UInt32;
    cookies @1 :List(UInt64);
  }
  struct ShardReset {
    shard   @0 :PoolShard;
    targets @1 :List(UInt32);        # their stale data is dropped
    keep    @2 :List(UInt32);        # their data is kept (it may be the only copy): they serve again
  }
  struct RebuildStart {
    pool    @0 :UInt32;
    gen     @1 :UInt32;
    version @2 :UInt32;
  }
  struct ContPurge {
    pool @0 :UInt32;
    cont @1 :UInt32;
  }
}
