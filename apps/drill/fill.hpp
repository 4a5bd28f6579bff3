// Filling a drill's pool: `fill pool to N%` writes 1 MiB single values into the drill's
// container (objects of their own, never the verified load's) until the pool's data tier is at
// least N% used; `delete fill` punches them again. Space is measured as `tessera pool query`
// shows it: the data used over the data capacity of every target that answers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "apps/drill/load.hpp"
#include "core/status.hpp"

namespace tessera::drill {

// The pool's data tier: used percent of the capacity of the targets that answered, asked
// through `client` (or a client of its own).
Result<double> pool_used_pct(Client& client, const std::string& mgmt, const std::string& pool);
Result<double> pool_used_pct(const std::string& mgmt, const std::string& pool);

struct FillReport {
  uint64_t values = 0;     // 1 MiB values written by this fill
  double used_pct = 0;     // the data tier afterwards
  std::string stopped_by;  // empty: reached; else why it stopped early (a full target)
};

class Filler {
 public:
  Filler(std::string mgmt, std::string pool, std::string cont);
  ~Filler();
  Filler(const Filler&) = delete;
  Filler& operator=(const Filler&) = delete;

  // Writes until the data tier is at least `pct` percent used (or a target is full, which
  // stops the fill without failing it), within `timeout`.
  Result<FillReport> fill_to(double pct, std::chrono::milliseconds timeout,
                             const std::function<void(const std::string&)>& progress);
  // Punches every value the fills wrote; returns how many.
  Result<uint64_t> remove();

 private:
  Status open();
  std::string mgmt_, pool_, cont_;
  std::optional<Session> s_;  // opened by the first fill or delete
  uint64_t written_ = 0;  // values 0 .. written_ - 1 exist
};

}  // namespace tessera::drill
