// Helpers the management service's request handlers share (service.cpp, membership.cpp,
// handles.cpp): building replies and checking an ACL. Internal to actors/mgmt.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string>

#include "mgmt/acl.hpp"
#include "core/buffer.hpp"
#include "proto/capnp_util.hpp"
#include "proto/mgmt.capnp.h"

namespace tessera::mgmt {

inline Buffer reply(const std::function<void(schema::MgmtRep::Builder)>& fill) {
  capnp::MallocMessageBuilder b(1024);
  fill(b.initRoot<schema::MgmtRep>());
  return capn::to_body(b);
}

inline Buffer none() {
  return reply([](schema::MgmtRep::Builder r) { r.setNone(); });
}

// `c` holds all of `perms` on `acl`, or the error names what `what` lacks.
inline Status need(const Acl& acl, const Cred& c, uint32_t perms, const std::string& what) {
  const uint32_t have = acl.perms_for(c);
  if ((have & perms) == perms) return Status();
  return denied(c, perms & ~have, what);  // names only what is missing
}

// A request that only engines (the system key) may make.
inline Status engines_only(const char* what) {
  return Status(Errc::unauthenticated,
                fmt::format("{}: served only to engines (a request authenticated with the "
                            "system key)",
                            what));
}

}  // namespace tessera::mgmt
