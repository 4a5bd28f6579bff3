// What each drill step does (Runner::run_step and one handler per new kind of step).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <unordered_set>

#include "apps/drill/runner.hpp"

namespace tessera::drill {

Status Runner::run_step(const Step& st) {
  using K = Step::Kind;
  switch (st.kind) {
    case K::sleep:
      std::this_thread::sleep_for(st.duration);
      return Status();
    case K::kill:
      return step_kill(st);
    case K::restart:
      return step_restart(st);
    case K::background:
      return step_background(st);
    case K::wait_background:
      return join_background(limit(st, kDefaultWait));
    case K::exec:
      return step_exec(st);
    case K::fill:
      return step_fill(st);
    case K::unfill:
      return step_unfill();
    case K::corrupt:
      return step_corrupt(st);
    case K::stop_target: {
      fault();
      TESSERA_TRY(mc_->target_stop(st.ranks[0], static_cast<uint32_t>(st.target)));
      std::lock_guard lk(mu_);
      stopped_.insert({st.ranks[0], static_cast<uint32_t>(st.target)});
      return Status();
    }
    case K::pool_op: {
      if (st.op != "rebuild") fault();
      auto v = mc_->pool_op(d_.pool, st.op, st.ranks, st.target);
      if (!v) return v.status();
      if (st.op == "reintegrate") {
        std::lock_guard lk(mu_);
        for (uint32_t r : st.ranks) {
          expect_down_.erase(r);
          for (auto it = stopped_.begin(); it != stopped_.end();) {
            it = it->first == r && (st.target < 0 || it->second == static_cast<uint32_t>(st.target))
                     ? stopped_.erase(it)
                     : std::next(it);
          }
        }
      }
      return Status();
    }
    case K::wait_rebuild:
      if (st.op == "busy") {
        uint32_t before;
        {
          std::lock_guard lk(mu_);
          before = fault_gen_;
        }
        // A generation that started after the fault counts even if it already finished; none
        // at all times out saying so (the change needed no rebuild, or self_heal lacks it).
        return wait_until(
            st,
            [before](const mgmt::PoolView& v) -> Result<bool> {
              return v.pool.rebuild.state == "busy" || v.pool.rebuild.gen > before;
            },
            fmt::format("waiting for a rebuild to start (none started since generation {}: no "
                        "data to move, or the pool's self_heal lacks rebuild)",
                        before));
      }
      {
        // A generation that failed while data is left to move is started again by the management
        // service after a back-off (actors/mgmt/retry.cpp): the step waits for that one, and its
        // timeout names the last failure. The report lists every failed generation.
        auto last_failure = std::make_shared<std::string>();
        Status s = wait_until(
            st,
            [this, last_failure](const mgmt::PoolView& v) -> Result<bool> {
              const auto& r = v.pool.rebuild;
              if (r.state == "failed") {
                *last_failure = fmt::format("rebuild generation {} failed: {}", r.gen, r.error);
                if (!v.pool.map.moving()) return Status(Errc::internal, *last_failure);
                return false;
              }
              if (r.state == "busy" || v.pool.map.moving()) return false;
              std::lock_guard lk(mu_);
              auto settled = [](TargetState s) {
                return s != TargetState::up_in && s != TargetState::down;
              };
              for (uint32_t rank : expect_down_) {
                if (const auto* e = v.pool.map.engine(rank)) {
                  for (const auto& t : e->targets) {
                    if (!settled(t.state)) return false;
                  }
                }
              }
              for (const auto& [rank, target] : stopped_) {
                auto s = v.pool.map.state(rank, target);
                if (s && !settled(*s)) return false;
              }
              return true;
            },
            "waiting for the rebuild");
        if (s.code() == Errc::timeout && !last_failure->empty()) {
          return Status(s.code(), fmt::format("{}; last: {}", s.message(), *last_failure));
        }
        return s;
      }
    case K::wait_down:
      return wait_until(
          st,
          [&st](const mgmt::PoolView& v) -> Result<bool> {
            const auto* e = v.pool.map.engine(st.ranks[0]);
            if (e == nullptr) {
              return Status(Errc::not_found,
                            fmt::format("rank {} is not in the pool", st.ranks[0]));
            }
            return none_up_in(*e);
          },
          fmt::format("waiting for rank {} to be down", st.ranks[0]));
    case K::wait_joined:
      return wait_joined({st.ranks[0]}, limit(st, Millis(60000)));
    case K::assert_: {
      if (st.op == "space") return assert_space(st);
      auto v = mc_->pool_query(d_.pool);
      if (!v) return v.status();
      std::string found;
      std::string want = st.value;
      bool ok = false;
      if (st.op == "health" || st.op == "redundancy") {
        auto c = mc_->cont_query(d_.pool, d_.cont);
        if (!c) return c.status();
        found = st.op == "health" ? c->health.status : c->health.redundancy;
        ok = found == st.value;
      } else if (st.op == "rebuild") {
        found = v->pool.rebuild.state;
        ok = found == st.value;
      } else if (st.op == "map-version") {
        const uint64_t have = v->pool.map.version;
        const uint64_t want = std::stoull(st.value);
        found = std::to_string(have);
        ok = st.cmp == "=="   ? have == want
             : st.cmp == ">=" ? have >= want
             : st.cmp == ">"  ? have > want
             : st.cmp == "<=" ? have <= want
                              : have < want;
      } else if (st.op == "target") {
        auto s = v->pool.map.state(st.ranks[0], static_cast<uint32_t>(st.target));
        found = s ? std::string(placement::state_name(*s)) : "absent";
        ok = found == st.value;
      } else if (st.op == "kept") {
        // Nothing took the rank's targets out: up-in, or up while a reintegration fills them.
        want = "up-in or up";
        const auto* e = v->pool.map.engine(st.ranks[0]);
        if (e == nullptr) {
          found = "absent";
        } else {
          ok = true;
          for (const auto& t : e->targets) {
            found += fmt::format("{}{}:{} {}", found.empty() ? "" : ", ", st.ranks[0], t.index,
                                 placement::state_name(t.state));
            ok = ok && (t.state == placement::TargetState::up_in ||
                        t.state == placement::TargetState::up);
          }
        }
      }
      if (!ok) {
        return Status(Errc::invalid_argument,
                      fmt::format("expected {} {}{}, found {}", st.op,
                                  st.cmp.empty() ? "" : st.cmp + " ", want, found));
      }
      return Status();
    }
    case K::verify: {
      if (!load_) return Status(Errc::invalid_argument, "verify: the drill has no load");
      auto acks = load_->acks();
      auto rep = load_->verify(acks, 2);
      if (!rep) return rep.status();
      if (rep->lost > 0) {
        std::string s;
        for (const auto& x : rep->samples) s += "\n    " + x;
        return Status(Errc::checksum, fmt::format("{} of {} acknowledged writes lost:{}", rep->lost,
                                                  rep->checked, s));
      }
      event("verify", fmt::format("{} acknowledged writes read back exactly", rep->checked),
            {{"checked", rep->checked}, {"lost", rep->lost}});
      return Status();
    }
    case K::load:
      if (!load_) return Status(Errc::invalid_argument, "the drill has no load");
      if (st.op == "stop") {
        load_->stop();
        std::lock_guard lk(mu_);
        load_running_ = false;
      } else if (!load_->running()) {
        TESSERA_TRY(load_->start());
        std::lock_guard lk(mu_);
        load_running_ = true;
      }
      return Status();
    case K::set_prop:
      return mc_->pool_set_prop(d_.pool, st.op, st.value);
  }
  return Status(Errc::internal, "unknown step");
}

}  // namespace tessera::drill

