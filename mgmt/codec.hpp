// The management records on the wire: plain values (types.hpp) <-> proto/mgmt.capnp.
// Both directions of every record, for the service, the engines and the client library
// (tessera_mgmt_records). The encoders that read the state machine (a pool's members and
// handles) are the service's: codec_state.hpp.
#pragma once

#include "mgmt/types.hpp"
#include "proto/mgmt.capnp.h"

namespace tessera::mgmt {

void encode_cred(schema::Cred::Builder b, const Cred& c);
Cred decode_cred(schema::Cred::Reader r);

void encode_acl(schema::Acl::Builder b, const Acl& a);
Acl decode_acl(schema::Acl::Reader r);
void encode_ace(schema::Ace::Builder b, const Ace& a);
Result<Ace> decode_ace(schema::Ace::Reader r);

void encode_props(schema::ContProps::Builder b, const ContProps& p);
Result<ContProps> decode_props(schema::ContProps::Reader r);

void encode_member(schema::Member::Builder b, const Member& m);
Result<Member> decode_member(schema::Member::Reader r);

// One engine of a pool map: its rank, domain and targets' states (the fields the map itself
// holds; encode_pool adds the member's addresses).
void encode_map_engine(schema::MapEngine::Builder b, const placement::MapEngine& e);

Result<PoolView> decode_pool(schema::PoolInfo::Reader r);
Result<ContView> decode_cont(schema::ContInfo::Reader r);

}  // namespace tessera::mgmt
