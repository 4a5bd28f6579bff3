# Authentication: what a node's agent vouches for (security/credential.hpp). A credential is
# made for one request: it carries the hash of that request's body, a random nonce and a short
# validity, and is signed with the node's Ed25519 key. It travels in the envelope's `cred`.
@0xc0eba8f302806e54;

$import "/capnp/c++.capnp".namespace("tessera::schema");

struct Credential {
  node      @0 :Text;           # the signing node's name (selects its public key; never a path)
  uid       @1 :UInt32;         # from the kernel (SO_PEERCRED), never from the caller
  gid       @2 :UInt32;
  groups    @3 :List(UInt32);   # from the group database
  user      @4 :Text;
  pid       @5 :UInt32;
  issuedMs  @6 :UInt64;         # wall clock, ms since the epoch
  expiresMs @7 :UInt64;
  nonce     @8 :Data;           # 16 random bytes: a verifier accepts each credential once
  bodyHash  @9 :Data;           # BLAKE2b-256 of the request body it authorizes
}

struct SignedCredential {
  credential @0 :Data;          # a serialized Credential
  signature  @1 :Data;          # Ed25519 over `credential`
}