namespace tessera::drill {

namespace {

bool compare(double have, const std::string& cmp, double want) {
  return cmp == "=="   ? have == want
         : cmp == ">=" ? have >= want
         : cmp == ">"  ? have > want
         : cmp == "<=" ? have <= want
                       : have < want;
}

}  // namespace

Status Runner::wait_joined(const std::vector<uint32_t>& ranks, Millis within) {
  const auto until = Clock::now() + within;
  Status last;
  while (true) {
    auto ms = mc_->system_query();
    if (ms) {
      std::vector<uint32_t> missing;
      for (uint32_t rank : ranks) {
        const bool joined = std::any_of(ms->begin(), ms->end(), [rank](const auto& m) {
          return m.rank == rank && m.state == mgmt::MemberState::joined;
        });
        if (!joined) missing.push_back(rank);
      }
      if (missing.empty()) return Status();
      last = Status(Errc::unavailable,
                    fmt::format("rank{} {} not joined", missing.size() == 1 ? " is" : "s are",
                                fmt::join(missing, ", ")));
    } else {
      last = ms.status();
    }
    if (Clock::now() >= until) {
      return Status(Errc::timeout,
                    fmt::format("waiting for rank{} {} to join: not reached within {} s ({})",
                                ranks.size() == 1 ? "" : "s", fmt::join(ranks, ", "),
                                within.count() / 1000, last.to_string()));
    }
    std::this_thread::sleep_for(kPoll);
  }
}

Status Runner::step_kill(const Step& st) {
  const uint32_t r = st.ranks[0];
  local::SystemFile sys;
  {
    std::lock_guard lk(sys_mu_);
    auto fresh = local::SystemFile::load(sys_.path);
    if (!fresh) return fresh.status();
    sys_ = std::move(*fresh);
    sys = sys_;
  }
  fault();
  const bool hang = st.op == "hang";
  const int sig = hang                ? SIGSTOP
                  : st.op == "term"   ? SIGTERM
                  : st.op == "resume" ? SIGCONT
                                      : SIGKILL;
  auto pid = local::kill_engine(sys, r, sig);
  if (!pid) return pid.status();
  std::lock_guard lk(mu_);
  if (sig == SIGCONT) {
    hung_.erase(r);
    return Status();
  }
  if (hang) hung_.insert(r);
  if (sig == SIGTERM) return Status();  // a clean stop: no failure is expected
  kill_t_[r] = now();
  detect_s_.erase(r);
  expect_down_.insert(r);
  return Status();
}

Status Runner::step_restart(const Step& st) {
  const local::SystemFile sys = system();
  for (uint32_t r : st.ranks) {
    bool hung;
    {
      std::lock_guard lk(mu_);
      hung = hung_.count(r) != 0;
    }
    if (hung) {  // a hung engine is killed before it is started again
      auto pid = local::kill_engine(sys, r, SIGKILL);
      if (!pid && pid.status().code() != Errc::not_found) return pid.status();
      std::lock_guard lk(mu_);
      hung_.erase(r);
    }
  }
  local::StartOptions so;
  so.dir = sys.dir;
  so.only = st.ranks;
  so.wait = std::chrono::seconds(90);
  auto rep = local::start(so, [this](const std::string& l) { progress(l); });
  if (!rep) return rep.status();
  std::lock_guard lk(sys_mu_);
  sys_ = rep->sys;
  return Status();
}

Status Runner::step_background(const Step& st) {
  auto b = std::make_unique<Background>();
  b->step = st.inner.at(0);
  Background* raw = b.get();
  b->th = std::thread([this, raw] {
    const double t = now();
    Status r = run_step(raw->step);
    json extra = {{"line", raw->step.line},
                  {"ok", r.is_ok()},
                  {"seconds", round2(now() - t)},
                  {"background", true}};
    if (!r.is_ok()) extra["error"] = r.message();
    event("step", "background: " + raw->step.text, extra);
    raw->result = r;
    raw->done = true;
  });
  bg_.push_back(std::move(b));
  return Status();
}

Status Runner::join_background(Millis limit) {
  const auto until = Clock::now() + limit;
  Status first;
  for (auto& b : bg_) {
    while (!b->done.load()) {
      if (Clock::now() >= until) {
        return Status(Errc::timeout,
                      fmt::format("background step '{}' (line {}) still running after {} s",
                                  b->step.text, b->step.line, limit.count() / 1000));
      }
      std::this_thread::sleep_for(kPoll);
    }
    if (b->th.joinable()) b->th.join();
    if (!b->result.is_ok() && first.is_ok()) {
      first =
          Status(b->result.code(), fmt::format("background step '{}' (line {}): {}", b->step.text,
                                               b->step.line, b->result.message()));
    }
  }
  bg_.clear();
  return first;
}

// Runs the command with /bin/sh, the drill's system, pool and container in its environment;
// its output (the last lines) goes to the timeline. A non-zero exit fails the step.
Status Runner::step_exec(const Step& st) {
  const local::SystemFile sys = system();
  std::vector<std::string> env;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (char** e = environ; *e != nullptr; ++e) {
    std::string v(*e);
    if (v.rfind("PATH=", 0) == 0) {
      path = v.substr(5);
      continue;
    }
    if (v.rfind("TESSERA_SYSTEM=", 0) == 0 || v.rfind("TESSERA_POOL=", 0) == 0 ||
        v.rfind("TESSERA_CONT=", 0) == 0) {
      continue;
    }
    env.push_back(std::move(v));
  }
  // `tessera` is the CLI beside the engines' tessera-server, whatever else is on the PATH.
  auto recorded = local::SystemFile::load(sys.path);
  const auto bin = std::filesystem::path(recorded ? recorded->server : sys.server).parent_path();
  env.push_back("PATH=" + (bin.empty() ? path : bin.string() + ":" + path));
  env.push_back("TESSERA_SYSTEM=" + sys.path);
  env.push_back("TESSERA_POOL=" + d_.pool);
  env.push_back("TESSERA_CONT=" + d_.cont);
  std::vector<char*> envp;
  for (auto& v : env) envp.push_back(v.data());
  envp.push_back(nullptr);
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return Status(Errc::io_error, "exec: pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::string cmd = st.value;
  char sh[] = "/bin/sh";
  char dash_c[] = "-c";
  char* argv[] = {sh, dash_c, cmd.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/bin/sh", &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    return Status(Errc::io_error, fmt::format("exec: cannot start /bin/sh: {}", strerror(rc)));
  }
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof(buf))) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (64u << 10)) out.erase(0, out.size() - (32u << 10));  // keep the tail
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (out.size() > 2000) out = "..." + out.substr(out.size() - 2000);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (!out.empty()) event("exec", out, {{"command", st.value}});
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status();
  return Status(Errc::internal,
                WIFEXITED(status)
                    ? fmt::format("'{}' exited with {}", st.value, WEXITSTATUS(status))
                    : fmt::format("'{}' ended by signal {}", st.value, WTERMSIG(status)));
}

