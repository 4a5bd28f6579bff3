# Envelope: the routing header of every Tessera message on the fabric and the control socket.
# It travels as its own Cap'n Proto message right after the fixed frame preamble
# (see net/frame.hpp); the protocol body and the raw bulk payload follow it.
@0xb7fc97a92135d54d;

$import "/capnp/c++.capnp".namespace("tessera::schema");

struct Envelope {
  srcRank   @0  :UInt32;
  srcTarget @1  :UInt16;
  srcActor  @2  :UInt16;
  dstRank   @3  :UInt32;
  dstTarget @4  :UInt16;
  dstActor  @5  :UInt16;
  corr      @6  :UInt64;   # request id; a reply carries its request's corr
  protocol  @7  :UInt16;   # which schema the body uses (see Protocol below)
  method    @8  :UInt16;
  flags     @9  :UInt16;   # bit 0: reply
  status    @10 :UInt16;   # tessera::Errc of a reply
  error     @11 :Text;     # human-readable reason of a failed reply
  replyTo   @12 :Data;     # sender's fabric address
  bulkTotal @13 :UInt64;   # bytes of raw payload in the whole message (all chunks)
  mac       @14 :Data;     # engines and administrators: HMAC-SHA-512-256 under the system key
                           # of the routing fields, cred and body (security/system_key.hpp)
  cred      @15 :Data;     # users: a SignedCredential from the caller's node agent (auth.capnp)
}

enum Protocol {
  none   @0;
  object @1;   # object.capnp: update/fetch/punch/list against a target
  system @2;   # system.capnp: engine and target information
  mgmt   @3;   # mgmt.capnp: management service requests and engine control
  swim   @4;   # swim.capnp: failure detection among engines
}
