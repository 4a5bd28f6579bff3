// MetricSet: one scrape's worth of samples, rendered as Prometheus text or as JSON.
//
// Families are created on first use (name, help, type) and keep their samples in the order
// they were added; a family's samples differ only in their labels. Built and rendered by one
// thread (the metrics server's, or a test's).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/histogram.hpp"

namespace tessera::telemetry {

using Labels = std::vector<std::pair<std::string, std::string>>;

class MetricSet {
 public:
  enum class Type { counter, gauge, histogram };

  void counter(const std::string& name, const std::string& help, Labels labels, double value);
  void gauge(const std::string& name, const std::string& help, Labels labels, double value);
  // Durations: `name` should end in `_seconds`.
  void histogram(const std::string& name, const std::string& help, Labels labels,
                 const Histogram& h);

  // The text exposition format (version 0.0.4): HELP, TYPE, then each sample; a histogram as
  // cumulative `_bucket{le=...}` lines, `_sum` and `_count`.
  std::string prometheus() const;
  // {"families": [{"name", "type", "help", "samples": [{"labels": {...}, "value"} or
  //  {"labels", "count", "sum", "buckets": [[le seconds, cumulative count], ...]}]}]}
  nlohmann::json json() const;

  size_t families() const { return families_.size(); }

 private:
  struct Sample {
    Labels labels;
    double value = 0;
    Histogram h;
  };
  struct Family {
    std::string name, help;
    Type type;
    std::vector<Sample> samples;
  };
  Family& family(const std::string& name, const std::string& help, Type type);
  std::vector<Family> families_;
  std::map<std::string, size_t> index_;
};

}  // namespace tessera::telemetry
