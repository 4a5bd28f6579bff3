// tessera cont ...: containers of a pool (create, list, query, destroy, properties, attributes,
// snapshots, rollback, ACLs; `cont check` is cont_check_cmd.cpp).
#include <fmt/format.h>

#include <cstdio>

#include "apps/cli/common.hpp"

namespace tessera::cli {

namespace {

struct ContArgs {
  std::string pool;
  std::string cont;
  std::string type = "kv";
  std::string oclass;
  uint32_t rf = 0;
  std::string checksum = "crc32c";
  std::string cell_size = "128K";
  bool force = false;
  std::vector<std::string> props;  // NAME=VALUE
  std::string name;
  std::string value;
  uint64_t epoch = 0;
};

int cont_create(Globals& g, const ContArgs& a) {
  const char* what = "cont create";
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  mgmt::ContProps p;
  p.label = a.cont;
  for (auto [k, v] : {std::pair<const char*, const std::string*>{"type", &a.type},
                      {"checksum", &a.checksum},
                      {"cell_size", &a.cell_size},
                      {"oclass", &a.oclass}}) {
    if (v->empty()) continue;
    Status st = mgmt::set_cont_prop(p, k, *v);
    if (!st.is_ok()) return fail(g, st, what);
  }
  p.rf = a.rf;
  auto v = mc->cont_create(a.pool, p);
  if (!v) return fail(g, v.status(), what);
  json j = cont_json(*v);
  return done(g, {{"container", j}}, [&] {
    std::printf("created container %s (%s) in pool %s: type %s, class %s, rf %u, checksum %s\n",
                v->c.props.label.c_str(), v->c.uuid.c_str(), a.pool.c_str(),
                j["type"].get<std::string>().c_str(), j["oclass"].get<std::string>().c_str(),
                v->c.props.rf, v->c.props.checksum.c_str());
  });
}

int cont_list(Globals& g, const ContArgs& a) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "cont list");
  auto v = mc->pool_query(a.pool);
  if (!v) return fail(g, v.status(), "cont list");
  json arr = json::array();
  for (const auto& c : v->conts) arr.push_back(cont_json(c));
  return done(g, {{"pool", v->pool.label}, {"containers", arr}}, [&] {
    if (arr.empty()) {
      std::printf("no containers in pool %s (tessera cont create %s LABEL)\n",
                  v->pool.label.c_str(), v->pool.label.c_str());
      return;
    }
    std::printf("%-16s %-36s %-6s %-8s %-3s %-9s %s\n", "label", "uuid", "type", "class", "rf",
                "health", "open");
    for (const auto& c : arr) {
      std::printf("%-16s %-36s %-6s %-8s %-3u %-9s %u\n", c["label"].get<std::string>().c_str(),
                  c["uuid"].get<std::string>().c_str(), c["type"].get<std::string>().c_str(),
                  c["oclass"].get<std::string>().c_str(), c["rf"].get<uint32_t>(),
                  c["health"].get<std::string>().c_str(), c["open_handles"].get<uint32_t>());
    }
  });
}

void print_cont(const json& c) {
  std::printf("container %s (%s), id %u\n", c["label"].get<std::string>().c_str(),
              c["uuid"].get<std::string>().c_str(), c["id"].get<uint32_t>());
  std::printf("type %s, object class %s, redundancy factor %u, checksum %s, EC cell %s\n",
              c["type"].get<std::string>().c_str(), c["oclass"].get<std::string>().c_str(),
              c["rf"].get<uint32_t>(), c["checksum"].get<std::string>().c_str(),
              human(c["cell_size"].get<uint64_t>()).c_str());
  std::printf("health %s (redundancy %s, %u engine(s) with failed targets), open handles %u\n",
              c["health"].get<std::string>().c_str(), c["redundancy"].get<std::string>().c_str(),
              c["failed_engines"].get<uint32_t>(), c["open_handles"].get<uint32_t>());
  if (c.value("lost_data", false)) {
    std::printf(
        "a rebuild found it beyond its redundancy factor: UNCLEAN until its operator has "
        "checked it (cont check) and set status=healthy\n");
  }
  std::printf("snapshots %zu, attributes %zu\n", c["snapshots"].size(), c["attrs"].size());
  for (const auto& h : c.value("handles", json::array())) {
    std::printf("  handle %s: uid %u, %s pid %u, %s\n", h["id"].get<std::string>().c_str(),
                h["uid"].get<uint32_t>(), h["host"].get<std::string>().c_str(),
                h["pid"].get<uint32_t>(), h["write"].get<bool>() ? "read-write" : "read-only");
  }
}

