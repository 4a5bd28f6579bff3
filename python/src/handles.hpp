// What the parts of the tessera Python module share: the C API's handles owned by Python
// objects, the errors they raise, and the views of Python buffers the I/O calls read and fill.
//
// The module is a user of the SDK: it includes <tessera/tessera.h> only (the C API, the ABI of
// libtessera.so) and no engine header.
//
// Threads and the GIL: every call into the library runs with the GIL released, so other Python
// threads run (and do I/O) meanwhile; the library's last-error text is per thread, and is read
// on the thread that made the call before the GIL is taken back.
//
// Processes: a handle belongs to the process that made it. After fork() the child holds copies
// of the parent's handles whose library threads did not follow it; using one raises an error
// that says to connect again, and dropping one frees nothing (it leaks in the child, on purpose:
// closing would wait for threads that do not exist there).
#pragma once

#include <tessera/tessera.h>

#include <pybind11/pybind11.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tpy {

namespace py = pybind11;

// A failed C call, raised in Python as the tessera.errors class of its code.
struct CallError {
  int code;  // negative, -TESSERA_E*
  std::string message;
};
// A failed namespace call (tessera_fs_*, negative errno), raised as OSError (FileNotFoundError,
// FileExistsError, ...) with the path.
struct FsError {
  int err;  // positive errno
  std::string message;
  std::string path;
};

// The last error of this thread's C call `rc`, as a CallError.
CallError call_error(int rc);
// Throws call_error(rc) when rc < 0; returns rc.
inline int check(int rc) {
  if (rc < 0) throw call_error(rc);
  return rc;
}
// Throws FsError for a namespace call's negative errno; returns rc.
int64_t check_fs(int64_t rc, const std::string& path);

// Registers the translators of CallError and FsError (module init).
void register_errors(py::module_& m);

// A handle of this process: refuses use from a forked child.
class Owned {
 public:
  bool here() const { return pid_ == ::getpid(); }
  // Throws when used in a process that did not make it (after fork).
  void check_process(const char* what) const;

 private:
  pid_t pid_ = ::getpid();
};

// A connected client (tessera_connect_system).
struct System : Owned {
  tessera_client* c = nullptr;
  std::string name;  // as given to connect ("" when found as the CLI finds it)
  ~System();
  tessera_client* get() const {
    check_process("tessera.System");
    if (c == nullptr) throw CallError{-TESSERA_ESHUTDOWN, "the system connection is closed"};
    return c;
  }
};

// The size of the first buffer a read of unknown size gets: the largest value read yet through
// the handle, from 64 KiB up to 64 MiB (a bigger value costs a second round trip, never a
// bigger guess). Any thread.
class SizeHint {
 public:
  size_t load(std::memory_order o = std::memory_order_relaxed) const { return v_.load(o); }
  void saw(size_t n) {
    size_t cur = v_.load(std::memory_order_relaxed);
    const size_t want = n < (64u << 20) ? n : (64u << 20);
    while (want > cur && !v_.compare_exchange_weak(cur, want)) {
    }
  }

 private:
  std::atomic<size_t> v_{64 << 10};
};

// An open container handle.
struct Cont : Owned {
  std::shared_ptr<System> sys;
  tessera_cont* h = nullptr;
  std::string pool, label;
  bool writable = false;
  uint64_t kv_hi = 0, kv_lo = 0;  // the key-value object (id 0 of the default class)
  SizeHint size_hint;             // the largest value read yet: a get's first buffer
  ~Cont();
  tessera_cont* get() const {
    check_process("tessera.Container");
    if (h == nullptr) throw CallError{-TESSERA_ESHUTDOWN, "the container is closed"};
    return h;
  }
  void close();
  void saw(size_t n) { size_hint.saw(n); }
};

struct Oid {
  uint64_t hi = 0, lo = 0;
};

// An object of an open container.
struct Obj {
  std::shared_ptr<Cont> c;
  Oid oid;
};

// A contiguous view of a Python buffer (bytes, bytearray, memoryview, numpy arrays, ...),
// held while the call that uses it runs; `writable` for the calls that fill it. A `str` is
// taken as its UTF-8 bytes (values only; never for a buffer to fill).
class BufView {
 public:
  BufView(const py::handle& obj, bool writable);
  ~BufView();
  BufView(const BufView&) = delete;
  BufView& operator=(const BufView&) = delete;
  BufView(BufView&& o) noexcept;
  void* data() const { return view_.buf; }
  size_t size() const { return static_cast<size_t>(view_.len); }
  size_t itemsize() const { return static_cast<size_t>(view_.itemsize); }

 private:
  Py_buffer view_{};
  bool held_ = false;
  py::object keep_;  // the UTF-8 bytes of a str
};

// A key (dkey, akey or key-value key) as the C API takes it: str (UTF-8, surrogates escaped as
// os.fsencode does) or bytes, without NUL.
std::string key_arg(const py::handle& k, const char* what);
// A key the library listed, back to str (os.fsdecode's rules: bytes that are not UTF-8 come
// back as surrogates, so key_arg gives the same bytes again).
py::str key_out(const char* p, size_t n);

// A read whose size is not known beforehand: `call(buf, room, &n)` (run without the GIL; the C
// call's code) fills a bytes object of the hint's size; a value larger than that is read again
// into one of the size the library names (-TESSERA_ERANGE and *n). The bytes, shrunk to fit;
// None when absent_is_none and the call answered -TESSERA_ENOENT; other failures raise.
using SizedCall = std::function<int(char* buf, size_t room, size_t* n)>;
py::object read_sized(SizeHint& hint, const SizedCall& call, bool absent_is_none);

// A conditional update's condition: None, 'insert' (only if absent) or 'update' (only if
// present), as TESSERA_COND_*.
int cond_of(const py::object& cond);

// A new bytes object of n bytes (to be filled without the GIL, then shrunk with shrink_bytes).
py::bytes new_bytes(size_t n);
char* bytes_data(const py::bytes& b);
void shrink_bytes(py::bytes& b, size_t n);

void register_system(py::module_& m);
void register_container(py::module_& m);
void register_objects(py::module_& m);
void register_tx(py::module_& m);
void register_fs(py::module_& m);

}  // namespace tpy
