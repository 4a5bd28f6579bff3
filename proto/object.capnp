# Object protocol: what a client (or another target) asks of a target's object service.
# Payload bytes of update and fetch travel as the message's bulk, never inside the schema.
@0xcfc4beecfdce9159;

$import "/capnp/c++.capnp".namespace("tessera::schema");

# Which pool shard a request addresses, and with what authority. pool 0 is the engine's local
# scratch store (no placement, no container); any other pool needs the map version the sender
# computed its layout with and an open container handle.
struct IoCtx {
  pool       @0 :UInt32;
  mapVersion @1 :UInt32;   # the sender's pool map version; older than the target's: `stale`
  handle     @2 :UInt64;   # container handle cookie from the management service
  cont       @3 :UInt32;   # container id (checked against the handle)
  replica    @4 :Bool;     # forwarded by the group's leader: apply, do not forward again
  # Engine to engine (with `replica`): the distributed transaction this change is part of
  # (prepare it, do not apply it), and transactions the sender decided committed that the
  # receiver holds prepared (commits piggy-backed on the next request; docs/TRANSACTIONS.md).
  dtx        @5 :DtxPart;
  commits    @6 :List(DtxRef);
  # A user transaction's read (fetch, listing) at the request's epoch: the reading
  # transaction's id (TxBeginRep.owner; 0: not a transaction's read). The target stamps what it
  # reads and its clock observes the epoch (docs/TRANSACTIONS.md, "User transactions").
  txRead     @7 :UInt64;
}

struct DtxRef {
  epoch  @0 :UInt64;    # the epoch the leader stamped
  leader @1 :UInt64;    # rank << 32 | target
}

struct DtxPart {
  id           @0 :DtxRef;
  participants @1 :List(UInt64);   # every target holding a part (rank << 32 | target)
}

# kObjDtxOutcome (engine to engine): decisions for transactions the receiver may hold prepared.
struct DtxOutcomeReq {
  ctx    @0 :IoCtx;          # pool only
  ids    @1 :List(DtxRef);
  commit @2 :Bool;           # false: abort (an unknown id is remembered aborted)
}

# kObjDtxQuery (engine to engine): what the receiver knows of a transaction.
struct DtxQueryReq {
  ctx    @0 :IoCtx;          # pool only
  id     @1 :DtxRef;
  # The asker resolves the transaction without its leader: an id the receiver never prepared
  # is decided aborted there at once, so that a prepare arriving late is refused.
  abortUnknown @2 :Bool;
}

struct DtxQueryRep {
  state @0 :UInt8;           # storage::DtxState: 0 unknown, 1 prepared, 2 committed, 3 aborted
}

struct ObjId {
  hi @0 :UInt64;   # high bits carry the object class
  lo @1 :UInt64;
}

enum ValueKind {
  single @0;   # one value, replaced atomically
  array  @1;   # byte-granular extents addressed by offset
}

struct UpdateReq {
  oid    @0 :ObjId;
  dkey   @1 :Data;
  akey   @2 :Data;
  kind   @3 :ValueKind;
  offset @4 :UInt64;   # array only: first record
  crc    @5 :UInt32;   # crc32c of the bulk, computed by the sender, verified before storing
  cond   @6 :UInt8;    # 0 none, 1 insert only if absent (else `exists`), 2 update only if present
  rsize  @7 :UInt32;   # array record size in bytes (0 or 1: byte-granular)
  epoch  @8 :UInt64;   # 0: the target assigns one
  ctx    @9 :IoCtx;
}

struct UpdateRep {
  epoch @0 :UInt64;    # the epoch the update was stored at
}

struct FetchReq {
  oid    @0 :ObjId;
  dkey   @1 :Data;
  akey   @2 :Data;
  kind   @3 :ValueKind;
  offset @4 :UInt64;   # array only: first record
  length @5 :UInt64;   # array only: records; 0 = up to the end of the highest extent
  epoch  @6 :UInt64;   # 0 = newest
  mustExist @7 :Bool;  # absent at the epoch -> not_found (else an empty answer, exists = false)
  rsize  @8 :UInt32;
  ctx    @9 :IoCtx;
}

struct Range {
  offset @0 :UInt64;
  length @1 :UInt64;
}

struct FetchRep {
  size  @0 :UInt64;        # single: value size; array: end of the highest extent
  holes @1 :List(Range);   # array ranges inside the request that were never written
  crc   @2 :UInt32;        # crc32c of the bulk
  epoch @3 :UInt64;        # newest epoch among the versions returned
  exists @4 :Bool;         # the akey has a visible value at the epoch
}

