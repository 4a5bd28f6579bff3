#include "apps/drill/fill.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "client/client.hpp"
#include "client/container.hpp"
#include "client/mgmt_client.hpp"

namespace tessera::drill {

namespace {
constexpr uint32_t kFillHi = 0xf1;  // the fill's objects (the load's are 0xd1)
constexpr uint64_t kValue = 1u << 20;
constexpr uint64_t kCheckEvery = 8;  // values between two looks at the space
}  // namespace

Result<double> pool_used_pct(Client& client, const std::string& mgmt, const std::string& pool) {
  auto v = MgmtClient(mgmt, std::chrono::milliseconds(10000)).pool_query(pool);
  if (!v) return v.status();
  uint64_t cap = 0, used = 0;
  for (const auto& t : client.pool_space(*v)) {
    if (!t.stats) continue;
    cap += t.stats->capacity;
    used += t.stats->used;
  }
  if (cap == 0) return Status(Errc::unavailable, "no target of the pool answered");
  return 100.0 * static_cast<double>(used) / static_cast<double>(cap);
}

Result<double> pool_used_pct(const std::string& mgmt, const std::string& pool) {
  ClientOptions co;
  co.engine = mgmt;
  co.timeout = std::chrono::milliseconds(10000);
  auto client = Client::connect_system(co);
  if (!client) return client.status();
  return pool_used_pct(**client, mgmt, pool);
}

Filler::Filler(std::string mgmt, std::string pool, std::string cont)
    : mgmt_(std::move(mgmt)), pool_(std::move(pool)), cont_(std::move(cont)) {}

Filler::~Filler() = default;

Status Filler::open() {
  if (s_) return Status();
  auto s = open_session(mgmt_, pool_, cont_, true);
  if (!s) return s.status();
  s_ = std::move(*s);
  return Status();
}

Result<FillReport> Filler::fill_to(double pct, std::chrono::milliseconds timeout,
                                   const std::function<void(const std::string&)>& progress) {
  TESSERA_TRY(open());
  const auto until = std::chrono::steady_clock::now() + timeout;
  FillReport rep;
  std::string value(kValue, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 131 + 7);
  auto used = pool_used_pct(*s_->client, mgmt_, pool_);
  if (!used) return used.status();
  rep.used_pct = *used;
  while (rep.used_pct < pct) {
    if (std::chrono::steady_clock::now() >= until) {
      return Status(Errc::timeout, fmt::format("the pool reached only {:.1f}% of {:.0f}% in {} s",
                                               rep.used_pct, pct, timeout.count() / 1000));
    }
    for (uint64_t k = 0; k < kCheckEvery; ++k) {
      auto oid = s_->cont->make_oid(kFillHi, written_);
      if (!oid) return oid.status();
      auto r = s_->cont->update(*oid, "fill", "v", ValueKind::single, 0,
                          {reinterpret_cast<const uint8_t*>(value.data()), value.size()});
      if (!r) {
        if (r.status().code() != Errc::no_space) return r.status();
        rep.stopped_by = r.status().to_string();
        break;
      }
      ++written_;
      ++rep.values;
    }
    used = pool_used_pct(*s_->client, mgmt_, pool_);
    if (!used) return used.status();
    rep.used_pct = *used;
    if (progress) {
      progress(fmt::format("filling the pool: {:.1f}% of {:.0f}% ({} values of 1 MiB)",
                           rep.used_pct, pct, rep.values));
    }
    if (!rep.stopped_by.empty()) break;
  }
  return rep;
}

Result<uint64_t> Filler::remove() {
  TESSERA_TRY(open());
  for (uint64_t i = 0; i < written_; ++i) {
    auto oid = s_->cont->make_oid(kFillHi, i);
    if (!oid) return oid.status();
    auto r = s_->cont->punch(*oid);
    if (!r) return Status(r.status().code(), fmt::format("deleting fill value {}: {}", i,
                                                         r.status().message()));
  }
  return std::exchange(written_, 0);
}

}  // namespace tessera::drill
