"""Handles after fork(): the child refuses the parent's (with a clear error, freeing nothing the
parent still uses) and works through its own; the parent goes on."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal

import pytest

import tessera


def child_result(fn) -> tuple[int, str]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanups
        os.close(r)
        try:
            msg = fn()
            code = 0
        except BaseException as e:  # noqa: BLE001 - the parent checks it
            msg, code = f"{type(e).__name__}: {e}", 1
        os.write(w, msg.encode())
        os._exit(code)
    os.close(w)
    # A child stuck on a handle that lost its threads: killed, and reported as such (a bound
    # far above a child's few requests, not a timing the test depends on).
    ready, _, _ = select.select([r], [], [], 120)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return -1, "the child did not finish in 120 s"
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_the_child_refuses_the_parents_handles(kv):
    kv["a"] = b"parent"

    def use_parents():
        try:
            kv["a"]
        except tessera.Error as e:
            return str(e)
        return "the parent's handle worked in the child"
    code, out = child_result(use_parents)
    assert code == 0 and "does not survive fork()" in out, out
    assert kv["a"] == b"parent"  # the parent's handle is untouched


def test_the_child_connects_again_and_the_parent_goes_on(kv):
    kv["a"] = b"1"
    label = kv.label

    def own_connection():
        conn = tessera.connect()
        c = conn.open("tank", label, write=True)
        c["from-child"] = c["a"] + b"!"
        c.close()
        conn.close()
        return "ok"
    for _ in range(3):
        code, out = child_result(own_connection)
        assert (code, out) == (0, "ok")
    assert kv["from-child"] == b"1!"
    kv["after"] = b"x"
    assert kv["after"] == b"x"


def _pool_worker(args):
    label, i = args
    conn = tessera.connect()
    with conn.open("tank", label, write=True) as c:
        c[f"w{i}"] = str(i).encode()
        return c[f"w{i}"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_multiprocessing_pool(kv, method):
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        got = pool.map(_pool_worker, [(kv.label, i) for i in range(8)])
    assert got == [str(i).encode() for i in range(8)]
    assert kv.get_many([f"w{i}" for i in range(8)]) == got
