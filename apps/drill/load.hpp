// The verified load of a drill: writer threads that record every acknowledged write.
//
// Writer w's n-th write stores `size` bytes, a pure function of (seed, w, n), under its own key
// (object n % objects of writer w, dkey "w<w>-<n>", akey "v" as a single value or "a" as an
// array from offset 0). No key is written twice, so a write that failed (and may or may not have
// landed) never shadows an acknowledged one: verification regenerates the bytes of every
// acknowledged write, reads them back through a fresh client, and counts every one that is
// missing or differs as lost. The acknowledgement record keeps each write's crc32c as well.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "client/container.hpp"
#include "core/object.hpp"
#include "core/status.hpp"

namespace tessera::drill {

// A client of the system and one of its containers, opened (the load's writers and verifiers,
// the fill). Blocking.
struct Session {
  std::unique_ptr<Client> client;
  std::unique_ptr<Container> cont;
};
Result<Session> open_session(const std::string& mgmt, const std::string& pool,
                             const std::string& cont, bool write);

struct LoadSpec {
  uint32_t writers = 2;
  uint64_t size = 4096;  // bytes per write
  ValueKind kind = ValueKind::single;
  uint64_t objects = 16;  // objects per writer
  double rate = 50;       // writes per second per writer (0: as fast as it goes)
  uint64_t preload = 0;   // writes made as fast as possible before the drill's steps
};

// One acknowledged write.
struct Ack {
  uint32_t writer = 0;
  uint64_t seq = 0;
  uint32_t crc = 0;  // crc32c of the bytes written
};

struct VerifyReport {
  uint64_t checked = 0;
  uint64_t lost = 0;                 // missing, unreadable or different
  std::vector<std::string> samples;  // the first few losses, described
};

class VerifiedLoad {
 public:
  VerifiedLoad(std::string mgmt, std::string pool, std::string cont, LoadSpec spec, uint64_t seed);
  ~VerifiedLoad();
  VerifiedLoad(const VerifiedLoad&) = delete;
  VerifiedLoad& operator=(const VerifiedLoad&) = delete;

  // Opens one client per writer and starts writing (the preload first, unpaced).
  Status start();
  // Blocks until the preload's writes are acknowledged or failed (or `timeout` passes).
  bool wait_preloaded(std::chrono::milliseconds timeout) const;
  void stop();
  bool running() const { return !threads_.empty(); }

  uint64_t acked() const { return acked_.load(); }
  uint64_t acked_bytes() const { return acked_.load() * spec_.size; }
  uint64_t errors() const { return errors_.load(); }
  std::vector<std::string> error_samples() const;
  std::vector<Ack> acks() const;  // snapshot, in acknowledgement order

  // Reads back every write of `acks` through fresh clients (`threads` of them).
  Result<VerifyReport> verify(const std::vector<Ack>& acks, uint32_t threads = 2) const;

  // The key and bytes of a write.
  static std::string dkey(uint32_t writer, uint64_t seq);
  static std::string payload(uint64_t seed, uint32_t writer, uint64_t seq, uint64_t size);
  const LoadSpec& spec() const { return spec_; }

 private:
  void writer(uint32_t w);

  std::string mgmt_, pool_, cont_;
  LoadSpec spec_;
  uint64_t seed_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> preload_left_{0};
  std::atomic<uint64_t> acked_{0}, errors_{0}, preload_done_{0};
  mutable std::mutex mu_;  // guards acks_ and samples_ (a tool's threads, not a data path)
  std::vector<Ack> acks_;
  std::vector<std::string> samples_;
  std::vector<std::thread> threads_;
};

}  // namespace tessera::drill
