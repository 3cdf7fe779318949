"""Generator quality: a source model's windows against held-out patients, read against the real-data floor.

    python benchmarks/generator_quality.py [--checkpoint mitdb_nsv_4s_v3] [--recipe mitdb_to_svdb] \
        [--run-dir runs/mitdb_to_svdb] [--n-per-class 300] [--out benchmarks/results/generator_quality]

Ingests the recipe's source cohort (cached in the run folder), then per class N, S, V scores
`--n-per-class` windows of each sampler setting, and as many real windows of the training patients (the
floor, which no generator of those patients can beat), against windows of the held-out patients (the
cohort's val and test splits): the statistics of `ecg_tgdp.evaluation.generator_quality`. Sampler settings:
SDE-DPM-Solver++(2M) and DPM-Solver++(2M) (deterministic), 25 steps, each with the model card's x̂_0 clip
(when it has one) and without. Writes OUT.json (every figure, the criteria, sampling speed, the machine),
OUT.md (the README and model-card tables) and OUT_strips.png (windows on ECG paper, not selected). About
6 minutes on 2 cores with the defaults.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from harness import RESULTS, add_data_root, data_root, recipe, write_result

from ecg_tgdp.evaluation.ecg_paper import ecg_strips
from ecg_tgdp.evaluation.generator_quality import (
    LabeledWindows,
    QualityReference,
    check_criteria,
    criteria,
    reference_from_cohort,
    score_windows,
)
from ecg_tgdp.evaluation.report import json_ready
from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.pipeline import stages
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.shipped import pretrained_path

SAMPLERS = {  # name → (sampler, x̂_0 clipped with the card's level)
    "sde": ("dpmpp_sde", True),
    "sde_unclipped": ("dpmpp_sde", False),
    "ode": ("dpmpp", True),
    "ode_unclipped": ("dpmpp", False),
}
SAMPLER_LABELS = {"sde": "SDE-DPM-Solver++ 25, x̂₀ clipped", "sde_unclipped": "SDE-DPM-Solver++ 25, unclipped",
                  "ode": "DPM-Solver++ 25 (ODE), x̂₀ clipped", "ode_unclipped": "DPM-Solver++ 25 (ODE), unclipped"}
TABLE_METRICS = {  # metric → (column title, digits)
    "discriminator_auroc": ("AUROC vs held-out", 3), "discriminator_auroc_full_band": ("AUROC vs held-out, full band", 3),
    "discriminator_auroc_train": ("AUROC vs training pts", 3),
    "frechet": ("Fréchet", 2), "precision": ("precision", 2), "recall": ("recall", 2), "density": ("density", 2),
    "coverage": ("coverage", 2), "excursion_share": ("excursions", 3), "r_peaks": ("R peaks", 2),
    "rr_cv": ("RR CV", 3), "psd_l1": ("PSD L1", 3), "assigned_share": ("assigned", 2),
    "wasserstein_log_rr_ratio": ("rhythm W1", 3), "tstr_f1": ("TSTR F1", 3),
}


def sample_sets(model: DiffusionModel, names: list[str], n_per_class: int, seed: int) -> tuple[dict, dict]:
    """{sampler name: LabeledWindows} and {sampler name: windows per second}; clipped settings only when the card
    has a clip level."""
    labels = np.repeat(np.arange(len(model.classes)), n_per_class)
    sets, speed = {}, {}
    for name in names:
        sampler, clipped = SAMPLERS[name]
        if clipped and model.card.clip_x0 is None:
            continue
        started = time.perf_counter()
        windows = model.sample_mv(labels, sampler=sampler, seed=seed, clip=clipped, progress=True)
        speed[name] = round(len(labels) / (time.perf_counter() - started), 1)
        sets[name] = LabeledWindows(windows, labels)
    return sets, speed


def markdown(result: dict) -> str:
    """The per-class table (floor first) and the criteria table."""
    classes = result["classes"]
    header = "| windows | class | " + " | ".join(title for title, _ in TABLE_METRICS.values()) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    rows = {"real, training patients (floor)": result["floor"],
            **{SAMPLER_LABELS[name]: scores for name, scores in result["samplers"].items()}}
    for label, scores in rows.items():
        for name in [*classes, "all"]:
            cells = [_cell(scores[name].get(metric), digits) for metric, (_, digits) in TABLE_METRICS.items()]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "| criterion | class | sampler | value | floor | bound | holds |", "|---|---|---|---|---|---|---|"]
    for row in result["criteria"]:
        lines.append(f"| {row['criterion']} | {row['class']} | {row['sampler']} | {_cell(row['value'], 3)} | "
                     f"{_cell(row['floor'], 3)} | {_cell(row['bound'], 3)} | {'yes' if row['holds'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def _cell(value, digits: int) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def strips_figure(reference: QualityReference, windows: LabeledWindows, label: str, path: Path, per_set: int = 3):
    """The first `per_set` held-out real and generated windows of each class on ECG paper."""
    real = {name: reference.held_out.of_class(k) for k, name in enumerate(reference.classes)}
    generated = {name: windows.of_class(k) for k, name in enumerate(reference.classes)}
    anchor_s = reference.geometry.anchor / reference.geometry.fs_hz
    figure = ecg_strips(real, {label: generated}, reference.geometry.fs_hz, {label: "tab:red"}, anchor_s, per_set)
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mitdb_nsv_4s_v3", help="a shipped model's name or a checkpoint path")
    parser.add_argument("--recipe", default="mitdb_to_svdb", help="the recipe whose source cohort the model learned")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/mitdb_to_svdb"), help="where the cohort is ingested")
    add_data_root(parser)
    parser.add_argument("--n-per-class", type=int, default=300)
    parser.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--tstr-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "generator_quality",
                        help="path stem of the .json, .md and _strips.png it writes")
    args = parser.parse_args()
    started = time.perf_counter()

    config = load_config(recipe(args.recipe), [f"data_root={str(data_root(args.data_root, 'mitdb'))!r}"])
    run = RunDir.open(config, args.run_dir)
    stages.ingest_stage(config, run)
    cohort = read_cohort(run.path / "cohorts" / "source")
    checkpoint = pretrained_path(args.checkpoint)
    model = DiffusionModel.load(checkpoint)
    reference = reference_from_cohort(cohort, args.n_per_class, seed=args.seed)
    floor = score_windows(reference.floor, reference, tstr_seeds=args.tstr_seeds, seed=args.seed)
    sets, speed = sample_sets(model, args.samplers, args.n_per_class, args.seed)
    scored = {name: score_windows(windows, reference, tstr_seeds=args.tstr_seeds, seed=args.seed)
              for name, windows in sets.items()}
    default = "sde" if "sde" in scored else "sde_unclipped"
    rules = criteria(default=default, deterministic="ode_unclipped", default_unclipped="sde_unclipped")
    rules = [rule for rule in rules if rule.sampler in scored]
    result = json_ready({
        "benchmark": "generator_quality", "checkpoint": str(args.checkpoint), "classes": reference.classes,
        "n_per_class": args.n_per_class, "held_out_patients": sorted(set(cohort.split("val", "test").meta["patient"])),
        "tstr_seeds": args.tstr_seeds, "clip_x0": model.card.clip_x0, "floor": floor, "samplers": scored,
        "sampler_labels": {name: SAMPLER_LABELS[name] for name in scored}, "windows_per_second": speed,
        "criteria": check_criteria(floor, scored, rules, reference.classes),
        "seconds": round(time.perf_counter() - started, 1),
    })
    write_result(args.out.with_suffix(".json"), result)
    args.out.with_suffix(".md").write_text(markdown(result))
    strips_figure(reference, sets[default], SAMPLER_LABELS[default], args.out.with_name(args.out.name + "_strips.png"))
    failed = [f"{row['criterion']} ({row['class']})" for row in result["criteria"] if not row["holds"]]
    print(markdown(result))
    print(f"{len(result['criteria']) - len(failed)} of {len(result['criteria'])} criteria hold"
          + (f"; failing: {'; '.join(failed)}" if failed else "") + f" ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
