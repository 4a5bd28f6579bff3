// tessera.System: a connection to a system, and the administration of pools, containers and
// snapshots through it (tessera_pool_*, tessera_cont_*, tessera_snap_*).
#include <pybind11/stl.h>

#include <vector>

#include "handles.hpp"

namespace tpy {
namespace {

py::dict pool_dict(const tessera_pool_info& p) {
  py::dict d;
  d["uuid"] = p.uuid;
  d["label"] = p.label;
  d["id"] = p.id;
  d["map_version"] = p.map_version;
  d["target_bytes"] = p.target_bytes;
  d["engines"] = p.engines;
  d["targets"] = p.targets;
  d["targets_up"] = p.targets_up;
  d["containers"] = p.containers;
  d["open_handles"] = p.open_handles;
  d["redundancy"] = p.redundancy;
  d["rebuild"] = p.rebuild;
  return d;
}

py::dict cont_dict(const tessera_cont_info& c) {
  py::dict d;
  d["uuid"] = c.uuid;
  d["label"] = c.label;
  d["id"] = c.id;
  d["rf"] = c.rf;
  d["type"] = c.type;
  d["oclass"] = c.oclass;
  d["checksum"] = c.checksum;
  d["cell_size"] = c.cell_size;
  d["snapshots"] = c.snapshots;
  d["open_handles"] = c.open_handles;
  d["failed_engines"] = c.failed_engines;
  d["health"] = c.health;
  d["created_epoch"] = c.created_epoch;
  return d;
}

// Runs the C call `f` without the GIL; throws its error.
template <typename F>
int run(F&& f) {
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = f();
    if (rc < 0) throw call_error(rc);
  }
  return rc;
}

// A list call (pools, containers, snapshots): asks with room for 64, then for what it says.
template <typename T, typename F>
std::vector<T> list_all(F&& f) {
  std::vector<T> out(64);
  for (;;) {
    size_t n = 0;
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = f(out.data(), out.size(), &n);
      if (rc < 0 && rc != -TESSERA_ERANGE) throw call_error(rc);
    }
    if (rc == 0) {
      out.resize(n);
      return out;
    }
    out.resize(n + 16);
  }
}

// Container properties as the C API takes them: "name=value,..." (no value may hold a comma).
std::string props_string(const py::kwargs& kw) {
  std::string s;
  for (auto [k, v] : kw) {
    if (v.is_none()) continue;
    const std::string name = py::str(k);
    const std::string value = py::str(v);
    if (value.find(',') != std::string::npos || value.find('=') != std::string::npos)
      throw py::value_error("property " + name + ": a value may not contain ',' or '='");
    if (!s.empty()) s += ',';
    s += name + "=" + value;
  }
  return s;
}

// Disconnects once, in the process that connected (a forked child's copy frees nothing).
void disconnect(System& s) {
  if (s.c == nullptr || !s.here()) return;
  py::gil_scoped_release nogil;
  tessera_disconnect(s.c);
  s.c = nullptr;
}

std::shared_ptr<System> connect(const std::string& system) {
  auto sys = std::make_shared<System>();
  sys->name = system;
  run([&] { return tessera_connect_system(system.c_str(), &sys->c); });
  return sys;
}

std::shared_ptr<Cont> open(const std::shared_ptr<System>& sys, const std::string& pool,
                           const std::string& cont, bool write) {
  auto c = std::make_shared<Cont>();
  c->sys = sys;
  c->pool = pool;
  c->label = cont;
  c->writable = write;
  tessera_client* cl = sys->get();
  run([&] { return tessera_cont_open(cl, pool.c_str(), cont.c_str(), write ? 1 : 0, &c->h); });
  run([&] { return tessera_cont_oid(c->h, 0, 0, nullptr, &c->kv_hi, &c->kv_lo); });
  return c;
}

}  // namespace

