"""Errors: the classes of the library's codes, with the CLI's messages."""

from __future__ import annotations

import pickle

import pytest

import tessera


def test_unknown_names_carry_the_clis_message(system):
    conn = tessera.connect()
    with pytest.raises(tessera.errors.NotFoundError) as e:
        conn.open("tank", "no-such-container")
    assert e.value.code == -2 and e.value.name == "ENOENT"
    cli = system.cli("cont", "query", "tank", "no-such-container", check=False)
    assert cli.returncode != 0
    assert str(e.value) in cli.stderr, (str(e.value), cli.stderr)
    with pytest.raises(tessera.errors.NotFoundError, match="pool 'nopool'"):
        conn.pool_query("nopool")
    with pytest.raises(LookupError):  # also a LookupError, as Python code expects
        conn.open("nopool", "x")


def test_bad_arguments_and_permissions(system, kv):
    conn = kv.system
    with pytest.raises(tessera.errors.InvalidArgumentError):
        conn.cont_create("tank", "badclass", oclass="NO_SUCH_CLASS")
    with pytest.raises(ValueError, match="may not contain"):
        conn.cont_create("tank", "x", oclass="RP_3GX,rf=1")
    kv["k"] = b"v"
    ro = conn.open("tank", kv.label, write=False)
    assert ro["k"] == b"v"
    with pytest.raises(tessera.errors.PermissionDeniedError):
        ro["k"] = b"w"
    ro.close()
    with pytest.raises(tessera.errors.ShutdownError, match="closed"):
        ro["k"]


def test_errors_pickle_and_compare(system):
    e = tessera.errors.from_code(-21, "conflict")
    assert isinstance(e, tessera.errors.RestartError) and isinstance(e, tessera.Error)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is type(e) and back.code == -21 and str(back) == "conflict"
    assert isinstance(tessera.errors.from_code(-999, "?"), tessera.Error)


def test_administration_round_trip(system):
    conn = tessera.connect()
    info = conn.cont_create("tank", "adm", type="KV", oclass="RP_2G1", rf=1)
    assert info["label"] == "adm" and info["type"] == "KV" and info["rf"] == 1
    assert "adm" in [c["label"] for c in conn.containers("tank")]
    assert conn.pool_query("tank")["label"] == "tank"
    assert [p["label"] for p in conn.pools()] == ["tank"]
    conn.cont_set_prop("tank", "adm", label="adm2")
    assert conn.cont_query("tank", "adm2")["id"] == info["id"]
    c = conn.open("tank", "adm2", write=True)
    c["a"] = b"1"
    e1 = conn.snap_create("tank", "adm2", "s1")
    c["a"] = b"2"
    c.close()
    assert conn.rollback("tank", "adm2", snap="s1") > e1
    with conn.open("tank", "adm2") as c:
        assert c["a"] == b"1"
    conn.snap_destroy("tank", "adm2", e1)
    assert conn.snapshots("tank", "adm2") == []
    conn.cont_destroy("tank", "adm2")
    with pytest.raises(tessera.errors.NotFoundError):
        conn.cont_query("tank", "adm2")
