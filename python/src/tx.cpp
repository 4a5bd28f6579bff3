// tessera.Transaction: a user transaction on a container (tessera_tx_*), as a context manager
// that commits when its block ends normally and changes nothing when it raises.
#include <pybind11/stl.h>

#include <mutex>

#include "handles.hpp"

namespace tpy {
namespace {

struct Tx : Owned {
  std::shared_ptr<Cont> c;
  tessera_tx* tx = nullptr;
  bool ended = false;  // committed or closed
  std::mutex mu;       // one call at a time (the library's rule for a transaction)
  ~Tx() {
    if (tx != nullptr && here()) {
      py::gil_scoped_release nogil;
      tessera_tx_close(tx);
    }
  }
};

// The transaction held by this thread for one call: made in this process, not ended, and not
// in another thread's call (an error, not a wait).
std::unique_lock<std::mutex> hold(Tx& t) {
  t.check_process("tessera.Transaction");
  if (t.ended) throw CallError{-TESSERA_EINVAL, "the transaction has ended (committed or closed)"};
  std::unique_lock lock(t.mu, std::try_to_lock);
  if (!lock.owns_lock())
    throw CallError{-TESSERA_EBUSY, "another thread is using this transaction"};
  return lock;
}

// Runs `f(tx)` without the GIL, the transaction held.
template <typename F>
auto with_tx(Tx& t, F&& f) {
  auto lock = hold(t);
  py::gil_scoped_release nogil;
  return f(t.tx);
}

// A read of unknown size (read_sized) with the transaction held; `call(tx, buf, room, &n)`.
template <typename F>
py::object tx_read(Tx& t, bool absent_is_none, F&& call) {
  auto lock = hold(t);
  return read_sized(
      t.c->size_hint,
      [&](char* p, size_t room, size_t* n) { return call(t.tx, p, room, n); }, absent_is_none);
}

py::object kv_get(Tx& t, const py::object& k) {
  const std::string key = key_arg(k, "key");
  return tx_read(t, true, [&](tessera_tx* tx, char* p, size_t room, size_t* n) {
    return tessera_tx_kv_get(tx, key.c_str(), p, room, n);
  });
}

void tx_update(Tx& t, const Obj& o, const py::object& dkey, const py::object& akey, int kind,
               uint64_t offset, const py::object& data, int cond) {
  const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
  BufView v(data, false);
  with_tx(t, [&](tessera_tx* tx) {
    return check(tessera_tx_update(tx, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(), kind, offset,
                                   v.data(), v.size(), cond));
  });
}

void end(Tx& t) {
  if (t.ended || !t.here()) return;
  std::unique_lock lock(t.mu, std::try_to_lock);
  if (!lock.owns_lock()) throw CallError{-TESSERA_EBUSY, "another thread is using this transaction"};
  {
    py::gil_scoped_release nogil;
    tessera_tx_close(t.tx);
  }
  t.tx = nullptr;
  t.ended = true;
}

uint64_t commit(Tx& t) {
  uint64_t epoch = 0;
  with_tx(t, [&](tessera_tx* tx) { return check(tessera_tx_commit(tx, &epoch)); });
  end(t);
  return epoch;
}

std::shared_ptr<Tx> open_tx(const std::shared_ptr<Cont>& c, uint64_t snapshot) {
  auto t = std::make_shared<Tx>();
  t->c = c;
  tessera_cont* h = c->get();
  py::gil_scoped_release nogil;
  check(tessera_tx_open(h, snapshot, &t->tx));
  return t;
}

}  // namespace

void register_tx(py::module_& m) {
  py::class_<Tx, std::shared_ptr<Tx>>(m, "Transaction", R"(A transaction on a container.

Reads see one epoch (and the transaction's own changes); changes apply at commit(), all or
none. As a context manager it commits when the block ends normally and closes without
applying anything when the block raises. RestartError from commit means another
transaction conflicted: run the whole transaction again (Container.run_transaction does).
The key-value calls (t[k], t[k] = v, del t[k], k in t, get) act on the container's
key-value map; update/fetch/write/read/punch on an Object's keys. One thread at a time.)")
      .def_property_readonly("epoch", [](Tx& t) {
        t.check_process("tessera.Transaction");
        return t.tx == nullptr ? uint64_t{0} : tessera_tx_epoch(t.tx);
      })
      .def("__getitem__",
           [](Tx& t, const py::object& k) {
             py::object v = kv_get(t, k);
             if (v.is_none()) throw py::key_error(py::repr(k));
             return v;
           })
      .def("get",
           [](Tx& t, const py::object& k, const py::object& dflt) {
             py::object v = kv_get(t, k);
             return v.is_none() ? dflt : v;
           },
           py::arg("key"), py::arg("default") = py::none())
      .def("__contains__", [](Tx& t, const py::object& k) { return !kv_get(t, k).is_none(); })
      .def("__setitem__",
           [](Tx& t, const py::object& k, const py::object& v) {
             const std::string key = key_arg(k, "key");
             BufView b(v, false);
             with_tx(t, [&](tessera_tx* tx) {
               return check(tessera_tx_kv_put(tx, key.c_str(), b.data(), b.size()));
             });
           })
      .def("__delitem__",
           [](Tx& t, const py::object& k) {
             if (kv_get(t, k).is_none()) throw py::key_error(py::repr(k));
             const std::string key = key_arg(k, "key");
             with_tx(t, [&](tessera_tx* tx) { return check(tessera_tx_kv_remove(tx, key.c_str())); });
           })
      .def("remove",
           [](Tx& t, const py::object& k) {
             const std::string key = key_arg(k, "key");
             with_tx(t, [&](tessera_tx* tx) { return check(tessera_tx_kv_remove(tx, key.c_str())); });
           },
           py::arg("key"))
      .def("update",
           [](Tx& t, const Obj& o, const py::object& dkey, const py::object& akey,
              const py::object& value, const py::object& cond) {
             tx_update(t, o, dkey, akey, TESSERA_SINGLE, 0, value, cond_of(cond));
           },
           py::arg("obj"), py::arg("dkey"), py::arg("akey"), py::arg("value"),
           py::arg("cond") = py::none(), "A single value of obj, stored at commit.")
      .def("write",
           [](Tx& t, const Obj& o, const py::object& dkey, const py::object& akey,
              const py::object& data, uint64_t offset) {
             tx_update(t, o, dkey, akey, TESSERA_ARRAY, offset, data, TESSERA_COND_NONE);
           },
           py::arg("obj"), py::arg("dkey"), py::arg("akey"), py::arg("data"),
           py::arg("offset") = 0, "Bytes of an array of obj, written at commit.")
      .def("fetch",
           [](Tx& t, const Obj& o, const py::object& dkey, const py::object& akey) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             return tx_read(t, false, [&](tessera_tx* tx, char* p, size_t room, size_t* n) {
               return tessera_tx_fetch(tx, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                       TESSERA_SINGLE, 0, 0, p, room, n);
             });
           },
           py::arg("obj"), py::arg("dkey"), py::arg("akey"),
           "A single value of obj at the transaction's epoch (b'' when there is none).")
      .def("read",
           [](Tx& t, const Obj& o, const py::object& dkey, const py::object& akey, uint64_t offset,
              uint64_t length) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             return tx_read(t, false, [&](tessera_tx* tx, char* p, size_t room, size_t* n) {
               return tessera_tx_fetch(tx, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(), TESSERA_ARRAY,
                                       offset, length, p, room, n);
             });
           },
           py::arg("obj"), py::arg("dkey"), py::arg("akey"), py::arg("offset") = 0,
           py::arg("length") = 0)
      .def("punch",
           [](Tx& t, const Obj& o, const py::object& dkey, const py::object& akey) {
             const std::string d = dkey.is_none() ? std::string() : key_arg(dkey, "dkey");
             const std::string a = akey.is_none() ? std::string() : key_arg(akey, "akey");
             with_tx(t, [&](tessera_tx* tx) {
               return check(tessera_tx_punch(tx, o.oid.hi, o.oid.lo, d.c_str(), a.c_str()));
             });
           },
           py::arg("obj"), py::arg("dkey") = py::none(), py::arg("akey") = py::none())
      .def("commit", &commit, "Applies the changes, all or none; returns the commit's epoch.")
      .def("close", &end, "Ends the transaction; changes not committed are dropped.")
      .def("__enter__", [](const std::shared_ptr<Tx>& t) { return t; })
      .def("__exit__", [](Tx& t, const py::object& type, const py::object&, const py::object&) {
        if (type.is_none() && !t.ended && t.here()) {
          commit(t);
        } else {
          end(t);
        }
        return false;
      });

  auto cont = py::reinterpret_borrow<py::class_<Cont, std::shared_ptr<Cont>>>(m.attr("Container"));
  cont.def("transaction", &open_tx, py::arg("snapshot") = 0,
           "A new transaction (snapshot: an epoch to read at, read-only).")
      .def("at", [](const std::shared_ptr<Cont>& c, uint64_t epoch) { return open_tx(c, epoch); },
           py::arg("epoch"),
           "A read-only view of the container at epoch (a snapshot's): a Transaction.");
}

}  // namespace tpy
