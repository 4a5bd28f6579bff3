"""The GIL is released while a call waits: two threads' I/O overlaps. The interpreter's switch
interval is raised to 10 s so that it does not hand the GIL over on its own meanwhile; a
thread then runs while another is inside its calls only if those calls release the GIL."""

from __future__ import annotations

import sys
import threading

import pytest


@pytest.fixture
def no_preemption():
    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    yield
    sys.setswitchinterval(old)


def overlapped(call, kv, limit: int = 2000) -> int:
    """How many gets another thread completed while this one ran `call` again and again
    (until the other thread moved, at most `limit` times)."""
    kv["probe"] = b"p" * 100
    done = threading.Event()
    started = threading.Event()
    count = [0]

    def other():
        started.set()
        while not done.is_set():
            kv["probe"]                      # I/O in the other thread
            count[0] += 1

    t = threading.Thread(target=other)
    t.start()
    started.wait()
    before = count[0]
    for _ in range(limit):
        call()
        if count[0] > before:
            break
    during = count[0] - before
    done.set()
    t.join()
    return during


def test_a_get_many_overlaps_with_another_threads_gets(kv, no_preemption):
    kv.put_many({f"k{i}": bytes(4096) for i in range(300)})
    assert overlapped(lambda: kv.get_many([f"k{i}" for i in range(300)], window=4), kv) > 0


def test_single_calls_overlap_too(kv, no_preemption):
    kv.put_many({f"k{i}": bytes(4096) for i in range(50)})

    assert overlapped(lambda: kv["k7"], kv) > 0
    o = kv.object(9)
    assert overlapped(lambda: o.write("d", "a", bytes(1 << 20)), kv, limit=200) > 0


def test_many_threads_share_one_container(kv):
    errors = []

    def worker(n):
        try:
            for i in range(100):
                kv[f"t{n}-{i}"] = f"{n}:{i}".encode()
            for i in range(100):
                assert kv[f"t{n}-{i}"] == f"{n}:{i}".encode()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(kv) == 800