int cont_query(Globals& g, const ContArgs& a, const char* what, bool props_only) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  auto v = mc->cont_query(a.pool, a.cont);
  if (!v) return fail(g, v.status(), what);
  json j = cont_json(*v);
  if (props_only) {
    json props{{"label", j["label"]},  {"type", j["type"]},         {"oclass", j["oclass"]},
               {"rf", j["rf"]},        {"checksum", j["checksum"]}, {"cell_size", j["cell_size"]},
               {"status", j["health"]}};
    return done(g, {{"props", props}}, [&] {
      for (const auto& [k, val] : props.items()) {
        std::printf("%-10s %s\n", k.c_str(),
                    val.is_string() ? val.get<std::string>().c_str() : val.dump().c_str());
      }
    });
  }
  return done(g, {{"container", j}}, [&] { print_cont(j); });
}

int cont_destroy(Globals& g, const ContArgs& a) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), "cont destroy");
  Status st = mc->cont_destroy(a.pool, a.cont, a.force);
  if (!st.is_ok()) return fail(g, st, "cont destroy");
  return done(g, {{"destroyed", a.cont}}, [&] {
    std::printf("destroyed container %s of pool %s\n", a.cont.c_str(), a.pool.c_str());
  });
}

int cont_rollback(Globals& g, const ContArgs& a) {
  const char* what = "cont rollback";
  if (a.name.empty() == (a.epoch == 0)) {
    return fail(g, Status(Errc::invalid_argument, "give one of --snap NAME or --epoch E"), what);
  }
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  auto r = mc->cont_rollback(a.pool, a.cont, a.name, a.epoch, a.force);
  if (!r) return fail(g, r.status(), what);
  return done(g,
              {{"from", epoch_json(r->from)},
               {"at", epoch_json(r->at)},
               {"objects", r->objects},
               {"rewritten", r->rewritten},
               {"punched", r->punched},
               {"bytes", r->bytes}},
              [&] {
                std::printf(
                    "container %s rolled back to epoch %lu (%s) as epoch %lu: %lu values "
                    "rewritten, %lu keys punched, %lu bytes, over %lu object shards\n",
                    a.cont.c_str(), static_cast<unsigned long>(r->from),
                    epoch_time(r->from).c_str(), static_cast<unsigned long>(r->at),
                    static_cast<unsigned long>(r->rewritten),
                    static_cast<unsigned long>(r->punched), static_cast<unsigned long>(r->bytes),
                    static_cast<unsigned long>(r->objects));
              });
}

int cont_set_prop(Globals& g, const ContArgs& a) {
  const char* what = "cont set-prop";
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  std::vector<std::pair<std::string, std::string>> changes;
  std::string label = a.cont;  // as named, unless relabelled
  for (const auto& kv : a.props) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      return fail(g, Status(Errc::invalid_argument, fmt::format("'{}' is not NAME=VALUE", kv)),
                  what);
    }
    changes.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    if (changes.back().first == "label") label = changes.back().second;
  }
  Status st = mc->cont_set_props(a.pool, a.cont, changes);
  if (!st.is_ok()) return fail(g, st, what);
  return done(g, {{"label", label}}, [&] {
    std::printf("container %s of pool %s updated\n", label.c_str(), a.pool.c_str());
  });
}

