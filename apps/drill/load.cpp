#include "apps/drill/load.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "client/client.hpp"
#include "client/container.hpp"
#include "core/checksum.hpp"

namespace tessera::drill {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kOidHi = 0xd1;  // the drill's objects (class bits come from the container)
constexpr size_t kMaxSamples = 8;

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

Result<ObjectId> oid_of(Container& c, const LoadSpec& spec, uint32_t w, uint64_t seq) {
  return c.make_oid(kOidHi, uint64_t{w} * spec.objects + seq % spec.objects);
}

const char* akey_of(const LoadSpec& spec) {
  return spec.kind == ValueKind::array ? "a" : "v";
}

}  // namespace

Result<Session> open_session(const std::string& mgmt, const std::string& pool,
                             const std::string& cont, bool write) {
  ClientOptions co;
  co.engine = mgmt;
  co.timeout = std::chrono::milliseconds(30000);
  auto client = Client::connect_system(co);
  if (!client) return client.status();
  auto c = (*client)->open_container(pool, cont, write);
  if (!c) return c.status();
  return Session{std::move(*client), std::move(*c)};
}

VerifiedLoad::VerifiedLoad(std::string mgmt, std::string pool, std::string cont, LoadSpec spec,
                           uint64_t seed)
    : mgmt_(std::move(mgmt)),
      pool_(std::move(pool)),
      cont_(std::move(cont)),
      spec_(spec),
      seed_(seed) {}

VerifiedLoad::~VerifiedLoad() {
  stop();
}

std::string VerifiedLoad::dkey(uint32_t writer, uint64_t seq) {
  return fmt::format("w{}-{}", writer, seq);
}

std::string VerifiedLoad::payload(uint64_t seed, uint32_t writer, uint64_t seq, uint64_t size) {
  std::string s(size, '\0');
  uint64_t x = mix(seed ^ mix((uint64_t{writer} << 40) ^ seq));
  for (size_t i = 0; i < size; i += 8) {
    x = mix(x);
    std::memcpy(s.data() + i, &x, std::min<size_t>(8, size - i));
  }
  return s;
}

Status VerifiedLoad::start() {
  if (!threads_.empty()) return Status(Errc::busy, "the load is already running");
  if (spec_.writers == 0 || spec_.size == 0 || spec_.objects == 0) {
    return Status(Errc::invalid_argument, "a load needs writers, size and objects above 0");
  }
  stop_ = false;
  preload_left_ = static_cast<int64_t>(spec_.preload);
  for (uint32_t w = 0; w < spec_.writers; ++w) threads_.emplace_back([this, w] { writer(w); });
  return Status();
}

bool VerifiedLoad::wait_preloaded(std::chrono::milliseconds timeout) const {
  const auto until = Clock::now() + timeout;
  while (preload_done_.load() < spec_.preload) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void VerifiedLoad::stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::vector<std::string> VerifiedLoad::error_samples() const {
  std::lock_guard lk(mu_);
  return samples_;
}

std::vector<Ack> VerifiedLoad::acks() const {
  std::lock_guard lk(mu_);
  return acks_;
}

void VerifiedLoad::writer(uint32_t w) {
  auto note = [&](std::string what) {
    std::lock_guard lk(mu_);
    if (samples_.size() < kMaxSamples) samples_.push_back(std::move(what));
  };
  Result<Session> s = Status(Errc::internal, "not opened");
  // Each writer numbers its own writes; resuming after `load stop` continues after the last
  // acknowledged one (a failed write's number may be written again: with the same bytes).
  uint64_t seq = 0;
  {
    std::lock_guard lk(mu_);
    for (const Ack& a : acks_) {
      if (a.writer == w) seq = std::max(seq, a.seq + 1);
    }
  }
  const auto period = spec_.rate > 0 ? std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(1.0 / spec_.rate))
                                     : Clock::duration::zero();
  auto next = Clock::now();
  while (!stop_.load()) {
    if (!s) {
      s = open_session(mgmt_, pool_, cont_, true);
      if (!s) {
        errors_++;
        note(fmt::format("writer {}: open: {}", w, s.status().to_string()));
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
    }
    const bool preload = preload_left_.fetch_sub(1) > 0;
    if (!preload && period != Clock::duration::zero()) {
      next += period;
      const auto now = Clock::now();
      if (next < now) next = now;  // behind: no burst to catch up
      std::this_thread::sleep_until(next);
      if (stop_.load()) break;
    }
    const uint64_t n = seq++;
    const std::string data = payload(seed_, w, n, spec_.size);
    auto oid = oid_of(*s->cont, spec_, w, n);
    Status st;
    if (!oid) {
      st = oid.status();
    } else {
      auto r = s->cont->update(*oid, dkey(w, n), akey_of(spec_), spec_.kind, 0,
                               {reinterpret_cast<const uint8_t*>(data.data()), data.size()});
      if (!r) st = r.status();
    }
    if (st.is_ok()) {
      {
        std::lock_guard lk(mu_);
        acks_.push_back({w, n, crc32c(data)});
      }
      acked_++;
    } else {
      errors_++;
      note(fmt::format("writer {} write {}: {}", w, n, st.to_string()));
    }
    if (preload) preload_done_++;
  }
}

Result<VerifyReport> VerifiedLoad::verify(const std::vector<Ack>& acks, uint32_t threads) const {
  threads = std::max<uint32_t>(1, threads);
  std::vector<VerifyReport> parts(threads);
  std::vector<Status> failed(threads);
  std::vector<std::thread> ts;
  for (uint32_t t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      auto s = open_session(mgmt_, pool_, cont_, false);
      if (!s) {
        failed[t] = s.status();
        return;
      }
      VerifyReport& rep = parts[t];
      for (size_t i = t; i < acks.size(); i += threads) {
        const Ack& a = acks[i];
        const std::string want = payload(seed_, a.writer, a.seq, spec_.size);
        rep.checked++;
        std::string problem;
        auto oid = oid_of(*s->cont, spec_, a.writer, a.seq);
        if (!oid) {
          problem = oid.status().to_string();
        } else {
          auto r = s->cont->fetch(*oid, dkey(a.writer, a.seq), akey_of(spec_), spec_.kind, 0,
                                  spec_.kind == ValueKind::array ? spec_.size : 0, 0,
                                  {.must_exist = true});
          if (!r) {
            problem = r.status().to_string();
          } else if (r->data.view() != want || crc32c(r->data.view()) != a.crc) {
            problem = fmt::format("{} bytes read back differ from the {} written (crc {:08x})",
                                  r->data.size(), want.size(), a.crc);
          }
        }
        if (!problem.empty()) {
          rep.lost++;
          if (rep.samples.size() < kMaxSamples) {
            rep.samples.push_back(fmt::format("writer {} write {} ({}): {}", a.writer, a.seq,
                                              dkey(a.writer, a.seq), problem));
          }
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  VerifyReport all;
  for (uint32_t t = 0; t < threads; ++t) {
    if (!failed[t].is_ok()) return failed[t];
    all.checked += parts[t].checked;
    all.lost += parts[t].lost;
    for (auto& s : parts[t].samples) {
      if (all.samples.size() < kMaxSamples) all.samples.push_back(std::move(s));
    }
  }
  return all;
}

}  // namespace tessera::drill
