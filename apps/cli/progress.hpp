// Progress of the CLI's long commands, drawn on stderr (stdout keeps the result; --json draws
// nothing): a bar when the amount of work is known, an elapsed-time line when it is not.
// On a terminal the line is redrawn in place; otherwise a line is printed every few seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "apps/cli/common.hpp"

namespace tessera::cli {

class ProgressLine {
 public:
  explicit ProgressLine(const Globals& g);
  ~ProgressLine() { finish(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // `done` of `total` bytes, with `rate` in bytes per second (0: not known yet) for the ETA, and
  // `text` after the figures. Lines stay within 100 columns. `last`: the final state, drawn
  // even without a terminal when a line was printed only a moment ago.
  void bytes(uint64_t done, uint64_t total, double rate, const std::string& text,
             bool last = false);
  // Work whose amount is not known: `text` and the time since the line began.
  void working(const std::string& text);
  // Ends the line (the last drawing stays on screen). Further calls draw nothing.
  void finish();
  // How long to wait between two polls of what the line shows.
  std::chrono::milliseconds poll() const { return std::chrono::milliseconds(tty_ ? 250 : 1000); }

 private:
  void draw(const std::string& line, bool force = false);

  bool on_ = false;
  bool tty_ = false;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

// "8.5 s", "42 s", "3m07s", "2h05m".
std::string duration_text(double s);

// "[#####.....]  42%  1.2 GiB of 2.9 GiB  48.0 MiB/s  ETA 36 s": the figures of a byte bar.
std::string byte_bar(uint64_t done, uint64_t total, double rate, int width = 24);

// One line about a rebuild (pool query's `rebuild` object).
std::string rebuild_line(const json& r);

// Blocks until the pool's rebuild is not busy, drawing its progress in bytes (moved of the
// total the targets counted, the rate since the generation started, an ETA) and ending at 100%.
// `wait_s` > 0: gives up after that long. Prints the result as `what` and returns the exit code.
int wait_rebuild(Globals& g, MgmtClient& mc, const std::string& pool, double wait_s,
                 const std::string& what, const std::function<void(json&)>& extra = {});

}  // namespace tessera::cli
