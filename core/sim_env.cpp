#include "core/sim_env.hpp"

namespace tessera {

SimEnv::SimEnv(Options o)
    : opts_(std::move(o)),
      start_(RealEnv::instance().now()),
      rng_(opts_.seed),
      fault_rng_(opts_.seed ^ 0xfa017fa017ULL) {}

Nanos SimEnv::now() const {
  // Starts an hour in, as on a machine that has been up a while (0 is no special instant).
  Nanos t = std::chrono::hours(1) + Nanos(skipped_.load());
  if (opts_.real_time) t += RealEnv::instance().now() - start_;
  return t;
}

Nanos SimEnv::wall() const {
  return opts_.wall_start + now();
}

uint64_t SimEnv::random() {
  std::lock_guard lk(mu_);
  return rng_();
}

bool SimEnv::fault(std::string_view site) {
  std::lock_guard lk(mu_);
  auto it = counts_.find(site);
  if (it == counts_.end()) it = counts_.emplace(std::string(site), SiteCount{}).first;
  ++it->second.asked;
  auto r = rates_.find(site);
  if (r == rates_.end() || fault_rng_() % 100000 >= r->second) return false;
  ++it->second.fired;
  return true;
}

void SimEnv::skip(Nanos d) {
  if (d.count() > 0) skipped_ += d.count();
}

void SimEnv::set_faults(Rates per_100k) {
  std::lock_guard lk(mu_);
  rates_ = std::move(per_100k);
}

std::map<std::string, SimEnv::SiteCount, std::less<>> SimEnv::fault_counts() const {
  std::lock_guard lk(mu_);
  return counts_;
}

}  // namespace tessera
