// The check every message raft sends passes first (mgmt/replica.cpp wraps raft_io.send).
//
// libraft 0.15 answers an InstallSnapshot when the install ends, to the leader it knew when the
// install began. It reads that leader from its follower state even when it has become a
// candidate or leader meanwhile (a union: the "address" is then another state's bytes), and a
// follower that knows no leader by then has a null address. Either ends the process inside the
// send (the management service's replica, with it). Such an answer is dropped instead: raft
// frees it, and a leader that still leads sends the snapshot again.
#pragma once

// libraft's headers declare no C linkage of their own.
extern "C" {
#include <raft.h>
}

namespace tessera::mgmt {

// Whether raft, in `state` (RAFT_FOLLOWER...), may send `m`.
bool raft_send_allowed(int state, const raft_message& m);

}  // namespace tessera::mgmt