int cont_attr(Globals& g, const ContArgs& a, const char* what) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  const std::string op = what;
  if (op == "cont set-attr" || op == "cont del-attr") {
    std::optional<std::string> value;
    if (op == "cont set-attr") value = a.value;
    Status st = mc->cont_set_attr(a.pool, a.cont, a.name, value);
    if (!st.is_ok()) return fail(g, st, what);
    return done(g, {{"name", a.name}}, [&] {
      std::printf("%s attribute %s\n", value ? "set" : "deleted", a.name.c_str());
    });
  }
  auto v = mc->cont_query(a.pool, a.cont);
  if (!v) return fail(g, v.status(), what);
  const auto& attrs = v->c.attrs;
  if (op == "cont get-attr") {
    auto it = attrs.find(a.name);
    if (it == attrs.end()) {
      return fail(g,
                  Status(Errc::not_found,
                         fmt::format("container '{}' has no attribute '{}'", a.cont, a.name)),
                  what);
    }
    return done(g, {{"name", it->first}, {"value", it->second}},
                [&] { std::printf("%s\n", it->second.c_str()); });
  }
  return done(g, {{"attrs", attrs}}, [&] {
    for (const auto& [k, val] : attrs) std::printf("%s\t%s\n", k.c_str(), val.c_str());
  });
}

int snap_cmd(Globals& g, const ContArgs& a, const char* what) {
  auto mc = mgmt_client(g);
  if (!mc) return fail(g, mc.status(), what);
  const std::string op = what;
  Result<mgmt::ContView> v = Status(Errc::internal, "no snapshot operation");
  uint64_t epoch = a.epoch;
  if (op == "snap create") {
    v = mc->snap_create(a.pool, a.cont, a.name, a.epoch);
  } else if (op == "snap destroy") {
    if (epoch == 0 && a.name.empty()) {
      return fail(g, Status(Errc::invalid_argument, "give --epoch or --name"), what);
    }
    if (epoch == 0) {
      auto q = mc->cont_query(a.pool, a.cont);
      if (!q) return fail(g, q.status(), what);
      for (const auto& s : q->c.snapshots) {
        if (s.name == a.name) epoch = s.epoch;
      }
      if (epoch == 0) {
        return fail(g, Status(Errc::not_found, fmt::format("no snapshot named '{}'", a.name)),
                    what);
      }
    }
    v = mc->snap_destroy(a.pool, a.cont, epoch);
  } else {
    v = mc->cont_query(a.pool, a.cont);
  }
  if (!v) return fail(g, v.status(), what);
  json snaps = cont_json(*v)["snapshots"];
  if (op == "snap create" && !v->c.snapshots.empty()) {
    // The new snapshot: the one with this name, else the newest.
    epoch = v->c.snapshots.back().epoch;
    for (const auto& s : v->c.snapshots) {
      if (!a.name.empty() && s.name == a.name) epoch = s.epoch;
    }
  }
  return done(g, {{"snapshots", snaps}, {"epoch", epoch_json(epoch)}}, [&] {
    if (op == "snap create") {
      std::printf("snapshot at epoch %lu\n", static_cast<unsigned long>(epoch));
    } else if (op == "snap destroy") {
      std::printf("destroyed snapshot at epoch %lu\n", static_cast<unsigned long>(epoch));
    } else {
      for (const auto& s : v->c.snapshots) {
        std::printf("%lu\t%s\t%s\n", static_cast<unsigned long>(s.epoch),
                    epoch_time(s.epoch).c_str(), s.name.c_str());
      }
    }
  });
}

}  // namespace

