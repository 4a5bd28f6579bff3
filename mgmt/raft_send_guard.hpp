// The check every message raft sends passes first (mgmt/replica.cpp wraps raft_io.send).
//
// libraft 0.15 answers an InstallSnapshot when the install ends, to the leader it knew when the
// install began. It reads that leader from its follower state even when it has become a
// candidate or leader meanwhile (a union: the "address" is then another state's bytes), and a
// follower that knows no leader by then has a null address. Either ends the process inside the
// send (the management service's replica, with it). Such an answer is dropped instead: raft
// frees it, and a leader that still leads sends the snapshot again.
//
// Only that answer: one that a leader or candidate sends to refuse a stale leader's
// AppendEntries (addressed from the request) must go out. raft treats a failed send there as
// fatal: the replica becomes unavailable and raft frees the request's entries twice.
#pragma once

// libraft's headers declare no C linkage of their own.
extern "C" {
#include <raft.h>
}

namespace tessera::mgmt {

// Whether raft `r`, in its present state, may send `m`.
bool raft_send_allowed(const struct raft& r, const raft_message& m);

}  // namespace tessera::mgmt
