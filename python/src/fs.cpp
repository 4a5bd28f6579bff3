// The namespace of a POSIX container (tessera_fs_*), as the thin native layer under
// tessera.fs (Python): paths in, tuples out, errors as OSError with errno and path.
#include <fcntl.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "handles.hpp"

namespace tpy {
namespace {

struct Fs : Owned {
  std::shared_ptr<Cont> c;
  tessera_fs* fs = nullptr;
  SizeHint size_hint;  // the largest file read_file read yet
  void saw(size_t n) { size_hint.saw(n); }
  ~Fs() {
    if (fs != nullptr && here()) {
      py::gil_scoped_release nogil;
      tessera_fs_umount(fs);
    }
  }
  tessera_fs* get() const {
    check_process("tessera.fs.FileSystem");
    if (fs == nullptr) throw FsError{EBADF, "the file system is closed", ""};
    return fs;
  }
};

struct File : Owned {
  std::shared_ptr<Fs> fs;
  tessera_fs_file* f = nullptr;
  std::string path;
  ~File() {
    if (f != nullptr && here()) {
      py::gil_scoped_release nogil;
      (void)tessera_fs_close(f);
    }
  }
  tessera_fs_file* get() const {
    check_process("tessera.fs file");
    if (f == nullptr) throw FsError{EBADF, "the file is closed", path};
    return f;
  }
};

py::tuple attr_tuple(const tessera_fs_attr& a) {
  return py::make_tuple(a.mode, a.ino, a.nlink, a.uid, a.gid, a.size, a.atime_ns, a.mtime_ns,
                        a.ctime_ns);
}

// Runs a namespace call without the GIL; raises its errno as OSError naming `path`.
template <typename F>
int64_t run(const std::string& path, F&& f) {
  py::gil_scoped_release nogil;
  return check_fs(f(), path);
}

std::shared_ptr<File> open_file(const std::shared_ptr<Fs>& fs, const std::string& path,
                                int flags, uint32_t mode) {
  auto file = std::make_shared<File>();
  file->fs = fs;
  file->path = path;
  tessera_fs* h = fs->get();
  run(path, [&] { return tessera_fs_open(h, path.c_str(), flags, mode, &file->f); });
  return file;
}

// The whole file in one bytes object, read by path without a handle (tessera_fs_read: the path
// resolved and the data fetched, nothing more) into a buffer of the size of the largest file
// read yet; a larger file's rest is read after, from where the first read stopped.
py::bytes read_file(Fs& fs, const std::string& path) {
  tessera_fs* h = fs.get();
  size_t room = fs.size_hint.load();
  py::bytes b = new_bytes(room);
  tessera_fs_attr a{};
  size_t got = static_cast<size_t>(
      run(path, [&] { return tessera_fs_read(h, path.c_str(), 0, bytes_data(b), room, &a); }));
  if (got == room && a.size > room) {
    fs.saw(a.size);
    py::bytes whole = new_bytes(a.size);
    std::memcpy(bytes_data(whole), bytes_data(b), got);
    b = std::move(whole);
    room = a.size;
    char* p = bytes_data(b);
    while (got < room) {  // to the size the first read found (a file that shrank: its end)
      const int64_t n = run(path, [&] {
        return tessera_fs_read(h, path.c_str(), got, p + got, room - got, nullptr);
      });
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
  } else {
    fs.saw(a.size);
  }
  shrink_bytes(b, got);
  return b;
}

}  // namespace

void register_fs(py::module_& m) {
  py::class_<Fs, std::shared_ptr<Fs>>(m, "_FileSystem")
      .def("umount",
           [](Fs& fs) {
             if (fs.fs != nullptr && fs.here()) {
               py::gil_scoped_release nogil;
               tessera_fs_umount(fs.fs);
               fs.fs = nullptr;
             }
           })
      .def("stat",
           [](Fs& fs, const std::string& path, bool follow) {
             tessera_fs_attr a{};
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_stat(h, path.c_str(), follow ? 1 : 0, &a); });
             return attr_tuple(a);
           })
      .def("mkdir",
           [](Fs& fs, const std::string& path, uint32_t mode) {
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_mkdir(h, path.c_str(), mode); });
           })
      .def("open", &open_file)
      .def("truncate",
           [](Fs& fs, const std::string& path, uint64_t size) {
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_truncate(h, path.c_str(), size); });
           })
      .def("chmod",
           [](Fs& fs, const std::string& path, uint32_t mode) {
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_chmod(h, path.c_str(), mode); });
           })
      .def("unlink",
           [](Fs& fs, const std::string& path) {
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_unlink(h, path.c_str()); });
           })
      .def("rmdir",
           [](Fs& fs, const std::string& path) {
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_rmdir(h, path.c_str()); });
           })
      .def("rename",
           [](Fs& fs, const std::string& from, const std::string& to) {
             tessera_fs* h = fs.get();
             run(from, [&] { return tessera_fs_rename(h, from.c_str(), to.c_str()); });
           })
      .def("link",
           [](Fs& fs, const std::string& existing, const std::string& path) {
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_link(h, existing.c_str(), path.c_str()); });
           })
      .def("symlink",
           [](Fs& fs, const std::string& target, const std::string& path) {
             tessera_fs* h = fs.get();
             run(path, [&] { return tessera_fs_symlink(h, target.c_str(), path.c_str()); });
           })
      .def("readlink",
           [](Fs& fs, const std::string& path) {
             tessera_fs* h = fs.get();
             std::vector<char> buf(4096);
             const int64_t n = run(path, [&] {
               return tessera_fs_readlink(h, path.c_str(), buf.data(), buf.size());
             });
             return std::string(buf.data(), static_cast<size_t>(n));
           })
      .def("readdir",
           [](Fs& fs, const std::string& path) {
             tessera_fs* h = fs.get();
             tessera_anchor anchor = TESSERA_ANCHOR_INIT;
             std::vector<tessera_fs_dirent> ents(256);
             py::list out;
             while (!anchor.eof) {
               uint32_t n = static_cast<uint32_t>(ents.size());
               run(path, [&] { return tessera_fs_readdir(h, path.c_str(), &anchor, ents.data(), &n); });
               for (uint32_t i = 0; i < n; ++i)
                 out.append(py::make_tuple(py::str(ents[i].name), ents[i].ino, ents[i].type));
             }
             return out;
           })
      .def("setxattr",
           [](Fs& fs, const std::string& path, const std::string& name, const py::object& value,
              int flags) {
             tessera_fs* h = fs.get();
             BufView v(value, false);
             run(path, [&] {
               return tessera_fs_setxattr(h, path.c_str(), name.c_str(), v.data(), v.size(), flags);
             });
           })
      .def("getxattr",
           [](Fs& fs, const std::string& path, const std::string& name) {
             tessera_fs* h = fs.get();
             std::vector<char> buf(64 << 10);
             const int64_t n = run(path, [&] {
               return tessera_fs_getxattr(h, path.c_str(), name.c_str(), buf.data(), buf.size());
             });
             return py::bytes(buf.data(), static_cast<size_t>(n));
           })
      .def("read_file", &read_file);

  py::class_<File, std::shared_ptr<File>>(m, "_File")
      .def_readonly("path", &File::path)
      .def("readinto",
           [](File& f, const py::object& buf, uint64_t offset) {
             tessera_fs_file* h = f.get();
             BufView v(buf, true);
             return run(f.path, [&] { return tessera_fs_pread(h, v.data(), v.size(), offset); });
           },
           "Fills buf from offset; returns the bytes read (0 at the end).")
      .def("pwrite",
           [](File& f, const py::object& data, uint64_t offset) {
             tessera_fs_file* h = f.get();
             BufView v(data, false);
             return run(f.path, [&] { return tessera_fs_pwrite(h, v.data(), v.size(), offset); });
           })
      .def("fstat",
           [](File& f) {
             tessera_fs_file* h = f.get();
             tessera_fs_attr a{};
             run(f.path, [&] { return tessera_fs_fstat(h, &a); });
             return attr_tuple(a);
           })
      .def_property_readonly("closed", [](const File& f) { return f.f == nullptr; })
      .def("close", [](File& f) {
        if (f.f == nullptr || !f.here()) return;
        tessera_fs_file* h = f.f;
        f.f = nullptr;
        run(f.path, [&] { return tessera_fs_close(h); });
      });

  auto cont = py::reinterpret_borrow<py::class_<Cont, std::shared_ptr<Cont>>>(m.attr("Container"));
  cont.def("_mount", [](const std::shared_ptr<Cont>& c) {
    auto fs = std::make_shared<Fs>();
    fs->c = c;
    tessera_cont* h = c->get();
    run("/", [&] { return tessera_fs_mount(h, &fs->fs); });
    return fs;
  });
}

}  // namespace tpy
