"""How separable are the source and target windows, with and without per-record amplitude normalization?

    python benchmarks/domain_separability.py [--config mitdb_to_svdb] [--data-root DIR] \
        [--normalizations none median_r] [--seeds 0 1 2] [--out benchmarks/results/domain_separability]

The databases (mitdb/, svdb/) are read from --data-root, else $ECG_TGDP_DATA_ROOT, else the folder
`ecg-tgdp fetch` downloads to; the development checkout uses `--data-root ../shared/physionet` (or sets
ECG_TGDP_DATA_ROOT to it).

For each `windows.amplitude_normalization`: ingest the recipe (run folder
`runs/separability_<normalization>/`), train TGDP's clean-window domain classifier c(x_0, y) and its
time-dependent classifier c'(x_t, y, t) on the source and target train splits (early stopped on their
val splits), and score both on held-out windows (`models.ratio_diagnostics`): AUROC, log-loss and
calibration error of c, the same per band of t for c', and the t_min TGDP's guidance would start from.
Utility check: the downstream classifier trained on real source windows only and tested on the target
test patients (macro-F1, S and V sensitivity, one row per seed), so a normalization that lowers
separability is seen not to hurt the real-data baseline. Writes the .json and .md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from harness import RESULTS, add_data_root, data_root, recipe, write_result

from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.evaluation.classifier_inputs import WindowGeometry
from ecg_tgdp.evaluation.downstream import DownstreamClassifier
from ecg_tgdp.evaluation.report import json_ready
from ecg_tgdp.evaluation.utility import class_indices, classification_metrics, seed_interval
from ecg_tgdp.models.classifier import ClassifierTraining
from ecg_tgdp.models.density_ratio import (
    DomainClassifier,
    DomainTraining,
    HeldOut,
    NetConfig,
    domain_logits,
    train_domain_classifier,
)
from ecg_tgdp.models.ratio_diagnostics import bands_table, binary_scores, choose_t_min, scores_by_band
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.stages import ingest_stage


def tensors(cohort, split: str, max_windows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    part = cohort.split(split).subsample(max_windows, seed)
    return torch.from_numpy(cohort.normalized(part.windows)), torch.tensor(part.meta["label_index"].to_numpy())


def separability(source, target, schedule: NoiseSchedule, steps: int, seed: int) -> dict:
    """Held-out scores of c and c' trained on the train splits, early stopped on the val splits."""
    train_s, train_t = tensors(source, "train", 20000, seed), tensors(target, "train", 20000, seed)
    val_s, val_t = tensors(source, "val", 4000, seed), tensors(target, "val", 4000, seed)
    held_out = HeldOut(*val_s, *val_t, seed=seed)
    net = NetConfig(kind="conv", in_dim=train_s[0].shape[1], num_classes=len(source.classes), width=32, depth=3)
    training = DomainTraining(steps=steps, val_every=100, patience=4, seed=seed)
    torch.manual_seed(seed)
    clean = train_domain_classifier(DomainClassifier(net), *train_s, *train_t, training, held_out=held_out)
    x, y, _, domain = held_out.noised(None)
    clean_scores = binary_scores(domain_logits(clean, x, y).numpy(), domain.numpy().astype(bool))
    timed = NetConfig(**{**net.__dict__, "time_conditioned": True})
    noised = train_domain_classifier(DomainClassifier(timed), *train_s, *train_t, training, schedule=schedule,
                                     held_out=held_out)
    x_t, y_t, t, domain_t = held_out.noised(schedule)
    bands = scores_by_band(t.numpy(), domain_logits(noised, x_t, y_t, t).numpy(), domain_t.numpy().astype(bool),
                           schedule.num_steps)
    return {"clean": clean_scores, "time_bands": bands_table(bands), "t_min": choose_t_min(bands)}


def source_only_utility(source, target, seeds: list[int]) -> dict:
    """The downstream classifier on real source train windows, tested on the target test patients."""
    classes = target.classes
    downstream = DownstreamClassifier(WindowGeometry.of(target.info), len(classes),
                                      ClassifierTraining(epochs=8, steps_per_epoch=60))
    train, val, test = source.split("train"), target.split("val").subsample(4000, 0), target.split("test")
    x, val_x, test_x = (downstream.prepare(part.windows) for part in (train, val, test))
    y, val_y, test_y = (class_indices(part.meta["label"], classes, name)
                        for part, name in ((train, "source"), (val, "target val"), (test, "target test")))
    rows = [classification_metrics(test_y, downstream.fit(x, y, val_x, val_y, seed)(test_x), classes)
            for seed in seeds]
    return {metric: dict(zip(("mean", "low", "high"), seed_interval([row[metric] for row in rows])))
            for metric in ("macro_f1", "sensitivity_S", "sensitivity_V")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mitdb_to_svdb", help="a shipped recipe's name or a TOML path")
    parser.add_argument("--normalizations", nargs="+", default=["none", "median_r"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500, help="classifier steps (early stopped)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    add_data_root(parser)
    parser.add_argument("--out", type=Path, default=RESULTS / "domain_separability")
    args = parser.parse_args()
    args.overrides = [f"data_root={str(data_root(args.data_root, 'mitdb', 'svdb'))!r}", *args.overrides]
    config_path, started, results = recipe(args.config), time.perf_counter(), []
    for normalization in args.normalizations:
        config = load_config(config_path, [f"windows.amplitude_normalization={normalization!r}", *args.overrides])
        run = RunDir.open(config, Path(f"runs/separability_{config.name}_{normalization}"))
        ingest_stage(config, run)
        source, target = (read_cohort(run.path / "cohorts" / name, mmap=False) for name in ("source", "target"))
        schedule = NoiseSchedule.cosine()
        results.append({"amplitude_normalization": normalization,
                        "separability": separability(source, target, schedule, args.steps, args.seeds[0]),
                        "source_only_utility": source_only_utility(source, target, args.seeds)})
        print(json.dumps(json_ready(results[-1]), indent=1), flush=True)
    report = {"benchmark": "domain_separability", "config": args.config, "seeds": args.seeds,
              "seconds": round(time.perf_counter() - started, 1), "results": results}
    write_result(args.out.with_suffix(".json"), json_ready(report))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: list[dict]) -> str:
    header = ("| amplitude normalization | c AUROC (held-out) | c log-loss | c' AUROC by t band (0 → T) | t_min | "
              "source-only macro-F1 [95% seeds] | S sens. | V sens. |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in results:
        sep, utility = row["separability"], row["source_only_utility"]
        bands = " ".join(f"{band['auroc']:.2f}" for band in sep["time_bands"])
        f1 = utility["macro_f1"]
        lines.append(f"| {row['amplitude_normalization']} | {sep['clean']['auroc']:.3f} | {sep['clean']['log_loss']:.3f} "
                     f"| {bands} | {sep['t_min']} | {f1['mean']:.3f} [{f1['low']:.3f}, {f1['high']:.3f}] | "
                     f"{utility['sensitivity_S']['mean']:.3f} | {utility['sensitivity_V']['mean']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
