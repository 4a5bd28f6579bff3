// Drill files: YAML read with yaml-cpp, every error with its file and line.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <set>
#include <sstream>

#include "apps/drill/drill.hpp"
#include "core/config.hpp"
#include "placement/layout.hpp"

namespace tessera::drill {

namespace {

constexpr const char* kStepHelp =
    "sleep D | kill rank R | term rank R | hang rank R | resume rank R | restart rank R | "
    "stop target R:T | exclude rank R "
    "[target T] | "
    "drain rank R [target T] | reintegrate rank R [target T] | extend ranks R[,R..] | "
    "rebuild start | wait rebuild [busy] [timeout D] | wait down rank R [timeout D] | "
    "wait joined rank R [timeout D] | "
    "assert health HEALTHY|UNCLEAN | assert redundancy normal|degraded | "
    "assert map-version OP N | assert rebuild idle|busy|done|failed | "
    "assert target R:T STATE | assert kept rank R | assert space used OP N% | verify | "
    "load stop|start | "
    "set-prop NAME VALUE | background STEP | wait background [timeout D] | exec COMMAND | "
    "fill pool to N% | delete fill | corrupt rank R target T [count N]";

struct Ctx {
  std::string path;
  Status err(const YAML::Node& n, const std::string& what) const {
    return Status(Errc::invalid_argument, fmt::format("{}:{}: {}", path, n.Mark().line + 1, what));
  }
};

Result<uint64_t> parse_uint(const std::string& s, const std::string& what) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return Status(Errc::invalid_argument, fmt::format("{} must be a number, not '{}'", what, s));
  }
  return v;
}

// "2s", "500ms", "1m", "3" (seconds).
Result<Millis> parse_duration(const std::string& s) {
  size_t digits = 0;
  while (digits < s.size() && (std::isdigit(static_cast<unsigned char>(s[digits])) != 0)) {
    ++digits;
  }
  auto n = parse_uint(s.substr(0, digits), "a duration");
  if (!n) {
    return Status(Errc::invalid_argument,
                  fmt::format("'{}' is not a duration (e.g. 500ms, 2s, 1m)", s));
  }
  const std::string unit = s.substr(digits);
  if (unit.empty() || unit == "s") return Millis(*n * 1000);
  if (unit == "ms") return Millis(*n);
  if (unit == "m") return Millis(*n * 60000);
  return Status(Errc::invalid_argument,
                fmt::format("'{}' is not a duration (e.g. 500ms, 2s, 1m)", s));
}

Result<std::vector<uint32_t>> parse_ranks(const std::string& s) {
  std::vector<uint32_t> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    auto r = parse_uint(part, "a rank");
    if (!r) return r.status();
    out.push_back(static_cast<uint32_t>(*r));
  }
  if (out.empty()) return Status(Errc::invalid_argument, "no ranks given");
  return out;
}

// "R:T"
Status parse_rank_target(const std::string& s, Step& st) {
  auto colon = s.find(':');
  if (colon == std::string::npos) {
    return Status(Errc::invalid_argument, fmt::format("'{}' is not RANK:TARGET", s));
  }
  auto r = parse_uint(s.substr(0, colon), "a rank");
  if (!r) return r.status();
  auto t = parse_uint(s.substr(colon + 1), "a target");
  if (!t) return t.status();
  st.ranks = {static_cast<uint32_t>(*r)};
  st.target = static_cast<int32_t>(*t);
  return Status();
}

