"""The namespace of a POSIX container (docs/POSIX.md) with the ``os`` module's manners.

    fs = sys.open("tank", "home", write=True).fs()
    fs.makedirs("/data/train", exist_ok=True)
    with fs.open("/data/train/0.bin", "wb") as f:     # a buffered, seekable Python file
        f.write(payload)
    fs.listdir("/data/train"); fs.stat("/data/train/0.bin").st_size
    raw = fs.read_file("/data/train/0.bin")           # one call: open, read whole, close

Paths are absolute inside the container. Calls act as the process's effective uid and groups,
and raise ``OSError`` subclasses (``FileNotFoundError``, ...) with the path, as ``os`` does.
"""

from __future__ import annotations

import io
import os
import stat as _stat
from typing import Iterator, NamedTuple

from . import _tessera

_MODES = {
    "r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}


def _stat_result(t) -> os.stat_result:
    mode, ino, nlink, uid, gid, size, atime, mtime, ctime = t
    return os.stat_result((mode, ino, 0, nlink, uid, gid, size, atime // 10**9, mtime // 10**9,
                           ctime // 10**9),
                          {"st_atime": atime / 1e9, "st_mtime": mtime / 1e9,
                           "st_ctime": ctime / 1e9, "st_atime_ns": atime,
                           "st_mtime_ns": mtime, "st_ctime_ns": ctime})


class DirEntry(NamedTuple):
    name: str
    path: str
    inode: int
    type: int  # the S_IFMT bits

    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.type)

    def is_file(self) -> bool:
        return _stat.S_ISREG(self.type)

    def is_symlink(self) -> bool:
        return _stat.S_ISLNK(self.type)


class RawFile(io.RawIOBase):
    """An open file of the namespace as a raw, seekable Python file (reads and writes at the
    position, through pread and pwrite); fs.open wraps it in a buffered reader or writer."""

    def __init__(self, native, flags: int):
        super().__init__()
        self._f = native
        self._pos = 0
        self._flags = flags
        self.name = native.path

    def readable(self) -> bool:
        return (self._flags & os.O_ACCMODE) != os.O_WRONLY

    def writable(self) -> bool:
        return (self._flags & os.O_ACCMODE) != os.O_RDONLY

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self._checkClosed()
        n = self._f.readinto(b, self._pos)
        self._pos += n
        return n

    def write(self, b) -> int:
        self._checkClosed()
        if self._flags & os.O_APPEND:
            n = self._f.pwrite(b, 0)  # appended at the end, atomically, wherever it is
            self._pos = self._f.fstat()[5]
            return n
        n = self._f.pwrite(b, self._pos)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._f.fstat()[5] + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise OSError(22, "negative seek position", self.name)
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._checkClosed()
        size = self._pos if size is None else size
        self._fs_truncate(size)
        return size

    def _fs_truncate(self, size: int) -> None:
        raise io.UnsupportedOperation("truncate through FileSystem.truncate(path, size)")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a Tessera file has no file descriptor")

    def close(self) -> None:
        if not self.closed:
            try:
                self._f.close()
            finally:
                super().close()


class FileSystem:
    """The namespace of an open POSIX container (Container.fs())."""

    def __init__(self, container):
        self.container = container
        self._fs = container._mount()

    # -- the file system ------------------------------------------------------------------
    def close(self) -> None:
        """Unmounts (open files must be closed first)."""
        self._fs.umount()

    def __enter__(self) -> "FileSystem":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- files ------------------------------------------------------------------------------
    def open(self, path: str, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None, perm: int = 0o644):
        """A Python file of path, with open()'s modes ('r', 'w', 'a', 'x', '+', 'b', 't');
        binary files are buffered readers, writers or random-access files over RawFile."""
        kinds = set(mode)
        if not kinds <= set("rwaxbt+") or len(kinds & set("rwax")) != 1:
            raise ValueError(f"invalid mode: {mode!r}")
        flags = _MODES[(kinds & set("rwax")).pop()]
        if "+" in kinds:
            flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
        raw = RawFile(self._fs.open(path, flags, perm), flags)
        raw._fs_truncate = lambda size: self._fs.truncate(path, size)
        if buffering == 0:
            if "b" not in kinds:
                raise ValueError("can't have unbuffered text I/O")
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering in (-1, 1) else buffering
        if buffering == -1:
            size = 1 << 20  # a request per MiB, not per 8 KiB: each one is a round trip
        if "+" in kinds:
            buf = io.BufferedRandom(raw, size)
        elif raw.writable():
            buf = io.BufferedWriter(raw, size)
        else:
            buf = io.BufferedReader(raw, size)
        if "b" in kinds:
            return buf
        return io.TextIOWrapper(buf, encoding or "utf-8", errors, newline)

    def read_file(self, path: str) -> bytes:
        """The whole file, in one call (open, size, read, close)."""
        return self._fs.read_file(path)

    def write_file(self, path: str, data, perm: int = 0o644) -> None:
        """Creates or replaces path with data (any bytes-like object)."""
        with self.open(path, "wb", buffering=0, perm=perm) as f:
            view = memoryview(data).cast("B")
            done = 0
            while done < len(view):
                done += f.write(view[done:])

    # -- names ------------------------------------------------------------------------------
    def stat(self, path: str, follow_symlinks: bool = True) -> os.stat_result:
        return _stat_result(self._fs.stat(path, follow_symlinks))

    def lstat(self, path: str) -> os.stat_result:
        return self.stat(path, False)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except FileNotFoundError:
            return False

    def isdir(self, path: str) -> bool:
        try:
            return _stat.S_ISDIR(self.stat(path).st_mode)
        except FileNotFoundError:
            return False

    def isfile(self, path: str) -> bool:
        try:
            return _stat.S_ISREG(self.stat(path).st_mode)
        except FileNotFoundError:
            return False

    def scandir(self, path: str = "/") -> list[DirEntry]:
        base = path.rstrip("/")
        return [DirEntry(n, f"{base}/{n}", ino, t) for n, ino, t in self._fs.readdir(path)]

    def listdir(self, path: str = "/") -> list[str]:
        return [n for n, _, _ in self._fs.readdir(path)]

    def walk(self, top: str = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        """As os.walk, top-down: (dirpath, dirnames, filenames), names sorted."""
        dirs, files = [], []
        for e in sorted(self.scandir(top)):
            (dirs if e.is_dir() else files).append(e.name)
        yield top, dirs, files
        for d in dirs:
            yield from self.walk(f"{top.rstrip('/')}/{d}")

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        self._fs.mkdir(path, mode)

    def makedirs(self, path: str, mode: int = 0o755, exist_ok: bool = False) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            try:
                self._fs.mkdir(sub, mode)
            except FileExistsError:
                if i == len(parts) and not exist_ok:
                    raise

    def remove(self, path: str) -> None:
        self._fs.unlink(path)

    unlink = remove

    def rmdir(self, path: str) -> None:
        self._fs.rmdir(path)

    def rename(self, src: str, dst: str) -> None:
        """Atomic, over an existing file or empty directory (as os.replace)."""
        self._fs.rename(src, dst)

    replace = rename

    def link(self, existing: str, path: str) -> None:
        self._fs.link(existing, path)

    def symlink(self, target: str, path: str) -> None:
        self._fs.symlink(target, path)

    def readlink(self, path: str) -> str:
        return self._fs.readlink(path)

    def truncate(self, path: str, size: int) -> None:
        self._fs.truncate(path, size)

    def chmod(self, path: str, mode: int) -> None:
        self._fs.chmod(path, mode)

    def setxattr(self, path: str, name: str, value, flags: int = 0) -> None:
        self._fs.setxattr(path, name, value, flags)

    def getxattr(self, path: str, name: str) -> bytes:
        return self._fs.getxattr(path, name)


# The native layer, for type checkers that look.
_FileSystem = _tessera._FileSystem
