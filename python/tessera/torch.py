"""PyTorch over Tessera: datasets of samples stored in a container, and checkpoints.

    from tessera.torch import Dataset, IterableDataset, Checkpoint
    ds = Dataset("tank", "train", path="/samples", transform=decode)   # a POSIX container's files
    ds = Dataset("tank", "samples-kv")                                 # or a KV container's values
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2, shuffle=True)

    ckpt = Checkpoint("tank", "ckpt")                 # a POSIX container (a directory in it)
    ckpt.save(model.state_dict(), "epoch-3.pt")       # streamed: no second copy in memory
    model.load_state_dict(ckpt.load("epoch-3.pt"))    # or ckpt.load() for the newest

A dataset lists its samples when it is made (sorted paths or keys) and reads each one when it
is asked for it. It holds names, not connections: each process that reads (the DataLoader's
workers, forked or spawned) connects on its first read, and a handle made before a fork is
never used after it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import stat as _stat
from typing import Any, Callable, Iterator

import torch
import torch.utils.data

import tessera


class _Source:
    """A container and what in it holds the samples, opened once per process."""

    def __init__(self, pool: str, cont: str, system: str = "", path: str | None = None,
                 write: bool = False):
        self.pool, self.cont, self.system, self.write = pool, cont, system, write
        self.path = path
        self._pid = None
        self._sys = self._container = self._fs = None
        self._kind = ""
        self.threads = 8
        self._pool = None
        self._pool_pid = None
        self.open()

    def open(self):
        """This process's container (connects on the first call in each process)."""
        if self._pid != os.getpid():
            self._sys = tessera.connect(self.system)
            self._container = self._sys.open(self.pool, self.cont, self.write)
            info = self._sys.cont_query(self.pool, self.cont)
            self._kind = info["type"]
            self._fs = self._container.fs() if self._kind == "POSIX" else None
            self._pid = os.getpid()
        return self._container

    @property
    def fs(self):
        self.open()
        if self._fs is None:
            raise tessera.errors.InvalidArgumentError(
                -1, f"container '{self.cont}' of pool '{self.pool}' is of type {self._kind}, "
                    "not POSIX")
        return self._fs

    def read(self, name: str) -> bytes:
        if self._kind == "POSIX":
            return self.fs.read_file(name)
        return self.open()[name]

    def read_many(self, names: list[str]) -> list[bytes]:
        """Many samples at once: a KV container's with get_many (all in flight), files by
        `threads` threads of this process (each read releases the GIL)."""
        if self._kind == "POSIX":
            if len(names) <= 1:
                return [self.fs.read_file(n) for n in names]
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = concurrent.futures.ThreadPoolExecutor(self.threads)
                self._pool_pid = os.getpid()
            fs = self.fs
            return list(self._pool.map(fs.read_file, names))
        values = self.open().get_many(names)
        for n, v in zip(names, values):
            if v is None:
                raise KeyError(n)
        return values

    def names(self) -> list[str]:
        """Every sample: the regular files under path (POSIX, recursively), or the keys."""
        if self._kind != "POSIX":
            return sorted(self.open().keys())
        out: list[str] = []
        stack = [self.path or "/"]
        while stack:
            d = stack.pop()
            for e in self.fs.scandir(d):
                if e.is_dir():
                    stack.append(e.path)
                elif _stat.S_ISREG(e.type):
                    out.append(e.path)
        return sorted(out)

    def __getstate__(self):  # a spawned worker gets names, and connects itself
        return {k: v for k, v in self.__dict__.items()
                if k in ("pool", "cont", "system", "write", "path", "_kind", "threads")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = None
        self._sys = self._container = self._fs = None
        self._pool = self._pool_pid = None


class Dataset(torch.utils.data.Dataset):
    """A map-style dataset: item i is the bytes of the i-th sample (a file under `path` of a
    POSIX container, or a key of a KV container, in sorted order), passed through transform
    when one is given.

    A list of indices reads those samples at once (a KV container's all in flight, files by 8
    threads of the process) and gives their list: with a BatchSampler as the DataLoader's
    sampler (batch_size=None), each worker asks for a whole batch in one call. PyTorch 2's
    __getitems__ is the same."""

    def __init__(self, pool: str, cont: str, path: str = "/", system: str = "",
                 transform: Callable[[bytes], Any] | None = None):
        self._src = _Source(pool, cont, system, path)
        self.samples = self._src.names()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        if isinstance(i, (list, tuple)):
            return self.__getitems__(i)
        data = self._src.read(self.samples[i])
        return self.transform(data) if self.transform else data

    def __getitems__(self, indices):
        data = self._src.read_many([self.samples[i] for i in indices])
        return [self.transform(d) for d in data] if self.transform else data


class IterableDataset(torch.utils.data.IterableDataset):
    """The samples of a Dataset as a stream: each DataLoader worker reads its share (every
    num_workers-th sample), `batch` at a time (a KV container's with that many gets in
    flight)."""

    def __init__(self, pool: str, cont: str, path: str = "/", system: str = "",
                 transform: Callable[[bytes], Any] | None = None, batch: int = 32):
        self._src = _Source(pool, cont, system, path)
        self.samples = self._src.names()
        self.transform = transform
        self.batch = batch

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        mine = self.samples if info is None else self.samples[info.id::info.num_workers]
        for at in range(0, len(mine), self.batch):
            for data in self._src.read_many(mine[at:at + self.batch]):
                yield self.transform(data) if self.transform else data


class Checkpoint:
    """Checkpoints in a directory of a POSIX container, written and read as torch.save and
    torch.load do with files, by streaming through a buffer of `chunk` bytes (the state is
    never held twice in memory). A checkpoint appears whole or not at all: it is written under
    a temporary name and renamed (atomically) when complete."""

    def __init__(self, pool: str, cont: str, directory: str = "/checkpoints", system: str = "",
                 chunk: int = 8 << 20):
        self._src = _Source(pool, cont, system, directory, write=True)
        self.directory = "/" + directory.strip("/")
        self.chunk = chunk
        self._src.fs.makedirs(self.directory, exist_ok=True)

    def _path(self, name: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a checkpoint name is one path component not starting with '.': "
                             f"{name!r}")
        return f"{self.directory}/{name}"

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[io.BufferedWriter]:
        """A file to write checkpoint `name` into; it replaces any older one of that name
        when the block ends without an exception."""
        fs = self._src.fs
        final = self._path(name)
        tmp = f"{self.directory}/.{name}.{os.getpid()}.tmp"
        f = fs.open(tmp, "wb", buffering=self.chunk)
        try:
            yield f
            f.close()
            fs.rename(tmp, final)
        except BaseException:
            f.close()
            with contextlib.suppress(OSError):
                fs.remove(tmp)
            raise

    def reader(self, name: str) -> io.BufferedReader:
        """Checkpoint `name` opened for reading (seekable, as torch.load needs)."""
        return self._src.fs.open(self._path(name), "rb", buffering=self.chunk)

    def save(self, state: Any, name: str) -> None:
        """torch.save(state) into checkpoint `name`."""
        with self.writer(name) as f:
            torch.save(state, f)

    def load(self, name: str | None = None, map_location=None) -> Any:
        """torch.load of checkpoint `name` (None: the newest)."""
        if name is None:
            name = self.latest()
            if name is None:
                raise FileNotFoundError(2, "no checkpoint", self.directory)
        with self.reader(name) as f:
            return torch.load(f, map_location=map_location)

    def names(self) -> list[str]:
        """The checkpoints, oldest first (by modification time, then name)."""
        fs = self._src.fs
        entries = [e for e in fs.scandir(self.directory)
                   if e.is_file() and not e.name.startswith(".")]
        return [e.name for e in sorted(entries, key=lambda e: (fs.stat(e.path).st_mtime_ns,
                                                                e.name))]

    def latest(self) -> str | None:
        names = self.names()
        return names[-1] if names else None

    def remove(self, name: str) -> None:
        self._src.fs.remove(self._path(name))


__all__ = ["Dataset", "IterableDataset", "Checkpoint"]
