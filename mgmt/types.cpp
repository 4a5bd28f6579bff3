// The records' own functions (names, properties, a pool's lookups) and teaching a runtime a
// pool view: the client library's part of the management model (tessera_mgmt_records).
#include "mgmt/types.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>

#include "core/actor.hpp"
#include "core/config.hpp"
#include "core/log.hpp"

namespace tessera::mgmt {

using placement::TargetState;

namespace {
constexpr std::array<std::string_view, 4> kMemberStates = {"joined", "stopped", "excluded", "dead"};
constexpr std::array<std::string_view, 3> kContTypes = {"POSIX", "KV", "ARRAY"};
}  // namespace

std::string_view member_state_name(MemberState s) {
  return kMemberStates.at(static_cast<size_t>(s));
}

std::optional<MemberState> parse_member_state(std::string_view s) {
  auto it = std::find(kMemberStates.begin(), kMemberStates.end(), s);
  if (it == kMemberStates.end()) return std::nullopt;
  return static_cast<MemberState>(it - kMemberStates.begin());
}

std::string_view cont_type_name(ContType t) {
  return kContTypes.at(static_cast<size_t>(t));
}

std::optional<ContType> parse_cont_type(std::string_view s) {
  for (size_t i = 0; i < kContTypes.size(); ++i) {
    std::string up;
    for (char c : s) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (kContTypes[i] == up) return static_cast<ContType>(i);
  }
  return std::nullopt;
}

Status check_label(const std::string& label, const char* what) {
  if (label.empty()) return Status(Errc::invalid_argument, fmt::format("a {} needs a label", what));
  if (label.size() > kMaxLabel) {
    return Status(Errc::invalid_argument, fmt::format("a {} label is at most {} bytes ({} given)",
                                                      what, kMaxLabel, label.size()));
  }
  return Status();
}

Status set_cont_prop(ContProps& p, const std::string& name, const std::string& value) {
  if (name == "label") {
    p.label = value;
  } else if (name == "type") {
    auto t = parse_cont_type(value);
    if (!t)
      return Status(Errc::invalid_argument,
                    fmt::format("unknown type '{}' (POSIX, KV or ARRAY)", value));
    p.type = *t;
  } else if (name == "oclass") {
    const auto* c = placement::find_class(value);
    if (c == nullptr)
      return Status(Errc::invalid_argument, fmt::format("unknown object class '{}'", value));
    p.oclass = c->id;
  } else if (name == "rf") {
    char* end = nullptr;
    unsigned long v = std::strtoul(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || v > 16) {
      return Status(Errc::invalid_argument, fmt::format("rf must be 0..16, not '{}'", value));
    }
    p.rf = static_cast<uint32_t>(v);
  } else if (name == "checksum") {
    p.checksum = value;
  } else if (name == "cell_size") {
    auto b = parse_size(value);
    if (!b) return b.status();
    p.cell_size = static_cast<uint32_t>(*b);
  } else {
    return Status(Errc::invalid_argument,
                  fmt::format("unknown container property '{}' (label, type, oclass, rf, "
                              "checksum, cell_size)",
                              name));
  }
  return Status();
}

std::set<uint64_t> Pool::snapshot_epochs() const {
  std::set<uint64_t> epochs;
  for (const auto& [id, c] : containers) {
    for (const auto& s : c.snapshots) epochs.insert(s.epoch);
  }
  return epochs;
}

uint64_t Pool::newest_snapshot() const {
  const auto epochs = snapshot_epochs();
  return epochs.empty() ? 0 : *epochs.rbegin();
}

const Container* Pool::container(const std::string& key) const {
  for (const auto& [id, c] : containers) {
    if (c.props.label == key || c.uuid == key) return &c;
  }
  return nullptr;
}

const TargetDamage* Pool::damage(uint32_t rank, uint32_t target) const {
  for (const auto& d : damaged) {
    if (d.rank == rank && d.target == target) return &d;
  }
  return nullptr;
}

void learn_view(ActorRuntime& rt, const PoolView& v, uint32_t self) {
  for (const auto& [rank, a] : v.addrs) {
    if (rank == self) continue;
    for (size_t i = 0; i < a.fabric_addrs.size(); ++i) {
      rt.set_route(rank, static_cast<uint16_t>(i), a.fabric_addrs[i]);
    }
  }
  for (const auto& e : v.pool.map.engines) {
    for (const auto& t : e.targets) {
      if (t.state != TargetState::down && t.state != TargetState::down_out) continue;
      size_t n = rt.fail_asks_to(
          e.rank, static_cast<int32_t>(t.index),
          Status(Errc::unavailable,
                 fmt::format("rank {} target {} is {} in pool map version {}", e.rank, t.index,
                             placement::state_name(t.state), v.pool.map.version)));
      if (n > 0) {
        log::info("pool map version {}: {} requests to rank {} target {} ({}) failed over",
                  v.pool.map.version, n, e.rank, t.index, placement::state_name(t.state));
      }
    }
  }
}

}  // namespace tessera::mgmt
