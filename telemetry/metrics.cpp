#include "telemetry/metrics.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace tessera::telemetry {

namespace {

// A label value or help text with backslash, newline (and, for label values, double quote)
// escaped as the format asks.
std::string escape(const std::string& s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string labels_text(const Labels& labels, const char* le = nullptr) {
  if (labels.empty() && le == nullptr) return "";
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ',';
    out += k + "=\"" + escape(v, true) + '"';
  }
  if (le != nullptr) {
    if (out.size() > 1) out += ',';
    out += fmt::format("le=\"{}\"", le);
  }
  return out + "}";
}

std::string number(double v) { return fmt::format("{}", v); }

const char* type_name(MetricSet::Type t) {
  switch (t) {
    case MetricSet::Type::counter:
      return "counter";
    case MetricSet::Type::gauge:
      return "gauge";
    case MetricSet::Type::histogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

MetricSet::Family& MetricSet::family(const std::string& name, const std::string& help, Type type) {
  auto it = index_.find(name);
  if (it != index_.end()) {
    Family& f = families_[it->second];
    if (f.type != type) throw std::logic_error("metric " + name + " added with two types");
    return f;
  }
  index_[name] = families_.size();
  families_.push_back(Family{name, help, type, {}});
  return families_.back();
}

void MetricSet::counter(const std::string& name, const std::string& help, Labels labels,
                        double value) {
  family(name, help, Type::counter).samples.push_back(Sample{std::move(labels), value, {}});
}

void MetricSet::gauge(const std::string& name, const std::string& help, Labels labels,
                      double value) {
  family(name, help, Type::gauge).samples.push_back(Sample{std::move(labels), value, {}});
}

void MetricSet::histogram(const std::string& name, const std::string& help, Labels labels,
                          const Histogram& h) {
  family(name, help, Type::histogram).samples.push_back(Sample{std::move(labels), 0, h});
}

std::string MetricSet::prometheus() const {
  std::string out;
  for (const Family& f : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, escape(f.help, false), f.name,
                       type_name(f.type));
    for (const Sample& s : f.samples) {
      if (f.type != Type::histogram) {
        out += f.name + labels_text(s.labels) + ' ' + number(s.value) + '\n';
        continue;
      }
      uint64_t cum = 0;
      for (size_t i = 0; i < Histogram::kBuckets; ++i) {
        cum += s.h.bucket(i);
        const std::string le = number(Histogram::bound_seconds(i));
        out += f.name + "_bucket" + labels_text(s.labels, le.c_str()) + ' ' + std::to_string(cum) +
               '\n';
      }
      out += f.name + "_bucket" + labels_text(s.labels, "+Inf") + ' ' +
             std::to_string(s.h.count()) + '\n';
      out += f.name + "_sum" + labels_text(s.labels) + ' ' + number(s.h.sum_seconds()) + '\n';
      out += f.name + "_count" + labels_text(s.labels) + ' ' + std::to_string(s.h.count()) + '\n';
    }
  }
  return out;
}

nlohmann::json MetricSet::json() const {
  nlohmann::json fams = nlohmann::json::array();
  for (const Family& f : families_) {
    nlohmann::json samples = nlohmann::json::array();
    for (const Sample& s : f.samples) {
      nlohmann::json labels = nlohmann::json::object();
      for (const auto& [k, v] : s.labels) labels[k] = v;
      if (f.type != Type::histogram) {
        samples.push_back({{"labels", labels}, {"value", s.value}});
        continue;
      }
      nlohmann::json buckets = nlohmann::json::array();
      uint64_t cum = 0;
      for (size_t i = 0; i < Histogram::kBuckets; ++i) {
        cum += s.h.bucket(i);
        buckets.push_back({Histogram::bound_seconds(i), cum});
      }
      samples.push_back({{"labels", labels},
                         {"count", s.h.count()},
                         {"sum", s.h.sum_seconds()},
                         {"buckets", buckets}});
    }
    fams.push_back(
        {{"name", f.name}, {"type", type_name(f.type)}, {"help", f.help}, {"samples", samples}});
  }
  return {{"families", fams}};
}

}  // namespace tessera::telemetry
