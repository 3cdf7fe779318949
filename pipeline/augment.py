"""`ecg-tgdp augment`: a user's small labeled ECG dataset plus synthetic windows transferred from a source model.

The source model (by default the shipped MIT-BIH model) fixes the classes, leads, rate and
window length. Its own samples stand in for the source cohort, so no source database is
needed: TGDP's domain classifier then learns q/p against what the source model actually
generates, which is the ratio its guidance has to correct (README: Transfer with TGDP). A
share of those samples is held out, as the user's windows are split by patient into train
(transfer) and val (early stopping), so TGDP's ratio diagnostics are held out and its
guidance fades where they say, exactly as in the `transfer` stage: both call
`models.transfer.fit_transfer`. All of the user's windows are
written out, followed by the synthetic ones, in a format `ecg-tgdp ingest` reads back as
written (already band-passed, same anchor, synthetic flag). By default the synthetic windows
top the rare classes up toward the majority class (`data.balance`), and those outside the
plausible range of the real windows of their class (size, slope, how busy, spikes away from the beat;
widened by the spread between patients) are screened out (`data.plausibility`).
Every step is cached in the work folder by content hash, so a second identical run reuses
the transfer and the samples.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_tgdp.data.arrays import array_file_rate
from ecg_tgdp.data.atomic import write_json
from ecg_tgdp.data.balance import DEFAULT_MAX_PER_CLASS, DEFAULT_TARGET_SHARE, top_up_counts
from ecg_tgdp.data.export import export_windows, write_synthetic_cohort
from ecg_tgdp.data.ingest import class_counts, list_wfdb_records
from ecg_tgdp.data.plausibility import plausible_by_class, screen_settings
from ecg_tgdp.data.records import RecordError
from ecg_tgdp.data.splits import split_patients
from ecg_tgdp.data.store import Cohort, cohort_files, read_cohort, write_cohort
from ecg_tgdp.data.wfdb_io import read_header
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.models.model_file import ModelFile
from ecg_tgdp.models.settings import DEFAULT_SAMPLER
from ecg_tgdp.models.transfer import fit_transfer
from ecg_tgdp.pipeline.augment_options import AugmentOptions
from ecg_tgdp.pipeline.cohorts import anchor_of, read_cohort_windows
from ecg_tgdp.pipeline.config import Config, ConfigError, config_from_dict
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files
from ecg_tgdp.pipeline.runtime import prepare_out_dir, resolve_device
from ecg_tgdp.pipeline.shipped import pretrained_path
from ecg_tgdp.pipeline.transfer_stage import (
    cohort_splits,
    ratio_summary_line,
    rhythm_of,
    transfer_outputs,
    write_transfer,
)

OUTPUT_NAME = "augmented"


def augment(target: Path, out: Path, options: AugmentOptions = AugmentOptions(),
            overrides: tuple[str, ...] = ()) -> dict:
    """Transfer the source model to the windows at `target`, write real + synthetic windows to `out`; return the
    summary. `overrides` are `--set` entries for the transfer's settings ([transfer.<method>] of a run config)."""
    started = time.time()
    target, out = Path(target).resolve(), Path(out)
    if not target.exists():
        raise ConfigError(f"{target}: no such file or folder")
    source_file = pretrained_path(options.source_model)
    model = DiffusionModel.load(source_file, "cpu")
    config = _config(target, model, options, overrides)
    _check_rate(target, config, model.card.fs_hz, options.resample)
    run = RunDir.open(config, options.work_dir or out.parent / f".{out.name}.work")
    windows, meta, result = read_cohort_windows(config, config.target, target, "augment: read target")
    _check_class_counts(target, meta, model.classes, options.min_per_class)
    meta.insert(meta.columns.get_loc("label_index") + 1, "split", _split(meta, options.seed))
    info = {"name": "target", "database": str(target), "format": config.target.format, "classes": model.classes,
            "leads": config.target.leads, "counts": class_counts(meta, model.classes),
            **{key: value for key, value in model.card.window_description().items() if key != "leads"}}
    write_cohort(run.path / "cohorts" / "target", windows, meta, info)
    source_cohort = _source_samples(run, source_file, model, options)
    model_file = _transferred(run, config, options, source_file, source_cohort)

    real = {cls: int((meta["label"] == cls).sum()) for cls in model.classes}
    plan = ({cls: options.n_per_class for cls in model.classes} if options.n_per_class is not None
            else top_up_counts(real, target_share=options.target_share, max_per_class=options.max_per_class))
    samples = _synthetic_samples(run, config, model_file, plan, windows, meta["label"].to_numpy(str), options)
    written = export_windows(
        out, np.concatenate([windows, samples.windows]),
        np.concatenate([meta["label"].to_numpy(str), samples.meta["label"].to_numpy(str)]),
        fs_hz=model.card.fs_hz, leads=config.target.leads, fmt=options.fmt, name=OUTPUT_NAME,
        patients=np.concatenate([meta["patient"].to_numpy(str), np.full(len(samples.meta), f"synthetic_{options.method}")]),
        synthetic=np.r_[meta["synthetic"].to_numpy(bool), np.ones(len(samples.meta), bool)],
        band_hz=config.windows.band_hz, anchor_s=anchor_of(config, config.target),
    )
    summary = _summary(target, out, source_file, written, options, real, plan, samples, meta, result, run, started,
                       model.classes)
    write_json(out / "augment.json", summary)
    _print_summary(summary)
    return summary


