"""The Python package's figures for perf/python.sh (not a test).

  python_bench.py dataset POOL CONT LOCALDIR COUNT SIZE ROUNDS [--drop-caches]
      Writes COUNT samples of SIZE bytes into /SIZE/ of the POSIX container and into LOCALDIR,
      then reads every sample through a DataLoader with 2 worker processes from each, the two
      alternating, ROUNDS times; prints "dataset SIZE tessera|local|local-cold ROUND RATE"
      (samples per second). --drop-caches also reads the local files after dropping the page
      cache (root).
  python_bench.py kv MGMT POOL CONT COUNT SIZE WINDOW
      put_many then get_many of COUNT values of SIZE bytes, WINDOW in flight; prints
      "kv put RATE" and "kv get RATE" (requests per second).
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.utils.data

import tessera
from tessera.torch import Dataset


class LocalFiles(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, list):
            return [self[j] for j in i]
        with open(self.paths[i], "rb") as f:
            return f.read()


def rate(ds) -> float:
    # Each worker is asked for a whole batch of 16 at once (a BatchSampler as the sampler):
    # Tessera's Dataset reads a batch's samples concurrently, local files are read one by one.
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(ds), 16, False)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=sampler, num_workers=2,
                                         collate_fn=lambda batch: len(batch))
    t0 = time.perf_counter()
    n = sum(loader)
    assert n == len(ds)
    return n / (time.perf_counter() - t0)


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def dataset(pool, cont, localdir, count, size, rounds, cold):
    conn = tessera.connect()
    with conn.open(pool, cont, write=True) as c:
        fs = c.fs()
        fs.makedirs(f"/{size}", exist_ok=True)
        os.makedirs(f"{localdir}/{size}", exist_ok=True)
        for i in range(count):
            data = os.urandom(size)
            fs.write_file(f"/{size}/{i:06d}", data)
            with open(f"{localdir}/{size}/{i:06d}", "wb") as f:
                f.write(data)
        fs.close()
    ours = Dataset(pool, cont, path=f"/{size}")
    local = LocalFiles([f"{localdir}/{size}/{i:06d}" for i in range(count)])
    rate(ours), rate(local)  # warm both: connections, workers, the page cache
    for r in range(rounds):
        print(f"dataset {size} tessera {r} {rate(ours):.0f}", flush=True)
        print(f"dataset {size} local {r} {rate(local):.0f}", flush=True)
        if cold:
            drop_caches()
            print(f"dataset {size} local-cold {r} {rate(local):.0f}", flush=True)


def kv(mgmt, pool, cont, count, size, window):
    conn = tessera.connect(mgmt)
    with conn.open(pool, cont, write=True) as c:
        value = b"v" * size
        keys = [f"k{i}" for i in range(count)]
        t0 = time.perf_counter()
        c.put_many(((k, value) for k in keys), window=window)
        print(f"kv put {count / (time.perf_counter() - t0):.0f}", flush=True)
        t0 = time.perf_counter()
        got = c.get_many(keys, window=window)
        print(f"kv get {count / (time.perf_counter() - t0):.0f}", flush=True)
        assert all(v == value for v in got)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "dataset":
        dataset(a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6]), "--drop-caches" in a)
    else:
        kv(a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6]))
