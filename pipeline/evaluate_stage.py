"""The `evaluate` stage: `evaluation.protocol.evaluate` over every method's samples, and the report.

Reads cohorts/source, cohorts/target and samples/<method> (or folders given with `--samples`), and writes
report/{metrics.json, utility.csv, fidelity.csv, privacy.csv, report.html, figures/}.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ecg_tgdp.data.store import Cohort, read_cohort
from ecg_tgdp.evaluation.protocol import evaluate
from ecg_tgdp.evaluation.report import write_report
from ecg_tgdp.evaluation.settings import BUILTIN_CLASSIFIER
from ecg_tgdp.evaluation.utility import class_indices
from ecg_tgdp.pipeline.config import Config, ConfigError
from ecg_tgdp.pipeline.runtime import resolve_device
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files

SUMMARY_METRICS = ("macro_f1", "balanced_accuracy", "macro_auroc")


def evaluate_stage(config: Config, run: RunDir, sample_dirs: list[Path] | None = None, force: bool = False) -> Path:
    """Evaluate the samples of `transfer.methods` (or `sample_dirs`); return the path of report.html."""
    from ecg_tgdp.pipeline.sample_stage import sweep_points, sweep_sample_name

    started = time.time()
    cohort_dirs = [run.path / "cohorts" / name for name in ("source", "target")]
    sweep_dirs = {} if sample_dirs else {point: run.path / "samples" / sweep_sample_name(*point)
                                         for point in sweep_points(config)}
    sample_dirs = sample_dirs or [run.path / "samples" / method for method in config.transfer.methods]
    report = run.path / "report"
    fingerprint = _fingerprint(config, cohort_dirs + sample_dirs + list(sweep_dirs.values()))
    if not force and run.is_current("evaluate", fingerprint, [report]):
        print(f"evaluate: up to date ({report / 'report.html'})")
        _print_summary(pd.read_csv(report / "utility.csv"))
        return report / "report.html"
    run.begin_stage("evaluate")
    source, target = (read_cohort(d, mmap=False) for d in cohort_dirs)
    synthetic = {_method_name(d): _checked_samples(d, target) for d in sample_dirs}
    diagnostics = {method: json.loads(path.read_text()) for method in synthetic
                   if (path := run.path / "models" / method / "diagnostics.json").is_file()}
    transfer = config.transfer.settings()
    try:
        evaluation = evaluate(config.evaluation, source, target, synthetic, seed=config.seed,
                              transfer_scales={m: transfer.transfer_scale(m) for m in config.transfer.methods},
                              device=resolve_device(config.device), ratio_diagnostics=diagnostics,
                              resampled={point: _checked_samples(folder, target) for point, folder in sweep_dirs.items()})
    except ValueError as error:
        raise ConfigError(str(error)) from None
    write_report(report, title=f"ecg-tgdp evaluation: {config.name}", **evaluation)
    run.record_stage("evaluate", fingerprint=fingerprint, started=started, outputs=[report])
    _print_summary(evaluation["tables"]["utility"])
    print(f"evaluate: report → {report / 'report.html'} ({time.time() - started:.0f} s)")
    return report / "report.html"


def _fingerprint(config: Config, folders: list[Path]) -> str:
    """The settings, every file of the cohorts and sample sets read, and a user classifier's source file."""
    key = json.dumps({"seed": config.seed, "evaluation": asdict(config.evaluation)}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16] + fingerprint_files(folders + _classifier_files(config))


def _classifier_files(config: Config) -> list[Path]:
    """The module file of a user's classifier (`package.module:callable`): editing it changes the evaluation."""
    if config.evaluation.classifier == BUILTIN_CLASSIFIER:
        return []
    module = config.evaluation.classifier.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    return [Path(spec.origin)] if spec is not None and spec.origin and Path(spec.origin).is_file() else []


def _method_name(folder: Path) -> str:
    info = json.loads((folder / "cohort.json").read_text()) if (folder / "cohort.json").is_file() else {}
    return str(info.get("name") or folder.name)


def _checked_samples(folder: Path, target: Cohort) -> Cohort:
    """A samples folder whose windows have the target's geometry and classes."""
    samples = read_cohort(folder, mmap=False)
    for key in ("fs_hz", "window_s", "anchor_s", "leads"):
        if samples.info.get(key) != target.info.get(key):
            raise ConfigError(f"{folder}: samples have {key}={samples.info.get(key)!r}, the target cohort "
                              f"{target.info.get(key)!r}")
    class_indices(samples.meta["label"], target.classes, str(folder))  # fails on a class the target lacks
    return samples


def _print_summary(utility: pd.DataFrame) -> None:
    """The utility table in a few columns: metric mean [seed interval]."""
    lines = []
    for _, row in utility.iterrows():
        cells = [f"{row[m]:.3f} [{row[m + '_seed_low']:.3f}, {row[m + '_seed_high']:.3f}]" for m in SUMMARY_METRICS]
        lines.append(f"  {row['arm']:<36} " + "  ".join(cells))
    print("evaluate: downstream utility on held-out target patients (mean [95% interval over seeds])")
    print(f"  {'arm':<36} " + "  ".join(f"{m:<22}" for m in SUMMARY_METRICS))
    print("\n".join(lines))
