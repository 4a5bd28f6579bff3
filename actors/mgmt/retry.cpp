// Failed rebuilds start again by themselves: a generation that failed (a home that did not
// answer, a full target, a step refused) leaves the pool's data short of its redundancy, so the
// monitor starts a new generation after a back-off of 5 s, doubling with each failure in a row
// up to 5 minutes, and logs each decision. A generation that completes resets the count.
// `tessera pool rebuild start` still starts one at once.
#include <fmt/format.h>

#include <algorithm>

#include "actors/mgmt/service.hpp"
#include "core/log.hpp"

namespace tessera::mgmt {

namespace {
constexpr auto kFirstRetry = std::chrono::seconds(5);
constexpr auto kLongestRetry = std::chrono::seconds(300);
}  // namespace

void MgmtService::retry_rebuilds(std::chrono::steady_clock::time_point now) {
  for (const auto& [id, p] : state_.pools()) {
    Retry& r = retry_[id];
    if (p.rebuild.state != "failed") {
      if (p.rebuild.state != "busy") r = Retry{};  // done or idle: the next failure is a first
      continue;
    }
    if (!p.map.moving()) continue;  // nothing left to move (the map changed meanwhile)
    if (r.failed_gen != p.rebuild.gen) {
      r.failed_gen = p.rebuild.gen;
      ++r.attempts;
      const std::chrono::seconds wait =
          std::min<std::chrono::seconds>(kFirstRetry * (1u << std::min<uint32_t>(r.attempts - 1, 6)),
                                         kLongestRetry);
      r.at = now + wait;
      log::warn("management service: pool {} rebuild generation {} failed ({}); retry {} in {} s",
                p.label, p.rebuild.gen, p.rebuild.error, r.attempts,
                wait.count());
      continue;
    }
    if (now < r.at) continue;
    Status st = commit({{"op", "rebuild_start"},
                        {"pool", id},
                        {"now_ms", wall_ms()}});
    if (!st.is_ok()) {
      log::warn("management service: pool {}: starting rebuild retry {}: {}", p.label,
                r.attempts, st.to_string());
      r.at = now + kFirstRetry;
      continue;
    }
    log::info("management service: pool {}: rebuild retry {} started", p.label, r.attempts);
    break;  // the pools changed; look again next round
  }
}

}  // namespace tessera::mgmt
