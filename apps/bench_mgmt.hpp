// tessera-bench mgmt (apps/bench_mgmt.cpp): management service rates.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace tessera {

struct MgmtBenchArgs {
  std::string pool = "tank";
  int containers = 1000;  // the pool holds containers m0..m<containers-1> (made as needed)
  int opens = 2000;       // container open + close pairs, each of a random one of them
  int queries = 2000;     // container queries
  int pool_queries = 200;  // pool queries (each answer lists every container of the pool)
  int threads = 8;        // client threads, each with its own connection
};

int bench_mgmt(const std::string& mgmt, const MgmtBenchArgs& a, bool as_json);

}  // namespace tessera
