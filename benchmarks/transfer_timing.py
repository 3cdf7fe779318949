"""Wall-clock of every stage of a recipe, transfer methods one by one, from a fresh or existing run directory.

    python benchmarks/transfer_timing.py configs/mitdb_to_svdb.toml [--run-dir runs/mitdb_to_svdb] \
        [--method tgdp --method finetune ...] [--out benchmarks/results/transfer_timing_mitdb_to_svdb.json]

Runs simulate/ingest/train-source as the pipeline does (cached stages count as their cached
time, reported from the manifest), then each transfer method with --force, and writes the
seconds per stage with the machine it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from ecg_tgdp.pipeline import stages
from ecg_tgdp.pipeline.config import TRANSFER_METHODS, load_config
from ecg_tgdp.pipeline.diffusion_stages import train_source_stage
from ecg_tgdp.pipeline.runtime import resolve_device
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.transfer_stage import transfer_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--method", action="append", choices=TRANSFER_METHODS, dest="methods")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-root", default="../shared/physionet",
                        help="folder holding mitdb/ and svdb/ (the recipes name no data root)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.overrides = [f"data_root={args.data_root!r}", *args.overrides]
    config = load_config(args.config, args.overrides)
    run = RunDir.open(config, args.run_dir)
    stages.simulate_stage(config, run)
    stages.ingest_stage(config, run)
    train_source_stage(config, run)
    seconds = {}
    for method in args.methods or list(TRANSFER_METHODS):
        started = time.perf_counter()
        transfer_stage(config, run, [method], force=True)
        seconds[f"transfer.{method}"] = round(time.perf_counter() - started, 1)
    recorded = run.manifest()["stages"]
    report = {
        "benchmark": "transfer_timing",
        "config": config.name,
        "device": str(resolve_device(config.device)),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "seconds_when_last_run": {stage: recorded[stage]["seconds"] for stage in recorded if not stage.startswith("transfer.")},
        "transfer_seconds": seconds,
        "target_train_windows": json.loads((run.path / "cohorts/target/cohort.json").read_text())["counts"]["by_split"].get("train"),
    }
    out = args.out or Path(f"benchmarks/results/transfer_timing_{config.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
