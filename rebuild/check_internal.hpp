// Private to rebuild/check.cpp and rebuild/check_ec.cpp: one target's pass of a container's
// consistency check (rebuild/check.hpp says what it does). Target thread, in a fiber.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "placement/erasure.hpp"
#include "placement/layout.hpp"
#include "rebuild/check.hpp"

namespace tessera::rebuild::detail {

using placement::Position;
using placement::Shard;

// A difference is read again this many times (an update may be on its way between the copies),
// this far apart at first, three times longer each time. A transaction not decided yet
// somewhere (`busy`: its leader is coming back, say) is waited for, up to kBusyWait, without
// counting as a reading.
inline constexpr int kAttempts = 4;
inline constexpr auto kFirstPause = std::chrono::milliseconds(100);
inline constexpr auto kBusyWait = std::chrono::seconds(30);

// "rank R target T".
std::string where(const Shard& s);
// What an akey is, for a finding: the user's akey, and for one erasure coding reserves (whose
// name starts with a NUL byte) which part of it ("cell of position 2", "checksum record",
// "partial-stripe copies").
std::string akey_text(const std::string& akey);

// One akey whose copies disagree: the holders (in position order) and what each shows.
struct Diff {
  std::string akey;
  std::vector<Shard> holders;
  std::vector<storage::AkeyDigest> seen;
  size_t good = 0;  // the holder whose copy the others must take
};

struct StripeRead {
  std::vector<Buffer> cells;         // by cell index (data first, then parity)
  std::vector<int> at;               // cell index -> position (-1: no reader)
  std::vector<std::string> missing;  // cell index -> why it is not present ("" present)
  uint64_t epoch = 0;                // the writer's record's
  bool recorded = false;
  std::vector<uint8_t> sums;
};

// A stripe as its writer meant it (all n cells), and the cell indexes that hold other bytes.
using Solved = std::pair<std::vector<std::vector<uint8_t>>, std::vector<uint32_t>>;

struct Checker {
  Peer peer;
  const CheckOptions& o;
  CheckCounters c;
  storage::TargetStore& store() { return *peer.shard.store; }
  Target& target() { return peer.rt.target(); }
  bool cancelled() const { return o.cancelled && o.cancelled(); }

  // ---- what other targets hold -----------------------------------------------------------
  Result<DkeyDigests> digests(const Shard& m, ObjectId key, const std::string& dkey, uint64_t epoch,
                              bool probe = false);
  Result<storage::AkeyExport> history(const Shard& src, ObjectId key, const std::string& dkey,
                                      const std::string& akey, uint64_t upto);
  void pause(int attempt);
  // Reads with `read(epoch)` at a fresh epoch each time until it answers true (nothing left to
  // read again), at most kAttempts times, pausing longer each time; a `busy` failure is waited
  // for up to kBusyWait without counting. Returns the epoch of the last reading.
  Result<uint64_t> read_settled(const std::function<Result<bool>(uint64_t epoch)>& read);
  // Counts a finding, repairs it (with `repair`, when the check repairs), logs and lists it.
  void report(CheckFinding f, const std::function<Status()>& repair);

  // ---- 1. stored pieces against their checksums --------------------------------------------
  void verify_dkey(ObjectId key, const std::string& dkey);

  // ---- 2. copies kept whole on several positions -------------------------------------------
  // The positions that keep identical copies of `akey` (in order).
  static std::vector<uint32_t> holders_of(const std::optional<placement::EcGeometry>& g, size_t n,
                                          const std::string& akey);
  // The akeys whose copies disagree at `epoch`.
  Result<std::vector<Diff>> differences(const std::vector<Position>& pos, ObjectId key,
                                        const std::string& dkey,
                                        const std::optional<placement::EcGeometry>& g,
                                        uint64_t epoch, uint64_t& compared);
  Status compare_dkey(const std::vector<Position>& pos, ObjectId key, const std::string& dkey,
                      const std::optional<placement::EcGeometry>& g);
  // Gives every disagreeing holder the good copy's history at or below `epoch`, then checks
  // that they agree.
  Status repair_copies(ObjectId key, const std::string& dkey, const Diff& d, uint64_t epoch);

  // ---- 2b. erasure-coded stripes against their parity --------------------------------------
  Result<StripeRead> read_stripe(const placement::EcGeometry& g, const std::vector<Position>& pos,
                                 ObjectId key, const std::string& dkey, const std::string& akey,
                                 uint64_t s, uint64_t epoch);
  static bool data_cell_ok(const placement::EcGeometry& g, const StripeRead& r, uint32_t j,
                           const uint8_t* bytes);
  // The stripe as its writer meant it, from the cells that agree with its record (all n
  // cells), and the cell indexes that hold other bytes or none. Fails when fewer than k cells
  // can be trusted.
  Result<Solved> solve(const placement::EcGeometry& g, const StripeRead& r);
  Status check_stripes(const placement::EcGeometry& g, const std::vector<Position>& pos,
                       ObjectId key, const std::string& dkey, const std::string& akey);
  // Rewrites each bad cell of stripe `s` in its holder's history: the version of the record's
  // epoch gets the right bytes (a cell of another epoch, or none, cannot be put right that way).
  Status repair_cells(const placement::EcGeometry& g, const std::vector<Position>& pos,
                      ObjectId key, const std::string& dkey, const std::string& akey, uint64_t s,
                      const StripeRead& r, const Solved& fix, uint64_t epoch);

  // ---- one dkey ---------------------------------------------------------------------------
  Status dkey_work(const placement::ObjectClass& cls, const placement::Placement& place,
                   ObjectId key, const std::string& dkey);
};

}  // namespace tessera::rebuild::detail