void add_cont_commands(CLI::App& app, Globals& g) {
  auto* cont = app.add_subcommand("cont", "containers: object namespaces inside a pool");
  cont->require_subcommand(1);
  auto a = std::make_shared<ContArgs>();
  auto args = [&](CLI::App* c, bool with_cont = true) {
    c->add_option("pool", a->pool, "pool label or UUID")->required();
    if (with_cont) c->add_option("cont", a->cont, "container label or UUID")->required();
  };

  auto* create =
      leaf(cont, g, "create", "create a container", [&g, a] { return cont_create(g, *a); });
  args(create);
  create->add_option("--type", a->type, "POSIX, KV or ARRAY")->capture_default_str();
  create->add_option("--oclass", a->oclass,
                     "default object class, e.g. S1, SX, RP_2GX, RP_3GX (default: from --rf)");
  create->add_option("--rf", a->rf, "redundancy factor: engine failures to survive (0..2)")
      ->capture_default_str();
  create->add_option("--checksum", a->checksum, "crc32c or crc64")->capture_default_str();
  create->add_option("--cell-size", a->cell_size, "erasure-code cell size, 4K..1M")
      ->capture_default_str();

  auto* list = leaf(cont, g, "list", "containers of a pool", [&g, a] { return cont_list(g, *a); });
  args(list, false);

  auto* query = leaf(cont, g, "query", "properties, health, snapshots and handles",
                     [&g, a] { return cont_query(g, *a, "cont query", false); });
  args(query);

  auto* destroy = leaf(cont, g, "destroy", "destroy a container and its objects",
                       [&g, a] { return cont_destroy(g, *a); });
  args(destroy);
  destroy->add_flag("-f,--force", a->force, "even with open handles");

  auto* rollback = leaf(cont, g, "rollback",
                        "make a snapshot's state the newest, as a new epoch (later snapshots stay "
                        "readable)",
                        [&g, a] { return cont_rollback(g, *a); });
  args(rollback);
  auto* rb_snap = rollback->add_option("--snap", a->name, "the snapshot's name");
  rollback->add_option("--epoch", a->epoch, "an epoch aggregation still keeps readable")
      ->excludes(rb_snap);
  rollback->add_flag("-f,--force", a->force,
                     "even with open handles (writes in flight may land "
                     "on either side of the rollback)");

  add_cont_check_command(cont, g);

  auto* getprop = leaf(cont, g, "get-prop", "the container's properties",
                       [&g, a] { return cont_query(g, *a, "cont get-prop", true); });
  args(getprop);
  auto* setprop = leaf(cont, g, "set-prop",
                       "change properties: NAME=VALUE ... (label; status=healthy clears UNCLEAN)",
                       [&g, a] { return cont_set_prop(g, *a); });
  args(setprop);
  setprop->add_option("props", a->props, "NAME=VALUE, e.g. label=results")->required();

  struct AttrCmd {
    const char* name;
    const char* help;
    const char* op;
    int args;  // 0: none, 1: NAME, 2: NAME VALUE
  };
  for (const AttrCmd& c : {AttrCmd{"set-attr", "set a user attribute", "cont set-attr", 2},
                           AttrCmd{"get-attr", "print a user attribute", "cont get-attr", 1},
                           AttrCmd{"del-attr", "delete a user attribute", "cont del-attr", 1},
                           AttrCmd{"list-attrs", "every user attribute", "cont list-attrs", 0}}) {
    const char* op = c.op;
    auto* cmd = leaf(cont, g, c.name, c.help, [&g, a, op] { return cont_attr(g, *a, op); });
    args(cmd);
    if (c.args >= 1) cmd->add_option("name", a->name, "attribute name")->required();
    if (c.args >= 2) cmd->add_option("value", a->value, "value")->required();
  }

  auto* snap = cont->add_subcommand("snap", "snapshots: epochs that aggregation keeps readable");
  snap->require_subcommand(1);
  auto* screate = leaf(snap, g, "create", "take a snapshot (now, or at --epoch)",
                       [&g, a] { return snap_cmd(g, *a, "snap create"); });
  args(screate);
  screate->add_option("--name", a->name, "snapshot name");
  screate->add_option("--epoch", a->epoch, "epoch to protect (default: now)");
  auto* slist = leaf(snap, g, "list", "snapshots of the container",
                     [&g, a] { return snap_cmd(g, *a, "snap list"); });
  args(slist);
  auto* sdestroy = leaf(snap, g, "destroy", "destroy a snapshot (by --epoch or --name)",
                        [&g, a] { return snap_cmd(g, *a, "snap destroy"); });
  args(sdestroy);
  sdestroy->add_option("--epoch", a->epoch, "epoch of the snapshot");
  sdestroy->add_option("--name", a->name, "name of the snapshot");

  add_acl_commands(
      cont, g, [&](CLI::App* c) { args(c); }, a->pool, &a->cont);
}

}  // namespace tessera::cli