def _summary(target, out, source_file, written, options: AugmentOptions, real, plan, samples, meta, result, run,
             started, classes) -> dict:
    return {
        "target": str(target), "source_model": str(source_file), "method": options.method, "output": str(written),
        "format": options.fmt, "synthetic_patient": f"synthetic_{options.method}", "real": real,
        "balance": ({"mode": "fixed", "n_per_class": options.n_per_class} if options.n_per_class is not None
                    else {"mode": "top_up", "target_share": options.target_share,
                          "max_per_class": options.max_per_class}),
        "planned": plan,
        "synthetic": {cls: int((samples.meta["label"] == cls).sum()) for cls in classes},
        "screened_out": samples.info["screened_out"],
        "real_split": {split: int(n) for split, n in meta["split"].value_counts().items()},
        "real_dropped": dict(result.dropped),
        "sampler": {"method": DEFAULT_SAMPLER, "steps": options.sampling_steps, "seed": options.seed},
        "work_dir": str(run.path), "seconds": round(time.time() - started, 1),
    }


def _config(target: Path, model: DiffusionModel, options: AugmentOptions, overrides: tuple[str, ...]) -> Config:
    """A run config whose target is the user's data (its own lead names) and whose geometry is the source model's;
    its source section is never read (the source model's samples stand in for the source cohort)."""
    model_leads = list(model.card.leads)
    leads = list(options.leads or model_leads)
    if len(leads) != len(model_leads):
        raise ConfigError(f"--leads names {len(leads)} leads {leads}; the source model has "
                          f"{len(model_leads)}: {model_leads}")
    cohort = {"format": "arrays" if target.is_file() else "wfdb", "database": str(target),
              "leads": leads, "labels_csv": options.labels_csv, "fs_in_hz": options.fs_in_hz}
    raw = {
        "name": f"augment_{target.stem}", "seed": options.seed, "device": options.device,
        "data_root": str(target.parent),
        "windows": {"fs_hz": model.card.fs_hz, "window_s": model.card.window_s, "anchor_s": model.card.anchor_s,
                    "amplitude_normalization": model.card.amplitude_normalization, "classes": model.classes},
        "source": {"format": "arrays", "database": str(options.source_model)},
        "target": cohort,
        "transfer": {"methods": [options.method]},
    }
    return config_from_dict(raw, overrides, "augment settings")


def _check_rate(target: Path, config: Config, model_fs_hz: float, resample: bool) -> None:
    """Refuse records at another rate than the source model's unless resampling was asked for. A record whose
    header is unreadable is left to the reader, which skips it with one line."""
    if target.is_file():
        rates = {config.target.fs_in_hz or _file_rate(target)}
    else:
        rates = set()
        for path in list_wfdb_records(target, None, []):
            try:
                rates.add(read_header(path).fs)
            except RecordError:
                continue
    # a non-positive rate is left to the reader, whose error names it
    other = sorted(rate for rate in rates if rate is not None and rate > 0 and abs(rate - model_fs_hz) > 1e-6)
    if other and not resample:
        raise ConfigError(f"{target}: recorded at {', '.join(f'{r:g}' for r in other)} Hz, the source model at "
                          f"{model_fs_hz:g} Hz; pass --resample to resample to {model_fs_hz:g} Hz")


