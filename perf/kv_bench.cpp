// The C++ client's key-value rate, the figure the Python package's bulk calls are measured
// against (perf/python.sh): OPS puts, then OPS gets, of SIZE-byte values under keys k0..k<OPS-1>
// with DEPTH requests in flight from one thread, through Container::update_async/fetch_async on
// the container's key-value object (what tessera_kv_put/get and put_many/get_many send).
// Prints "put RATE" and "get RATE" (requests per second).
// Usage: kv_bench MGMT POOL CONT OPS DEPTH SIZE
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <string>

#include "client/client.hpp"
#include "client/container.hpp"

using namespace tessera;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 7) {
    fmt::print(stderr, "usage: kv_bench MGMT POOL CONT OPS DEPTH SIZE\n");
    return 2;
  }
  const uint64_t ops = std::strtoull(argv[4], nullptr, 10);
  const size_t depth = std::strtoul(argv[5], nullptr, 10);
  const size_t size = std::strtoul(argv[6], nullptr, 10);
  ClientOptions co;
  co.engine = argv[1];
  auto cl = Client::connect_system(co);
  if (!cl) {
    fmt::print(stderr, "kv_bench: {}\n", cl.status().to_string());
    return 1;
  }
  auto c = (*cl)->open_container(argv[2], argv[3], true);
  if (!c) {
    fmt::print(stderr, "kv_bench: {}\n", c.status().to_string());
    return 1;
  }
  const ObjectId kv = *(*c)->make_oid(0, 0);
  const std::string value(size, 'v');
  auto check = [](const auto& r) {
    if (!r) {
      fmt::print(stderr, "kv_bench: {}\n", r.status().to_string());
      std::exit(1);
    }
  };
  for (bool put : {true, false}) {
    std::deque<Future<uint64_t>> puts;
    std::deque<Future<FetchResult>> gets;
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < ops; ++i) {
      const std::string key = fmt::format("k{}", i);
      if (put) {
        if (puts.size() == depth) {
          check(puts.front().get());
          puts.pop_front();
        }
        puts.push_back((*c)->update_async(kv, key, "value", ValueKind::single, 0,
                                          Buffer(value.data(), value.size())));
      } else {
        if (gets.size() == depth) {
          check(gets.front().get());
          gets.pop_front();
        }
        FetchFlags f;
        f.must_exist = true;
        gets.push_back((*c)->fetch_async(kv, key, "value", ValueKind::single, 0, 0, 0, f));
      }
    }
    for (auto& f : puts) check(f.get());
    for (auto& f : gets) check(f.get());
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    fmt::print("{} {:.0f}\n", put ? "put" : "get", static_cast<double>(ops) / s);
  }
  return 0;
}
