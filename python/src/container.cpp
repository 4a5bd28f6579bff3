// tessera.Container: an open container as a mapping of keys to values (the C API's key-value
// calls, tessera_kv_*), with bulk calls that keep many requests in flight on one event queue.
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <vector>

#include "handles.hpp"

namespace tpy {
namespace {

// The value of `key`; None when the key is absent.
py::object kv_get(Cont& c, const std::string& key) {
  tessera_cont* h = c.get();
  return read_sized(
      c.size_hint,
      [&](char* p, size_t room, size_t* n) {
        return tessera_kv_get(h, key.c_str(), p, room, n, nullptr);
      },
      true);
}

bool kv_contains(Cont& c, const std::string& key) {
  tessera_cont* h = c.get();
  size_t n = 0;
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = tessera_kv_get(h, key.c_str(), nullptr, 0, &n, nullptr);
    if (rc < 0 && rc != -TESSERA_ERANGE && rc != -TESSERA_ENOENT) throw call_error(rc);
  }
  return rc != -TESSERA_ENOENT;
}

void kv_put(Cont& c, const std::string& key, const py::handle& value) {
  tessera_cont* h = c.get();
  BufView v(value, false);
  py::gil_scoped_release nogil;
  check(tessera_kv_put(h, key.c_str(), v.data(), v.size(), nullptr));
}

void kv_remove(Cont& c, const std::string& key) {
  tessera_cont* h = c.get();
  py::gil_scoped_release nogil;
  check(tessera_kv_remove(h, key.c_str(), nullptr));
}

// One page of keys after `anchor` (bytes of a tessera_anchor, or empty: from the start):
// (keys, next anchor, done).
py::tuple kv_page(Cont& c, const py::bytes& anchor_in, uint32_t limit) {
  tessera_cont* h = c.get();
  tessera_anchor anchor = TESSERA_ANCHOR_INIT;
  const std::string a = anchor_in;
  if (!a.empty()) {
    if (a.size() != sizeof anchor) throw py::value_error("not an anchor of this library");
    std::memcpy(&anchor, a.data(), sizeof anchor);
  }
  if (limit == 0 || limit > 4096) limit = 1024;
  std::vector<size_t> lens(limit);
  std::vector<char> buf(256 << 10);
  uint32_t n = limit;
  {
    py::gil_scoped_release nogil;
    for (;;) {
      n = limit;
      const int rc = tessera_kv_list(h, &anchor, &n, lens.data(), buf.data(), buf.size(), nullptr);
      if (rc == -TESSERA_ERANGE) {  // not even one key fits: lens[0] says what does
        buf.resize(lens[0]);
        continue;
      }
      check(rc);
      break;
    }
  }
  py::list keys;
  size_t at = 0;
  for (uint32_t i = 0; i < n; ++i) {
    keys.append(key_out(buf.data() + at, lens[i]));
    at += lens[i];
  }
  return py::make_tuple(keys, py::bytes(reinterpret_cast<const char*>(&anchor), sizeof anchor),
                        anchor.eof != 0);
}

// Events of one queue, reused call after call; destroyed only once none is in flight.
class EventPool {
 public:
  explicit EventPool(size_t n) : evs_(n) {
    check(tessera_eq_create(&eq_));
    for (size_t i = 0; i < n; ++i) {
      check(tessera_event_init(&evs_[i], eq_, reinterpret_cast<void*>(i)));
      free_.push_back(i);
    }
  }
  ~EventPool() {
    // Nothing may stay in flight: the calls write into buffers the caller frees next.
    while (tessera_eq_inflight(eq_) > 0) {
      tessera_event* done[64];
      (void)tessera_eq_poll(eq_, -1, done, 64);
    }
    for (auto& e : evs_) (void)tessera_event_fini(&e);
    (void)tessera_eq_destroy(eq_);
  }
  bool has_free() const { return !free_.empty(); }
  tessera_event* take() {
    const size_t i = free_.back();
    free_.pop_back();
    return &evs_[i];
  }
  void give_back(tessera_event* e) { free_.push_back(index(e)); }
  static size_t index(const tessera_event* e) { return reinterpret_cast<size_t>(e->user); }
  size_t inflight() const { return tessera_eq_inflight(eq_); }
  // Completed events (waits for at least one).
  std::vector<tessera_event*> wait() {
    tessera_event* done[64];
    const int n = check(tessera_eq_poll(eq_, -1, done, 64));
    return {done, done + n};
  }

