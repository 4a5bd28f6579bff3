// What the user-transaction tests share (tx_test.cpp, tx_transfers_test.cpp,
// tx_coordinator_test.cpp): a system of three engines of two targets, and small helpers.
#pragma once

#include <cstring>
#include <span>
#include <string>

#include "client/container.hpp"
#include "tests/integration/dtx_harness.hpp"

namespace tessera::testing {

// Three engines of two targets: an RP_2GX object has three groups, so transactions span
// groups and engines.
struct TxSystem : SystemHarness {
  // Without kills, a slow machine must not turn a late answer into a failure: the client's
  // usual timeout.
  explicit TxSystem(const char* oclass = "RP_2GX", uint32_t rf = 1, bool kills = false)
      : SystemHarness(oclass, rf, 2) {
    if (!kills) {
      timeout = std::chrono::milliseconds(30000);
      connect();
    }
  }
  ObjectId obj(uint64_t n) { return *c->make_oid(7, n); }
};

inline std::span<const uint8_t> num(const int64_t& v) {
  return {reinterpret_cast<const uint8_t*>(&v), sizeof v};
}
inline Result<int64_t> read_num(Transaction& tx, ObjectId oid, const std::string& dkey) {
  auto r = tx.fetch(oid, dkey, "bal", ValueKind::single, 0, 0, {.must_exist = true});
  if (!r) return r.status();
  if (r->data.size() != sizeof(int64_t)) return Status(Errc::internal, "not a balance");
  int64_t v;
  std::memcpy(&v, r->data.data(), sizeof v);
  return v;
}
inline std::string text(const Result<FetchResult>& r) {
  if (!r) return r.status().to_string();
  return r->exists ? std::string(r->data.view()) : "<absent>";
}

}  // namespace tessera::testing
