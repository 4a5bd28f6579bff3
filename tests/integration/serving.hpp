// Whether an engine still serves after a test threw something at it: an update and a fetch of
// its scratch store through the client library, and (with_mgmt) a management query.
#pragma once

#include <chrono>
#include <string>

#include "client/client.hpp"
#include "client/mgmt_client.hpp"

namespace tessera::testing {

inline bool serves(const std::string& engine, bool with_mgmt = false) {
  ClientOptions co;
  co.engine = engine;
  co.timeout = std::chrono::milliseconds(60000);  // a backstop for a loaded machine
  auto c = Client::connect(co);
  if (!c) return false;
  const std::string v = "still serving";
  auto u = (*c)->update({7, 7}, "d", "a", ValueKind::single, 0,
                        {reinterpret_cast<const uint8_t*>(v.data()), v.size()});
  auto f = (*c)->fetch({7, 7}, "d", "a", ValueKind::single);
  if (!u.is_ok() || !f.is_ok() || f->data.view() != v) return false;
  return !with_mgmt || MgmtClient(engine, std::chrono::milliseconds(60000)).system_query().is_ok();
}

}  // namespace tessera::testing
