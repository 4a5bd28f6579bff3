// Errors, buffers, keys and the lifetime of the C handles (handles.hpp).
#include "handles.hpp"

#include <cerrno>
#include <cstring>

namespace tpy {

CallError call_error(int rc) {
  const char* msg = tessera_last_error();
  return CallError{rc, msg != nullptr && *msg != '\0' ? msg : tessera_strerror(rc)};
}

int64_t check_fs(int64_t rc, const std::string& path) {
  if (rc >= 0) return rc;
  const char* msg = tessera_last_error();
  const int err = static_cast<int>(-rc);
  throw FsError{err, msg != nullptr && *msg != '\0' ? msg : std::strerror(err), path};
}

void register_errors(py::module_& m) {
  // tessera.errors holds the classes (Python, so they can also derive from KeyError,
  // ValueError, TimeoutError, ...); errors.from_code picks the class of a code.
  (void)m;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CallError& e) {
      auto errors = py::module_::import("tessera.errors");
      py::object exc = errors.attr("from_code")(e.code, e.message);
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    } catch (const FsError& e) {
      // OSError(errno, strerror, filename) is FileNotFoundError, FileExistsError, ... by errno.
      py::object exc = py::reinterpret_steal<py::object>(PyObject_CallFunction(
          PyExc_OSError, "isz", e.err, e.message.c_str(), e.path.empty() ? nullptr : e.path.c_str()));
      if (!exc) return;  // the call set its own error
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    }
  });
}

void Owned::check_process(const char* what) const {
  if (!here()) {
    throw CallError{-TESSERA_EINVAL,
                    std::string(what) + " was made in process " + std::to_string(pid_) +
                        ", not this one (" + std::to_string(::getpid()) +
                        "): a handle does not survive fork(); connect again in this process "
                        "(tessera.connect())"};
  }
}

System::~System() {
  if (c != nullptr && here()) {
    py::gil_scoped_release nogil;
    tessera_disconnect(c);
  }
}

void Cont::close() {
  if (h == nullptr || !here()) return;
  int rc;
  {
    py::gil_scoped_release nogil;
    rc = tessera_cont_close(h);
  }
  if (rc < 0) throw call_error(rc);
  h = nullptr;
}

Cont::~Cont() {
  if (h != nullptr && here()) {
    py::gil_scoped_release nogil;
    (void)tessera_cont_close(h);
  }
  h = nullptr;
}

BufView::BufView(const py::handle& obj, bool writable) {
  py::handle src = obj;
  if (!writable && PyUnicode_Check(obj.ptr())) {
    keep_ = py::reinterpret_steal<py::object>(PyUnicode_AsUTF8String(obj.ptr()));
    if (!keep_) throw py::error_already_set();
    src = keep_;
  }
  const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(src.ptr(), &view_, flags) != 0) {
    // Name what was wrong in words a caller can act on.
    PyErr_Clear();
    const std::string type = Py_TYPE(obj.ptr())->tp_name;
    throw py::type_error(writable ? "a writable contiguous buffer is needed (bytearray, "
                                    "memoryview, numpy array), not " + type
                                  : "a contiguous bytes-like object is needed (bytes, "
                                    "bytearray, memoryview, numpy array, str), not " + type);
  }
  held_ = true;
}

BufView::BufView(BufView&& o) noexcept : view_(o.view_), held_(o.held_), keep_(std::move(o.keep_)) {
  o.held_ = false;
}

BufView::~BufView() {
  if (held_) PyBuffer_Release(&view_);
}

std::string key_arg(const py::handle& k, const char* what) {
  std::string s;
  if (PyUnicode_Check(k.ptr())) {
    py::object b = py::reinterpret_steal<py::object>(
        PyUnicode_AsEncodedString(k.ptr(), "utf-8", "surrogateescape"));
    if (!b) throw py::error_already_set();
    s = std::string(PyBytes_AS_STRING(b.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(b.ptr())));
  } else if (PyBytes_Check(k.ptr())) {
    s = std::string(PyBytes_AS_STRING(k.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(k.ptr())));
  } else {
    throw py::type_error(std::string(what) + " must be str or bytes, not " +
                         Py_TYPE(k.ptr())->tp_name);
  }
  if (s.find('\0') != std::string::npos)
    throw py::value_error(std::string(what) + " must not contain a NUL byte");
  if (s.empty()) throw py::value_error(std::string(what) + " must not be empty");
  if (s.size() > TESSERA_KEY_MAX)
    throw py::value_error(std::string(what) + " is " + std::to_string(s.size()) +
                          " bytes; the most is " + std::to_string(TESSERA_KEY_MAX));
  return s;
}

py::str key_out(const char* p, size_t n) {
  PyObject* s = PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), "surrogateescape");
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

py::bytes new_bytes(size_t n) {
  PyObject* b = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
  if (b == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::bytes>(b);
}

char* bytes_data(const py::bytes& b) { return PyBytes_AS_STRING(b.ptr()); }

py::object read_sized(SizeHint& hint, const SizedCall& call, bool absent_is_none) {
  size_t room = hint.load();
  for (;;) {
    py::bytes b = new_bytes(room);
    char* p = bytes_data(b);
    size_t n = 0;
    int rc;
    {
      py::gil_scoped_release nogil;
      rc = call(p, room, &n);
      if (rc < 0 && rc != -TESSERA_ERANGE && !(absent_is_none && rc == -TESSERA_ENOENT))
        throw call_error(rc);
    }
    if (rc == -TESSERA_ENOENT) return py::none();
    hint.saw(n);
    if (rc == -TESSERA_ERANGE) {
      room = n;
      continue;
    }
    shrink_bytes(b, n);
    return b;
  }
}

int cond_of(const py::object& cond) {
  if (cond.is_none()) return TESSERA_COND_NONE;
  const std::string s = py::str(cond);
  if (s == "insert") return TESSERA_COND_INSERT;
  if (s == "update") return TESSERA_COND_UPDATE;
  throw py::value_error("cond must be None, 'insert' (only if absent) or 'update' (only if present)");
}

void shrink_bytes(py::bytes& b, size_t n) {
  if (static_cast<size_t>(PyBytes_GET_SIZE(b.ptr())) == n) return;
  PyObject* p = b.release().ptr();
  if (_PyBytes_Resize(&p, static_cast<Py_ssize_t>(n)) != 0) throw py::error_already_set();
  b = py::reinterpret_steal<py::bytes>(p);
}

}  // namespace tpy
