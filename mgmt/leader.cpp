#include "mgmt/leader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>
#include <string_view>
#include <thread>

namespace tessera::mgmt {

namespace {
constexpr std::string_view kLeaderIs = "; the leader is at ";

std::string trim(std::string s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n'; };
  while (!s.empty() && blank(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && blank(s[i])) ++i;
  return s.substr(i);
}

// The whole of `text` as a decimal number no greater than `max`.
std::optional<uint32_t> decimal(std::string_view text, uint32_t max) {
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v > max) return std::nullopt;
  return v;
}

// "host:port" with a port of 1..65535 (the host is resolved where it is used).
bool host_port(const std::string& a) {
  auto colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  auto port = decimal(std::string_view(a).substr(colon + 1), 65535);
  return port && *port > 0;
}
}  // namespace

std::vector<std::string> split_addresses(const std::string& list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    std::string a = trim(list.substr(pos, end - pos));
    if (!a.empty()) out.push_back(std::move(a));
    pos = end + 1;
  }
  return out;
}

Result<std::vector<AccessPoint>> parse_access_points(const std::string& text) {
  std::vector<AccessPoint> out;
  for (const std::string& e : split_addresses(text)) {
    auto a = e.find('@');
    auto b = a == std::string::npos ? a : e.find('@', a + 1);
    if (b == std::string::npos) {
      return Status(Errc::invalid_argument,
                    fmt::format("access point '{}' is not RANK@CONTROL@RAFT "
                                "(0@10.0.0.1:10001@10.0.0.1:10101)",
                                e));
    }
    AccessPoint ap;
    const std::string rank = e.substr(0, a);
    auto r = decimal(rank, 999'999'999);
    if (!r) {
      return Status(Errc::invalid_argument,
                    fmt::format("access point '{}': '{}' is not a rank", e, rank));
    }
    ap.rank = *r;
    ap.control = e.substr(a + 1, b - a - 1);
    ap.raft = e.substr(b + 1);
    out.push_back(std::move(ap));
  }
  TESSERA_TRY(check_access_points(out));
  return out;
}

std::string access_points_text(const std::vector<AccessPoint>& aps) {
  std::string out;
  for (const auto& ap : aps) {
    if (!out.empty()) out += ',';
    out += fmt::format("{}@{}@{}", ap.rank, ap.control, ap.raft);
  }
  return out;
}

Status check_access_points(const std::vector<AccessPoint>& aps) {
  if (aps.empty() || aps.size() > 7) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} access points: give 1 to 7 (3 or 5 survive the loss of 1 or 2)",
                              aps.size()));
  }
  std::set<uint32_t> ranks;
  std::set<std::string> addrs;
  for (const auto& ap : aps) {
    if (!ranks.insert(ap.rank).second) {
      return Status(Errc::invalid_argument,
                    fmt::format("rank {} is named twice among the access points", ap.rank));
    }
    for (const std::string* a : {&ap.control, &ap.raft}) {
      if (!host_port(*a)) {
        return Status(Errc::invalid_argument,
                      fmt::format("access point of rank {}: '{}' is not host:port", ap.rank, *a));
      }
      if (!addrs.insert(*a).second) {
        return Status(Errc::invalid_argument,
                      fmt::format("address {} is named twice among the access points", *a));
      }
    }
  }
  return Status();
}

Status not_leader(const std::string& leader, const std::string& why) {
  const std::string base = why.empty() ? "this engine does not lead the management service" : why;
  if (leader.empty()) {
    return Status(Errc::not_leader,
                  base + " and knows no leader now (an election may be under way): retry");
  }
  return Status(Errc::not_leader, fmt::format("{}{}{}", base, kLeaderIs, leader));
}

std::string leader_hint(const Status& s) {
  if (s.code() != Errc::not_leader) return {};
  const std::string& m = s.message();
  auto at = m.rfind(kLeaderIs);
  if (at == std::string::npos) return {};
  std::string a = trim(m.substr(at + kLeaderIs.size()));
  return host_port(a) ? a : std::string();
}

LeaderFinder::LeaderFinder(const std::string& addresses) : addrs_(split_addresses(addresses)) {}

std::string LeaderFinder::current() const {
  std::lock_guard lk(guess_->mu);
  if (!guess_->leader.empty()) return guess_->leader;
  return addrs_.empty() ? std::string() : addrs_.front();
}

std::string LeaderFinder::text() const {
  std::string out;
  for (const auto& a : addrs_) out += (out.empty() ? "" : ",") + a;
  return out;
}

void LeaderFinder::note(std::vector<std::pair<std::string, Status>>& said, const std::string& addr,
                        const Status& st) {
  for (auto& [a, s] : said) {
    if (a == addr) {
      s = st;
      return;
    }
  }
  said.emplace_back(addr, st);
}

Status LeaderFinder::no_leader_found(
    const Status& last, const std::vector<std::pair<std::string, Status>>& said) const {
  std::string each;
  for (const auto& [a, s] : said) {
    each += fmt::format("{}{}: {}", each.empty() ? "" : "; ", a, s.message());
  }
  return Status(last.code(),
                fmt::format("no leader among the access points {} (the management service needs a "
                            "majority of them running and reachable): {}",
                            text(), each));
}

bool LeaderFinder::run(std::chrono::milliseconds timeout,
                       const std::function<Status(const std::string&, bool&)>& attempt,
                       const std::function<bool()>& cancelled) const {
  using Clock = std::chrono::steady_clock;
  if (addrs_.empty()) return false;
  const auto deadline = Clock::now() + timeout;
  std::string addr = current();
  size_t next = 0;  // the list entry tried after a dead end
  if (auto it = std::find(addrs_.begin(), addrs_.end(), addr); it != addrs_.end()) {
    next = static_cast<size_t>(it - addrs_.begin()) + 1;
  }
  size_t dead_ends = 0;  // in a row: after a whole round of them, wait a little
  size_t hops = 0;       // hints followed in a row (two followers naming each other)
  while (true) {
    bool reached = true;
    Status st = attempt(addr, reached);
    // With one address, an unreachable service is the answer (there is nowhere else to go).
    const bool moved = st.code() == Errc::not_leader || (!reached && addrs_.size() > 1);
    if (!moved) {
      std::lock_guard lk(guess_->mu);
      guess_->leader = addr;
      return true;
    }
    const std::string hint = leader_hint(st);
    if (!hint.empty() && hint != addr && hops < addrs_.size()) {
      ++hops;
      addr = hint;
      continue;
    }
    hops = 0;
    addr = addrs_[next % addrs_.size()];
    ++next;
    {
      // A later search starts there, not at this dead end: a search cut short (its time is
      // shorter than a connect to a cut-off host) must not begin at the same dead end again.
      std::lock_guard lk(guess_->mu);
      guess_->leader = addr;
    }
    if (Clock::now() >= deadline || (cancelled && cancelled())) return false;
    if (++dead_ends >= addrs_.size()) {
      dead_ends = 0;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(200)));
    }
  }
}

}  // namespace tessera::mgmt
