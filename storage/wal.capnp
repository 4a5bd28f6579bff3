# Records of a target file's metadata: write-ahead log records and checkpoint chunks
# (see docs/STORAGE_FORMAT.md). Each is one Cap'n Proto flat-array message.
@0xe1e5d2fa2f0c9a31;

$import "/capnp/c++.capnp".namespace("tessera::schema");

struct WalExtent {
  disk   @0 :UInt64;   # byte offset in the target file (4 KiB aligned)
  length @1 :UInt32;   # payload bytes (the extent occupies length rounded up to 4 KiB)
  csum   @2 :UInt64;   # checksum of the payload bytes (type in the version)
}

# One stored version of an akey. Single values: offset 0, lo 0, hi = length.
# Arrays: bytes [offset, offset + length) were written; only [lo, hi) of them still count
# (aggregation trims what newer versions hide). A punch entry hides [lo, hi) of older versions.
struct WalVersion {
  epoch    @0 :UInt64;
  offset   @1 :UInt64;
  length   @2 :UInt64;
  lo       @3 :UInt64;
  hi       @4 :UInt64;
  punch    @5 :Bool;
  inline   @6 :Data;             # values under the inline threshold live in the metadata itself
  csumType @7 :UInt8;            # 0 crc32c, 1 crc64 (ECMA-182, reflected)
  extents  @8 :List(WalExtent);  # large values: consecutive pieces in the data region
}

struct WalRecord {
  epoch @0 :UInt64;
  oidHi @1 :UInt64;
  oidLo @2 :UInt64;
  dkey  @3 :Data;
  akey  @4 :Data;
  union {
    update @5 :WalUpdate;
    punch  @6 :Void;     # empty dkey: whole object; empty akey: whole dkey; else the akey
    # Distributed transactions (docs/TRANSACTIONS.md). A prepare holds a transaction's changes
    # on this target, durable but invisible; a commit applies them, an abort drops them. The
    # record's own epoch, oid and keys are unused for these.
    dtxPrepare @7 :DtxPrepare;
    dtxCommit  @8 :DtxOutcome;
    dtxAbort   @9 :DtxOutcome;
  }
}

# A distributed transaction's identity: the epoch its leader stamped and the leader
# (rank << 32 | target).
struct DtxRef {
  epoch  @0 :UInt64;
  leader @1 :UInt64;
}

struct DtxPrepare {
  id           @0 :DtxRef;
  participants @1 :List(UInt64);   # every target holding a part (rank << 32 | target)
  records      @2 :List(Data);     # this target's changes: WalRecord messages (update, punch)
  user         @3 :Bool;           # a user transaction (participants judged by the pool map)
}

struct DtxOutcome {
  ids @0 :List(DtxRef);
}

struct WalUpdate {
  kind    @0 :UInt8;        # 0 single value, 1 array
  rsize   @1 :UInt32;       # array record size in bytes (1: byte-granular)
  version @2 :WalVersion;   # an array range punch is a version with punch = true
}

# A checkpoint is a list of chunks, each a CkptChunk. An entry carries the punch epochs of
# one level (object: empty dkey and akey; dkey: empty akey) or one akey with its versions.
struct CkptEntry {
  oidHi    @0 :UInt64;
  oidLo    @1 :UInt64;
  dkey     @2 :Data;
  akey     @3 :Data;
  level    @4 :UInt8;               # 0 object, 1 dkey, 2 akey, 3 prepared transaction,
                                    # 4 decided transactions remembered (dtxDecided)
  punches  @5 :List(UInt64);
  kind     @6 :UInt8;
  rsize    @7 :UInt32;
  versions @8 :List(WalVersion);
  dtx      @9 :Data;                # level 3: the transaction's prepare (a WalRecord message)
  dtxDecided @10 :List(DtxDecided); # level 4
}

struct DtxDecided {
  id        @0 :DtxRef;
  committed @1 :Bool;
}

struct CkptChunk {
  entries @0 :List(CkptEntry);
}
