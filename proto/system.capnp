# System protocol: what an engine says about itself (control socket and fabric).
@0x90e050343daf0d0d;

$import "/capnp/c++.capnp".namespace("tessera::schema");

struct TargetInfo {
  index       @0 :UInt32;
  cpu         @1 :Int32;
  tid         @2 :Int32;
  fabricAddr  @3 :Data;
  backend     @4 :Text;    # block queue: uring | aio
  storagePath @5 :Text;
  capacity    @6 :UInt64;
  used        @7 :UInt64;
}

struct SystemInfo {
  rank        @0 :UInt32;
  provider    @1 :Text;
  pid         @2 :Int32;
  version     @3 :Text;
  hostname    @4 :Text;
  controlAddr @5 :Text;
  targets     @6 :List(TargetInfo);
  uptimeMs    @7 :UInt64;
  formatDone  @8 :UInt64;  # a pool create running on the engine: bytes of new shard files
  formatTotal @9 :UInt64;  # formatted, of the bytes to format (0 and 0: none runs)
  metricsAddr @10 :Text;   # Prometheus metrics (GET /metrics); empty: off
  poolsOpen   @11 :Bool;   # joined, and the pools the join named are open: the engine serves
}
