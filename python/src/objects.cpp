// tessera.Object: one object of a container, its single values and arrays (tessera_cont_*,
// tessera_array_*), read into and written from any buffer without a copy in Python.
#include <pybind11/stl.h>

#include <cstring>
#include <vector>

#include "handles.hpp"

namespace tpy {
namespace {

// A read into the caller's buffer: the bytes read; a buffer too small raises the library's
// error (its message names the size needed).
template <typename F>
size_t read_into(const py::handle& out, F&& call) {
  BufView v(out, true);
  size_t n = 0;
  py::gil_scoped_release nogil;
  check(call(v.data(), v.size(), &n));
  return n;
}

uint64_t update(Obj& o, const std::string& dkey, const std::string& akey, int kind,
                uint64_t offset, const py::handle& data, int cond) {
  tessera_cont* h = o.c->get();
  BufView v(data, false);
  uint64_t epoch = 0;
  py::gil_scoped_release nogil;
  check(tessera_cont_update(h, o.oid.hi, o.oid.lo, dkey.c_str(), akey.c_str(), kind, offset,
                            v.data(), v.size(), cond, &epoch, nullptr));
  return epoch;
}

// A key listing of the object (dkeys, or the akeys of one dkey), every page.
py::list list_keys(Obj& o, const std::string* dkey, uint64_t epoch) {
  tessera_cont* h = o.c->get();
  tessera_anchor anchor = TESSERA_ANCHOR_INIT;
  std::vector<size_t> lens(1024);
  std::vector<char> buf(256 << 10);
  py::list out;
  while (!anchor.eof) {
    uint32_t n = static_cast<uint32_t>(lens.size());
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = dkey == nullptr
               ? tessera_cont_list_dkeys(h, o.oid.hi, o.oid.lo, epoch, &anchor, &n, lens.data(),
                                         buf.data(), buf.size(), nullptr)
               : tessera_cont_list_akeys(h, o.oid.hi, o.oid.lo, dkey->c_str(), epoch, &anchor,
                                         &n, lens.data(), buf.data(), buf.size(), nullptr);
      if (rc < 0 && rc != -TESSERA_ERANGE) throw call_error(rc);
    }
    if (rc == -TESSERA_ERANGE) {
      buf.resize(lens[0]);
      continue;
    }
    size_t at = 0;
    for (uint32_t i = 0; i < n; ++i) {
      out.append(key_out(buf.data() + at, lens[i]));
      at += lens[i];
    }
  }
  return out;
}

py::str oid_repr(const Oid& o) {
  char s[64];
  std::snprintf(s, sizeof s, "Oid(0x%016llx, 0x%016llx)", static_cast<unsigned long long>(o.hi),
                static_cast<unsigned long long>(o.lo));
  return py::str(s);
}

}  // namespace

