// Helpers shared by Tessera's tests.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <type_traits>

#include "core/actor.hpp"
#include "core/target.hpp"

namespace tessera::testing {

// Polls `pred` (a condition, never a fixed sleep) until it holds or `limit` passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return pred();
}

// Runs `f` in a fiber on target `t` and returns its result to the calling (test) thread.
template <typename F>
auto run_on(Target& t, F f) -> std::invoke_result_t<F> {
  using R = std::invoke_result_t<F>;
  auto p = std::make_shared<std::promise<R>>();
  auto fut = p->get_future();
  t.post([p, f = std::move(f)]() mutable {
    if constexpr (std::is_void_v<R>) {
      f();
      p->set_value();
    } else {
      p->set_value(f());
    }
  });
  return fut.get();
}

// Answers every request with its own body and bulk.
class EchoActor : public Actor {
 public:
  explicit EchoActor(ActorRuntime& rt) : rt_(rt) {}
  void receive(Message& m) override {
    ++seen;
    (void)rt_.reply(m, Status(), m.body.clone(), std::move(m.bulk));
  }
  int seen = 0;

 private:
  ActorRuntime& rt_;
};

// A fresh directory removed at scope exit. Lives under $TMPDIR (default /tmp).
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/tessera-test-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  // TESSERA_KEEP_TEST_DIRS=1 keeps it (engine logs and files, to study a failure).
  ~TempDir() {
    if (getenv("TESSERA_KEEP_TEST_DIRS") != nullptr) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tessera::testing
