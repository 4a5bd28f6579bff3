# Object protocol: what a client (or another target) asks of a target's object service.
# Payload bytes of update and fetch travel as the message's bulk, never inside the schema.
@0xcfc4beecfdce9159;

$import "/capnp/c++.capnp".namespace("tessera::schema");

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
  offset @4 :UInt64;   # array only
  crc    @5 :UInt32;   # crc32c of the bulk, computed by the sender, verified before storing
}

struct UpdateRep {
  epoch @0 :UInt64;    # the epoch the update was stored at
}

struct FetchReq {
  oid    @0 :ObjId;
  dkey   @1 :Data;
  akey   @2 :Data;
  kind   @3 :ValueKind;
  offset @4 :UInt64;   # array only
  length @5 :UInt64;   # array only; 0 = up to the end of the highest extent
  epoch  @6 :UInt64;   # 0 = newest
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
}

struct PunchReq {
  oid  @0 :ObjId;
  dkey @1 :Data;   # empty: punch the whole object
  akey @2 :Data;   # empty: punch the whole dkey
}

struct ListReq {
  oid    @0 :ObjId;
  scope  @1 :Scope;
  dkey   @2 :Data;   # for scope akeys
  anchor @3 :Data;   # resume after this key (empty: from the start)
  limit  @4 :UInt32;
  enum Scope {
    objects @0;
    dkeys   @1;
    akeys   @2;
  }
}

struct KeyInfo {
  key  @0 :Data;
  oid  @1 :ObjId;       # scope objects
  kind @2 :ValueKind;   # scope akeys
  size @3 :UInt64;      # scope akeys: value size / array end
}

struct ListRep {
  keys   @0 :List(KeyInfo);
  anchor @1 :Data;   # pass back to continue
  done   @2 :Bool;
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
}
