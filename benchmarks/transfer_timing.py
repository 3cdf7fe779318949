"""Wall-clock of every stage of a recipe, transfer methods one by one, from a fresh or existing run directory.

    python benchmarks/transfer_timing.py mitdb_to_svdb [--run-dir runs/mitdb_to_svdb] [--data-root DIR] \
        [--method tgdp --method finetune ...] [--out benchmarks/results/transfer_timing_mitdb_to_svdb.json]

The recipe is a shipped recipe's name or a TOML path. Its databases are read from --data-root, else the
config's `data_root`, else $ECG_TGDP_DATA_ROOT, else the folder `ecg-tgdp fetch` downloads to (as
`ecg-tgdp run` reads them); the development checkout uses `--data-root ../shared/physionet` (or sets
ECG_TGDP_DATA_ROOT to it).

Runs simulate/ingest/train-source as the pipeline does (cached stages count as their cached
time, reported from the manifest), then each transfer method with --force, and writes the
seconds per stage with the machine it ran on.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness import RESULTS, add_data_root, recipe, write_result

from ecg_tgdp.pipeline import stages
from ecg_tgdp.pipeline.config import TRANSFER_METHODS, load_config
from ecg_tgdp.pipeline.diffusion_stages import train_source_stage
from ecg_tgdp.pipeline.runtime import resolve_device
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.transfer_stage import transfer_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a shipped recipe's name or a TOML path")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--method", action="append", choices=TRANSFER_METHODS, dest="methods")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    add_data_root(parser)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.data_root is not None:
        args.overrides = [f"data_root={str(args.data_root)!r}", *args.overrides]
    config = load_config(recipe(args.config), args.overrides)
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
        "seconds_when_last_run": {stage: recorded[stage]["seconds"] for stage in recorded if not stage.startswith("transfer.")},
        "transfer_seconds": seconds,
        "target_train_windows": json.loads((run.path / "cohorts/target/cohort.json").read_text())["counts"]["by_split"].get("train"),
    }
    out = args.out or RESULTS / f"transfer_timing_{config.name}.json"
    print(write_result(out, report).read_text(), end="")


if __name__ == "__main__":
    main()
