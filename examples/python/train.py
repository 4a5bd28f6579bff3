#!/usr/bin/python3
"""A small training loop over samples stored in Tessera, with a checkpoint every epoch and a
resume (docs/PYTHON.md).

    examples/python/train.py POOL SAMPLES CKPT [--epochs N] [--samples 10000]

SAMPLES is a KV container: on the first run it is filled with generated samples (16 features
and a target of a known linear function with noise, 68 bytes each), one key per sample. CKPT
is a POSIX container: the model and optimizer are saved into /train/epoch-E.pt after every
epoch. A run finds the newest checkpoint and goes on from the epoch after it, so a run that is
killed loses at most one epoch; run it again with a larger --epochs to train further.
The system is found as the tessera CLI finds it ($TESSERA_SYSTEM, ...).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import tessera
from tessera.torch import Checkpoint, Dataset

FEATURES = 16


def decode(value: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    row = torch.from_numpy(np.frombuffer(value, dtype=np.float32).copy())
    return row[:FEATURES], row[FEATURES:]


def generate(pool: str, cont: str, count: int) -> None:
    rng = np.random.default_rng(7)
    w = rng.normal(size=(FEATURES, 1)).astype(np.float32)
    x = rng.normal(size=(count, FEATURES)).astype(np.float32)
    y = x @ w + 0.01 * rng.normal(size=(count, 1)).astype(np.float32)
    rows = np.hstack([x, y])
    with tessera.connect() as conn, conn.open(pool, cont, write=True) as c:
        t0 = time.perf_counter()
        c.put_many((f"sample-{i:06d}", rows[i]) for i in range(count))
        print(f"stored {count} samples in {time.perf_counter() - t0:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pool")
    ap.add_argument("samples", help="a KV container (filled with samples when empty)")
    ap.add_argument("ckpt", help="a POSIX container for the checkpoints")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples-count", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    with tessera.connect() as conn, conn.open(args.pool, args.samples) as c:
        empty = next(iter(c), None) is None
    if empty:
        generate(args.pool, args.samples, args.samples_count)

    data = Dataset(args.pool, args.samples, transform=decode)
    loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=True,
                                         num_workers=args.workers,
                                         generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ckpt = Checkpoint(args.pool, args.ckpt, directory="/train")
    start = 0
    if ckpt.latest() is not None:
        state = ckpt.load()
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1
        print(f"resumed from {ckpt.latest()} (epoch {state['epoch']}, loss {state['loss']:.5f})")
    for epoch in range(start, args.epochs):
        t0 = time.perf_counter()
        total, n = 0.0, 0
        for x, y in loader:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
            n += len(x)
        seconds = time.perf_counter() - t0
        ckpt.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                   "loss": total / n}, f"epoch-{epoch}.pt")
        print(f"epoch {epoch}: loss {total / n:.5f}, {n} samples in {seconds:.2f} s "
              f"({n / seconds:.0f}/s), checkpoint epoch-{epoch}.pt")
    if start >= args.epochs:
        print(f"nothing to do: {args.epochs} epochs done already")


if __name__ == "__main__":
    main()