void register_objects(py::module_& m) {
  py::class_<Oid>(m, "Oid", "An object id: 128 bits, the class in its high bits.")
      .def(py::init<uint64_t, uint64_t>(), py::arg("hi"), py::arg("lo"))
      .def_readonly("hi", &Oid::hi)
      .def_readonly("lo", &Oid::lo)
      .def("__eq__", [](const Oid& a, const Oid& b) { return a.hi == b.hi && a.lo == b.lo; })
      .def("__hash__", [](const Oid& a) { return py::hash(py::make_tuple(a.hi, a.lo)); })
      .def("__repr__", &oid_repr)
      .def(py::pickle([](const Oid& o) { return py::make_tuple(o.hi, o.lo); },
                      [](const py::tuple& t) { return Oid{t[0].cast<uint64_t>(), t[1].cast<uint64_t>()}; }));

  py::class_<Obj>(m, "Object", R"(One object of a container (Container.object).

Keys (dkey, akey) are str or bytes. A single value is written and read whole (put, get); an
array is a range of bytes (write, read) or of fixed-size records (write_records, read_records,
the record size from the buffer's itemsize, so a numpy array reads and writes its own dtype).
Reads take an epoch (0: the newest; a snapshot's epoch: that state).)")
      .def_property_readonly("oid", [](const Obj& o) { return o.oid; })
      .def("put",
           [](Obj& o, const py::object& dkey, const py::object& akey, const py::object& value,
              const py::object& cond) {
             return update(o, key_arg(dkey, "dkey"), key_arg(akey, "akey"), TESSERA_SINGLE, 0,
                           value, cond_of(cond));
           },
           py::arg("dkey"), py::arg("akey"), py::arg("value"), py::arg("cond") = py::none(),
           "Stores a single value; returns its epoch. cond: 'insert' (only if absent) or\n"
           "'update' (only if present).")
      .def("get",
           [](Obj& o, const py::object& dkey, const py::object& akey, uint64_t epoch) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             return read_sized(o.c->size_hint, [&](char* p, size_t room, size_t* n) {
               return tessera_cont_fetch(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                         TESSERA_SINGLE, 0, 0, epoch, p, room, n, nullptr);
             }, false);
           },
           py::arg("dkey"), py::arg("akey"), py::arg("epoch") = 0, "A single value, whole.")
      .def("get_into",
           [](Obj& o, const py::object& dkey, const py::object& akey, const py::object& out,
              uint64_t epoch) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             return read_into(out, [&](void* p, size_t room, size_t* n) {
               return tessera_cont_fetch(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                         TESSERA_SINGLE, 0, 0, epoch, p, room, n, nullptr);
             });
           },
           py::arg("dkey"), py::arg("akey"), py::arg("out"), py::arg("epoch") = 0,
           "A single value into a writable buffer; returns its length.")
      .def("write",
           [](Obj& o, const py::object& dkey, const py::object& akey, const py::object& data,
              uint64_t offset) {
             return update(o, key_arg(dkey, "dkey"), key_arg(akey, "akey"), TESSERA_ARRAY, offset,
                           data, TESSERA_COND_NONE);
           },
           py::arg("dkey"), py::arg("akey"), py::arg("data"), py::arg("offset") = 0,
           "Writes bytes of an array at offset; returns the epoch.")
      .def("read",
           [](Obj& o, const py::object& dkey, const py::object& akey, uint64_t offset,
              uint64_t length, uint64_t epoch) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             if (length > 0) {
               py::bytes b = new_bytes(length);
               char* p = bytes_data(b);
               size_t n = 0;
               {
                 py::gil_scoped_release nogil;
                 check(tessera_cont_fetch(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                          TESSERA_ARRAY, offset, length, epoch, p, length, &n,
                                          nullptr));
               }
               shrink_bytes(b, n);
               return py::object(std::move(b));
             }
             return read_sized(o.c->size_hint, [&](char* p, size_t room, size_t* n) {
               return tessera_cont_fetch(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                         TESSERA_ARRAY, offset, 0, epoch, p, room, n, nullptr);
             }, false);
           },
           py::arg("dkey"), py::arg("akey"), py::arg("offset") = 0, py::arg("length") = 0,
           py::arg("epoch") = 0,
           "Bytes [offset, offset + length) of an array (length 0: up to the highest written\n"
           "byte); never-written bytes read as zeros.")
      .def("read_into",
           [](Obj& o, const py::object& dkey, const py::object& akey, const py::object& out,
              uint64_t offset, uint64_t epoch) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             return read_into(out, [&](void* p, size_t room, size_t* n) {
               return tessera_cont_fetch(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                         TESSERA_ARRAY, offset, room, epoch, p, room, n, nullptr);
             });
           },
           py::arg("dkey"), py::arg("akey"), py::arg("out"), py::arg("offset") = 0,
           py::arg("epoch") = 0, "Fills a writable buffer from the array at offset.")
      .def("write_records",
           [](Obj& o, const py::object& dkey, const py::object& akey, const py::object& data,
              uint64_t rec_offset) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             BufView v(data, false);
             const size_t rsize = v.itemsize();
             uint64_t epoch = 0;
             py::gil_scoped_release nogil;
             check(tessera_array_write(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                       static_cast<uint32_t>(rsize), rec_offset, v.data(),
                                       v.size() / rsize, &epoch, nullptr));
             return epoch;
           },
           py::arg("dkey"), py::arg("akey"), py::arg("data"), py::arg("rec_offset") = 0,
           "Writes the records of data (its itemsize is the record size) from record rec_offset.")
      .def("read_records",
           [](Obj& o, const py::object& dkey, const py::object& akey, const py::object& out,
              uint64_t rec_offset, uint64_t epoch) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             BufView v(out, true);
             const size_t rsize = v.itemsize();
             size_t n = 0;
             {
               py::gil_scoped_release nogil;
               check(tessera_array_read(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(),
                                        static_cast<uint32_t>(rsize), rec_offset,
                                        v.size() / rsize, epoch, v.data(), v.size(), &n, nullptr));
             }
             return n / rsize;
           },
           py::arg("dkey"), py::arg("akey"), py::arg("out"), py::arg("rec_offset") = 0,
           py::arg("epoch") = 0,
           "Fills out (its itemsize is the record size) from record rec_offset; returns records.")
      .def("punch",
           [](Obj& o, const py::object& dkey, const py::object& akey) {
             const std::string d = dkey.is_none() ? std::string() : key_arg(dkey, "dkey");
             const std::string a = akey.is_none() ? std::string() : key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             py::gil_scoped_release nogil;
             check(tessera_cont_punch(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(), nullptr));
           },
           py::arg("dkey") = py::none(), py::arg("akey") = py::none(),
           "Removes the whole object, one dkey, or one akey.")
      .def("punch_records",
           [](Obj& o, const py::object& dkey, const py::object& akey, uint64_t rec_offset,
              uint64_t nrec, uint32_t rsize) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             py::gil_scoped_release nogil;
             check(tessera_array_punch(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(), rsize,
                                       rec_offset, nrec, nullptr));
           },
           py::arg("dkey"), py::arg("akey"), py::arg("rec_offset"), py::arg("nrec"),
           py::arg("rsize") = 1, "Records that read as zeros again.")
      .def("dkeys",
           [](Obj& o, uint64_t epoch) { return list_keys(o, nullptr, epoch); },
           py::arg("epoch") = 0)
      .def("akeys",
           [](Obj& o, const py::object& dkey, uint64_t epoch) {
             const std::string d = key_arg(dkey, "dkey");
             return list_keys(o, &d, epoch);
           },
           py::arg("dkey"), py::arg("epoch") = 0)
      .def("extents",
           [](Obj& o, const py::object& dkey, const py::object& akey, uint64_t epoch) {
             const std::string d = key_arg(dkey, "dkey"), a = key_arg(akey, "akey");
             tessera_cont* h = o.c->get();
             tessera_anchor anchor = TESSERA_ANCHOR_INIT;
             std::vector<uint64_t> offs(1024), lens(1024);
             py::list out;
             while (!anchor.eof) {
               uint32_t n = static_cast<uint32_t>(offs.size());
               {
                 py::gil_scoped_release nogil;
                 check(tessera_cont_list_recx(h, o.oid.hi, o.oid.lo, d.c_str(), a.c_str(), epoch,
                                              &anchor, &n, offs.data(), lens.data(), nullptr));
               }
               for (uint32_t i = 0; i < n; ++i) out.append(py::make_tuple(offs[i], lens[i]));
             }
             return out;
           },
           py::arg("dkey"), py::arg("akey"), py::arg("epoch") = 0,
           "The written (offset, length) runs of an array, in records.");

  // Container's object calls live here, beside Object.
  auto cont = py::reinterpret_borrow<py::class_<Cont, std::shared_ptr<Cont>>>(m.attr("Container"));
  cont.def(
          "object",
          [](const std::shared_ptr<Cont>& c, uint64_t lo, uint32_t hi, const py::object& oclass) {
            const std::string oc = oclass.is_none() ? std::string() : py::str(oclass).cast<std::string>();
            Obj o{c, {}};
            tessera_cont* h = c->get();
            py::gil_scoped_release nogil;
            check(tessera_cont_oid(h, hi, lo, oc.empty() ? nullptr : oc.c_str(), &o.oid.hi,
                                   &o.oid.lo));
            return o;
          },
          py::arg("lo"), py::arg("hi") = 0, py::arg("oclass") = py::none(),
          "The object of the application's 96 bits (hi: 32 of them) in class oclass (None: the\n"
          "container's default).")
      .def("object_of", [](const std::shared_ptr<Cont>& c, const Oid& oid) { return Obj{c, oid}; },
           py::arg("oid"), "The object of an id (from objects()).")
      .def("objects",
           [](Cont& c, uint64_t epoch) {
             tessera_cont* h = c.get();
             tessera_anchor anchor = TESSERA_ANCHOR_INIT;
             std::vector<uint64_t> hi(1024), lo(1024);
             py::list out;
             while (!anchor.eof) {
               uint32_t n = static_cast<uint32_t>(hi.size());
               {
                 py::gil_scoped_release nogil;
                 check(tessera_cont_list_objects(h, epoch, &anchor, &n, hi.data(), lo.data(),
                                                 nullptr));
               }
               for (uint32_t i = 0; i < n; ++i) out.append(Oid{hi[i], lo[i]});
             }
             return out;
           },
           py::arg("epoch") = 0, "The ids of the container's objects, in id order.");
}

}  // namespace tpy
