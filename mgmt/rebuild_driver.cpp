#include "mgmt/rebuild_driver.hpp"

#include <algorithm>

namespace tessera::mgmt {

using nlohmann::json;

namespace {
bool in_rebuild(placement::TargetState s) {
  return placement::is_available(s) || placement::is_serving(s);
}
}  // namespace

RebuildProgress RebuildDriver::Progress::sum(bool at_least_sent) const {
  RebuildProgress out;
  for (const auto& [k, t] : targets) {
    out.objects += t.objects;
    out.records += t.records;
    out.bytes += t.bytes;
    out.lost += t.lost;
    out.bytes_total += at_least_sent ? std::max(t.bytes_total, t.bytes) : t.bytes_total;
  }
  return out;
}

uint32_t RebuildDriver::targets_waited(const Pool& p) {
  uint32_t n = 0;
  for (const auto& e : p.map.engines) {
    for (const auto& t : e.targets) n += in_rebuild(t.state) ? 1 : 0;
  }
  return n;
}

bool RebuildDriver::waits_for(const Pool& p, uint32_t rank, uint32_t target) {
  const auto* e = p.map.engine(rank);
  if (e == nullptr) return false;
  for (const auto& t : e->targets) {
    if (t.index == target) return in_rebuild(t.state);
  }
  return false;
}

RebuildDriver::Actions RebuildDriver::after_change(const MgmtState& st, uint64_t now_ms) {
  Actions out;
  for (const auto& [id, p] : st.pools()) {
    if (p.rebuild.state != "busy") continue;
    auto sent = sent_gen_.find(id);
    if (sent != sent_gen_.end() && sent->second == p.rebuild.gen) continue;
    sent_gen_[id] = p.rebuild.gen;
    progress_[id] = Progress{p.rebuild.gen, {}, {}};
    Start s{id, p.rebuild.gen, p.rebuild.version, {}};
    for (const auto& e : p.map.engines) {
      auto m = st.members().find(e.rank);
      if (m != st.members().end() && m->second.state == MemberState::joined) {
        s.ranks.push_back(e.rank);
      }
    }
    out.starts.push_back(std::move(s));
    if (targets_waited(p) == 0) {
      out.commands.push_back(
          {{"op", "rebuild_done"}, {"pool", id}, {"gen", p.rebuild.gen}, {"now_ms", now_ms}});
    }
  }
  return out;
}

std::vector<RebuildDriver::Start> RebuildDriver::on_join(const MgmtState& st, uint32_t rank) const {
  std::vector<Start> out;
  for (const auto& [id, p] : st.pools()) {
    if (p.rebuild.state == "busy" && p.map.engine(rank) != nullptr) {
      out.push_back(Start{id, p.rebuild.gen, p.rebuild.version, {rank}});
    }
  }
  return out;
}

std::optional<json> RebuildDriver::report(const MgmtState& st, const Report& r, uint64_t now_ms) {
  const Pool* p = st.pool(r.pool);
  if (p == nullptr) return std::nullopt;
  if (p->rebuild.state != "busy" || p->rebuild.gen != r.gen) return std::nullopt;  // old news
  // Only the targets the generation waits for count: an excluded engine's targets (down) are
  // sent the generation too and answer at once with nothing, which must not stand in for a
  // target still sending.
  if (!waits_for(*p, r.rank, r.target)) return std::nullopt;
  Progress& pr = progress_[p->id];
  if (pr.gen != r.gen) pr = Progress{r.gen, {}, {}};
  const auto key = std::make_pair(r.rank, r.target);
  RebuildProgress& t = pr.targets[key];
  t.objects = r.objects;
  t.records = r.records;
  t.bytes = r.bytes;
  t.lost = r.lost;
  t.bytes_total = r.planned;
  if (!r.error.empty()) {
    return json{{"op", "rebuild_failed"},
                {"pool", p->id},
                {"gen", r.gen},
                {"now_ms", now_ms},
                {"error", "rank " + std::to_string(r.rank) + " target " + std::to_string(r.target) +
                              ": " + r.error}};
  }
  if (!r.done) return std::nullopt;
  pr.done[key] = true;
  if (pr.done.size() < targets_waited(*p)) return std::nullopt;
  const RebuildProgress sum = pr.sum(false);
  return json{{"op", "rebuild_done"},   {"pool", p->id},
              {"gen", r.gen},           {"now_ms", now_ms},
              {"objects", sum.objects}, {"records", sum.records},
              {"bytes", sum.bytes},     {"planned", sum.bytes_total},
              {"lost", sum.lost}};
}

std::optional<RebuildDriver::Retry> RebuildDriver::tick(const MgmtState& st, Nanos now,
                                                        uint64_t now_ms,
                                                        std::vector<Scheduled>* scheduled) {
  for (const auto& [id, p] : st.pools()) {
    Backoff& r = retry_[id];
    if (p.rebuild.state != "failed") {
      if (p.rebuild.state != "busy") r = Backoff{};  // done or idle: the next failure is a first
      continue;
    }
    if (!p.map.moving()) continue;  // nothing left to move (the map changed meanwhile)
    if (r.failed_gen != p.rebuild.gen) {
      r.failed_gen = p.rebuild.gen;
      ++r.attempts;
      const Nanos wait = std::min<Nanos>(
          opts_.first_retry * (1u << std::min<uint32_t>(r.attempts - 1, 6)), opts_.longest_retry);
      r.at = now + wait;
      if (scheduled != nullptr)
        scheduled->push_back(Scheduled{id, p.rebuild.gen, r.attempts, wait});
      continue;
    }
    if (now < r.at) continue;
    // If the caller cannot commit it, the next try comes after the first back-off; if it can,
    // the generation is busy and this is forgotten.
    r.at = now + opts_.first_retry;
    return Retry{json{{"op", "rebuild_start"}, {"pool", id}, {"now_ms", now_ms}}, r.attempts};
  }
  return std::nullopt;
}

void RebuildDriver::reset() {
  sent_gen_.clear();
  progress_.clear();
  retry_.clear();
}

RebuildProgress RebuildDriver::progress(const Pool& p) const {
  RebuildProgress out;
  auto it = progress_.find(p.id);
  if (p.rebuild.state == "busy" && it != progress_.end() && it->second.gen == p.rebuild.gen) {
    out = it->second.sum(true);
    out.targets_reported = static_cast<uint32_t>(it->second.targets.size());
    out.targets_done = static_cast<uint32_t>(it->second.done.size());
  }
  out.targets_total = targets_waited(p);
  return out;
}

}  // namespace tessera::mgmt