def _file_rate(path: Path) -> float | None:
    rate = array_file_rate(path)
    if rate is None and path.suffix.lower() == ".csv":
        raise ConfigError(f"{path}: a CSV carries no sampling rate; give --fs-in-hz")
    return rate


def _check_class_counts(target: Path, meta: pd.DataFrame, classes: list[str], min_per_class: int) -> None:
    counts = meta["label"].value_counts()
    few = {cls: int(counts.get(cls, 0)) for cls in classes if counts.get(cls, 0) < min_per_class}
    if few:
        listed = ", ".join(f"{cls} {n}" for cls, n in few.items())
        raise ConfigError(f"{target}: too few windows of class {listed} (need {min_per_class} of each of "
                          f"{', '.join(classes)}); add more or lower --min-per-class")


def _split(meta: pd.DataFrame, seed: int) -> np.ndarray:
    """train/val by patient (about 80/20); with fewer than 3 patients, by window, stratified by class.
    Synthetic windows (an earlier augment output given as target) only train."""
    real = ~meta["synthetic"].to_numpy(bool)
    splits = np.full(len(meta), "train", dtype=object)
    own = meta[real]
    if own["patient"].nunique() >= 3:
        assignment = split_patients(own["patient"].tolist(), own["label"].tolist(), fractions=(0.8, 0.1, 0.1),
                                    seed=seed)
        # augment tests nothing itself, so the patients a split would keep for testing validate too
        splits[real] = own["patient"].map(assignment).replace({"test": "val"}).to_numpy()
        return splits
    print("augment: fewer than 3 patients, so validation windows come from the same patients as training ones")
    rng = np.random.default_rng(seed)
    for rows in own.groupby("label").indices.values():
        splits[np.flatnonzero(real)[rng.permutation(rows)[: max(1, len(rows) // 5)]]] = "val"
    return splits


def _source_samples(run: RunDir, source_file: Path, model: DiffusionModel, options: AugmentOptions) -> Cohort:
    """The source model's own samples as the source cohort, `options.source_val_share` of each class in its val
    split (TGDP's held-out source windows); kept while the model's bytes and the sampling settings are unchanged."""
    folder = run.path / "cohorts" / "source"
    settings = {"per_class": options.source_per_class, "val_share": options.source_val_share,
                "steps": options.sampling_steps, "seed": options.seed}
    fingerprint = _settings_digest(settings) + fingerprint_files([source_file])
    if run.is_current("augment.source_samples", fingerprint, cohort_files(folder)):
        print(f"augment: source-model samples up to date ({folder})")
        return read_cohort(folder, mmap=False)
    started = time.time()
    run.begin_stage("augment.source_samples")
    labels = np.repeat(np.arange(len(model.classes)), options.source_per_class)
    windows = model.sample_mv(labels, steps=options.sampling_steps, seed=options.seed + 1, progress=True)
    held = round(options.source_val_share * options.source_per_class)
    split = np.where(np.arange(len(labels)) % options.source_per_class < held, "val", "train")
    write_synthetic_cohort(folder, windows, labels, classes=model.classes, method="source", split=split,
                           description=model.card.window_description())
    run.record_stage("augment.source_samples", fingerprint=fingerprint, started=started, outputs=cohort_files(folder))
    return read_cohort(folder, mmap=False)


def _transferred(run: RunDir, config: Config, options: AugmentOptions, source_file: Path, source: Cohort) -> Path:
    """The source model transferred to the target windows with `fit_transfer`, as the transfer stage does it (the
    same windows and settings give the same model); cached in the work folder."""
    method, out_dir = options.method, run.path / "models" / options.method
    target_dir = run.path / "cohorts" / "target"
    settings = config.transfer.settings()
    key = {"method": method, "settings": settings.tgdp.fit_settings() if method == "tgdp" else asdict(settings),
           "seed": config.seed, "device": config.device, "max_val_windows": config.transfer.max_val_windows}
    fingerprint = _settings_digest(key) + fingerprint_files([source_file, target_dir, run.path / "cohorts" / "source"])
    if run.is_current(f"augment.transfer.{method}", fingerprint, transfer_outputs(out_dir, method)):
        print(f"transfer {method}: up to date ({out_dir / 'model.pt'})")
        return out_dir / "model.pt"
    started = time.time()
    run.begin_stage(f"augment.transfer.{method}")
    prepare_out_dir(out_dir, fingerprint, force=False)
    target, source_model = read_cohort(target_dir), ModelFile.load(source_file)
    result = fit_transfer(method, source_model, cohort_splits(target, config.transfer.max_val_windows, config.seed,
                                                              rhythm_of(source_model)),
                          settings, seed=config.seed, out_dir=out_dir, target_name=target.info["database"],
                          source_windows=cohort_splits(source, config.transfer.max_val_windows, config.seed),
                          device=resolve_device(config.device))
    write_transfer(out_dir, result)
    run.record_stage(f"augment.transfer.{method}", fingerprint=fingerprint, started=started,
                     outputs=transfer_outputs(out_dir, method))
    if result.diagnostics is not None:
        print(f"augment: transfer {method}: {ratio_summary_line(result.diagnostics)}")
    return out_dir / "model.pt"


def _synthetic_samples(run: RunDir, config: Config, model_file: Path, plan: dict[str, int], real_windows: np.ndarray,
                       real_labels: np.ndarray, options: AugmentOptions) -> Cohort:
    """`plan[class]` windows of each class from the transferred model, those outside the plausible range of the real
    windows of their class screened out; a cohort in the work folder, reused while the model, the target and the
    settings are."""
    folder = run.path / "samples" / "augment"
    settings = {"plan": plan, "steps": options.sampling_steps, "seed": options.seed,
                "transfer_scale": config.transfer.settings().transfer_scale(options.method),
                "screen": {"by": "class", **screen_settings()}}
    fingerprint = _settings_digest(settings) + fingerprint_files([model_file, run.path / "cohorts" / "target"])
    if run.is_current("augment.samples", fingerprint, cohort_files(folder)):
        print(f"augment: synthetic windows up to date ({folder})")
        return read_cohort(folder, mmap=False)
    started = time.time()
    run.begin_stage("augment.samples")
    model = DiffusionModel.load(model_file, resolve_device(config.device))
    labels = np.repeat(np.arange(len(model.classes)), [plan[cls] for cls in model.classes])
    windows = (model.sample_mv(labels, steps=options.sampling_steps, seed=options.seed, progress=True,
                               transfer_scale=settings["transfer_scale"])
               if len(labels) else np.zeros((0, *real_windows.shape[1:]), np.float32))
    card = model.card
    beat = None if card.anchor_s is None else round(card.anchor_s * card.fs_hz)
    plausible = plausible_by_class(real_windows, real_labels, windows, np.asarray(model.classes)[labels], beat,
                                   card.fs_hz)
    screened = {cls: int((~plausible & (labels == i)).sum()) for i, cls in enumerate(model.classes)}
    description = {key: value for key, value in card.window_description().items() if key != "leads"}
    write_synthetic_cohort(folder, windows[plausible], labels[plausible], classes=model.classes, method="augment",
                           description={**description, "leads": config.target.leads, "planned": plan,
                                        "screened_out": screened})
    run.record_stage("augment.samples", fingerprint=fingerprint, started=started, outputs=cohort_files(folder))
    return read_cohort(folder, mmap=False)


def _settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _print_summary(summary: dict) -> None:
    real = " · ".join(f"{cls} {n}" for cls, n in summary["real"].items())
    synthetic = " · ".join(f"{cls} {n}" for cls, n in summary["synthetic"].items())
    screened = sum(summary["screened_out"].values())
    print(f"augment: real windows {real}; synthetic ({summary['method']}) {synthetic}")
    if screened:
        listed = " · ".join(f"{cls} {n}" for cls, n in summary["screened_out"].items() if n)
        print(f"augment: screened out {screened} synthetic windows outside the plausible range of the real "
              f"windows of their class: size, slope, busyness or a spike away from the beat ({listed})")
    print(f"augment: → {summary['output']} (synthetic windows belong to patient {summary['synthetic_patient']!r}; "
          f"summary in augment.json; {summary['seconds']:.0f} s)")
