// Histogram: how long something took, counted in power-of-two buckets of microseconds.
//
// Written by one thread (a target's, on its data path: no atomics, no lock); a reader on another
// thread gets a copy made on the writer's thread (telemetry gathers one per target per scrape).
// Bucket i counts durations in (2^(i-1), 2^i] µs (bucket 0: up to 1 µs); the last one counts
// everything above 2^(kBuckets-1) µs (about 8.4 s). Prometheus renders them cumulatively.
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/env.hpp"

namespace tessera {

class Histogram {
 public:
  static constexpr size_t kBuckets = 24;  // finite buckets; counts_[kBuckets] is +Inf
  using Counts = std::array<uint64_t, kBuckets + 1>;  // per bucket, not cumulative

  // Upper bound of finite bucket i, in seconds.
  static double bound_seconds(size_t i) { return std::ldexp(1e-6, static_cast<int>(i)); }

  void observe(Nanos d) {
    const int64_t ns = d.count() < 0 ? 0 : d.count();
    const uint64_t us = (static_cast<uint64_t>(ns) + 999) / 1000;
    size_t i = us <= 1 ? 0 : static_cast<size_t>(std::bit_width(us - 1));
    if (i > kBuckets) i = kBuckets;
    ++counts_[i];
    ++count_;
    sum_ns_ += static_cast<uint64_t>(ns);
  }
  void merge(const Histogram& o) {
    for (size_t i = 0; i <= kBuckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ns_ += o.sum_ns_;
  }
  // What `later` counted since this copy was taken (both of the same histogram).
  Histogram since(const Histogram& earlier) const {
    Histogram d;
    for (size_t i = 0; i <= kBuckets; ++i) d.counts_[i] = counts_[i] - earlier.counts_[i];
    d.count_ = count_ - earlier.count_;
    d.sum_ns_ = sum_ns_ - earlier.sum_ns_;
    return d;
  }
  uint64_t count() const { return count_; }
  double sum_seconds() const { return static_cast<double>(sum_ns_) / 1e9; }
  // Not cumulative; i == kBuckets: above the last bound.
  uint64_t bucket(size_t i) const { return counts_[i]; }
  // The upper bound of the bucket holding the q-th quantile, in seconds (0 when empty; the
  // last finite bound when it lies above it).
  double quantile_seconds(double q) const { return quantile_seconds(counts_, q); }
  // The same over bucket counts kept elsewhere (a scrape's, in `tessera system top`).
  static double quantile_seconds(const Counts& counts, double q) {
    uint64_t total = 0;
    for (uint64_t c : counts) total += c;
    if (total == 0) return 0;
    const double want = q * static_cast<double>(total);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts[i];
      if (static_cast<double>(seen) >= want) return bound_seconds(i);
    }
    return bound_seconds(kBuckets - 1);
  }

 private:
  Counts counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ns_ = 0;
};

}  // namespace tessera