Status Runner::step_fill(const Step& st) {
  if (!filler_) filler_ = std::make_unique<Filler>(mgmt_, d_.pool, d_.cont);
  const double pct = std::stod(st.value);
  auto r =
      filler_->fill_to(pct, limit(st, kDefaultWait), [this](const std::string& l) { progress(l); });
  if (!r) return r.status();
  event("fill",
        fmt::format("pool {:.1f}% used after {} values of 1 MiB{}", r->used_pct, r->values,
                    r->stopped_by.empty() ? "" : " (stopped: " + r->stopped_by + ")"),
        {{"used_pct", round1(r->used_pct)}, {"values", r->values}});
  return Status();
}

Status Runner::step_unfill() {
  if (!filler_) return Status(Errc::invalid_argument, "delete fill: no fill step ran before");
  auto n = filler_->remove();
  if (!n) return n.status();
  event("fill", fmt::format("{} fill values deleted", *n), {{"deleted", *n}});
  return Status();
}

Status Runner::assert_space(const Step& st) {
  auto used = pool_used_pct(mgmt_, d_.pool);
  if (!used) return used.status();
  if (compare(*used, st.cmp, std::stod(st.value))) return Status();
  return Status(Errc::invalid_argument,
                fmt::format("expected space used {} {}%, found {:.1f}%", st.cmp, st.value, *used));
}

