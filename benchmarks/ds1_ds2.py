"""MIT-BIH DS1 → DS2 (de Chazal et al. 2004): the downstream classifier against published inter-patient figures.

    python benchmarks/ds1_ds2.py [--spans 1 3 4 6 10] [--seeds 0 1 2 3 4] [--classifier ecg-tgdp] \
        [--config mitdb_ds1_ds2] [--data-root DIR] [--set key=value ...] [--out benchmarks/results/ds1_ds2]

The database (mitdb/) is read from --data-root, else $ECG_TGDP_DATA_ROOT, else the folder `ecg-tgdp fetch`
downloads to; the development checkout uses `--data-root ../shared/physionet` (or sets ECG_TGDP_DATA_ROOT
to it).

For each window span: ingest the recipe with `windows.window_s` = span (the beat at the centre),
train the downstream classifier on DS1's training patients (early stopped on DS1's validation
patients), and test it on every DS2 beat, once per seed. Reports per span the seed mean and
Student-t 95% interval of macro-F1 and of sensitivity (Se) and positive predictive value (+P) of
S, V and F, the S sensitivity without record 232 (three quarters of DS2's S beats, an atrial
rhythm whose S beats are premature only against the record's mean RR, which no window shows),
and per record the S sensitivity and the beats wrongly called S in the JSON. Writes
benchmarks/results/ds1_ds2.{json,md}; the run folders `runs/ds1_ds2_<span>s/` keep the cohorts, so a
rerun only retrains the classifiers.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from harness import RESULTS, add_data_root, data_root, recipe, write_result

from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.evaluation.classifier_inputs import WindowGeometry
from ecg_tgdp.evaluation.downstream import BUILTIN, load_downstream
from ecg_tgdp.evaluation.report import json_ready
from ecg_tgdp.evaluation.utility import class_indices, classification_metrics, seed_interval
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.stages import ingest_stage

# Gross statistics as published (%), inter-patient DS1 → DS2 (issue 11's table).
PUBLISHED = (
    ("de Chazal et al. 2004 (linear discriminants, RR + morphology)", 76, 38, 77, 82),
    ("Llamedo & Martínez 2011", 77, 39, 81, 87),
    ("Zhang et al. 2014", 79, 36, 86, 93),
    ("Huang et al. 2014 (SVM ensemble + RR)", 91, 42, 94, 91),
)
REPORTED = ("macro_f1", "sensitivity_S", "ppv_S", "sensitivity_V", "ppv_V", "sensitivity_F", "ppv_F")
ATRIAL_RHYTHM_RECORD = "232"


def run_span(config_path: Path, span: float, seeds: list[int], classifier: str, overrides: list[str]) -> dict:
    """Ingest with `span`-second windows, then train and test the classifier once per seed."""
    config = load_config(config_path, [f"windows.window_s={span}", *overrides])
    run = RunDir.open(config, Path(f"runs/ds1_ds2_{span:g}s"))
    ingest_stage(config, run)
    source, target = (read_cohort(run.path / "cohorts" / name, mmap=False) for name in ("source", "target"))
    classes = target.classes
    train, val, test = source.split("train"), source.split("val"), target.split("test")
    settings = config.evaluation
    downstream = load_downstream(classifier, WindowGeometry.of(target.info), len(classes),
                                 settings.classifier_training)
    started = time.perf_counter()
    x, val_x, test_x = (downstream.prepare(part.windows) for part in (train, val, test))
    y, val_y, test_y = (class_indices(part.meta["label"], classes, name)
                        for part, name in ((train, "DS1 train"), (val, "DS1 val"), (test, "DS2")))
    prepare_seconds = time.perf_counter() - started
    records = test.meta["record"].astype(str).to_numpy()
    per_seed, per_record_s, called_s = {}, {}, {}
    for seed in seeds:
        probabilities = downstream.fit(x, y, val_x, val_y, seed)(test_x)
        metrics = classification_metrics(test_y, probabilities, classes)
        rest = records != ATRIAL_RHYTHM_RECORD
        metrics["sensitivity_S_without_232"] = classification_metrics(test_y[rest], probabilities[rest],
                                                                       classes)["sensitivity_S"]
        per_seed[seed] = metrics
        predicted, s = probabilities.argmax(1), classes.index("S")
        per_record_s[seed] = {record: float((predicted[(records == record) & (test_y == s)] == s).mean())
                              for record in np.unique(records[test_y == s])}
        wrongly_s = (predicted == s) & (test_y != s)
        called_s[seed] = {record: int(wrongly_s[records == record].sum()) for record in np.unique(records)}
    columns = [*REPORTED, "sensitivity_S_without_232"]
    return {
        "span_s": span, "classifier": downstream.name, "run_dir": str(run.path),
        "counts": {"DS1 train": target_counts(y, classes), "DS1 val": target_counts(val_y, classes),
                   "DS2": target_counts(test_y, classes)},
        "summary": {m: dict(zip(("mean", "low", "high"), seed_interval([per_seed[s][m] for s in seeds])))
                    for m in columns},
        "per_seed": per_seed, "per_record_s_sensitivity": per_record_s, "per_record_wrongly_called_s": called_s,
        "seconds": {"prepare_inputs": round(prepare_seconds, 1),
                    "train_and_test_all_seeds": round(time.perf_counter() - started - prepare_seconds, 1)},
    }


def target_counts(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    return {name: int((labels == k).sum()) for k, name in enumerate(classes)}


def markdown(results: list[dict]) -> str:
    """Published rows, then one row per span: seed means in %, macro-F1 with its interval."""
    lines = ["| method | window | macro-F1 [95% seeds] | S Se | S +P | V Se | V +P | F Se | F +P | S Se w/o 232 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s_se, s_pp, v_se, v_pp in PUBLISHED:
        lines.append(f"| {name} | record | | {s_se} | {s_pp} | {v_se} | {v_pp} | | | |")
    for result in results:
        summary = result["summary"]
        f1 = summary["macro_f1"]
        cells = [f"{f1['mean']:.3f} [{f1['low']:.3f}, {f1['high']:.3f}]"]
        cells += [f"{100 * summary[m]['mean']:.0f}" for m in [*REPORTED[1:], "sensitivity_S_without_232"]]
        label = "ecg-tgdp classifier" if result["classifier"] == BUILTIN else result["classifier"]
        lines.append(f"| {label} | {result['span_s']:g} s | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mitdb_ds1_ds2", help="a shipped recipe's name or a TOML path")
    parser.add_argument("--spans", type=float, nargs="+", default=[1.0, 3.0, 4.0, 6.0, 10.0],
                        help="window lengths in seconds, the beat at the centre")
    parser.add_argument("--seeds", type=int, nargs="+", help="classifier seeds (default: evaluation.seeds)")
    parser.add_argument("--classifier", default=BUILTIN, help="'ecg-tgdp' or 'package.module:callable'")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    add_data_root(parser)
    parser.add_argument("--out", type=Path, default=RESULTS / "ds1_ds2")
    args = parser.parse_args()
    args.overrides = [f"data_root={str(data_root(args.data_root, 'mitdb'))!r}", *args.overrides]
    config_path = recipe(args.config)
    seeds = args.seeds or load_config(config_path, args.overrides).evaluation.seeds
    started = time.perf_counter()
    results = [run_span(config_path, span, seeds, args.classifier, args.overrides) for span in args.spans]
    report = {"benchmark": "ds1_ds2", "config": args.config, "overrides": args.overrides, "seeds": seeds,
              "published": [dict(zip(("method", "S_se", "S_ppv", "V_se", "V_ppv"), row)) for row in PUBLISHED],
              "seconds": round(time.perf_counter() - started, 1), "spans": results}
    write_result(args.out.with_suffix(".json"), json_ready(report))
    table = markdown(results)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
