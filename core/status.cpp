#include "core/status.hpp"

namespace tessera {

std::string_view errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::ok:
      return "ok";
    case Errc::invalid_argument:
      return "invalid argument";
    case Errc::not_found:
      return "not found";
    case Errc::no_space:
      return "no space";
    case Errc::io_error:
      return "I/O error";
    case Errc::checksum:
      return "checksum mismatch";
    case Errc::timeout:
      return "timed out";
    case Errc::unreachable:
      return "unreachable";
    case Errc::protocol:
      return "protocol error";
    case Errc::shutdown:
      return "shutting down";
    case Errc::too_big:
      return "too big";
    case Errc::exists:
      return "already exists";
    case Errc::unsupported:
      return "unsupported";
    case Errc::permission:
      return "permission denied";
    case Errc::internal:
      return "internal error";
    case Errc::stale:
      return "stale pool map";
    case Errc::unavailable:
      return "unavailable";
    case Errc::busy:
      return "busy";
    case Errc::unsatisfiable:
      return "unsatisfiable";
    case Errc::unauthenticated:
      return "unauthenticated";
    case Errc::aborted:
      return "transaction aborted";
    case Errc::restart:
      return "transaction conflict (restart it)";
    case Errc::uncertain:
      return "transaction outcome unknown";
    case Errc::not_leader:
      return "not the management leader";
    case Errc::rf_exceeded:
      return "failures exceed the redundancy factor";
  }
  return "unknown error";
}

Status at_target(const Status& st, uint32_t rank, uint32_t target) {
  std::string where = "rank " + std::to_string(rank) + " target " + std::to_string(target) + ": ";
  if (st.message().rfind(where, 0) == 0) return st;
  return Status(st.code(), where + st.message());
}

std::string Status::to_string() const {
  std::string s(errc_name(code_));
  if (!msg_.empty()) {
    s += ": ";
    s += msg_;
  }
  return s;
}

}  // namespace tessera