 private:
  tessera_eq* eq_ = nullptr;
  std::vector<tessera_event> evs_;
  std::vector<size_t> free_;
};

size_t window_of(int window) {
  if (window < 1 || window > 4096) throw py::value_error("window must be 1 to 4096");
  return static_cast<size_t>(window);
}

// Stores every (key, value) pair with up to `window` puts in flight. The first failure is
// raised once every started put has completed (the others may have been stored).
void put_many(Cont& c, const py::object& items, int window) {
  tessera_cont* h = c.get();
  py::object pairs = py::hasattr(items, "items") ? items.attr("items")() : items;
  std::vector<std::string> keys;
  std::vector<BufView> values;
  for (py::handle kv : pairs) {
    py::tuple t = py::reinterpret_borrow<py::object>(kv);
    if (t.size() != 2) throw py::value_error("put_many takes (key, value) pairs");
    keys.push_back(key_arg(t[0], "key"));
    values.emplace_back(t[1], false);
  }
  py::gil_scoped_release nogil;
  EventPool pool(window_of(window));
  std::optional<CallError> first;
  size_t next = 0;
  while ((next < keys.size() && !first) || pool.inflight() > 0) {
    while (next < keys.size() && !first && pool.has_free()) {
      tessera_event* e = pool.take();
      const int rc = tessera_kv_put(h, keys[next].c_str(), values[next].data(),
                                    values[next].size(), e);
      if (rc < 0) {
        first = call_error(rc);
        pool.give_back(e);
        break;
      }
      ++next;
    }
    if (pool.inflight() == 0) break;
    for (tessera_event* e : pool.wait()) {
      if (e->status < 0 && !first) first = CallError{e->status, tessera_event_error(e)};
      pool.give_back(e);
    }
  }
  if (first) throw *first;
}

// The values of `keys` (None for a key that is absent), with up to `window` gets in flight.
// The keys go in chunks of 4 windows: with the GIL, a bytes object of the container's size
// hint for each; without it, every get of the chunk (a value larger than the hint is read
// again into a buffer of its size, copied into its bytes with the GIL after). The GIL is never
// taken while gets are in flight: a busy Python thread would hold each one up.
py::list get_many(Cont& c, const py::object& keys_in, int window) {
  tessera_cont* h = c.get();
  std::vector<std::string> keys;
  for (py::handle k : keys_in) keys.push_back(key_arg(k, "key"));
  const size_t w = window_of(window);
  std::vector<py::object> out(keys.size());
  struct Get {
    size_t key = 0;
    char* buf = nullptr;
    size_t room = 0;
    std::vector<char> big;  // a value larger than the hint
    int status = 0;
    size_t len = 0;
  };
  for (size_t first = 0; first < keys.size(); first += 4 * w) {
    const size_t n = std::min(keys.size() - first, 4 * w);
    const size_t hint = c.size_hint.load(std::memory_order_relaxed);
    std::vector<py::bytes> bufs;
    std::vector<Get> gets(n);
    for (size_t i = 0; i < n; ++i) {
      bufs.push_back(new_bytes(hint));
      gets[i] = Get{first + i, bytes_data(bufs.back()), hint, {}, 0, 0};
    }
    std::optional<CallError> failed;
    {
      py::gil_scoped_release nogil;
      EventPool pool(w);  // after the buffers: drained before they go, even on an error
      std::vector<Get*> in_slot(w, nullptr);
      auto start = [&](Get& g) {
        tessera_event* e = pool.take();
        in_slot[EventPool::index(e)] = &g;
        const int rc = tessera_kv_get(h, keys[g.key].c_str(), g.buf, g.room, nullptr, e);
        if (rc < 0) {
          if (!failed) failed = call_error(rc);
          pool.give_back(e);
        }
      };
      size_t next = 0;
      while ((next < n && !failed) || pool.inflight() > 0) {
        while (next < n && !failed && pool.has_free()) start(gets[next++]);
        if (pool.inflight() == 0) break;
        for (tessera_event* e : pool.wait()) {
          Get& g = *in_slot[EventPool::index(e)];
          pool.give_back(e);
          g.status = e->status;
          g.len = e->out_len;
          if (g.status == -TESSERA_ERANGE && g.big.empty()) {
            c.saw(g.len);
            g.big.resize(g.len);
            g.buf = g.big.data();
            g.room = g.len;
            start(g);
          } else if (g.status < 0 && g.status != -TESSERA_ENOENT && !failed) {
            failed = CallError{g.status, tessera_event_error(e)};
          }
        }
      }
    }
    if (failed) throw *failed;
    for (size_t i = 0; i < n; ++i) {
      Get& g = gets[i];
      if (g.status == -TESSERA_ENOENT) continue;
      c.saw(g.len);
      if (!g.big.empty()) {
        out[g.key] = py::bytes(g.big.data(), g.len);
      } else {
        shrink_bytes(bufs[i], g.len);
        out[g.key] = std::move(bufs[i]);
      }
    }
  }
  py::list result;
  for (auto& o : out) result.append(o ? o : py::none());
  return result;
}

}  // namespace

