"""An engine killed during a Dataset epoch over an RP_3GX container: the epoch finishes, every
sample whole (reads go to the surviving replicas)."""

from __future__ import annotations

import threading

import torch

import tessera
from tessera.torch import Dataset

from conftest import LocalSystem


def test_an_engine_killed_mid_epoch(monkeypatch):
    s = LocalSystem(engines=4)
    try:
        monkeypatch.setenv("TESSERA_SYSTEM", s.dir)
        s.cli("pool", "create", "tank", "--target-size", "256M")
        s.cli("cont", "create", "tank", "train", "--type", "POSIX", "--oclass", "RP_3GX",
              "--rf", "2")
        with tessera.connect() as conn, conn.open("tank", "train", write=True) as c:
            fs = c.fs()
            fs.mkdir("/s")
            for i in range(400):
                fs.write_file(f"/s/{i:05d}", i.to_bytes(4, "little") * 1024)
            fs.close()

        def check(data: bytes) -> int:
            assert data == data[:4] * 1024
            return int.from_bytes(data[:4], "little")

        ds = Dataset("tank", "train", path="/s", transform=check)
        loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
        seen = []
        killed = threading.Event()
        for batch in loader:
            seen.extend(batch.tolist())
            if len(seen) >= 100 and not killed.is_set():
                s.cli("system", "kill", "--rank", "3")
                killed.set()
        assert killed.is_set()
        assert sorted(seen) == list(range(400))
    finally:
        s.stop()
