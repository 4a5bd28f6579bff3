#include "apps/cli/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

namespace tessera::cli {

namespace {

constexpr size_t kColumns = 100;
// Without a terminal, a line this often (a log, not an animation).
constexpr auto kPlainEvery = std::chrono::seconds(5);

}  // namespace

std::string duration_text(double s) {
  if (s < 10) return fmt::format("{:.1f} s", s);
  if (s < 60) return fmt::format("{:.0f} s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return fmt::format("{}h{:02}m", static_cast<int>(s) / 3600, static_cast<int>(s) % 3600 / 60);
}

ProgressLine::ProgressLine(const Globals& g)
    : on_(!g.json),
      tty_(::isatty(2) != 0),
      start_(std::chrono::steady_clock::now()),
      last_(start_ - kPlainEvery) {}

void ProgressLine::draw(const std::string& text, bool force) {
  if (!on_) return;
  std::string line = text.substr(0, kColumns - 1);
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    drawn_ = true;
  } else if (force || now - last_ >= kPlainEvery) {
    std::fprintf(stderr, "%s\n", line.c_str());
    last_ = now;
  }
  std::fflush(stderr);
}

void ProgressLine::bytes(uint64_t done, uint64_t total, double rate, const std::string& text,
                         bool last) {
  draw(byte_bar(done, total, rate) + (text.empty() ? "" : "  " + text), last);
}

void ProgressLine::working(const std::string& text) {
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  draw(fmt::format("{}  {:.1f} s", text, s));
}

void ProgressLine::finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
  on_ = false;
}

std::string byte_bar(uint64_t done, uint64_t total, double rate, int width) {
  const uint64_t shown = std::min(done, total);
  const int fill = total == 0 ? width : static_cast<int>(width * shown / total);
  std::string bar(static_cast<size_t>(fill), '#');
  bar.resize(static_cast<size_t>(width), '.');
  const int pct = total == 0 ? 100 : static_cast<int>(100 * shown / total);
  std::string s = fmt::format("[{}] {:3}%  {} of {}", bar, pct, human(done), human(total));
  if (rate > 0) {
    s += fmt::format("  {}/s", human(static_cast<uint64_t>(rate)));
    if (done < total) {
      s += "  ETA " + duration_text(static_cast<double>(total - done) / rate);
    }
  }
  return s;
}

std::string rebuild_line(const json& r) {
  std::string s =
      fmt::format("{} (generation {})", r.value("state", std::string()), r.value("generation", 0u));
  if (r.value("state", std::string()) == "idle") return s;
  s += fmt::format(": {} objects, {} records, {} moved, {:.1f} s", r.value("objects", uint64_t{0}),
                   r.value("records", uint64_t{0}), human(r.value("bytes", uint64_t{0})),
                   static_cast<double>(r.value("elapsed_ms", uint64_t{0})) / 1000.0);
  if (r.value("lost", uint64_t{0}) != 0) {
    s += fmt::format(", {} positions LOST", r.value("lost", uint64_t{0}));
  }
  if (r.contains("error")) s += ", error: " + r["error"].get<std::string>();
  return s;
}

int wait_rebuild(Globals& g, MgmtClient& mc, const std::string& pool, double wait_s,
                 const std::string& what, const std::function<void(json&)>& extra) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000));
  ProgressLine line(g);
  while (true) {
    auto v = mc.pool_query(pool);
    if (!v) return fail(g, v.status(), what);
    json r = rebuild_json(*v);
    const std::string state = r["state"];
    const uint64_t bytes = r.value("bytes", uint64_t{0});
    const double secs = static_cast<double>(r.value("elapsed_ms", uint64_t{0})) / 1000.0;
    const double rate = secs >= 0.5 ? static_cast<double>(bytes) / secs : 0.0;
    if (state != "busy") {
      if (state == "done") {
        // The generation moved what it moved: that is the whole, whatever was counted.
        line.bytes(bytes, bytes, rate,
                   fmt::format("done in {}", duration_text(secs)) +
                       (r.value("lost", uint64_t{0}) != 0 ? ", positions LOST" : ""),
                   true);
      }
      line.finish();
      if (state == "failed") {
        return fail(
            g,
            Status(Errc::io_error,
                   fmt::format("rebuild of pool '{}' failed: {} (a new attempt starts by itself "
                               "after a back-off; `tessera pool rebuild start {}` starts one now)",
                               pool, r.value("error", std::string("?")), pool)),
            what);
      }
      json out{{"rebuild", r}, {"redundancy", v->redundancy}};
      if (extra) extra(out);
      return done(g, out, [&] { std::printf("rebuild %s\n", rebuild_line(r).c_str()); });
    }
    if (wait_s > 0 && std::chrono::steady_clock::now() >= deadline) {
      line.finish();
      return fail(g,
                  Status(Errc::timeout, fmt::format("rebuild of pool '{}' still busy after {} s",
                                                    pool, wait_s)),
                  what);
    }
    const uint32_t total_t = r.value("targets_total", 0u);
    const uint32_t reported = r.value("targets_reported", 0u);
    const uint32_t done_t = r.value("targets_done", 0u);
    if (!r.value("total_known", false)) {
      // The total is the sum of every target's count: not known until each has counted.
      line.working(fmt::format("rebuild generation {}: counting the data to move ({}/{} targets), "
                               "{} moved",
                               r.value("generation", 0u), reported, total_t, human(bytes)));
    } else {
      line.bytes(bytes, r.value("bytes_total", uint64_t{0}), rate,
                 fmt::format("{}/{} targets done", done_t, total_t));
    }
    std::this_thread::sleep_for(line.poll());
  }
}

}  // namespace tessera::cli
