"""`ecg-tgdp augment`: a user's small labeled ECG dataset plus synthetic windows transferred from a source model.

The source model (by default the shipped MIT-BIH model) fixes the classes, leads, rate and
window length. Its own samples stand in for the source cohort, so no source database is
needed: TGDP's domain classifier then learns q/p against what the source model actually
generates, which is the ratio its guidance has to correct (DESIGN §6). The user's windows
are split by patient into train (transfer) and val (early stopping); all of them are
written out, followed by the synthetic ones, in a format `ecg-tgdp ingest` reads back.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from data.atomic import write_json
from data.export import export_windows, write_synthetic_cohort
from data.ingest import class_counts, list_wfdb_records
from data.splits import split_patients
from data.store import write_cohort
from models.generate import DiffusionModel
from pipeline.cohorts import read_cohort_windows
from pipeline.config import Config, ConfigError, config_from_dict
from pipeline.diffusion_stages import resolve_device
from pipeline.rundir import RunDir
from pipeline.shipped import SHIPPED_SOURCE_MODEL
from pipeline.transfer_stage import transfer_stage

OUTPUT_NAME = "augmented"


def augment(
    target: Path,
    out: Path,
    *,
    source_model: Path = SHIPPED_SOURCE_MODEL,
    method: str = "tgdp",
    n_per_class: int = 500,
    fmt: str = "npz",
    labels_csv: str | None = None,
    leads: list[str] | None = None,
    fs_in_hz: float | None = None,
    resample: bool = False,
    min_per_class: int = 20,
    source_per_class: int = 500,
    sampling_steps: int = 25,
    seed: int = 0,
    device: str = "auto",
    work_dir: Path | None = None,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Transfer `source_model` to the windows at `target`, write real + synthetic windows to `out`; return the summary."""
    started = time.time()
    target, out = Path(target).resolve(), Path(out)
    if not target.exists():
        raise ConfigError(f"{target}: no such file or folder")
    model = DiffusionModel.load(source_model, "cpu")
    config = _config(target, model, method=method, labels_csv=labels_csv, leads=leads, fs_in_hz=fs_in_hz, seed=seed,
                     device=device, overrides=overrides)
    _check_rate(target, config, model.extra["fs_hz"], resample)
    run = RunDir.open(config, work_dir or out.parent / f".{out.name}.work")
    windows, meta, result = read_cohort_windows(config, config.target, target, "augment: read target")
    dropped = dict(result.dropped)
    _check_class_counts(target, meta, model.classes, min_per_class)
    meta.insert(meta.columns.get_loc("label_index") + 1, "split", _split(meta, seed))
    info = {"name": "target", "database": str(target), "format": config.target.format, "classes": model.classes,
            "leads": config.target.leads,
            **{key: model.extra.get(key) for key in ("fs_hz", "window_s", "anchor_s", "normalization")}}
    write_cohort(run.path / "cohorts" / "target", windows, meta, {**info, "counts": class_counts(meta, model.classes)})
    _write_source_cohort(run, source_model, model, source_per_class, sampling_steps, seed)
    model_file = transfer_stage(config, run, [method])[method]

    transferred = DiffusionModel.load(model_file, resolve_device(device))
    labels = np.repeat(np.arange(len(model.classes)), n_per_class)
    synthetic = transferred.sample_mv(labels, steps=sampling_steps, seed=seed, progress=True)
    names = np.asarray(model.classes)[labels]
    written = export_windows(
        out, np.concatenate([windows, synthetic]), np.concatenate([meta["label"].to_numpy(str), names]),
        fs_hz=model.extra["fs_hz"], leads=config.target.leads, fmt=fmt, name=OUTPUT_NAME,
        patients=np.concatenate([meta["patient"].to_numpy(str), np.full(len(names), f"synthetic_{method}")]),
        synthetic=np.r_[np.zeros(len(meta), bool), np.ones(len(names), bool)],
    )
    summary = {
        "target": str(target), "source_model": str(source_model), "method": method, "output": str(written),
        "format": fmt, "synthetic_patient": f"synthetic_{method}",
        "real": {cls: int((meta["label"] == cls).sum()) for cls in model.classes},
        "synthetic": {cls: n_per_class for cls in model.classes},
        "real_split": {split: int(n) for split, n in meta["split"].value_counts().items()},
        "real_dropped": dropped, "sampler": {"method": "dpmpp_sde", "steps": sampling_steps, "seed": seed},
        "work_dir": str(run.path), "seconds": round(time.time() - started, 1),
    }
    write_json(out / "augment.json", summary)
    _print_summary(summary)
    return summary


