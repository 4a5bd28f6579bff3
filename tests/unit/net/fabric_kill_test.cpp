// Senders killed (SIGKILL) while their large messages are in flight must not harm the receiver:
// every message it delivers is whole and unmixed, no frame it reads is malformed, and a healthy
// sender's messages keep arriving, each exactly once. The senders are real processes
// (fabric_blaster) over tcp;ofi_rxm, where a message above the provider's eager limit travels
// by rendezvous: the receiver reads the sender's buffers into a posted receive buffer, one read
// per entry of the sender's iovec, and a dead connection fails each of those reads.
//
// Fixed seeds in every run; TESSERA_FABRIC_KILL_SEED=S runs one seed, TESSERA_FABRIC_KILL_SEEDS=N
// runs N more.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "net/fabric.hpp"
#include "tests/unit/net/net_test_payload.hpp"

extern char** environ;

using namespace tessera;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kHealthy = 0xffff;

pid_t spawn_blaster(const std::string& peer, uint32_t index, uint64_t seed) {
  namespace tt = tessera::testing;
  std::string hex = tt::to_hex(peer);
  std::string idx = std::to_string(index);
  std::string sd = std::to_string(seed);
  const char* argv[] = {TESSERA_FABRIC_BLASTER, hex.c_str(), idx.c_str(), sd.c_str(), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, TESSERA_FABRIC_BLASTER, nullptr, nullptr, const_cast<char**>(argv),
                         environ);
  return rc == 0 ? pid : -1;
}

// The receiving endpoint, polled by its own thread (its owner) as a target would.
class Receiver {
 public:
  explicit Receiver(size_t rx_queue) : rx_queue_(rx_queue) {
    thread_ = std::thread([this] { run(); });
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return opened_; });
  }
  ~Receiver() {
    stop_ = true;
    thread_.join();
  }
  const Status& status() const { return status_; }
  const std::string& address() const { return addr_; }
  // Messages delivered from `sender`.
  uint64_t from(uint32_t sender) {
    std::lock_guard lk(mu_);
    return from_[sender];
  }
  uint64_t bad() {
    std::lock_guard lk(mu_);
    return bad_;
  }
  uint64_t duplicates() {
    std::lock_guard lk(mu_);
    return duplicates_;
  }
  net::FabricStats stats() {
    std::lock_guard lk(mu_);
    return stats_;
  }

 private:
  void run() {
    net::FabricOptions fo;
    fo.rx_queue = rx_queue_;
    auto ep = net::FabricEndpoint::open(fo, [&](Message&& m) { deliver(std::move(m)); });
    {
      std::lock_guard lk(mu_);
      if (ep) {
        addr_ = (*ep)->address();
      } else {
        status_ = ep.status();
      }
      opened_ = true;
    }
    cv_.notify_all();
    if (!ep) return;
    while (!stop_) {
      if ((*ep)->poll() == 0) std::this_thread::yield();
      std::lock_guard lk(mu_);
      stats_ = (*ep)->stats();
    }
  }
  void deliver(Message&& m) {
    tessera::testing::PayloadId id;
    bool whole = tessera::testing::check_payload(m.bulk, &id);
    std::lock_guard lk(mu_);
    if (!whole) {
      ++bad_;
      return;
    }
    ++from_[id.sender];
    if (id.sender == kHealthy && !healthy_seen_.insert(id.seq).second) ++duplicates_;
  }

  size_t rx_queue_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool opened_ = false;
  Status status_;
  std::string addr_;
  std::map<uint32_t, uint64_t> from_;
  std::set<uint32_t> healthy_seen_;
  uint64_t bad_ = 0;
  uint64_t duplicates_ = 0;
  net::FabricStats stats_;
};

