# SWIM failure detection among engines (actors/swim.hpp). Every message carries the sender's
# incarnation and up to 16 pieces of news about members (piggybacked dissemination: each piece
# rides on O(log N) messages), plus the receiver's own entry when the sender suspects it.
@0xb1d5e2a0c7f34e61;

$import "/capnp/c++.capnp".namespace("tessera::schema");

enum SwimState {
  alive   @0;
  suspect @1;
  dead    @2;
}

struct SwimUpdate {
  rank        @0 :UInt32;
  state       @1 :SwimState;
  incarnation @2 :UInt64;   # a member refutes a suspicion by announcing a higher one
}

struct SwimPing {
  from        @0 :UInt32;
  incarnation @1 :UInt64;
  updates     @2 :List(SwimUpdate);
  target      @3 :UInt32;   # ping-req: the member to ping on the sender's behalf
}

struct SwimAck {
  from        @0 :UInt32;
  incarnation @1 :UInt64;
  updates     @2 :List(SwimUpdate);
}
