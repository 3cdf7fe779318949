"""A 2-process DDP run on CPU (gloo) through torchrun: ranks stay identical, rank 0 alone writes, resume works."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

from ecg_tgdp.models.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_rank_ddp_trains_in_step_and_resumes(tmp_path):
    out_dir, weights_dir = tmp_path / "run", tmp_path / "weights"
    # --standalone: a local rendezvous on a free port; one thread per rank on a small CI machine
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(out_dir), str(weights_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    assert sorted(p.name for p in out_dir.iterdir()) == ["best.pt", "checkpoint.pt", "log.csv"]
    saved = load_checkpoint(out_dir / "checkpoint.pt")
    assert saved["step"] == 6
    ranks = [torch.load(weights_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in saved["model"].items():
        assert torch.equal(ranks[0][name], value) and torch.equal(ranks[1][name], value), name
    # one generator state per rank, and the ranks drew different batches
    assert len(saved["rng"]) == 2 and not torch.equal(saved["rng"][0]["batches"], saved["rng"][1]["batches"])
    with (out_dir / "log.csv").open(newline="") as file:
        assert [int(row["step"]) for row in csv.DictReader(file)] == [1, 2, 3, 4, 5, 6]