void register_system(py::module_& m) {
  m.def("connect", &connect, py::arg("system") = "",
        "Connects to a system, found as the tessera CLI finds it: system '' means $TESSERA_MGMT,\n"
        "else the system file of $TESSERA_SYSTEM, else ~/.tessera/system.json; otherwise the path\n"
        "of a system file or directory, or access points 'host:port[,host:port...]'.");

  py::class_<System, std::shared_ptr<System>>(m, "System",
                                               "A connection to a Tessera system (tessera.connect).")
      .def_readonly("name", &System::name)
      .def("close",
           [](System& s) {
             s.check_process("tessera.System");
             disconnect(s);
           },
           "Disconnects (containers opened through it must be closed first).")
      .def("__enter__", [](System& s) -> System& { return s; })
      .def("__exit__", [](System& s, py::args) { disconnect(s); })
      .def("open", &open, py::arg("pool"), py::arg("cont"), py::arg("write") = false,
           "Opens a container (label or UUID) for reading, or reading and writing.")
      .def("pool_create",
           [](System& s, const std::string& label, uint64_t target_size) {
             tessera_pool_info info{};
             tessera_client* c = s.get();
             run([&] { return tessera_pool_create(c, label.c_str(), target_size, &info); });
             return pool_dict(info);
           },
           py::arg("label"), py::arg("target_size"),
           "Creates a pool of target_size bytes per target (administrators).")
      .def("pool_destroy",
           [](System& s, const std::string& pool, bool force, bool recursive) {
             tessera_client* c = s.get();
             const int flags = (force ? TESSERA_DESTROY_FORCE : 0) |
                               (recursive ? TESSERA_DESTROY_RECURSIVE : 0);
             run([&] { return tessera_pool_destroy(c, pool.c_str(), flags); });
           },
           py::arg("pool"), py::kw_only(), py::arg("force") = false,
           py::arg("recursive") = false)
      .def("pool_query",
           [](System& s, const std::string& pool) {
             tessera_pool_info info{};
             tessera_client* c = s.get();
             run([&] { return tessera_pool_query(c, pool.c_str(), &info); });
             return pool_dict(info);
           },
           py::arg("pool"))
      .def("pools",
           [](System& s) {
             tessera_client* c = s.get();
             py::list out;
             for (const auto& p : list_all<tessera_pool_info>([&](auto* o, size_t max, size_t* n) {
                    return tessera_pool_list(c, o, max, n);
                  }))
               out.append(pool_dict(p));
             return out;
           })
      .def("cont_create",
           [](System& s, const std::string& pool, const std::string& label, py::kwargs kw) {
             const std::string props = props_string(kw);
             tessera_cont_info info{};
             tessera_client* c = s.get();
             run([&] {
               return tessera_cont_create(c, pool.c_str(), label.c_str(),
                                          props.empty() ? nullptr : props.c_str(), &info);
             });
             return cont_dict(info);
           },
           py::arg("pool"), py::arg("label"),
           "Creates a container; properties as keywords: type ('KV', 'ARRAY', 'POSIX'), oclass,\n"
           "rf, checksum, cell_size (as the CLI's --property).")
      .def("cont_destroy",
           [](System& s, const std::string& pool, const std::string& cont, bool force) {
             tessera_client* c = s.get();
             run([&] {
               return tessera_cont_destroy(c, pool.c_str(), cont.c_str(),
                                           force ? TESSERA_DESTROY_FORCE : 0);
             });
           },
           py::arg("pool"), py::arg("cont"), py::kw_only(), py::arg("force") = false)
      .def("cont_query",
           [](System& s, const std::string& pool, const std::string& cont) {
             tessera_cont_info info{};
             tessera_client* c = s.get();
             run([&] { return tessera_cont_query(c, pool.c_str(), cont.c_str(), &info); });
             return cont_dict(info);
           },
           py::arg("pool"), py::arg("cont"))
      .def("cont_set_prop",
           [](System& s, const std::string& pool, const std::string& cont, py::kwargs kw) {
             const std::string props = props_string(kw);
             tessera_client* c = s.get();
             run([&] {
               return tessera_cont_set_prop(c, pool.c_str(), cont.c_str(), props.c_str());
             });
           },
           py::arg("pool"), py::arg("cont"), "Changes properties: label=..., status='healthy'.")
      .def("containers",
           [](System& s, const std::string& pool) {
             tessera_client* c = s.get();
             py::list out;
             for (const auto& i : list_all<tessera_cont_info>([&](auto* o, size_t max, size_t* n) {
                    return tessera_cont_list(c, pool.c_str(), o, max, n);
                  }))
               out.append(cont_dict(i));
             return out;
           },
           py::arg("pool"))
      .def("snap_create",
           [](System& s, const std::string& pool, const std::string& cont, py::object name) {
             const std::string n = name.is_none() ? std::string() : py::str(name).cast<std::string>();
             uint64_t epoch = 0;
             tessera_client* c = s.get();
             run([&] {
               return tessera_snap_create(c, pool.c_str(), cont.c_str(),
                                          n.empty() ? nullptr : n.c_str(), &epoch);
             });
             return epoch;
           },
           py::arg("pool"), py::arg("cont"), py::arg("name") = py::none(),
           "Takes a snapshot of the container now; returns its epoch (reads take it).")
      .def("snap_destroy",
           [](System& s, const std::string& pool, const std::string& cont, uint64_t epoch) {
             tessera_client* c = s.get();
             run([&] { return tessera_snap_destroy(c, pool.c_str(), cont.c_str(), epoch); });
           },
           py::arg("pool"), py::arg("cont"), py::arg("epoch"))
      .def("snapshots",
           [](System& s, const std::string& pool, const std::string& cont) {
             tessera_client* c = s.get();
             py::list out;
             for (const auto& i : list_all<tessera_snap_info>([&](auto* o, size_t max, size_t* n) {
                    return tessera_snap_list(c, pool.c_str(), cont.c_str(), o, max, n);
                  }))
               out.append(py::make_tuple(i.epoch, py::str(i.name)));
             return out;
           },
           py::arg("pool"), py::arg("cont"), "The snapshots, oldest first: (epoch, name) pairs.")
      .def("rollback",
           [](System& s, const std::string& pool, const std::string& cont, py::object snap,
              uint64_t epoch, bool force) {
             const std::string n = snap.is_none() ? std::string() : py::str(snap).cast<std::string>();
             uint64_t out = 0;
             tessera_client* c = s.get();
             run([&] {
               return tessera_cont_rollback(c, pool.c_str(), cont.c_str(),
                                            n.empty() ? nullptr : n.c_str(), epoch,
                                            force ? TESSERA_ROLLBACK_FORCE : 0, &out);
             });
             return out;
           },
           py::arg("pool"), py::arg("cont"), py::kw_only(), py::arg("snap") = py::none(),
           py::arg("epoch") = 0, py::arg("force") = false,
           "Makes a snapshot's state (by name, or at epoch) the container's newest, as a new\n"
           "epoch (returned); later snapshots stay readable.");
}

}  // namespace tpy
