"""augment's plausibility screen: does it keep real ECGs of other patients and reject what is not an ECG?

    python benchmarks/plausibility_screen.py [--recipe mitdb_to_svdb] [--run-dir runs/mitdb_to_svdb] \
        [--checkpoint mitdb_nsv_4s_v3] [--pairs 40] [--out benchmarks/results/plausibility_screen]

Ingests the recipe's cohorts (MIT-BIH and SVDB, cached in the run folder) and, per class N, S, V:

- the spread of each screen feature (`data.plausibility.FEATURES`) between patients (SD of the per-patient
  medians, patients with at least 20 windows) and within them (median of the per-patient robust SDs), in
  each database: the between-patient spread of MIT-BIH (median over the classes) is
  `BETWEEN_PATIENT_LOG_SD`;
- a user's target is a few patients: for `--pairs` random pairs of patients of one database, a screen fit
  on the pair's windows of the class, and the share it keeps of the real windows of the database's other
  patients, of the other database's real windows, of the shipped model's samples of the class (default
  sampler, as augment draws them) and of white-noise windows as loud as the class's median real window.
  Each for the screen as augment uses it and for the same features with the real windows' own spread
  only (no between-patient term).

Writes OUT.json and OUT.md. About 35 s on 2 cores once the cohorts are ingested.
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import median_abs_deviation

from harness import RESULTS, add_data_root, data_root, machine, recipe, write_result

from ecg_tgdp.data.plausibility import (
    BETWEEN_PATIENT_LOG_SD,
    FEATURES,
    MIN_CLASS_WINDOWS,
    plausible_range,
    window_features,
)
from ecg_tgdp.data.store import Cohort, read_cohort
from ecg_tgdp.evaluation.report import json_ready
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.pipeline import stages
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.shipped import pretrained_path

CLASSES = ("N", "S", "V")
WINDOWS_PER_CLASS = 6000  # real windows read per class and database at most
SAMPLES_PER_CLASS = 150
SCREENS = {"augment's screen": BETWEEN_PATIENT_LOG_SD, "own spread only": (0.0,) * len(FEATURES)}  # between patients


def class_windows(cohort: Cohort, cls: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to WINDOWS_PER_CLASS windows [N, leads, T] of class `cls` and their patients [N]."""
    index = np.flatnonzero(cohort.meta["label"].to_numpy() == cls)
    index = np.sort(rng.choice(index, min(WINDOWS_PER_CLASS, len(index)), replace=False))
    return np.asarray(cohort.windows[index], dtype=np.float64), cohort.meta["patient"].to_numpy()[index]


def spread_by_patient(features: np.ndarray, patients: np.ndarray) -> dict[str, dict[str, float]]:
    """{feature: {between, within}}: SD of per-patient medians and median per-patient robust SD (first lead)."""
    frame = pd.DataFrame(features[:, :, 0], columns=FEATURES).assign(patient=patients)
    groups = frame.groupby("patient").filter(lambda g: len(g) >= MIN_CLASS_WINDOWS).groupby("patient")
    medians = groups.median()
    robust_sd = groups.agg(lambda x: median_abs_deviation(x, scale="normal"))
    return {name: {"between": float(medians[name].std()), "within": float(robust_sd[name].median()),
                   "patients": len(medians)} for name in FEATURES}


