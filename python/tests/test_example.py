"""examples/python/train.py as a user runs it: samples generated and stored, one epoch with a
checkpoint, then a second run that resumes from it."""

from __future__ import annotations

import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "train.py")


def run(*args: str) -> str:
    r = subprocess.run([sys.executable, EXAMPLE, *args], capture_output=True, text=True,
                       timeout=600, env=os.environ)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_train_checkpoint_and_resume(system):
    system.cli("cont", "create", "tank", "samples", "--type", "KV", "--oclass", "RP_3GX",
               "--rf", "2")
    system.cli("cont", "create", "tank", "ckpt", "--type", "POSIX", "--oclass", "RP_3GX",
               "--rf", "2")
    first = run("tank", "samples", "ckpt", "--epochs", "1", "--samples-count", "10000")
    assert "stored 10000 samples" in first and "checkpoint epoch-0.pt" in first, first
    second = run("tank", "samples", "ckpt", "--epochs", "2")
    assert "resumed from epoch-0.pt" in second and "stored" not in second, second
    loss = [float(line.split("loss ")[1].split(",")[0]) for line in (first + second).splitlines()
            if line.startswith("epoch ")]
    assert len(loss) == 2 and loss[1] < loss[0], loss
    assert "nothing to do" in run("tank", "samples", "ckpt", "--epochs", "2")
