// Micro benchmarks (Google Benchmark): the per-message CPU costs under the data path.
#include <benchmark/benchmark.h>
#include <isa-l/crc.h>

#include <cstring>
#include <future>
#include <thread>

#include "core/actor.hpp"
#include "net/frame.hpp"

using namespace tessera;

static void BM_Crc32c(benchmark::State& st) {
  Buffer b(static_cast<size_t>(st.range(0)));
  std::memset(b.data(), 7, b.size());
  for (auto _ : st) benchmark::DoNotOptimize(crc32_iscsi(b.data(), static_cast<int>(b.size()), 0));
  st.SetBytesProcessed(st.iterations() * st.range(0));
}
BENCHMARK(BM_Crc32c)->Arg(4096)->Arg(1 << 20);

static void BM_FrameEncodeDecode(benchmark::State& st) {
  Message m;
  m.dst = {0, 1, 1};
  m.corr = 42;
  m.reply_to = std::string(16, 'a');
  uint64_t words[8] = {};
  m.body = Buffer(words, sizeof(words));
  for (auto _ : st) {
    auto h = net::encode_header(m, 1, 2, m.bulk.size());
    net::set_chunk(h->bytes, net::FrameKind::whole, 0, 0);
    auto d = net::decode_frame(h->bytes.span(), 1 << 20);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(BM_FrameEncodeDecode);

namespace {
class Echo : public Actor {
 public:
  explicit Echo(ActorRuntime& rt) : rt_(rt) {}
  void receive(Message& m) override { (void)rt_.reply(m, Status()); }

 private:
  ActorRuntime& rt_;
};
}  // namespace

// An ask between two targets of one process: inbox hand-off both ways plus fiber switches.
static void BM_CrossTargetAsk(benchmark::State& st) {
  std::vector<std::unique_ptr<Target>> ts;
  std::vector<std::unique_ptr<ActorRuntime>> rts;
  auto peers = std::make_shared<std::vector<ActorRuntime*>>();
  for (uint32_t i = 0; i < 2; ++i) {
    TargetOptions o;
    o.index = i;
    o.cpu = static_cast<int>(i % std::thread::hardware_concurrency());
    ts.push_back(std::make_unique<Target>(RealEnv::instance(), o));
    rts.push_back(std::make_unique<ActorRuntime>(*ts.back(), 0));
    peers->push_back(rts.back().get());
  }
  for (auto& r : rts) r->set_local_peers(peers);
  for (auto& t : ts) (void)t->start();
  Echo echo(*rts[1]);
  std::promise<void> reg;
  ts[1]->post([&] {
    rts[1]->register_actor(1, &echo);
    reg.set_value();
  });
  reg.get_future().get();
  for (auto _ : st) {
    std::promise<void> done;
    int64_t n = 1000;
    ts[0]->post([&] {
      for (int64_t i = 0; i < n; ++i) {
        Message m;
        m.dst = {0, 1, 1};
        auto r = rts[0]->ask(std::move(m), std::chrono::seconds(5));
        benchmark::DoNotOptimize(r);
      }
      done.set_value();
    });
    done.get_future().get();
  }
  st.SetItemsProcessed(st.iterations() * 1000);
  for (auto& t : ts) t->stop();
}
BENCHMARK(BM_CrossTargetAsk)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
