# Write-ahead log records of a target's store (see docs/STORAGE_FORMAT.md).
# Each record is one Cap'n Proto flat-array message inside a WAL group.
@0xe1e5d2fa2f0c9a31;

$import "/capnp/c++.capnp".namespace("tessera::schema");

struct WalExtent {
  disk   @0 :UInt64;   # byte offset in the target file (4 KiB aligned)
  length @1 :UInt32;   # payload bytes (the extent occupies length rounded up to 4 KiB)
  crc    @2 :UInt32;   # crc32c of the payload bytes
}

struct WalRecord {
  epoch @0 :UInt64;
  oidHi @1 :UInt64;
  oidLo @2 :UInt64;
  dkey  @3 :Data;
  akey  @4 :Data;
  union {
    update @5 :WalUpdate;
    punch  @6 :Void;     # empty dkey: whole object; empty akey: whole dkey
  }
}

struct WalUpdate {
  kind    @0 :UInt8;           # 0 single value, 1 array
  offset  @1 :UInt64;          # array: first byte written
  length  @2 :UInt64;          # bytes written
  inline  @3 :Data;            # small values live in the log itself
  crc     @4 :UInt32;          # crc32c of the inline bytes
  extents @5 :List(WalExtent); # large values: consecutive pieces in the data region
}
