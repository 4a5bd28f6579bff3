// store_and_list: libtessera's installed C++ API (tessera/tessera.hpp) against a system: stores
// values under many dkeys of one object, reads them back, lists the dkeys, runs a transaction,
// keeps a batch of writes in flight on an event queue, and uses the container as a key-value map.
// Built out of tree against an installed SDK (examples/README.md):
//
//   cmake -S examples/cpp -B build-cpp -DCMAKE_PREFIX_PATH=PREFIX && cmake --build build-cpp
//   ./build-cpp/store_and_list POOL CONT [N]
//
// The system is found as the tessera CLI finds it ($TESSERA_MGMT, $TESSERA_SYSTEM or
// ~/.tessera/system.json). Exit status 0 when every value read back as written.
#include <tessera/tessera.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace sdk = tessera::sdk;

static std::string value_of(int i) {
  return "value " + std::to_string(i) + " from C++";
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s POOL CONT [N]\n", argv[0]);
    return 2;
  }
  const int n = argc > 3 ? std::atoi(argv[3]) : 32;
  try {
    auto sys = sdk::System::connect();
    auto cont = sys.open(argv[1], argv[2], true);
    const sdk::Oid oid = cont.oid(0, 7);

    for (int i = 0; i < n; ++i) cont.put(oid, "k" + std::to_string(i), "v", value_of(i));
    for (int i = 0; i < n; ++i) {
      const std::string got = cont.get(oid, "k" + std::to_string(i), "v");
      if (got != value_of(i)) {
        std::fprintf(stderr, "k%d read back '%s'\n", i, got.c_str());
        return 1;
      }
    }
    const auto keys = cont.dkeys(oid);
    if (keys.size() != static_cast<size_t>(n)) {
      std::fprintf(stderr, "%zu dkeys listed, not %d\n", keys.size(), n);
      return 1;
    }

    // A value larger than get()'s first buffer: it grows to the value.
    const std::string big(10000, 'b');
    cont.put(oid, "big", "v", big);
    if (cont.get(oid, "big", "v") != big) {
      std::fprintf(stderr, "a 10000-byte value did not read back\n");
      return 1;
    }

    // A transaction: both changes or neither.
    {
      sdk::Transaction tx(cont);
      tx.put(oid, "tx", "a", "first");
      tx.put(oid, "tx", "b", "second");
      tx.commit();
    }
    if (cont.get(oid, "tx", "a") != "first" || cont.get(oid, "tx", "b") != "second") {
      std::fprintf(stderr, "the transaction's changes did not read back\n");
      return 1;
    }

    // Writes in flight on one queue, each completed by a poll.
    sdk::EventQueue eq;
    std::vector<std::unique_ptr<sdk::Event>> evs;
    std::vector<std::string> vals;
    for (int i = 0; i < 16; ++i) vals.push_back(value_of(1000 + i));
    for (int i = 0; i < 16; ++i) {
      evs.push_back(std::make_unique<sdk::Event>(eq));
      cont.put(oid, "async" + std::to_string(i), "v", vals[static_cast<size_t>(i)], *evs.back());
    }
    size_t done = 0;
    while (done < evs.size()) {
      for (tessera_event* e : eq.poll(-1)) {
        if (e->status != 0) {
          std::fprintf(stderr, "an async write failed: %s\n", tessera_event_error(e));
          return 1;
        }
        ++done;
      }
    }
    for (int i = 0; i < 16; ++i) {
      if (cont.get(oid, "async" + std::to_string(i), "v") != vals[static_cast<size_t>(i)]) {
        std::fprintf(stderr, "async%d did not read back\n", i);
        return 1;
      }
    }

    // The container as a map; an absent key is an Error with its code.
    cont.kv_put("cpp-key", "cpp-value");
    if (cont.kv_get("cpp-key") != "cpp-value") return 1;
    cont.kv_remove("cpp-key");
    try {
      cont.kv_get("cpp-key");
      std::fprintf(stderr, "a removed key was found\n");
      return 1;
    } catch (const sdk::Error& e) {
      if (e.code() != -TESSERA_ENOENT) throw;
    }
    std::printf(
        "store_and_list: %d values, %zu dkeys, a transaction and 16 async writes through "
        "libtessera %s's C++ API\n",
        n, keys.size(), sdk::version().c_str());
    return 0;
  } catch (const sdk::Error& e) {
    std::fprintf(stderr, "store_and_list: %s\n", e.what());
    return 1;
  }
}