struct PunchReq {
  oid  @0 :ObjId;
  dkey @1 :Data;   # empty: punch the whole object
  akey @2 :Data;   # empty: punch the whole dkey
  length @3 :UInt64;   # > 0: punch records [offset, offset + length) of an array akey only
  offset @4 :UInt64;
  rsize  @5 :UInt32;
  ctx    @6 :IoCtx;
  epoch  @7 :UInt64;   # 0: the target assigns one (a replica gets the leader's)
}

# One change of an erasure-coded update, for one position of the object's group (the layout's
# group of the dkey, positions 0..k+p-1). The client computes parity and cuts the pieces; the
# group's leader stamps one epoch and sends every other available position its own pieces.
struct EcPiece {
  pos    @0 :UInt32;
  akey   @1 :Data;         # the user's akey, or its partial-stripe copy (reserved prefix)
  kind   @2 :ValueKind;
  punch  @3 :Bool;         # punch [offset, offset + length) (length 0: the whole akey)
  offset @4 :UInt64;       # bytes (erasure-coded arrays are byte-granular)
  length @5 :UInt64;       # update: bytes taken from the bulk at bulkOffset
  bulkOffset @6 :UInt64;
  crc    @7 :UInt32;       # crc32c of the piece's bytes
}

struct EcUpdateReq {
  oid    @0 :ObjId;
  dkey   @1 :Data;
  pieces @2 :List(EcPiece);
  epoch  @3 :UInt64;       # 0: the leader assigns one (positions get the leader's)
  ctx    @4 :IoCtx;
  # Engine to engine (background re-encoding of partial-stripe copies): oid is the store key,
  # no container handle, the epoch the engine read the copies at; sent to the group's leader
  # (itself), which forwards each position its pieces inside one transaction (ctx.replica set,
  # internal kept). ctx.mapVersion must be the target's own version (older or newer: `stale`,
  # the sender gives up this round).
  internal @5 :Bool;
}

struct ListReq {
  oid    @0 :ObjId;
  scope  @1 :Scope;
  dkey   @2 :Data;   # for scope akeys
  anchor @3 :Data;   # resume after this key (empty: from the start)
  limit  @4 :UInt32;
  epoch  @5 :UInt64;   # list what is visible at this epoch (0 = newest)
  akey   @6 :Data;     # for scope recx
  enum Scope {
    objects @0;
    dkeys   @1;
    akeys   @2;
    recx    @3;   # written record ranges of an array akey
  }
  ctx    @7 :IoCtx;
}

struct KeyInfo {
  key  @0 :Data;
  oid  @1 :ObjId;       # scope objects
  kind @2 :ValueKind;   # scope akeys
  size @3 :UInt64;      # scope akeys: value size / array end
  offset @4 :UInt64;    # scope recx: first record of a run
  length @5 :UInt64;    # scope recx: records in the run
}

struct ListRep {
  keys   @0 :List(KeyInfo);
  anchor @1 :Data;   # pass back to continue
  done   @2 :Bool;
}

struct StatsReq {
  ctx @0 :IoCtx;
}

struct TargetStatsRep {
  capacity    @0 :UInt64;
  used        @1 :UInt64;
  walUsed     @2 :UInt64;
  walCapacity @3 :UInt64;
  objects     @4 :UInt64;
  updates     @5 :UInt64;
  fetches     @6 :UInt64;
  backend     @7 :Text;
  checkpointBytes @8 :UInt64;
  pendingFree @9 :UInt64;
  versions    @10 :UInt64;
  checkpoints @11 :UInt64;
  aggregations @12 :UInt64;
  aggregationEpoch @13 :UInt64;
  recoveryMs  @14 :Float64;
  reserve     @15 :UInt64;
  # Background re-encoding of erasure-coded partial-stripe copies (a pool's shard only).
  reencodePasses @16 :UInt64;
  reencodeStripes @17 :UInt64;
  reencodeCopyBytes @18 :UInt64;
  reencodeError @19 :Text;   # the last failed pass's error (the next pass starts again)
  # Damaged stored pieces found by reads and scrubs (rebuild/repair.hpp), since the engine started.
  repairDamaged    @20 :UInt64;
  repairRepaired   @21 :UInt64;   # rewritten from a good copy
  repairUnrepaired @22 :UInt64;   # no good copy found
  repairError      @23 :Text;     # why the last unrepaired piece stayed so
  scrubs           @24 :UInt64;   # scrub passes run
  # Consistency checks of containers (rebuild/check.hpp), since the engine started: passes run,
  # the dkeys the running one has done of those it will check, copies found to disagree and
  # made to agree again.
  checkPasses       @25 :UInt64;
  checkDone         @26 :UInt64;
  checkTotal        @27 :UInt64;
  checkInconsistent @28 :UInt64;
  checkFixed        @29 :UInt64;
  checkRunning      @30 :Bool;
  checkScrubs       @31 :UInt64;  # passes of the background scrubber (pool property `scrub`)
  checkError        @32 :Text;
  # Reclaim of what the pool map no longer places on the target (rebuild/reclaim.hpp), since
  # the engine started: passes run, whole dkeys and akeys dropped, their bytes.
  reclaimPasses     @33 :UInt64;
  reclaimDkeys      @34 :UInt64;
  reclaimAkeys      @35 :UInt64;
  reclaimBytes      @36 :UInt64;
  reclaimError      @37 :Text;
}

