// The management service's encoders of pools and containers as the state machine has them
// (members' addresses, open handles, health). Library tessera_mgmt; the decoders are in
// codec.hpp.
#pragma once

#include "mgmt/codec.hpp"
#include "mgmt/state.hpp"

namespace tessera::mgmt {

// A pool as the state has it; `with_conts` adds every container.
void encode_pool(schema::PoolInfo::Builder b, const Pool& p, const MgmtState& s, bool with_conts);
// A container; `with_handles` lists its open handles (what `cont query` shows operators: every
// handle of the system is looked at). Without, the count alone: the answers to every open, to
// every engine's handle check and map fetch carry the container, and a list there would grow
// with the clients (docs/SCALE.md, the connect storm).
void encode_cont(schema::ContInfo::Builder b, const Pool& p, const Container& c, const MgmtState& s,
                 bool with_handles = false);

}  // namespace tessera::mgmt
