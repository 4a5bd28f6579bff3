// tessera drill run|check: failover drills from YAML files (apps/drill/, docs/DRILLS.md).
#include <unistd.h>

#include <fmt/format.h>

#include <cstdio>
#include <fstream>

#include "apps/cli/common.hpp"
#include "apps/drill/drill.hpp"
#include "apps/drill/generate.hpp"

namespace tessera::cli {

namespace {

struct DrillArgs {
  std::string file;
  drill::RunOptions o;
};

void print_summary(const json& r) {
  const json& s = r["summary"];
  std::printf("\ndrill \"%s\": %s\n", r["drill"].get<std::string>().c_str(),
              r["passed"].get<bool>() ? "PASSED" : "FAILED");
  if (!r["failure"].is_null()) {
    std::printf("  failure     %s\n", r["failure"].get<std::string>().c_str());
  }
  std::string det;
  for (const auto& d : s["detection"]) {
    det +=
        fmt::format("{}rank {}: {}", det.empty() ? "" : ", ", d["rank"].get<uint32_t>(),
                    d["seconds"].is_null() ? std::string("not detected")
                                           : fmt::format("{:.1f} s", d["seconds"].get<double>()));
  }
  std::printf("  detection   %s\n", det.empty() ? "(no rank killed)" : det.c_str());
  const json& rb = s["rebuild"];
  std::printf(
      "  rebuild     %zu generation%s, %.1f s, %.2f MiB at %.2f MiB/s (%lu objects, %lu "
      "records, %lu lost)\n",
      rb["generations"].size(), rb["generations"].size() == 1 ? "" : "s",
      rb["seconds"].get<double>(),
      static_cast<double>(rb["bytes"].get<uint64_t>()) / (1024.0 * 1024.0),
      rb["rate_mib_s"].get<double>(), rb["objects"].get<unsigned long>(),
      rb["records"].get<unsigned long>(), rb["lost"].get<unsigned long>());
  // One line per phase (lines stay within 100 columns); a phase too short to measure has no
  // rate.
  bool first = true;
  for (const char* p : {"before", "during", "after"}) {
    const json& x = s["foreground"][p];
    const std::string rate =
        x["mib_per_s"].is_null()
            ? std::string("no rate (too short to measure)")
            : fmt::format("{:.2f} MiB/s, {:.0f} writes/s", x["mib_per_s"].get<double>(),
                          x["writes_per_s"].get<double>());
    std::printf("  %-11s %-6s %s (%.0f s)\n", first ? "foreground" : "", p, rate.c_str(),
                x["seconds"].get<double>());
    first = false;
  }
  std::printf("  writes      %lu acknowledged, %lu errors, %s verified, %s lost\n",
              s["acknowledged_writes"].get<unsigned long>(), s["write_errors"].get<unsigned long>(),
              s["verified_writes"].dump().c_str(), s["lost_writes"].dump().c_str());
  // A drill without a load has no samples (const operator[] of a missing key is undefined).
  const json errors = s.value("write_error_samples", json::array());
  const json lost = s.value("lost_samples", json::array());
  for (const auto& e : errors) {
    std::printf("    write error: %s\n", e.get<std::string>().c_str());
  }
  for (const auto& e : lost) {
    std::printf("    LOST: %s\n", e.get<std::string>().c_str());
  }
  std::printf("  map version %u; system %s%s\n", s["map_version"].get<uint32_t>(),
              r["system_dir"].get<std::string>().c_str(),
              r["system_dir_kept"].get<bool>() ? " (kept)" : " (removed)");
}

int drill_run(Globals& g, DrillArgs& a) {
  auto spec = drill::parse_drill(a.file);
  if (!spec) return fail(g, spec.status(), "drill run");
  drill::RunOptions o = a.o;
  if (!g.json) {
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    o.on_event = [tty](const json& e) {
      std::string text = e["text"].get<std::string>();
      if (e.contains("ok")) {
        text = fmt::format("{:<44} {}", text,
                           e["ok"].get<bool>()
                               ? fmt::format("ok ({:.1f} s)", e["seconds"].get<double>())
                               : "FAILED: " + e["error"].get<std::string>());
      }
      if (tty) std::fprintf(stderr, "%s", "\r\033[K");  // the progress line
      std::printf("%8.2fs  %-8s %s\n", e["t"].get<double>(), e["kind"].get<std::string>().c_str(),
                  text.c_str());
      std::fflush(stdout);
    };
    if (tty) {
      o.on_progress = [](const std::string& line) {
        std::fprintf(stderr, "\r\033[K  %s", line.c_str());
        std::fflush(stderr);
      };
    }
  }
  auto r = drill::run_drill(*spec, o);
  if (!r) return fail(g, r.status(), "drill run");
  const bool passed = (*r)["passed"].get<bool>();
  if (g.json) {
    std::printf("%s\n", r->dump(2).c_str());
  } else {
    print_summary(*r);
  }
  return passed ? 0 : 1;
}

int drill_check(Globals& g, const std::string& file) {
  auto spec = drill::parse_drill(file);
  if (!spec) return fail(g, spec.status(), "drill check");
  json steps = json::array();
  for (const auto& s : spec->steps) steps.push_back({{"line", s.line}, {"step", s.text}});
  return done(g, {{"drill", spec->name}, {"steps", steps}}, [&] {
    std::printf("%s: drill \"%s\", %zu steps, valid\n", file.c_str(), spec->name.c_str(),
                spec->steps.size());
  });
}

int drill_generate(Globals& g, const drill::GenerateOptions& o, const std::string& out) {
  auto text = drill::generate_drill(o);
  if (!text) return fail(g, text.status(), "drill generate");
  if (!out.empty()) {
    std::ofstream f(out);
    f << *text;
    f.close();
    if (!f) return fail(g, Status(Errc::io_error, "cannot write " + out), "drill generate");
  }
  if (g.json) {
    std::printf("%s\n", json{{"seed", o.seed},
                             {"class", o.oclass},
                             {"engines", o.engines},
                             {"faults", o.faults},
                             {"file", out.empty() ? json(nullptr) : json(out)},
                             {"drill", *text}}
                             .dump(2)
                             .c_str());
  } else if (out.empty()) {
    std::printf("%s", text->c_str());
  } else {
    std::printf("wrote %s (seed %llu)\n", out.c_str(), static_cast<unsigned long long>(o.seed));
  }
  return 0;
}

}  // namespace

void add_drill_commands(CLI::App& app, Globals& g) {
  auto* dr = app.add_subcommand("drill", "failover drills: YAML files of faults and checks");
  dr->require_subcommand(1);
  auto a = std::make_shared<DrillArgs>();
  auto* run =
      leaf(dr, g, "run",
           "run a drill: start (or attach to) a system, write a verified load, inject the faults, "
           "wait, assert, verify; prints a timeline and a summary (exit code 0: passed, no write "
           "lost)",
           [&g, a] { return drill_run(g, *a); });
  run->add_option("file", a->file, "the drill (YAML)")->required();
  run->add_option("--dir", a->o.dir,
                  "directory for the system the drill starts (default: a new temporary one, "
                  "removed when the drill passes)");
  run->add_flag("--keep", a->o.keep, "keep the started system's directory (logs, data)");
  run->add_option("--time-scale", a->o.time_scale,
                  "multiply every wait's limit by this and divide the load's rate by it (a slow "
                  "machine or a sanitizer build)")
      ->check(CLI::Range(1.0, 100.0));
  run->add_option("--attach", a->o.attach,
                  "run on this running system (its system file) instead of starting one");

  auto file = std::make_shared<std::string>();
  auto* check = leaf(dr, g, "check", "read a drill file and report its errors without running it",
                     [&g, file] { return drill_check(g, *file); });
  check->add_option("file", *file, "the drill (YAML)")->required();

  auto go = std::make_shared<drill::GenerateOptions>();
  auto out = std::make_shared<std::string>();
  auto* gen = leaf(dr, g, "generate",
                   "write a random drill: a seeded sequence of kills, clean restarts and "
                   "reintegrations that never takes more engines down than the class survives",
                   [&g, go, out] { return drill_generate(g, *go, *out); });
  gen->add_option("--seed", go->seed, "the seed (the same seed gives the same drill)")
      ->capture_default_str();
  gen->add_option("--class", go->oclass, "the container's object class")->capture_default_str();
  gen->add_option("--engines", go->engines, "engines the drill starts")->capture_default_str();
  gen->add_option("--faults", go->faults, "fault events (kills and clean restarts)")
      ->capture_default_str();
  gen->add_option("-o,--output", *out, "write the drill to this file (default: print it)");
}

}  // namespace tessera::cli