// Flips 16 bytes inside stored copies of the load's acknowledged data in one target's pool file
// (the engine must be stopped): every 4 KiB block that starts with 16 bytes found at a 4 KiB
// offset of some acknowledged payload is a stored copy (or erasure-coded cell) of it.
Status Runner::step_corrupt(const Step& st) {
  const uint32_t r = st.ranks[0];
  const local::SystemFile sys = system();
  const local::EngineRecord* e = sys.engine(r);
  if (e == nullptr) return Status(Errc::not_found, fmt::format("no rank {}", r));
  if (local::engine_alive(*e)) {
    return Status(Errc::busy, fmt::format("rank {} is running: stop it first (term rank {}); "
                                          "corrupt edits its files",
                                          r, r));
  }
  if (!load_) return Status(Errc::invalid_argument, "corrupt damages the load's data: no load");
  auto v = mc_->pool_query(d_.pool);
  if (!v) return v.status();
  const std::string file =
      fmt::format("{}/pools/{}-{}/target{}.dat", e->dir, v->pool.id, v->pool.uuid, st.target);
  constexpr size_t kBlock = 4096;
  constexpr size_t kKey = 16;
  std::unordered_set<std::string> keys;
  const uint64_t size = load_->spec().size;
  for (const Ack& a : load_->acks()) {
    const std::string p = VerifiedLoad::payload(d_.seed, a.writer, a.seq, size);
    for (size_t off = 0; off + kKey <= p.size(); off += kBlock) keys.insert(p.substr(off, kKey));
  }
  const int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return Status(Errc::not_found, fmt::format("cannot open {}: {}", file, strerror(errno)));
  }
  std::vector<uint64_t> found;
  std::string chunk(1u << 20, '\0');
  for (uint64_t at = 0;; at += chunk.size()) {
    const ssize_t n = ::pread(fd, chunk.data(), chunk.size(), static_cast<off_t>(at));
    if (n <= 0) break;
    for (size_t b = 0; b + kKey <= static_cast<size_t>(n); b += kBlock) {
      if (keys.count(chunk.substr(b, kKey)) != 0) found.push_back(at + b);
    }
  }
  uint64_t damaged = 0;
  const std::string junk(16, '\xa5');
  for (uint64_t at : found) {
    if (st.count != 0 && damaged >= st.count) break;
    if (::pwrite(fd, junk.data(), junk.size(), static_cast<off_t>(at + 100)) == 16) ++damaged;
  }
  ::fsync(fd);
  ::close(fd);
  if (damaged == 0) {
    return Status(Errc::not_found,
                  fmt::format("no stored copy of the load's data found in {} (values under 4 KiB "
                              "live in the metadata)",
                              file));
  }
  event("corrupt",
        fmt::format("rank {} target {}: {} of {} stored copies of the load's data "
                    "damaged",
                    r, st.target, damaged, found.size()),
        {{"damaged", damaged}, {"found", found.size()}});
  return Status();
}

}  // namespace tessera::drill