// rx_queue: the receiver's provider receive queue; 0 for the default. rxm loses an entry of it
// for every receive it fails, so with a small one the receiver runs out within a few kills: then
// it must say so (FabricStats::deaf) rather than fall silent, and still deliver nothing torn.
void run_seed(uint64_t seed, int rounds, size_t rx_queue) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", rx_queue " + std::to_string(rx_queue));
  std::mt19937_64 rng(seed);
  Receiver got(rx_queue);
  ASSERT_TRUE(got.status().is_ok()) << got.status().to_string();
  net::FabricOptions fo;
  auto tx = net::FabricEndpoint::open(fo, [](Message&&) {});
  ASSERT_TRUE(tx.is_ok()) << tx.status().to_string();
  const std::string addr = got.address();
  const bool small = rx_queue > 0;

  uint32_t sent = 0;
  // A healthy sender keeps a few messages in flight beside the blasters.
  auto pump = [&] {
    if (sent < got.from(kHealthy) + 4) {
      Message m;
      m.dst = ActorAddr{0, 0, 1};
      m.bulk = tessera::testing::make_payload(kHealthy, sent,
                                              tessera::testing::payload_size(rng, fo.max_frame));
      Status st = (*tx)->send(addr, std::move(m));
      if (st.is_ok()) ++sent;
    }
    (*tx)->poll();
  };

  for (int r = 1; r <= rounds && !got.stats().deaf; ++r) {
    const auto sender = static_cast<uint32_t>(r);
    pid_t pid = spawn_blaster(addr, sender, rng());
    ASSERT_GT(pid, 0) << "posix_spawn " << TESSERA_FABRIC_BLASTER;
    // Kill it after it delivered `after` messages, with more of them on the wire.
    const uint64_t after = rng() % 12;
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    while (got.from(sender) < after && Clock::now() < deadline) {
      pump();
      if (small && got.stats().deaf) break;
    }
    ::kill(pid, SIGKILL);
    int wst = 0;
    ::waitpid(pid, &wst, 0);
    ASSERT_TRUE(got.from(sender) >= after || got.stats().deaf)
        << "blaster " << r << " delivered too few messages before its deadline (exit "
        << (WIFEXITED(wst) ? WEXITSTATUS(wst) : -1) << ")";
    ASSERT_EQ(got.bad(), 0u) << "a delivered message was torn or mixed (round " << r << ")";
  }
  net::FabricStats st = got.stats();
  if (small) {
    // The deaf endpoint says so; what it delivered before was whole.
    EXPECT_TRUE(st.deaf) << "the receiver lost " << st.failed_posts << " of its " << rx_queue
                         << " receive entries and does not say it stopped hearing";
  } else {
    // Every healthy message arrives, once, after the kills.
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    for (uint64_t until = got.from(kHealthy) + 32;
         got.from(kHealthy) < until && Clock::now() < deadline;) {
      pump();
    }
    while (got.from(kHealthy) < sent && Clock::now() < deadline) (*tx)->poll();
    st = got.stats();
    EXPECT_FALSE(st.deaf);
    EXPECT_EQ(got.from(kHealthy), sent) << "healthy messages lost";
  }
  EXPECT_EQ(got.duplicates(), 0u);
  EXPECT_EQ(got.bad(), 0u);
  EXPECT_EQ(st.malformed, 0u) << "the receiver read malformed frames";
  std::printf(
      "seed %lu: %d senders killed, %lu messages delivered, %lu receive errors, "
      "%lu late completions of retired receive buffers, %lu errors not naming ours, "
      "%lu of %zu receive entries lost%s\n",
      static_cast<unsigned long>(seed), rounds, static_cast<unsigned long>(st.messages_in),
      static_cast<unsigned long>(st.receive_errors),
      static_cast<unsigned long>(st.stale_completions),
      static_cast<unsigned long>(st.foreign_errors), static_cast<unsigned long>(st.failed_posts),
      rx_queue == 0 ? 2048 : rx_queue, st.deaf ? " (deaf)" : "");
}

std::vector<uint64_t> seeds() {
  if (const char* one = std::getenv("TESSERA_FABRIC_KILL_SEED")) {
    return {std::strtoull(one, nullptr, 10)};
  }
  std::vector<uint64_t> v{1, 2};
  if (const char* n = std::getenv("TESSERA_FABRIC_KILL_SEEDS")) {
    for (uint64_t i = 0; i < std::strtoull(n, nullptr, 10); ++i) v.push_back(100 + i);
  }
  return v;
}

}  // namespace

TEST(FabricKill, SendersKilledMidMessageLeaveTheReceiverWhole) {
  for (uint64_t seed : seeds()) {
    run_seed(seed, 16, 0);
    if (::testing::Test::HasFailure()) break;
  }
}

// rxm loses a receive-queue entry for every receive it fails, so a receiver that outlives
// enough dead senders stops hearing anyone. With a queue of 64 entries that happens within a few
// kills: the endpoint must say so, not fall silent.
TEST(FabricKill, AReceiverThatRunsOutOfReceiveEntriesSaysSo) {
  for (uint64_t seed : seeds()) {
    run_seed(seed, 30, 64);
    if (::testing::Test::HasFailure()) break;
  }
}