def kept_shares(windows: np.ndarray, features: np.ndarray, patients: np.ndarray, others: dict[str, np.ndarray],
                beat: int, fs_hz: float, pairs: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """{screen: {set: mean share kept}} over `pairs` screens, each fit on two patients' windows (`features`: their
    `window_features`); "same database" is the other patients' windows, `others` are the other sets' features."""
    names = [p for p in np.unique(patients) if (patients == p).sum() >= MIN_CLASS_WINDOWS]
    chosen = list(itertools.combinations(names, 2))
    chosen = [chosen[i] for i in rng.permutation(len(chosen))[:pairs]]
    shares = {screen: {key: [] for key in ("same database", *others)} for screen in SCREENS}
    for pair in chosen:
        fit = np.isin(patients, pair)
        for screen, between in SCREENS.items():
            bounds = plausible_range(windows[fit], beat, fs_hz, between_patients=between)
            shares[screen]["same database"].append(bounds.covers(features[~fit]).mean())
            for key, other in others.items():
                shares[screen][key].append(bounds.covers(other).mean())
    return {screen: {key: float(np.mean(values)) for key, values in sets.items()} for screen, sets in shares.items()}


def markdown(result: dict) -> str:
    lines = ["Spread of each feature between patients (SD of per-patient medians) and within them (median "
             "per-patient robust SD):", "", "| database | class | " + " | ".join(FEATURES) + " |",
             "|---|---|" + "---|" * len(FEATURES)]
    for database, by_class in result["spread"].items():
        for cls, spread in by_class.items():
            cells = [f"{spread[f]['between']:.2f} / {spread[f]['within']:.2f}" for f in FEATURES]
            lines.append(f"| {database} | {cls} | " + " | ".join(cells) + " |")
    lines += ["", f"Share kept by a screen fit on two patients' windows of the class (mean over "
              f"{result['pairs']} pairs):", "",
              "| fit on | class | screen | other patients, same database | other database | shipped model's "
              "samples | white noise |", "|---|---|---|---|---|---|---|"]
    for database, by_class in result["kept"].items():
        for cls, by_screen in by_class.items():
            for screen, kept in by_screen.items():
                cells = [f"{kept[key]:.2f}" for key in ("same database", "other database", "samples", "noise")]
                lines.append(f"| {database} | {cls} | {screen} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="mitdb_to_svdb", help="the recipe whose cohorts are read")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/mitdb_to_svdb"), help="where they are ingested")
    parser.add_argument("--checkpoint", default="mitdb_nsv_4s_v3", help="a shipped model's name or a checkpoint path")
    add_data_root(parser)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "plausibility_screen")
    args = parser.parse_args()
    started = time.perf_counter()

    config = load_config(recipe(args.recipe), [f"data_root={str(data_root(args.data_root, 'mitdb', 'svdb'))!r}"])
    run = RunDir.open(config, args.run_dir)
    stages.ingest_stage(config, run)
    cohorts = {"MIT-BIH": read_cohort(run.path / "cohorts" / "source"),
               "SVDB": read_cohort(run.path / "cohorts" / "target")}
    model = DiffusionModel.load(pretrained_path(args.checkpoint))
    if model.card.anchor_s is None:
        parser.error(f"{args.checkpoint} makes record crops: the screen's beat windows need a model of beats")
    fs_hz, beat = model.card.fs_hz, round(model.card.anchor_s * model.card.fs_hz)
    labels = np.repeat(np.arange(len(model.classes)), SAMPLES_PER_CLASS)
    samples = model.sample_mv(labels, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    real = {(name, cls): class_windows(cohort, cls, rng) for name, cohort in cohorts.items() for cls in CLASSES}
    spread, kept = {name: {} for name in cohorts}, {name: {} for name in cohorts}
    for (name, cls), (windows, patients) in real.items():
        features = window_features(windows, beat, fs_hz)
        spread[name][cls] = spread_by_patient(features, patients)
        other = real[(next(n for n in cohorts if n != name), cls)][0]
        loudness = np.median(np.ptp(windows, axis=-1))
        noise = rng.normal(0.0, loudness / 6, (SAMPLES_PER_CLASS, *windows.shape[1:]))
        sets = {"other database": other, "samples": samples[labels == model.classes.index(cls)], "noise": noise}
        sets = {key: window_features(windows_of_set, beat, fs_hz) for key, windows_of_set in sets.items()}
        kept[name][cls] = kept_shares(windows, features, patients, sets, beat, fs_hz, args.pairs, rng)
    between = {f: float(np.median([spread["MIT-BIH"][cls][f]["between"] for cls in CLASSES])) for f in FEATURES}
    result = json_ready({"benchmark": "plausibility_screen", "checkpoint": str(args.checkpoint), "pairs": args.pairs,
                         "features": FEATURES, "spread": spread, "mitdb_between_patient_sd": between, "kept": kept,
                         "seconds": time.perf_counter() - started, "machine": machine()})
    write_result(args.out.with_suffix(".json"), result)
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    print("MIT-BIH between-patient SD (median over classes): " + ", ".join(f"{f} {v:.2f}" for f, v in between.items()))


if __name__ == "__main__":
    main()
