"""tessera.torch: the datasets through a DataLoader with 2 worker processes, and checkpoints
saved, loaded and resumed byte for byte."""

from __future__ import annotations

import io

import pytest
import torch

import tessera
from tessera.torch import Checkpoint, Dataset, IterableDataset


def sample(i: int) -> bytes:
    return i.to_bytes(4, "little") * 256  # 1 KiB naming its index


def index_of(data: bytes) -> int:
    assert data == data[:4] * 256, "a sample's bytes are not whole"
    return int.from_bytes(data[:4], "little")


@pytest.fixture
def posix_samples(posix):
    cont, fs = posix
    fs.makedirs("/train/part1")
    fs.makedirs("/train/part2")
    for i in range(120):
        fs.write_file(f"/train/part{1 + i % 2}/{i:05d}.bin", sample(i))
    fs.write_file("/other.bin", b"not a sample")
    return cont


@pytest.fixture
def kv_samples(kv):
    kv.put_many({f"s{i:05d}": sample(i) for i in range(120)})
    return kv


def collect(loader) -> list[int]:
    return sorted(i for batch in loader for i in batch.tolist())


@pytest.mark.parametrize("source", ["posix", "kv"])
def test_map_style_through_two_workers(source, request):
    cont = request.getfixturevalue(f"{source}_samples")
    ds = Dataset("tank", cont.label, path="/train", transform=lambda d: index_of(d))
    assert len(ds) == 120
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(3))
    assert collect(loader) == list(range(120))
    # Twice: persistent connections in new workers of the second epoch too.
    assert collect(loader) == list(range(120))


@pytest.mark.parametrize("source", ["posix", "kv"])
def test_whole_batches_through_a_batch_sampler(source, request):
    cont = request.getfixturevalue(f"{source}_samples")
    ds = Dataset("tank", cont.label, path="/train", transform=index_of)
    assert ds[[3, 1, 2]] == [ds[3], ds[1], ds[2]]
    sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(ds), 16, False)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=sampler, num_workers=2,
                                         collate_fn=torch.tensor)
    assert collect(loader) == list(range(120))


@pytest.mark.parametrize("source", ["posix", "kv"])
def test_iterable_through_two_workers(source, request):
    cont = request.getfixturevalue(f"{source}_samples")
    ds = IterableDataset("tank", cont.label, path="/train", transform=index_of, batch=7)
    loader = torch.utils.data.DataLoader(ds, batch_size=10, num_workers=2)
    assert collect(loader) == list(range(120))


def test_spawned_workers(posix_samples):
    ds = Dataset("tank", posix_samples.label, path="/train", transform=index_of)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=2,
                                         multiprocessing_context="spawn")
    assert collect(loader) == list(range(120))


def test_a_missing_sample_is_a_clear_error(posix_samples):
    ds = Dataset("tank", posix_samples.label, path="/train")
    posix_samples.fs().remove(ds.samples[5])
    with pytest.raises(FileNotFoundError, match=ds.samples[5]):
        ds[5]


def state(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(256, 512, generator=g), "b": torch.randn(512, generator=g),
            "step": seed, "names": ["a", "b"]}


def test_checkpoints_are_byte_exact(posix):
    cont, fs = posix
    ckpt = Checkpoint("tank", cont.label, chunk=64 << 10)   # many chunks per checkpoint
    s = state(1)
    ckpt.save(s, "one.pt")
    expected = io.BytesIO()
    torch.save(s, expected)
    assert fs.read_file("/checkpoints/one.pt") == expected.getvalue()
    back = ckpt.load("one.pt")
    assert torch.equal(back["w"], s["w"]) and torch.equal(back["b"], s["b"])
    assert back["step"] == 1 and back["names"] == ["a", "b"]
    ckpt.save(state(2), "two.pt")
    assert ckpt.names() == ["one.pt", "two.pt"] and ckpt.latest() == "two.pt"
    assert ckpt.load()["step"] == 2


def test_a_failed_save_leaves_the_old_checkpoint(posix):
    cont, fs = posix
    ckpt = Checkpoint("tank", cont.label)
    ckpt.save(state(1), "c.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot save this")
    with pytest.raises(RuntimeError, match="cannot save"):
        ckpt.save({"w": state(2)["w"], "bad": Unpicklable()}, "c.pt")
    assert ckpt.load("c.pt")["step"] == 1
    assert fs.listdir("/checkpoints") == ["c.pt"]   # no temporary left
    with pytest.raises(ValueError):
        ckpt.save(state(1), "../escape.pt")


def train(model, opt, data, epochs, ckpt=None, start=0):
    for epoch in range(start, epochs):
        g = torch.Generator().manual_seed(epoch)
        for i in torch.randperm(len(data), generator=g).tolist():
            x, y = data[i]
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        if ckpt is not None:
            ckpt.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch},
                      f"epoch-{epoch}.pt")


def test_resume_from_a_checkpoint_continues_exactly(posix):
    cont, _ = posix
    torch.manual_seed(0)
    data = [(torch.randn(8), torch.randn(2)) for _ in range(64)]

    def fresh():
        torch.manual_seed(1)
        m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        return m, torch.optim.Adam(m.parameters(), lr=0.01)

    straight, opt = fresh()
    train(straight, opt, data, 3)

    ckpt = Checkpoint("tank", cont.label, directory="/run")
    interrupted, opt = fresh()
    train(interrupted, opt, data, 2, ckpt)            # stops after epoch 1
    resumed, opt = fresh()
    saved = ckpt.load()                               # the newest: epoch-1.pt
    assert saved["epoch"] == 1
    resumed.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    train(resumed, opt, data, 3, start=saved["epoch"] + 1)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_tessera_errors_cross_from_workers(kv_samples):
    ds = Dataset("tank", kv_samples.label)
    kv_samples.remove(ds.samples[0])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    with pytest.raises(KeyError):
        list(loader)
