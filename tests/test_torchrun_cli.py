"""`torchrun --nproc_per_node 2 ecg-tgdp ...` on CPU (gloo) on the tiny quickstart: one data-parallel run, rank 0 writes.

What a 2-rank run's weights equal (README, "Multi-GPU and multi-node"): each rank draws batch_size windows,
t, ε and label dropout from its own random streams, and DDP averages the ranks' gradients, so an update is
the one a single process makes on both ranks' draws side by side, a batch of 2 × batch_size. The test
trains that single process and compares raw weights after 6 steps. They agree bit for bit here (a sum of
two gradients has one order, and halving is exact); the assertion allows 1e-6, float32 rounding of weights
of size ~1, in case a kernel sums in another order, far below the 8e-4 by which the weights differ when the
single process uses rank 0's draws alone.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.models.checkpoint import load_checkpoint
from ecg_tgdp.models.model_card import ModelCard
from ecg_tgdp.models.training import (
    _BATCHES,
    _NOISE,
    TrainConfig,
    WindowSampler,
    _param_groups,
    _seed,
    diffusion_loss,
    lr_factor,
)
from ecg_tgdp.pipeline.cli import main
from ecg_tgdp.pipeline.runtime import seeded_unet, window_rhythm
from tests.conftest import REPO
from tests.test_pipeline_smoke import TINY

RANKS = 2
WEIGHT_ATOL = 1e-6


def _config_args(command: str, run_dir: Path, *overrides: str) -> list[str]:
    args = [command, str(REPO / "configs/quickstart.toml"), "--run-dir", str(run_dir)]
    for override in (*TINY, *overrides):
        args += ["--set", override]
    return args


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 -m pipeline.cli ARGS`; one thread per rank."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(RANKS),
               "-m", "ecg_tgdp.pipeline.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny run ingested by one process, then its source model trained by `torchrun ... train-source`."""
    run_dir = tmp_path_factory.mktemp("torchrun") / "run"
    assert main(_config_args("ingest", run_dir)) == 0
    return run_dir, _torchrun(*_config_args("train-source", run_dir))


def test_torchrun_train_source_writes_one_checkpoint_that_two_ranks_batches_in_one_process_reproduce(trained):
    run_dir, done = trained
    out_dir = run_dir / "models/source"
    assert sorted(p.name for p in out_dir.iterdir()) == ["best.pt", "checkpoint.pt", "fingerprint.txt", "log.csv",
                                                         "model.pt"]
    saved = load_checkpoint(out_dir / "checkpoint.pt")
    assert saved["step"] == 6 and len(saved["rng"]) == RANKS  # one DDP run of 6 steps, not two runs of one rank
    with (out_dir / "log.csv").open(newline="") as file:
        assert [row["step"] for row in csv.DictReader(file)] == ["3", "6"]  # written by rank 0 alone
    assert done.stdout.count("train-source: 6 steps") == 1  # the other rank prints nothing
    assert json.loads((run_dir / "manifest.json").read_text())["stages"]["train-source"]["steps"] == 6

    expected = _one_process_with_all_ranks_batches(run_dir, saved)
    for name, value in saved["model"].items():
        torch.testing.assert_close(value, expected[name], atol=WEIGHT_ATOL, rtol=0, msg=name)


def test_torchrun_run_resumes_the_source_model_and_finishes_every_stage(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    source = run_dir / "models/source"
    checkpoint, model_file = (source / "checkpoint.pt").read_bytes(), (source / "model.pt").read_bytes()
    (source / "model.pt").unlink()  # as if killed after training: the rerun resumes, finds step 6 and trains nothing

    done = _torchrun(*_config_args("run", run_dir))
    assert (source / "checkpoint.pt").read_bytes() == checkpoint and (source / "model.pt").read_bytes() == model_file
    assert done.stdout.count("train-source: 6 steps") == 1 and done.stdout.count("run quickstart: finished") == 1
    methods = ("source_only", "finetune", "finetune_partial", "domain_guidance", "target_only", "tgdp")
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert {f"{stage}.{method}" for stage in ("transfer", "sample") for method in methods} | {"evaluate"} <= set(stages)
    for method in ("finetune", "finetune_partial", "target_only"):  # data-parallel, like the source model
        assert len(load_checkpoint(run_dir / f"models/{method}/checkpoint.pt")["rng"]) == RANKS, method
    assert (run_dir / "report/report.html").is_file() and (run_dir / "models/tgdp/diagnostics.json").is_file()


def _one_process_with_all_ranks_batches(run_dir: Path, saved: dict) -> dict[str, torch.Tensor]:
    """Raw weights after the saved run's steps, trained by one process on every step's draws of all ranks side by
    side: rank r's batch indices, t, ε and label dropout from the streams train_diffusion gives rank r."""
    config, card = TrainConfig(**saved["train_config"]), ModelCard.from_dict(saved["card"])
    cohort = read_cohort(run_dir / "cohorts/source")
    train = cohort.split("train")
    x, y = torch.from_numpy(cohort.normalized(train.windows)), torch.tensor(train.meta["label_index"].to_numpy())
    markers = window_rhythm(train.windows, cohort.info, card.unet["anchor_width"])[1] \
        if card.unet["rhythm_channel"] else None  # the quickstart's network is given its windows' rhythm
    schedule = card.noise_schedule()
    assert card.unet["dropout"] == 0  # so the global generator, which dropout would draw from, plays no part
    model = seeded_unet(card.unet_config(), card.noise_schedule(), config.seed)  # the stage's initial weights
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    sampler = WindowSampler(y, config.class_balanced)
    streams = [{name: torch.Generator().manual_seed(_seed(config.seed, rank, stream))
                for name, stream in (("batches", _BATCHES), ("noise", _NOISE))} for rank in range(RANKS)]
    for step in range(config.steps):
        losses = []
        for stream in streams:
            index = sampler.draw(config.batch_size, stream["batches"])
            x0, labels = x[index], y[index]
            t = torch.randint(schedule.num_steps, (len(x0),), generator=stream["noise"])
            eps = torch.randn(x0.shape, generator=stream["noise"], dtype=x0.dtype)
            dropped = torch.rand(len(labels), generator=stream["noise"]) < config.label_dropout
            losses.append(diffusion_loss(model, schedule, x0, torch.where(dropped, model.null_class, labels), t, eps,
                                         config.min_snr_gamma, config.loss_target,
                                         rhythm=None if markers is None else markers[index]))
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).mean().backward()  # DDP's average of the ranks' gradients
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        optimizer.step()
    return model.state_dict()


def test_commands_without_a_config_refuse_torchrun(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["sample", "--checkpoint", str(tmp_path / "model.pt"), "--n", "3", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("ecg-tgdp: error: sample does not run under torchrun; start it as a single "
                                       "process\n")
