// The management records on the wire: plain values (types.hpp) <-> proto/mgmt.capnp.
// One place for both directions, used by the service, the engines and the client.
#pragma once

#include "mgmt/state.hpp"
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

// A pool as the state has it; `with_conts` adds every container.
void encode_pool(schema::PoolInfo::Builder b, const Pool& p, const MgmtState& s, bool with_conts);
Result<PoolView> decode_pool(schema::PoolInfo::Reader r);
void encode_cont(schema::ContInfo::Builder b, const Pool& p, const Container& c,
                 const MgmtState& s);
Result<ContView> decode_cont(schema::ContInfo::Reader r);

}  // namespace tessera::mgmt
