// Helpers that MgmtState's command handlers (state_ops.cpp) share with the rest of the state
// machine (state.cpp). Internal to mgmt/: no other folder includes this.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "mgmt/types.hpp"

namespace tessera::mgmt::detail {

Status bad(const std::string& why);  // invalid_argument
// A map change is about to move data: keep the map whose layouts are complete (once).
void begin_change(Pool& p);
// After a map change: a new rebuild generation when the pool's self_heal allows it or an
// administrator asked for the data movement.
void plan_rebuild(Pool& p, uint64_t now_ms, bool requested);
// A new map version that changes no layout (new engine addresses, a damage recorded).
void bump_same_layout(Pool& p);
std::vector<std::string> hex_list(const nlohmann::json& j);
// A member's identity (rank, host, addresses, pid), as a join command and the state file
// both carry it.
Member member_from_json(const nlohmann::json& j);
// The pool a command names ("pool": id), or nullptr.
Pool* find_pool(std::map<uint32_t, Pool>& pools, const nlohmann::json& c);

}  // namespace tessera::mgmt::detail