# Scrub (kObjScrub): reads every stored piece of a pool's shard back against its checksum and
# repairs the damaged ones from other replicas.
struct ScrubReq {
  ctx   @0 :IoCtx;
  share @1 :Float64;   # share of the target's time the pass may use (0 or 1: all of it)
}

struct ScrubRep {
  akeys      @0 :UInt64;
  extents    @1 :UInt64;
  bytes      @2 :UInt64;
  damaged    @3 :UInt64;
  repaired   @4 :UInt64;
  unrepaired @5 :UInt64;
  lastError  @6 :Text;
}

struct QueryMaxReq {
  oid   @0 :ObjId;
  dkey  @1 :Data;    # empty: the greatest dkey; else the highest record of (dkey, akey)
  akey  @2 :Data;
  epoch @3 :UInt64;
  ctx    @4 :IoCtx;
}

struct QueryMaxRep {
  dkey    @0 :Data;
  recxEnd @1 :UInt64;   # one past the highest visible record
  found   @2 :Bool;
}

struct AggregateReq {
  epoch     @0 :UInt64;          # 0: now
  protected @1 :List(UInt64);    # snapshot epochs that stay readable
  ctx    @2 :IoCtx;
}

struct AggregateRep {
  epoch           @0 :UInt64;
  akeysScanned    @1 :UInt64;
  versionsDropped @2 :UInt64;
  versionsTrimmed @3 :UInt64;
  punchesDropped  @4 :UInt64;
  keysRemoved     @5 :UInt64;
  bytesFreed      @6 :UInt64;
  punchesKept     @7 :Bool;    # the pool's guard held: no punch dropped (AggregationGuard::hold)
}

# Rebuild (engine to engine): the whole history of one akey of a shard, for the target that
# rebuild is filling. The bulk holds the versions' bytes back to back (crc32c in `crc`).
struct RebuildVersion {
  epoch  @0 :UInt64;
  lo     @1 :UInt64;    # bytes [lo, hi) of the value
  hi     @2 :UInt64;
  punch  @3 :Bool;      # array range punch
  dataAt @4 :UInt64;    # where its bytes start in the bulk
}

struct RebuildPush {
  ctx           @0 :IoCtx;           # pool and the sender's map version (no handle)
  oid           @1 :ObjId;           # the shard's store key (container in the reserved bits)
  dkey          @2 :Data;
  akey          @3 :Data;            # empty: only the punches of the dkey and object
  kind          @4 :ValueKind;
  rsize         @5 :UInt32;
  objectPunches @6 :List(UInt64);
  dkeyPunches   @7 :List(UInt64);
  akeyPunches   @8 :List(UInt64);
  versions      @9 :List(RebuildVersion);
  crc           @10 :UInt32;
  # > 0: a consistency repair; the receiver's history of the akey at or below this epoch is
  # replaced by this one instead of merged with it (`tessera cont check --repair`).
  replaceUpto   @11 :UInt64;
}

# Consistency check (engine to engine, and an administrator's `tessera cont check`;
# docs/TRANSACTIONS.md, "Consistency check").
# What a target's copy of one dkey shows at an epoch, akey by akey (store::AkeyDigest). An
# akey missing from the answer is not visible there.
struct DigestReq {
  ctx   @0 :IoCtx;     # pool and the sender's map version (no handle)
  oid   @1 :ObjId;     # the shard's store key
  dkey  @2 :Data;
  epoch @3 :UInt64;
  after @4 :Data;      # resume after this akey (a page ended with `more`)
  probe @5 :Bool;      # answer only `known` (no digests)
}

