"""A KV container as a Python mapping, checked against a dict under seeded random operations
($TESSERA_PY_SEEDS="first count", default "1 4"), and the mapping's edges."""

from __future__ import annotations

import os
import random

import pytest

import tessera


def seeds():
    first, count = (int(x) for x in os.environ.get("TESSERA_PY_SEEDS", "1 4").split())
    return range(first, first + count)


def random_value(rng: random.Random) -> bytes:
    size = rng.choice([0, 1, 17, 4096, 70_000, 300_000])  # across the 64 KiB first read
    return rng.randbytes(size)


@pytest.mark.parametrize("seed", seeds())
def test_random_operations_match_a_dict(kv, seed):
    rng = random.Random(seed)
    model: dict[str, bytes] = {}
    keys = [f"key-{i}" for i in range(40)] + ["ünïcode", "a/b", "sp ace"]
    for step in range(300):
        op = rng.choice(["set", "set", "get", "del", "in", "get_default", "put_many",
                         "get_many", "remove", "len", "iter"])
        k = rng.choice(keys)
        where = f"seed {seed} step {step}: {op} {k!r}"
        if op == "set":
            v = random_value(rng)
            kv[k] = v
            model[k] = v
        elif op == "get":
            if k in model:
                assert kv[k] == model[k], where
            else:
                with pytest.raises(KeyError):
                    kv[k]
        elif op == "del":
            if k in model:
                del kv[k]
                del model[k]
            else:
                with pytest.raises(KeyError):
                    del kv[k]
        elif op == "in":
            assert (k in kv) == (k in model), where
        elif op == "get_default":
            assert kv.get(k, b"dflt") == model.get(k, b"dflt"), where
        elif op == "put_many":
            batch = {rng.choice(keys): random_value(rng) for _ in range(rng.randint(1, 20))}
            kv.put_many(batch, window=rng.choice([1, 4, 64]))
            model.update(batch)
        elif op == "get_many":
            ks = [rng.choice(keys) for _ in range(rng.randint(1, 30))]
            assert kv.get_many(ks, window=rng.choice([1, 8, 64])) == [model.get(x) for x in ks], where
        elif op == "remove":
            kv.remove(k)
            model.pop(k, None)
        elif op == "len":
            assert len(kv) == len(model), where
        else:
            assert list(kv) == sorted(model, key=lambda s: s.encode()), where
    assert dict(kv.items()) == model


def test_keys_of_every_kind(kv):
    kv[b"raw\xff"] = b"1"             # bytes that are not UTF-8
    kv["t\udcff"] = b"2"              # ... as str, with the byte escaped: the same key
    assert kv[b"raw\xff"] == b"1"
    assert kv["t\udcff"] == b"2"
    assert set(kv) == {"raw\udcff", "t\udcff"}
    assert kv["raw\udcff"] == b"1"    # the listed name reads the same key back
    kv["s"] = "text"                  # str values are stored as UTF-8
    assert kv["s"] == b"text"
    long_key = "k" * 4096
    kv[long_key] = b"x"
    assert kv[long_key] == b"x"


def test_bad_keys_are_clear_errors(kv):
    with pytest.raises(ValueError, match="NUL"):
        kv["a\0b"] = b"x"
    with pytest.raises(ValueError, match="empty"):
        kv[""] = b"x"
    with pytest.raises(ValueError, match="4097 bytes"):
        kv["k" * 4097] = b"x"
    with pytest.raises(TypeError, match="str or bytes"):
        kv[5] = b"x"
    with pytest.raises(TypeError, match="bytes-like"):
        kv["k"] = 5
    assert 5 not in kv


def test_many_pages_of_keys(kv):
    kv.put_many((f"{i:05d}", b"v") for i in range(2500))
    assert list(kv) == [f"{i:05d}" for i in range(2500)]
    assert len(kv) == 2500
    assert kv.get_many([f"{i:05d}" for i in range(0, 2500, 7)]) == [b"v"] * 358


def test_snapshots_and_views(system, kv):
    kv["a"] = b"old"
    epoch = kv.snapshot("before")
    kv["a"] = b"new"
    kv["b"] = b"only-after"
    with kv.at(epoch) as view:
        assert view["a"] == b"old"
        assert "b" not in view
    assert kv["a"] == b"new"
    conn = kv.system
    assert (epoch, "before") in conn.snapshots("tank", kv.label)


def test_transactions_commit_or_change_nothing(kv):
    with kv.transaction() as tx:
        tx["x"] = b"1"
        tx["y"] = b"2"
        assert tx["x"] == b"1"      # its own change
        assert "x" not in kv        # nobody else's yet
    assert kv["x"] == b"1" and kv["y"] == b"2"
    with pytest.raises(RuntimeError):
        with kv.transaction() as tx:
            tx["x"] = b"changed"
            raise RuntimeError("the block fails")
    assert kv["x"] == b"1"
    with kv.transaction() as tx:
        del tx["y"]
        with pytest.raises(KeyError):
            tx["y"]
    assert "y" not in kv


def test_conflicting_transactions_restart(kv):
    # Two read-modify-writes of one key at once: serializable, so they cannot both commit;
    # the value counts the commits that succeeded.
    kv["n"] = b"0"
    a = kv.transaction()
    b = kv.transaction()
    a["n"] = str(int(a["n"]) + 1).encode()
    b["n"] = str(int(b["n"]) + 1).encode()
    committed = 0
    for tx in (a, b):
        try:
            tx.commit()
            committed += 1
        except tessera.errors.RestartError:
            tx.close()
    assert committed < 2
    assert kv["n"] == str(committed).encode()

    def increment(tx):
        tx["n"] = str(int(tx["n"]) + 1).encode()
    kv.run_transaction(increment)
    assert kv["n"] == str(committed + 1).encode()


def test_objects_single_values_and_listings(kv):
    o = kv.object(11)
    o.put("d1", "a1", b"v1")
    o.put("d1", "a2", b"v2")
    o.put("d2", "a1", b"v3")
    assert o.get("d1", "a2") == b"v2"
    assert o.dkeys() == ["d1", "d2"]
    assert o.akeys("d1") == ["a1", "a2"]
    with pytest.raises(tessera.errors.ExistsError):
        o.put("d1", "a1", b"again", cond="insert")
    epoch = o.put("d1", "a1", b"v1b")
    o.put("d1", "a1", b"v1c")
    assert o.get("d1", "a1", epoch=epoch) == b"v1b"
    o.punch("d2")
    assert o.dkeys() == ["d1"]
    assert o.oid in kv.objects()
    other = kv.object_of(o.oid)
    assert other.get("d1", "a1") == b"v1c"
