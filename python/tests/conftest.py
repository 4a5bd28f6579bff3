"""Fixtures of the Python suite: local systems started by the tessera CLI in temp dirs, as a
user would start them, and always stopped (ctest runs each test file as its own test; the
CLI is $TESSERA_CLI, the package comes from $PYTHONPATH: the build tree's python/)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile

import pytest

CLI = os.environ.get("TESSERA_CLI", "tessera")


class LocalSystem:
    """`tessera system start` in a temp dir; `cli()` runs the CLI against it."""

    def __init__(self, engines: int = 3, targets: int = 1):
        self.tmp = tempfile.TemporaryDirectory(prefix="tessera-py-")
        self.dir = os.path.join(self.tmp.name, "sys")
        self.env = dict(os.environ, TESSERA_SYSTEM=self.dir, HOME=self.tmp.name)
        self.env.pop("TESSERA_MGMT", None)
        self.cli("system", "start", "--dir", self.dir, "--engines", str(engines),
                 "--targets", str(targets))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([CLI, *args], env=self.env, capture_output=True, text=True,
                           timeout=600)
        if check and r.returncode != 0:
            raise RuntimeError(f"tessera {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
        return r

    def stop(self) -> None:
        self.cli("system", "stop", "--grace-s", "10", check=False)
        # Whatever did not stop (the test failed on the way): only this system's processes.
        try:
            with open(os.path.join(self.dir, "system.json")) as f:
                engines = json.load(f).get("engines", [])
        except (OSError, ValueError):
            engines = []
        for e in engines:
            try:
                with open(f"/proc/{e['pid']}/cmdline", "rb") as f:
                    if e["dir"].encode() in f.read():
                        os.kill(e["pid"], signal.SIGKILL)
            except (OSError, KeyError):
                pass
        self.tmp.cleanup()


@pytest.fixture(scope="module")
def system():
    """A 3-engine system with pool 'tank', for the tests of one file; TESSERA_SYSTEM points
    at it, so tessera.connect() finds it as the CLI does."""
    s = LocalSystem()
    old = os.environ.get("TESSERA_SYSTEM")
    os.environ["TESSERA_SYSTEM"] = s.dir
    try:
        s.cli("pool", "create", "tank", "--target-size", "256M")
        yield s
    finally:
        if old is None:
            os.environ.pop("TESSERA_SYSTEM", None)
        else:
            os.environ["TESSERA_SYSTEM"] = old
        s.stop()


_counter = [0]


@pytest.fixture
def kv(system):
    """A new replicated KV container (RP_3GX) opened for writing."""
    import tessera
    _counter[0] += 1
    label = f"kv{_counter[0]}"
    system.cli("cont", "create", "tank", label, "--type", "KV", "--oclass", "RP_3GX", "--rf", "2")
    conn = tessera.connect()
    c = conn.open("tank", label, write=True)
    yield c
    c.close()
    conn.close()


@pytest.fixture
def posix(system):
    """A new POSIX container (RP_3GX), opened for writing: (container, its FileSystem)."""
    import tessera
    _counter[0] += 1
    label = f"fs{_counter[0]}"
    system.cli("cont", "create", "tank", label, "--type", "POSIX", "--oclass", "RP_3GX",
               "--rf", "2")
    conn = tessera.connect()
    c = conn.open("tank", label, write=True)
    fs = c.fs()
    yield c, fs
    fs.close()
    c.close()
    conn.close()
