// How callers find the management service: its access points (the engines that run a replica
// of it) and, among them, the leader that serves requests.
//
// An address list names every access point's control address ("a:p,b:q,c:r"; a single address
// is a list of one). A follower answers `not_leader`, naming the leader's control address when
// it knows it; LeaderFinder remembers the leader it found and tries the next access point when
// one cannot be reached or knows no leader.
//
// Threads: any. LeaderFinder is shared by copies of a client (its guess under a mutex).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/status.hpp"

namespace tessera::mgmt {

// One access point as an engine's configuration names it.
struct AccessPoint {
  uint32_t rank = 0;
  std::string control;  // its engine's control address (host:port): where requests go
  std::string raft;     // where the other access points reach its replica (IPv4:port)
};

// "RANK@CONTROL@RAFT,..." (the flag form of the `access_points` list).
Result<std::vector<AccessPoint>> parse_access_points(const std::string& text);
std::string access_points_text(const std::vector<AccessPoint>& aps);
// Checks a list: 1..7 entries, distinct ranks and addresses, each address host:port.
Status check_access_points(const std::vector<AccessPoint>& aps);

// "a,b,c" -> {"a","b","c"} (blanks around entries dropped).
std::vector<std::string> split_addresses(const std::string& list);

// The reply of a follower: `leader` is the leader's control address ("" when none is known).
Status not_leader(const std::string& leader, const std::string& why = {});
// The leader's control address a `not_leader` reply names, or "".
std::string leader_hint(const Status& s);

class LeaderFinder {
 public:
  // `addresses`: the access points' control addresses, comma-separated.
  explicit LeaderFinder(const std::string& addresses);

  // Runs `fn(address, reached)` on the leader: follows a `not_leader` hint, and tries the next
  // access point when one knows no leader or was not reached (`fn` sets `reached` false when
  // its request never left: the connection could not be made), until `timeout` has passed.
  // Any other answer is returned: a request whose connection broke after it was sent may
  // have been applied, so it is not sent again. `cancelled` (optional) ends the search early.
  // A search that ends without an answer says so, with what each access point last said.
  template <typename T>
  Result<T> call(std::chrono::milliseconds timeout,
                 const std::function<Result<T>(const std::string&, bool& reached)>& fn,
                 const std::function<bool()>& cancelled = {}) const {
    Result<T> last = Status(Errc::unreachable, "no management service address");
    std::vector<std::pair<std::string, Status>> said;
    const bool answered = run(
        timeout,
        [&](const std::string& addr, bool& reached) {
          last = fn(addr, reached);
          if (!last) note(said, addr, last.status());
          return last ? Status() : last.status();
        },
        cancelled);
    if (!answered && !last) return no_leader_found(last.status(), said);
    return last;
  }
  // How long to wait for a connection to one access point: with others to try, a host that
  // does not answer (cut off) is given 3 s at most, not the whole request's time.
  std::chrono::milliseconds connect_timeout(std::chrono::milliseconds timeout) const {
    return addrs_.size() > 1 ? std::min(timeout, std::chrono::milliseconds(3000)) : timeout;
  }
  // The access point tried first (the last leader found).
  std::string current() const;
  const std::vector<std::string>& addresses() const { return addrs_; }
  // The list as given ("a,b,c").
  std::string text() const;

 private:
  // True when an access point answered (the leader, or the one address there is); false when
  // the time ran out (or `cancelled`) while looking.
  bool run(std::chrono::milliseconds timeout,
           const std::function<Status(const std::string&, bool&)>& attempt,
           const std::function<bool()>& cancelled) const;
  static void note(std::vector<std::pair<std::string, Status>>& said, const std::string& addr,
                   const Status& st);
  Status no_leader_found(const Status& last,
                         const std::vector<std::pair<std::string, Status>>& said) const;
  std::vector<std::string> addrs_;
  struct Guess {
    std::mutex mu;
    std::string leader;
  };
  std::shared_ptr<Guess> guess_ = std::make_shared<Guess>();
};

}  // namespace tessera::mgmt
