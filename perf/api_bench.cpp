// The asynchronous C API's cost beside the C++ API's: 4 KiB single-value updates and fetches
// with DEPTH calls in flight from one thread, through Container::*_async (a window of futures)
// and through tessera_cont_* with events on one event queue (tessera.h), alternating, over the
// same container. perf/api.sh starts the system and prints the figures beside fio.
// Usage: api_bench MGMT POOL CONT OPS DEPTH ROUNDS
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

#include "client/client.hpp"
#include "client/container.hpp"
#include "client/tessera.h"

using namespace tessera;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kValue = 4096;
constexpr uint64_t kObjects = 64;  // spread over every target

std::string dkey(uint64_t i) {
  return fmt::format("d{}", i / kObjects);
}

double cxx_round(Container& c, const std::vector<ObjectId>& oids, uint64_t ops, size_t depth,
                 bool update) {
  std::string v(kValue, 'c');
  std::deque<Future<uint64_t>> ups;
  std::deque<Future<FetchResult>> gets;
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < ops; ++i) {
    const ObjectId o = oids[i % kObjects];
    if (update) {
      if (ups.size() == depth) {
        if (!ups.front().get()) std::abort();
        ups.pop_front();
      }
      ups.push_back(
          c.update_async(o, dkey(i), "v", ValueKind::single, 0, Buffer(v.data(), v.size())));
    } else {
      if (gets.size() == depth) {
        if (!gets.front().get()) std::abort();
        gets.pop_front();
      }
      gets.push_back(c.fetch_async(o, dkey(i), "v", ValueKind::single));
    }
  }
  for (auto& f : ups) {
    if (!f.get()) std::abort();
  }
  for (auto& f : gets) {
    if (!f.get()) std::abort();
  }
  return static_cast<double>(ops) / std::chrono::duration<double>(Clock::now() - t0).count();
}

double c_round(tessera_cont* c, const std::vector<ObjectId>& oids, uint64_t ops, size_t depth,
               bool update) {
  tessera_eq* eq = nullptr;
  if (tessera_eq_create(&eq) != 0) std::abort();
  std::vector<tessera_event> evs(depth);
  std::vector<std::string> bufs(depth, std::string(kValue, 'C'));
  std::vector<tessera_event*> free_evs;
  for (size_t i = 0; i < depth; ++i) {
    tessera_event_init(&evs[i], eq, &bufs[i]);
    free_evs.push_back(&evs[i]);
  }
  std::vector<tessera_event*> done(depth);
  uint64_t started = 0;
  auto t0 = Clock::now();
  while (started < ops || tessera_eq_inflight(eq) > 0) {
    while (started < ops && !free_evs.empty()) {
      tessera_event* e = free_evs.back();
      free_evs.pop_back();
      auto* buf = static_cast<std::string*>(e->user);
      const ObjectId o = oids[started % kObjects];
      const std::string d = dkey(started);
      int rc = update ? tessera_cont_update(c, o.hi, o.lo, d.c_str(), "v", TESSERA_SINGLE, 0,
                                            buf->data(), buf->size(), TESSERA_COND_NONE, nullptr,
                                            e)
                      : tessera_cont_fetch(c, o.hi, o.lo, d.c_str(), "v", TESSERA_SINGLE, 0, 0, 0,
                                           buf->data(), buf->size(), nullptr, e);
      if (rc != 0) std::abort();
      ++started;
    }
    int n = tessera_eq_poll(eq, -1, done.data(), done.size());
    if (n < 0) std::abort();
    for (int i = 0; i < n; ++i) {
      if (done[i]->status != 0) {
        fmt::print(stderr, "api_bench: {}\n", tessera_event_error(done[i]));
        std::abort();
      }
      free_evs.push_back(done[i]);
    }
  }
  const double rate =
      static_cast<double>(ops) / std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& e : evs) tessera_event_fini(&e);
  tessera_eq_destroy(eq);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    fmt::print(stderr, "usage: api_bench MGMT POOL CONT OPS DEPTH ROUNDS\n");
    return 2;
  }
  const std::string mgmt = argv[1], pool = argv[2], cont = argv[3];
  const uint64_t ops = std::strtoull(argv[4], nullptr, 10);
  const size_t depth = std::strtoul(argv[5], nullptr, 10);
  const int rounds = std::atoi(argv[6]);

  ClientOptions co;
  co.engine = mgmt;
  auto cl = Client::connect_system(co);
  if (!cl) {
    fmt::print(stderr, "api_bench: {}\n", cl.status().to_string());
    return 1;
  }
  auto c = (*cl)->open_container(pool, cont, true);
  if (!c) {
    fmt::print(stderr, "api_bench: {}\n", c.status().to_string());
    return 1;
  }
  tessera_client* ccl = nullptr;
  tessera_cont* cc = nullptr;
  if (tessera_connect_system(mgmt.c_str(), &ccl) != 0 ||
      tessera_cont_open(ccl, pool.c_str(), cont.c_str(), 1, &cc) != 0) {
    fmt::print(stderr, "api_bench: {}\n", tessera_last_error());
    return 1;
  }
  std::vector<ObjectId> oids;
  for (uint64_t i = 0; i < kObjects; ++i) oids.push_back(*(*c)->make_oid(3, i));

  // Warm both (the fetches then find every key).
  cxx_round(**c, oids, ops, depth, true);
  c_round(cc, oids, ops, depth, true);
  for (int r = 0; r < rounds; ++r) {
    for (bool update : {true, false}) {
      const double cxx = cxx_round(**c, oids, ops, depth, update);
      const double capi = c_round(cc, oids, ops, depth, update);
      fmt::print("{} {} {:.0f} {:.0f}\n", update ? "update" : "fetch", r, cxx, capi);
    }
  }
  tessera_cont_close(cc);
  tessera_disconnect(ccl);
  return 0;
}
