"""Objects and arrays read into and written from every kind of buffer, without a copy."""

from __future__ import annotations

import array
import tracemalloc

import numpy as np
import pytest

import tessera

MIB = 1 << 20


def test_every_kind_of_source_buffer(kv):
    o = kv.object(1)
    payload = bytes(range(256)) * 64
    sources = {
        "bytes": payload,
        "bytearray": bytearray(payload),
        "memoryview": memoryview(payload),
        "memoryview slice": memoryview(b"xx" + payload + b"yy")[2:-2],
        "numpy uint8": np.frombuffer(payload, dtype=np.uint8),
        "numpy int32": np.frombuffer(payload, dtype=np.int32),
        "array": array.array("B", payload),
    }
    for i, (name, src) in enumerate(sources.items()):
        o.put("single", name, src)
        assert o.get("single", name) == payload, name
        o.write("array", name, src, offset=i * 10)
        assert o.read("array", name, offset=i * 10, length=len(payload)) == payload, name


def test_every_kind_of_destination_buffer(kv):
    o = kv.object(2)
    payload = np.random.default_rng(1).integers(0, 255, 100_000, dtype=np.uint8).tobytes()
    o.write("d", "a", payload)
    o.put("d", "s", payload)
    dests = {
        "bytearray": lambda: bytearray(len(payload)),
        "memoryview of bytearray": lambda: memoryview(bytearray(len(payload))),
        "numpy uint8": lambda: np.zeros(len(payload), dtype=np.uint8),
        "numpy float64": lambda: np.zeros(len(payload) // 8, dtype=np.float64),
        "array": lambda: array.array("B", bytes(len(payload))),
    }
    for name, make in dests.items():
        out = make()
        n = o.read_into("d", "a", out)
        assert bytes(out) == payload[:n] and n == memoryview(out).nbytes, name
        out = bytearray(len(payload) + 10)
        assert o.get_into("d", "s", out) == len(payload), name
        assert bytes(out[:len(payload)]) == payload


def test_a_buffer_that_cannot_be_filled_is_refused(kv):
    o = kv.object(3)
    o.put("d", "s", b"0123456789")
    with pytest.raises(TypeError, match="writable"):
        o.get_into("d", "s", b"read-only bytes.....")
    with pytest.raises(TypeError, match="contiguous"):
        o.read_into("d", "s", np.zeros((10, 10), dtype=np.uint8)[:, 0])
    with pytest.raises(TypeError, match="contiguous"):
        o.write("d", "a", np.zeros((10, 10), dtype=np.uint8)[:, 0])
    small = bytearray(4)
    with pytest.raises(tessera.errors.BufferTooSmallError, match="10"):
        o.get_into("d", "s", small)


def test_records_take_the_size_of_the_numpy_dtype(kv):
    o = kv.object(4, oclass="RP_3G1")
    data = np.arange(1000, dtype=np.float64)
    o.write_records("d", "f64", data, rec_offset=100)
    out = np.zeros(1100, dtype=np.float64)
    assert o.read_records("d", "f64", out) == 1100
    assert (out[:100] == 0).all() and (out[100:] == data).all()
    assert o.extents("d", "f64") == [(100, 1000)]
    with pytest.raises(tessera.errors.InvalidArgumentError):   # another record size
        o.write_records("d", "f64", np.arange(4, dtype=np.int32))
    o.punch_records("d", "f64", 100, 10, rsize=8)
    o.read_records("d", "f64", out)
    assert (out[100:110] == 0).all() and out[110] == 10.0


def test_large_writes_and_reads_make_no_copy_in_python(kv):
    o = kv.object(5)
    src = np.random.default_rng(2).integers(0, 255, 16 * MIB, dtype=np.uint8)
    dst = np.zeros_like(src)
    tracemalloc.start()
    try:
        o.write("d", "big", memoryview(src))
        o.read_into("d", "big", dst)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (dst == src).all()
    assert peak < MIB, f"Python allocated {peak} bytes around a 16 MiB write and read"