void register_container(py::module_& m) {
  py::class_<Cont, std::shared_ptr<Cont>>(m, "Container", R"(An open container (System.open).

As a mapping of keys (str or bytes) to values (bytes): c[k] = v, c[k], del c[k], k in c,
len(c), iteration over the keys, get, put_many and get_many; objects through c.object().)")
      .def_readonly("pool", &Cont::pool)
      .def_readonly("label", &Cont::label)
      .def_readonly("writable", &Cont::writable)
      .def_property_readonly("system", [](const Cont& c) { return c.sys; })
      .def("close", &Cont::close,
           "Closes the handle (its transactions and file systems must be closed first).")
      .def("__enter__", [](Cont& c) -> Cont& { return c; })
      .def("__exit__", [](Cont& c, py::args) { c.close(); })
      .def("__getitem__",
           [](Cont& c, const py::object& k) {
             py::object v = kv_get(c, key_arg(k, "key"));
             if (v.is_none()) throw py::key_error(py::repr(k));
             return v;
           })
      .def("get",
           [](Cont& c, const py::object& k, const py::object& dflt) {
             py::object v = kv_get(c, key_arg(k, "key"));
             return v.is_none() ? dflt : v;
           },
           py::arg("key"), py::arg("default") = py::none(),
           "The value of key, or default when it is absent.")
      .def("__setitem__",
           [](Cont& c, const py::object& k, const py::object& v) {
             kv_put(c, key_arg(k, "key"), v);
           })
      .def("put",
           [](Cont& c, const py::object& k, const py::object& v) {
             kv_put(c, key_arg(k, "key"), v);
           },
           py::arg("key"), py::arg("value"), "Stores value (any bytes-like object, or str).")
      .def("__delitem__",
           [](Cont& c, const py::object& k) {
             const std::string key = key_arg(k, "key");
             if (!kv_contains(c, key)) throw py::key_error(py::repr(k));
             kv_remove(c, key);
           })
      .def("remove",
           [](Cont& c, const py::object& k) { kv_remove(c, key_arg(k, "key")); },
           py::arg("key"), "Removes key (nothing happens when it is absent).")
      .def("__contains__",
           [](Cont& c, const py::object& k) {
             if (!PyUnicode_Check(k.ptr()) && !PyBytes_Check(k.ptr())) return false;
             return kv_contains(c, key_arg(k, "key"));
           })
      .def("_kv_page", &kv_page, py::arg("anchor"), py::arg("limit") = 1024)
      .def("put_many", &put_many, py::arg("items"), py::arg("window") = 64,
           "Stores every (key, value) of a mapping or an iterable of pairs, with up to `window`\n"
           "puts in flight; raises the first failure once the others completed.")
      .def("get_many", &get_many, py::arg("keys"), py::arg("window") = 64,
           "The values of keys, in order (None where a key is absent), with up to `window` gets\n"
           "in flight.")
      .def("snapshot",
           [](Cont& c, const py::object& name) {
             tessera_client* cl = c.sys->get();
             const std::string n = name.is_none() ? std::string() : py::str(name).cast<std::string>();
             uint64_t epoch = 0;
             {
               py::gil_scoped_release nogil;
               check(tessera_snap_create(cl, c.pool.c_str(), c.label.c_str(),
                                         n.empty() ? nullptr : n.c_str(), &epoch));
             }
             return epoch;
           },
           py::arg("name") = py::none(),
           "Takes a snapshot of the container now and returns its epoch (c.at(epoch) reads it).");
}

}  // namespace tpy
