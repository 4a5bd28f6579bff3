// Typed errors for Tessera's hot paths.
//
// Every fallible operation on a data path returns Status or Result<T>; exceptions are for
// bugs and start-up only. Errc values are stable: they cross the wire in replies.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tessera {

enum class Errc : uint16_t {
  ok = 0,
  invalid_argument = 1,  // malformed request or bad parameter
  not_found = 2,         // object/dkey/akey absent
  no_space = 3,          // device or log full
  io_error = 4,          // the block device reported an error
  checksum = 5,          // stored data failed verification
  timeout = 6,           // a request got no reply in time
  unreachable = 7,       // no route to the addressed engine/target
  protocol = 8,          // malformed or unexpected message
  shutdown = 9,          // the target is stopping
  too_big = 10,          // message or value over a configured limit
  exists = 11,           // conditional insert found a value
  unsupported = 12,      // operation not available in this build/config
  permission = 13,       // caller lacks a permission
  internal = 14,         // a bug: invariant violated
  stale = 15,            // the caller's pool map is older than the server's: refresh, retry
  unavailable = 16,      // not enough healthy targets or fault domains for the request
  busy = 17,             // refused while something is in use (open containers, ...)
  unsatisfiable = 18,    // can never succeed as configured (a class wider than the pool): no
                         // retry helps, unlike `unavailable`
  unauthenticated = 19,  // the sender's identity could not be verified (no or bad credential)
  aborted = 20,          // a distributed transaction was decided aborted (nothing of it applies)
  restart = 21,          // a transaction conflicts with a concurrent one: run it again
  uncertain = 22,        // a transaction's outcome is unknown (it may have committed): do not
                         // run it again blindly
  not_leader = 23,       // this access point does not lead the management service: ask the
                         // leader (the message names it when known)
  rf_exceeded = 24,      // the container lost more engines than its redundancy factor: it takes
                         // no write (reads go on); no retry helps until its engines are back
  kLast = rf_exceeded,   // highest valid code (wire checks)
};

std::string_view errc_name(Errc e) noexcept;

class Status;
// `st` with "rank R target T: " in front of its message, unless the message already names
// that place first (an error that crossed engines keeps one prefix).
Status at_target(const Status& st, uint32_t rank, uint32_t target);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string msg = {}) : code_(code), msg_(std::move(msg)) {}  // NOLINT
  static Status ok() { return {}; }

  bool is_ok() const noexcept { return code_ == Errc::ok; }
  explicit operator bool() const noexcept { return is_ok(); }
  Errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return msg_; }
  // "no_space: target 1 data region full" — what the user sees.
  std::string to_string() const;

 private:
  Errc code_ = Errc::ok;
  std::string msg_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT
  Result(Status st) : v_(std::move(st)) {}   // NOLINT
  Result(Errc code, std::string msg = {}) : v_(Status(code, std::move(msg))) {}

  bool is_ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return is_ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  Status status() const { return is_ok() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

#define TESSERA_TRY(expr)           \
  do {                              \
    ::tessera::Status _st = (expr); \
    if (!_st.is_ok()) return _st;   \
  } while (0)

// `lhs = *expr` for a Result `expr`, or returns its Status.
#define TESSERA_CONCAT_(a, b) a##b
#define TESSERA_CONCAT(a, b) TESSERA_CONCAT_(a, b)
#define TESSERA_ASSIGN_OR_RETURN(lhs, expr) \
  TESSERA_ASSIGN_OR_RETURN_(TESSERA_CONCAT(_tessera_r_, __LINE__), lhs, expr)
#define TESSERA_ASSIGN_OR_RETURN_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp) return tmp.status();                  \
  lhs = std::move(*tmp)

}  // namespace tessera
