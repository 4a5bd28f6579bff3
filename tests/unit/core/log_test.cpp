// The log: a target thread's lines never wait on stderr (a pipe nobody reads), they are
// bounded and counted when the writer falls behind, and the rate limit bounds a call site.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "core/log.hpp"

using namespace tessera;

namespace {
// Points stderr at a pipe for the test's lifetime; read() drains what was written.
struct CapturedStderr {
  int fds[2] = {-1, -1};
  int saved = -1;
  CapturedStderr() {
    EXPECT_EQ(::pipe(fds), 0);
    saved = ::dup(2);
    ::dup2(fds[1], 2);
  }
  ~CapturedStderr() {
    ::dup2(saved, 2);
    ::close(saved);
    ::close(fds[0]);
    ::close(fds[1]);
  }
  // Everything written so far (the pipe made non-blocking for the read).
  std::string drain() {
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    ::fcntl(fds[0], F_SETFL, 0);
    return out;
  }
};
}  // namespace

TEST(Log, ADeferringThreadNeverBlocksOnAFullStderr) {
  CapturedStderr cap;
  // 20,000 lines of 100 bytes: 2 MB, far beyond a pipe's 64 KiB, and nobody reads it yet.
  auto done = std::async(std::launch::async, [] {
    log::set_thread_name("tgt-test");
    log::set_deferred(true);
    const std::string pad(80, 'x');
    for (int i = 0; i < 20000; ++i) log::warn("line {} {}", i, pad);
    log::set_deferred(false);
  });
  // A backstop only: the thread finishes at once unless it blocks on the pipe.
  const bool finished = done.wait_for(std::chrono::seconds(120)) == std::future_status::ready;
  std::string out;
  while (done.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
    out += cap.drain();  // let a blocked thread finish, so the test fails instead of hanging
  }
  ASSERT_TRUE(finished) << "a deferring thread blocked on stderr";
  // The log thread is stuck on the full pipe meanwhile: the rest were dropped and counted.
  for (int i = 0; i < 6000 && out.find("log lines of target threads dropped") == std::string::npos;
       ++i) {
    out += cap.drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(out.find("[tgt-test] line 0 "), std::string::npos);
  EXPECT_NE(out.find("log lines of target threads dropped"), std::string::npos);
}

TEST(Log, RateLimitBoundsLinesPerSecondAndCountsTheRest) {
  auto second = [] {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  log::RateLimit limit(5);
  uint64_t skipped = 0;
  int allowed = 0;
  const auto first = second();
  for (int i = 0; i < 1000; ++i) allowed += limit.allow(&skipped) ? 1 : 0;
  const auto seconds = second() - first + 1;  // the seconds the loop touched
  EXPECT_GE(allowed, 5);
  EXPECT_LE(allowed, 5 * seconds);
  EXPECT_EQ(limit.suppressed_total(), static_cast<uint64_t>(1000 - allowed));
}
