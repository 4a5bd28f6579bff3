"""Tessera for Python: a distributed object store's pools, containers, objects, transactions
and POSIX containers, over libtessera's C API (docs/PYTHON.md).

    import tessera
    sys = tessera.connect()                 # found as the tessera CLI finds it
    kv = sys.open("tank", "results", write=True)
    kv["alpha"] = b"1"                      # a container is a mapping of keys to bytes
    kv.put_many({f"k{i}": bytes(4096) for i in range(1000)})    # many requests in flight
    with kv.transaction() as tx:            # all or nothing
        tx["alpha"] = b"2"; tx["beta"] = b"3"
    fs = sys.open("tank", "home", write=True).fs()               # a POSIX container
    with fs.open("/data/x.bin", "wb") as f:
        f.write(b"...")

Calls release the GIL while they wait; a handle belongs to the process that made it (after
``fork()``, connect again). Errors are :mod:`tessera.errors` classes.
"""

from __future__ import annotations

import random as _random
import time as _time
from typing import Callable, Iterator, TypeVar

from . import errors
from ._tessera import (  # noqa: F401  (re-exported)
    TESSERA_VERSION,
    Container,
    Object,
    Oid,
    System,
    Transaction,
    connect,
)
from .errors import Error, NotFoundError, RestartError  # noqa: F401

__version__ = TESSERA_VERSION

_T = TypeVar("_T")


def _iter_keys(self: Container, page: int = 1024) -> Iterator[str]:
    """The container's keys, page by page (a listing, not a snapshot: keys stored or removed
    meanwhile may or may not appear)."""
    anchor = b""
    while True:
        keys, anchor, done = self._kv_page(anchor, page)
        yield from keys
        if done:
            return


def _keys(self: Container) -> list[str]:
    """Every key of the container, sorted."""
    return list(_iter_keys(self))


def _len(self: Container) -> int:
    """How many keys the container holds (counted by listing them all)."""
    return sum(1 for _ in _iter_keys(self))


def _items(self: Container) -> Iterator[tuple[str, bytes]]:
    """(key, value) pairs; values read 64 at a time."""
    batch: list[str] = []
    for k in _iter_keys(self):
        batch.append(k)
        if len(batch) == 64:
            yield from ((k2, v) for k2, v in zip(batch, self.get_many(batch)) if v is not None)
            batch = []
    if batch:
        yield from ((k2, v) for k2, v in zip(batch, self.get_many(batch)) if v is not None)


def _run_transaction(self: Container, body: Callable[[Transaction], _T],
                     attempts: int = 64) -> _T:
    """Runs body(tx) in a new transaction and commits it; a conflict (RestartError, from
    body or the commit) runs it again in a fresh one after a short random pause, at most
    `attempts` times. Returns what body returned."""
    for attempt in range(attempts):
        tx = self.transaction()
        try:
            result = body(tx)
            tx.commit()
            return result
        except RestartError:
            if attempt + 1 == attempts:
                raise
            _time.sleep(_random.uniform(0, 0.001 * (attempt + 1)))
        finally:
            tx.close()
    raise AssertionError("unreachable")


def _fs(self: Container):
    """The namespace of a POSIX container (tessera.fs.FileSystem)."""
    from .fs import FileSystem
    return FileSystem(self)


Container.__iter__ = _iter_keys
Container.keys = _keys
Container.__len__ = _len
Container.items = _items
Container.run_transaction = _run_transaction
Container.fs = _fs

__all__ = ["connect", "System", "Container", "Object", "Oid", "Transaction", "Error", "errors",
           "__version__"]
