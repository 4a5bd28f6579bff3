"""The package's surface: the type stubs name exactly what the native module has, and the
classes and functions a user calls carry docstrings."""

from __future__ import annotations

import ast
import inspect
import os

import tessera
from tessera import _tessera


def stub_classes() -> dict[str, set[str]]:
    path = os.path.join(os.path.dirname(_tessera.__file__), "_tessera.pyi")
    tree = ast.parse(open(path).read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for n in node.body:
                if isinstance(n, ast.FunctionDef):
                    members.add(n.name)
                elif isinstance(n, ast.AnnAssign):
                    members.add(n.target.id)
            out[node.name] = members
    return out


def public(cls) -> set[str]:
    names = set()
    for name, _ in inspect.getmembers(cls):
        if name.startswith("__") and name not in {"__getitem__", "__setitem__", "__delitem__",
                                                  "__contains__", "__iter__", "__len__",
                                                  "__enter__", "__exit__", "__init__"}:
            continue
        names.add(name)
    return names


def test_the_stubs_match_the_module():
    stubs = stub_classes()
    for name, members in stubs.items():
        cls = getattr(_tessera, name)
        have = public(cls) - {"__init__"} if name != "Oid" else public(cls)
        missing = members - have
        assert not missing, f"{name}: in the stubs, not in the module: {sorted(missing)}"
        unstubbed = {m for m in have - members if m != "__init__"}
        assert not unstubbed, f"{name}: in the module, not in the stubs: {sorted(unstubbed)}"
    native = {n for n, v in vars(_tessera).items() if inspect.isclass(v)}
    assert native == set(stubs), native ^ set(stubs)


def test_what_users_call_is_documented():
    for obj in (tessera, tessera.connect, tessera.System, tessera.Container, tessera.Object,
                tessera.Transaction, tessera.errors.Error, tessera.errors.RestartError):
        assert (obj.__doc__ or "").strip(), obj
    from tessera import fs, torch
    for obj in (fs, fs.FileSystem, fs.FileSystem.open, torch, torch.Dataset,
                torch.IterableDataset, torch.Checkpoint, torch.Checkpoint.save,
                tessera.Container.put_many, tessera.Container.get_many,
                tessera.Container.run_transaction, tessera.Object.read_records):
        assert (obj.__doc__ or "").strip(), obj