def _config(target: Path, model: DiffusionModel, *, method: str, labels_csv: str | None, leads: list[str] | None,
            fs_in_hz: float | None, seed: int, device: str, overrides: tuple[str, ...]) -> Config:
    """A run config whose target is the user's data (its own lead names) and whose geometry is the source model's."""
    leads = list(leads or model.extra["leads"])
    if len(leads) != len(model.extra["leads"]):
        raise ConfigError(f"--leads names {len(leads)} leads {leads}; the source model has "
                          f"{len(model.extra['leads'])}: {model.extra['leads']}")
    cohort = {"format": "arrays" if target.is_file() else "wfdb", "database": str(target),
              "leads": leads, "labels_csv": labels_csv, "fs_in_hz": fs_in_hz}
    raw = {
        "name": f"augment_{target.stem}", "seed": seed, "device": device, "data_root": str(target.parent),
        "windows": {"fs_hz": model.extra["fs_hz"], "window_s": model.extra["window_s"],
                    "anchor_s": model.extra.get("anchor_s"), "classes": model.classes},
        # not read: the source cohort is sampled from the source model (see _write_source_cohort)
        "source": {"format": "arrays", "database": "source model samples"},
        "target": cohort,
        "transfer": {"methods": [method]},
    }
    return config_from_dict(raw, overrides, "augment settings")


def _check_rate(target: Path, config: Config, model_fs_hz: float, resample: bool) -> None:
    """Refuse records at another rate than the source model's unless resampling was asked for."""
    if target.is_file():
        rates = {config.target.fs_in_hz} if config.target.fs_in_hz else _npz_rate(target)
    else:
        rates = {wfdb.rdheader(str(path)).fs for path in list_wfdb_records(target, None, [])}
    other = sorted(rate for rate in rates if rate is not None and abs(rate - model_fs_hz) > 1e-6)
    if other and not resample:
        raise ConfigError(f"{target}: recorded at {', '.join(f'{r:g}' for r in other)} Hz, the source model at "
                          f"{model_fs_hz:g} Hz; pass --resample to resample to {model_fs_hz:g} Hz")


def _npz_rate(path: Path) -> set[float | None]:
    if path.suffix.lower() != ".npz":
        raise ConfigError(f"{path}: a CSV carries no sampling rate; give --fs-in-hz")
    with np.load(path, allow_pickle=False) as npz:
        return {float(npz["fs_hz"])} if "fs_hz" in npz.files else {None}


def _check_class_counts(target: Path, meta: pd.DataFrame, classes: list[str], min_per_class: int) -> None:
    counts = meta["label"].value_counts()
    few = {cls: int(counts.get(cls, 0)) for cls in classes if counts.get(cls, 0) < min_per_class}
    if few:
        listed = ", ".join(f"{cls} {n}" for cls, n in few.items())
        raise ConfigError(f"{target}: too few windows of class {listed} (need {min_per_class} of each of "
                          f"{', '.join(classes)}); add more or lower --min-per-class")


def _split(meta: pd.DataFrame, seed: int) -> np.ndarray:
    """train/val by patient (about 80/20); with fewer than 3 patients, by window, stratified by class."""
    if meta["patient"].nunique() >= 3:
        assignment = split_patients(meta["patient"].tolist(), meta["label"].tolist(), fractions=(0.8, 0.1, 0.1),
                                    seed=seed)
        # augment tests nothing itself, so the patients a split would keep for testing validate too
        return meta["patient"].map(assignment).replace({"test": "val"}).to_numpy().astype(object)
    print("augment: fewer than 3 patients, so validation windows come from the same patients as training ones")
    rng = np.random.default_rng(seed)
    splits = np.full(len(meta), "train", dtype=object)
    for rows in meta.groupby("label").indices.values():
        splits[rng.permutation(rows)[: max(1, len(rows) // 5)]] = "val"
    return splits


def _write_source_cohort(run: RunDir, source_model: Path, model: DiffusionModel, per_class: int, steps: int,
                         seed: int) -> None:
    """The source model's checkpoint and its own samples, where the transfer stage expects the source."""
    (run.path / "models" / "source").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_model, run.path / "models" / "source" / "model.pt")
    folder = run.path / "cohorts" / "source"
    marker = {"source_model": str(source_model), "per_class": per_class, "steps": steps, "seed": seed}
    if (folder / "cohort.json").is_file() and json.loads((folder / "cohort.json").read_text()).get("sampled") == marker:
        return
    labels = np.repeat(np.arange(len(model.classes)), per_class)
    windows = model.sample_mv(labels, steps=steps, seed=seed + 1, progress=True)
    description = {key: model.extra.get(key) for key in ("fs_hz", "window_s", "anchor_s", "leads", "normalization")}
    write_synthetic_cohort(folder, windows, labels, classes=model.classes,
                           description={**description, "sampled": marker}, method="source", split="train")


def _print_summary(summary: dict) -> None:
    real = " · ".join(f"{cls} {n}" for cls, n in summary["real"].items())
    synthetic = " · ".join(f"{cls} {n}" for cls, n in summary["synthetic"].items())
    print(f"augment: real windows {real}; synthetic ({summary['method']}) {synthetic}")
    print(f"augment: → {summary['output']} (synthetic windows belong to patient {summary['synthetic_patient']!r}; "
          f"summary in augment.json; {summary['seconds']:.0f} s)")
