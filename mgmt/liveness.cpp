#include "mgmt/liveness.hpp"

#include <fmt/format.h>

namespace tessera::mgmt {

namespace {
long long ms(Nanos d) {
  return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}
}  // namespace

void Liveness::joined(uint32_t rank, Nanos now) {
  last_seen_[rank] = now;
  stopped_at_.erase(rank);
}

void Liveness::restart(const MgmtState& st, Nanos now) {
  last_seen_.clear();
  stopped_at_.clear();
  for (const auto& [rank, m] : st.members()) last_seen_[rank] = now;
  last_round_ = now;
}

std::optional<Nanos> Liveness::round(Nanos now) {
  const Nanos gap = now - last_round_;
  last_round_ = now;
  if (gap <= opts_.pause_after) return std::nullopt;
  for (auto& [rank, seen] : last_seen_) seen = now;
  for (auto& [rank, at] : stopped_at_) at = now;
  return gap;
}

std::optional<Liveness::Verdict> Liveness::judge(
    const MgmtState& st, Nanos now, const std::function<bool(uint32_t)>& awaiting_rejoin) {
  for (const auto& [rank, m] : st.members()) {
    if (m.state != MemberState::joined || rank == opts_.self_rank) continue;
    auto it = last_seen_.find(rank);
    if (it == last_seen_.end()) continue;
    // Not joined to this leader yet: it may still be waiting on the previous one.
    const Nanos allowed =
        awaiting_rejoin(rank) ? opts_.dead_after + opts_.rejoin_grace : opts_.dead_after;
    if (now - it->second < allowed) continue;
    return Verdict{rank, fmt::format("silent for {} ms", ms(now - it->second))};
  }
  for (auto it = stopped_at_.begin(); it != stopped_at_.end();) {
    auto m = st.members().find(it->first);
    if (m == st.members().end() || m->second.state != MemberState::stopped) {
      it = stopped_at_.erase(it);  // joined again, or judged otherwise
      continue;
    }
    if (now - it->second < opts_.stop_grace) {
      ++it;
      continue;
    }
    const uint32_t rank = it->first;
    stopped_at_.erase(it);
    return Verdict{rank, fmt::format("stopped cleanly and did not come back within {} ms",
                                     ms(opts_.stop_grace))};
  }
  return std::nullopt;
}

std::optional<Nanos> Liveness::heard_recently(uint32_t rank, Nanos now) const {
  auto seen = last_seen_.find(rank);
  if (seen == last_seen_.end() || now - seen->second >= opts_.dead_confirm_silence) {
    return std::nullopt;
  }
  return now - seen->second;
}

}  // namespace tessera::mgmt