// One step from its words.
Status parse_step(const std::vector<std::string>& w, Step& st) {
  auto bad = [&](const std::string& why = {}) {
    return Status(Errc::invalid_argument,
                  why.empty() ? fmt::format("unknown step '{}' (steps: {})", st.text, kStepHelp)
                              : fmt::format("step '{}': {}", st.text, why));
  };
  auto rank_at = [&](size_t i) -> Status {
    if (w.size() <= i + 1 || w[i] != "rank") return bad("expected 'rank R'");
    auto r = parse_uint(w[i + 1], "a rank");
    if (!r) return bad(r.status().message());
    st.ranks = {static_cast<uint32_t>(*r)};
    return Status();
  };
  // Optional "timeout D" / "target T" tails.
  auto tail = [&](size_t i, bool target_ok) -> Status {
    while (i < w.size()) {
      if (w[i] == "timeout" && i + 1 < w.size()) {
        auto d = parse_duration(w[i + 1]);
        if (!d) return bad(d.status().message());
        st.duration = *d;
      } else if (target_ok && w[i] == "target" && i + 1 < w.size()) {
        auto t = parse_uint(w[i + 1], "a target");
        if (!t) return bad(t.status().message());
        st.target = static_cast<int32_t>(*t);
      } else {
        return bad(fmt::format("unexpected '{}'", w[i]));
      }
      i += 2;
    }
    return Status();
  };
  using K = Step::Kind;
  const std::string& verb = w[0];
  if (verb == "background") {
    if (w.size() < 2) return bad("expected 'background STEP'");
    Step inner;
    inner.line = st.line;
    inner.text = st.text.substr(st.text.find("background") + 10);
    inner.text.erase(0, inner.text.find_first_not_of(' '));
    TESSERA_TRY(parse_step({w.begin() + 1, w.end()}, inner));
    if (inner.kind == K::background || inner.kind == K::wait_background) {
      return bad("a background step runs one plain step");
    }
    st.kind = K::background;
    st.ranks = inner.ranks;  // checked against the system like any step's
    st.target = inner.target;
    st.inner = {std::move(inner)};
    return Status();
  }
  if (verb == "wait" && w.size() >= 2 && w[1] == "background") {
    st.kind = K::wait_background;
    return tail(2, false);
  }
  if (verb == "exec") {
    if (w.size() < 2) return bad("expected 'exec COMMAND'");
    st.kind = K::exec;
    st.value = st.text.substr(st.text.find("exec") + 4);
    st.value.erase(0, st.value.find_first_not_of(' '));
    return Status();
  }
  if (verb == "fill") {
    if (w.size() != 4 || w[1] != "pool" || w[2] != "to" || w[3].size() < 2 || w[3].back() != '%') {
      return bad("expected 'fill pool to N%'");
    }
    auto n = parse_uint(w[3].substr(0, w[3].size() - 1), "a percentage");
    if (!n || *n == 0 || *n > 100) return bad("the fill level is 1% to 100%");
    st.kind = K::fill;
    st.value = std::to_string(*n);
    return Status();
  }
  if (verb == "delete" && w.size() == 2 && w[1] == "fill") {
    st.kind = K::unfill;
    return Status();
  }
  if (verb == "corrupt") {
    st.kind = K::corrupt;
    TESSERA_TRY(rank_at(1));
    if (w.size() < 5 || w[3] != "target")
      return bad("expected 'corrupt rank R target T [count N]'");
    auto t = parse_uint(w[4], "a target");
    if (!t) return bad(t.status().message());
    st.target = static_cast<int32_t>(*t);
    if (w.size() == 7 && w[5] == "count") {
      auto c = parse_uint(w[6], "a count");
      if (!c || *c == 0) return bad("count is a number above 0");
      st.count = *c;
      return Status();
    }
    return w.size() == 5 ? Status() : bad(fmt::format("unexpected '{}'", w[5]));
  }
  if (verb == "sleep" && w.size() == 2) {
    st.kind = K::sleep;
    auto d = parse_duration(w[1]);
    if (!d) return bad(d.status().message());
    st.duration = *d;
    return Status();
  }
  if (verb == "kill" || verb == "term" || verb == "hang" || verb == "resume" || verb == "restart") {
    st.kind = verb == "restart" ? K::restart : K::kill;
    st.op = verb;
    TESSERA_TRY(rank_at(1));
    return w.size() == 3 ? Status() : bad(fmt::format("unexpected '{}'", w[3]));
  }
  if (verb == "stop" && w.size() == 3 && w[1] == "target") {
    st.kind = K::stop_target;
    Status s = parse_rank_target(w[2], st);
    return s.is_ok() ? s : bad(s.message());
  }
  if (verb == "exclude" || verb == "drain" || verb == "reintegrate") {
    st.kind = K::pool_op;
    st.op = verb;
    TESSERA_TRY(rank_at(1));
    return tail(3, true);
  }
  if (verb == "extend") {
    st.kind = K::pool_op;
    st.op = verb;
    if (w.size() != 3 || w[1] != "ranks") return bad("expected 'extend ranks R[,R..]'");
    auto r = parse_ranks(w[2]);
    if (!r) return bad(r.status().message());
    st.ranks = *r;
    return Status();
  }
  if (verb == "rebuild" && w.size() == 2 && w[1] == "start") {
    st.kind = K::pool_op;
    st.op = "rebuild";
    return Status();
  }
  if (verb == "wait" && w.size() >= 2 && w[1] == "rebuild") {
    st.kind = K::wait_rebuild;
    size_t i = 2;
    if (i < w.size() && w[i] == "busy") {
      st.op = "busy";
      ++i;
    }
    return tail(i, false);
  }
  if (verb == "wait" && w.size() >= 2 && (w[1] == "down" || w[1] == "joined")) {
    st.kind = w[1] == "down" ? K::wait_down : K::wait_joined;
    TESSERA_TRY(rank_at(2));
    return tail(4, false);
  }
  if (verb == "assert" && w.size() >= 3) {
    st.kind = K::assert_;
    st.op = w[1];
    if (st.op == "health" && w.size() == 3) {
      if (w[2] != "HEALTHY" && w[2] != "UNCLEAN") return bad("health is HEALTHY or UNCLEAN");
      st.value = w[2];
      return Status();
    }
    if (st.op == "redundancy" && w.size() == 3) {
      if (w[2] != "normal" && w[2] != "degraded") return bad("redundancy is normal or degraded");
      st.value = w[2];
      return Status();
    }
    if (st.op == "rebuild" && w.size() == 3) {
      static const std::set<std::string> kStates = {"idle", "busy", "done", "failed"};
      if (kStates.count(w[2]) == 0) return bad("rebuild state is idle, busy, done or failed");
      st.value = w[2];
      return Status();
    }
    if (st.op == "map-version" && w.size() == 4) {
      static const std::set<std::string> kOps = {"==", ">=", ">", "<=", "<"};
      if (kOps.count(w[2]) == 0) return bad("compare with ==, >=, >, <= or <");
      st.cmp = w[2];
      auto v = parse_uint(w[3], "a map version");
      if (!v) return bad(v.status().message());
      st.value = w[3];
      return Status();
    }
    if (st.op == "space" && w.size() == 5 && w[2] == "used") {
      static const std::set<std::string> kOps = {"==", ">=", ">", "<=", "<"};
      if (kOps.count(w[3]) == 0) return bad("compare with ==, >=, >, <= or <");
      if (w[4].size() < 2 || w[4].back() != '%') return bad("expected a percentage, e.g. 80%");
      auto v = parse_uint(w[4].substr(0, w[4].size() - 1), "a percentage");
      if (!v || *v > 100) return bad("a percentage is 0% to 100%");
      st.cmp = w[3];
      st.value = std::to_string(*v);
      return Status();
    }
    if (st.op == "kept" && w.size() == 4) return rank_at(2);
    if (st.op == "target" && w.size() == 4) {
      Status s = parse_rank_target(w[2], st);
      if (!s.is_ok()) return bad(s.message());
      const std::string& state = w[3];
      if (!placement::parse_state(state)) {
        return bad(
            fmt::format("unknown target state '{}' (up-in, up, down, down-out, drain, new)", w[3]));
      }
      st.value = state;
      return Status();
    }
    return bad();
  }
  if (verb == "verify" && w.size() == 1) {
    st.kind = K::verify;
    return Status();
  }
  if (verb == "load" && w.size() == 2 && (w[1] == "stop" || w[1] == "start")) {
    st.kind = K::load;
    st.op = w[1];
    return Status();
  }
  if (verb == "set-prop" && w.size() == 3) {
    st.kind = K::set_prop;
    st.op = w[1];
    st.value = w[2];
    return Status();
  }
  return bad();
}