struct AkeyDigest {
  akey   @0 :Data;
  kind   @1 :ValueKind;
  rsize  @2 :UInt32;
  exists @3 :Bool;
  size   @4 :UInt64;
  epoch  @5 :UInt64;
  digest @6 :UInt64;
  damaged @7 :Bool;    # a piece failed its checksum: this copy is not compared
}

struct DigestRep {
  known @0 :Bool;               # the dkey is in this target's index at all
  akeys @1 :List(AkeyDigest);
  more  @2 :Bool;               # more akeys follow: ask again after the last one
}

# One akey's history at or below `epoch` (FetchReq: oid = store key), answered as a
# RebuildPush body with the versions' bytes as bulk: what a repair copies to a bad copy.
# (kObjShardExport)

# Checks the container's objects this target holds (one target's part of `cont check`).
struct CheckReq {
  ctx    @0 :IoCtx;     # the pool
  cont   @1 :UInt32;    # the container id
  repair @2 :Bool;      # rewrite bad copies from good ones
  share  @3 :Float64;   # share of the target's time the pass may use (0 or 1: all of it)
}

struct CheckFinding {
  oid      @0 :ObjId;   # the user's object id
  dkey     @1 :Data;
  akey     @2 :Data;
  offset   @3 :UInt64;  # arrays: the bytes concerned
  length   @4 :UInt64;
  what     @5 :Text;    # what disagrees
  copies   @6 :Text;    # which copies (rank and target of each side)
  repaired @7 :Bool;
}

struct CheckRep {
  objects      @0 :UInt64;
  dkeys        @1 :UInt64;
  akeys        @2 :UInt64;
  extents      @3 :UInt64;    # stored pieces read back against their checksums
  bytes        @4 :UInt64;
  damaged      @5 :UInt64;    # pieces that failed their checksum
  repaired     @6 :UInt64;    # ... healed from a good copy
  unrepaired   @7 :UInt64;
  compared     @8 :UInt64;    # akeys compared across their copies
  stripes      @9 :UInt64;    # erasure-coded stripes checked against their parity
  inconsistent @10 :UInt64;   # copies that disagree
  fixed        @11 :UInt64;   # ... made to agree again
  findings     @12 :List(CheckFinding);
  leftOff      @13 :UInt64;   # findings not listed (the list is bounded)
  lastError    @14 :Text;
  unchecked    @15 :UInt64;   # dkeys that could not be checked (a copy did not answer)
}

# ---- user transactions (docs/TRANSACTIONS.md, "User transactions") ----

# kObjTxBegin: a transaction's epoch from the target's clock, and the id its reads carry.
struct TxBeginReq {
  ctx @0 :IoCtx;
}
struct TxBeginRep {
  epoch @0 :UInt64;
  owner @1 :UInt64;   # unique with the epoch, never 0: the target's name (rank << 32 | target) + 1
}

# One change of a transaction. Its bytes (updates) are [dataOff, dataOff + dataLen) of the bulk.
struct TxOp {
  op        @0 :Op;
  oid       @1 :ObjId;
  dkey      @2 :Data;    # empty (punch only): the whole object
  akey      @3 :Data;    # empty (punch only): the whole dkey
  kind      @4 :ValueKind;
  offset    @5 :UInt64;  # arrays: first record
  length    @6 :UInt64;  # punch of an array range: records (0: the whole key)
  rsize     @7 :UInt32;
  cond      @8 :UInt8;   # updates: 0 none, 1 insert only if absent, 2 update only if present
  dataOff   @9 :UInt64;
  dataLen   @10 :UInt64;
  crc       @11 :UInt32; # crc32c of the bytes
  pos       @12 :UInt32; # erasure-coded objects: a piece for position pos - 1 of the dkey's
                         # group, under akey (the client cuts an akey's change into pieces,
                         # as for EcUpdateReq); 0: no piece (replicated, or a dkey or object punch)
  enum Op {
    update @0;
    punch  @1;
  }
}

# kObjTxCommit (client -> coordinator): commit these changes at `epoch` (0: the coordinator
# stamps one: a single change spanning groups, such as a whole-object punch), all or nothing.
# kObjTxPrepare (coordinator -> each participant, engines only): prepare the receiver's share
# as the transaction in ctx.dtx. Both answer UpdateRep.
struct TxReq {
  ctx   @0 :IoCtx;
  epoch @1 :UInt64;
  owner @2 :UInt64;   # the transaction's reader id (its own reads are not conflicts)
  ops   @3 :List(TxOp);
}
