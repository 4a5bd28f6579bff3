// The management service's encoders of pools and containers as the state machine has them
// (members' addresses, open handles, health). Library tessera_mgmt; the decoders are in
// codec.hpp.
#pragma once

#include "mgmt/codec.hpp"
#include "mgmt/state.hpp"

namespace tessera::mgmt {

// A pool as the state has it; `with_conts` adds every container.
void encode_pool(schema::PoolInfo::Builder b, const Pool& p, const MgmtState& s, bool with_conts);
void encode_cont(schema::ContInfo::Builder b, const Pool& p, const Container& c,
                 const MgmtState& s);

}  // namespace tessera::mgmt