std::string scalar(const Ctx& c, const YAML::Node& n, const char* what, Status& err) {
  if (!n.IsScalar()) {
    err = c.err(n, fmt::format("{} must be a single value", what));
    return {};
  }
  return n.Scalar();
}

}  // namespace

Result<DrillSpec> parse_drill(const std::string& path) {
  Ctx c{path};
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Status(Errc::not_found, fmt::format("cannot read drill file {}", path));
  } catch (const YAML::Exception& e) {
    return Status(Errc::invalid_argument, fmt::format("{}:{}: {}", path, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) return Status(Errc::invalid_argument, path + ": a drill is a YAML mapping");
  DrillSpec d;
  d.path = path;
  Status err;
  auto str = [&](const YAML::Node& n, const char* what) { return scalar(c, n, what, err); };
  auto num = [&](const YAML::Node& n, const char* what) -> uint64_t {
    std::string s = str(n, what);
    if (!err.is_ok()) return 0;
    auto v = parse_uint(s, what);
    if (!v) err = c.err(n, v.status().message());
    return v ? *v : 0;
  };
  auto size = [&](const YAML::Node& n, const char* what) -> uint64_t {
    std::string s = str(n, what);
    if (!err.is_ok()) return 0;
    auto v = parse_size(s);
    if (!v) err = c.err(n, fmt::format("{}: {}", what, v.status().message()));
    return v ? *v : 0;
  };
  auto check_keys = [&](const YAML::Node& m, const char* section,
                        std::initializer_list<const char*> keys) {
    if (!err.is_ok()) return;
    if (!m.IsMap()) {
      err = c.err(m, fmt::format("'{}' must be a mapping", section));
      return;
    }
    for (const auto& kv : m) {
      const std::string k = kv.first.Scalar();
      bool known = false;
      std::string list;
      for (const char* x : keys) {
        known = known || k == x;
        list += (list.empty() ? "" : ", ") + std::string(x);
      }
      if (!known) {
        err = c.err(kv.first, fmt::format("unknown key '{}' in {} (known: {})", k, section, list));
        return;
      }
    }
  };

  check_keys(root, "the drill",
             {"name", "description", "system", "pool", "container", "load", "steps"});
  if (root["name"]) d.name = str(root["name"], "name");
  if (root["description"]) d.description = str(root["description"], "description");
  if (const auto s = root["system"]) {
    check_keys(s, "system", {"attach", "engines", "targets", "provider", "engine_args"});
    if (s["attach"]) d.attach = str(s["attach"], "system.attach");
    if (s["engines"]) d.engines = static_cast<uint32_t>(num(s["engines"], "system.engines"));
    if (s["targets"]) d.targets = static_cast<uint32_t>(num(s["targets"], "system.targets"));
    if (s["provider"]) d.provider = str(s["provider"], "system.provider");
    if (const auto a = s["engine_args"]) {
      if (!a.IsSequence()) {
        if (err.is_ok()) err = c.err(a, "system.engine_args is a list of tessera-server flags");
      } else {
        for (const auto& x : a) d.engine_args.push_back(str(x, "an engine argument"));
      }
    }
  }
  if (err.is_ok() && (d.engines == 0 || d.engines > 64 || d.targets == 0 || d.targets > 16)) {
    err = c.err(root["system"], "system: 1..64 engines of 1..16 targets");
  }
  if (const auto p = root["pool"]) {
    check_keys(p, "pool", {"label", "size", "ranks", "props"});
    if (p["label"]) d.pool = str(p["label"], "pool.label");
    if (p["size"]) {
      d.pool_size = str(p["size"], "pool.size");
      // What the management service would refuse at pool create, refused here first.
      if (size(p["size"], "pool.size") < (64ull << 20) && err.is_ok()) {
        err = c.err(p["size"], "pool.size is each target's share: at least 64M");
      }
    }
    if (const auto r = p["ranks"]) {
      if (!r.IsSequence()) {
        if (err.is_ok()) err = c.err(r, "pool.ranks is a list of ranks");
      } else {
        for (const auto& x : r) d.pool_ranks.push_back(static_cast<uint32_t>(num(x, "a rank")));
      }
    }
    if (const auto pr = p["props"]) {
      if (!pr.IsMap()) {
        if (err.is_ok()) err = c.err(pr, "pool.props is a mapping of property: value");
      } else {
        for (const auto& kv : pr) d.pool_props[kv.first.Scalar()] = str(kv.second, "a property");
      }
    }
  }
  if (const auto k = root["container"]) {
    if (!k.IsMap()) {
      if (err.is_ok()) err = c.err(k, "'container' must be a mapping");
    } else {
      for (const auto& kv : k) {
        std::string key = kv.first.Scalar();
        std::string v = str(kv.second, "a container property");
        if (key == "label") {
          d.cont = v;
        } else {
          d.cont_props[key == "class" ? "oclass" : key] = v;
        }
      }
    }
  }
  if (const auto l = root["load"]) {
    if (l.IsScalar() && l.Scalar() == "none") {
      d.has_load = false;
    } else {
      check_keys(l, "load",
                 {"writers", "size", "kind", "objects", "rate", "preload", "seed", "allow_errors"});
      if (l["writers"]) d.load.writers = static_cast<uint32_t>(num(l["writers"], "load.writers"));
      if (l["size"]) d.load.size = size(l["size"], "load.size");
      if (l["objects"]) d.load.objects = num(l["objects"], "load.objects");
      if (l["rate"]) d.load.rate = static_cast<double>(num(l["rate"], "load.rate"));
      if (l["preload"]) d.load.preload = num(l["preload"], "load.preload");
      if (l["seed"]) d.seed = num(l["seed"], "load.seed");
      if (l["allow_errors"]) {
        std::string v = str(l["allow_errors"], "load.allow_errors");
        d.allow_write_errors = v == "true" || v == "yes";
      }
      if (l["kind"]) {
        std::string v = str(l["kind"], "load.kind");
        if (v == "array") {
          d.load.kind = ValueKind::array;
        } else if (v != "single" && err.is_ok()) {
          err = c.err(l["kind"], "load.kind is single or array");
        }
      }
      if (err.is_ok() && (d.load.writers == 0 || d.load.writers > 64 || d.load.size == 0 ||
                          d.load.size > (16u << 20) || d.load.objects == 0)) {
        err = c.err(l, "load: 1..64 writers, size 1..16M, objects above 0");
      }
    }
  }
  const auto steps = root["steps"];
  if (err.is_ok() && (!steps || !steps.IsSequence())) {
    err = c.err(root, "a drill needs 'steps': a list of steps");
  }
  if (err.is_ok()) {
    for (const auto& n : steps) {
      Step st;
      st.line = n.Mark().line + 1;
      st.text = str(n, "a step");
      if (!err.is_ok()) break;
      std::vector<std::string> words;
      std::stringstream in(st.text);
      for (std::string x; in >> x;) words.push_back(x);
      if (words.empty()) {
        err = c.err(n, "empty step");
        break;
      }
      Status s = parse_step(words, st);
      if (!s.is_ok()) {
        err = c.err(n, s.message());
        break;
      }
      // Ranks must exist in a system the drill starts. Faults on rank 0 (the management
      // service's host) are allowed: the load keeps its cached pool map meanwhile.
      if (d.attach.empty()) {
        for (uint32_t r : st.ranks) {
          if (r >= d.engines) {
            err = c.err(n, fmt::format("rank {} does not exist (the drill starts {} engines)", r,
                                       d.engines));
          }
        }
        if (st.target >= static_cast<int32_t>(d.targets)) {
          err = c.err(
              n, fmt::format("target {} does not exist ({} per engine)", st.target, d.targets));
        }
      }
      if (!err.is_ok()) break;
      d.steps.push_back(std::move(st));
    }
  }
  if (!err.is_ok()) return err;
  for (const Step& st : d.steps) {
    const Step& s = st.kind == Step::Kind::background ? st.inner.at(0) : st;
    if (s.kind == Step::Kind::corrupt && (!d.has_load || d.load.size < 4096)) {
      return Status(Errc::invalid_argument,
                    fmt::format("{}:{}: corrupt damages stored copies of the load's data: it "
                                "needs a load of values of at least 4K (smaller ones live in the "
                                "metadata)",
                                path, st.line));
    }
  }
  if (d.name.empty()) d.name = path;
  return d;
}

}  // namespace tessera::drill
