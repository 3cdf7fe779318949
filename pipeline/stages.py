"""Stage functions: parse config, call the library, write artifacts, record the manifest."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ecg_tgdp.data import simulate
from ecg_tgdp.data.ingest import class_counts, normalization_stats
from ecg_tgdp.data.splits import labeled_budget, split_by_fold, split_patients
from ecg_tgdp.data.store import cohort_files, write_cohort
from ecg_tgdp.pipeline.cohorts import anchor_of, read_cohort_windows
from ecg_tgdp.pipeline.config import CohortConfig, Config, ConfigError, data_root_choices
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files


def cohort_folder(config: Config, cohort: CohortConfig, run: RunDir) -> Path:
    """Where a cohort's records live: the run's simulated folder, or under data_root."""
    if cohort.format == "simulated":
        return run.path / "simulated" / cohort.database
    database = Path(cohort.database)
    return database if database.is_absolute() else config.data_root / database


def simulate_stage(config: Config, run: RunDir, force: bool = False) -> None:
    """Write the config's simulated cohorts as WFDB databases (skipped when unchanged)."""
    for index, (name, cohort) in enumerate(config.cohorts().items()):
        if cohort.format != "simulated":
            continue
        started = time.time()
        folder = cohort_folder(config, cohort, run)
        stage = f"simulate.{name}"
        fingerprint = config.section_hash("seed") + cohort.simulation.model_dump_json()
        if not force and run.is_current(stage, fingerprint, [folder]):
            print(f"simulate {name}: up to date ({folder})")
            continue
        spec = cohort.simulation.spec()
        run.begin_stage(stage)
        records = simulate.simulate_database(folder, spec, seed=config.seed * 1000 + index)
        run.record_stage(stage, fingerprint=fingerprint, started=started, outputs=[folder], records=len(records))
        print(f"simulate {name}: {len(records)} records at {spec.fs_hz:g} Hz → {folder}")


def ingest_stage(config: Config, run: RunDir, force: bool = False) -> None:
    """Read both cohorts into window stores; normalization is fit on the source train split."""
    started = time.time()
    folders = {name: cohort_folder(config, cohort, run) for name, cohort in config.cohorts().items()}
    for name, folder in folders.items():
        if not folder.exists():
            raise ConfigError(f"{name}.database: {folder} not found; {data_root_choices()}")
    outputs = [file for name in folders for file in cohort_files(run.path / "cohorts" / name)]
    fingerprint = config.section_hash("seed", "windows", "source", "target") + fingerprint_files(
        list(folders.values()) + _outside_inputs(config, folders))
    if not force and run.is_current("ingest", fingerprint, outputs):
        print("ingest: up to date")
        return
    anchors = {name: anchor_of(config, cohort) for name, cohort in config.cohorts().items()}
    if len(set(anchors.values())) > 1:
        raise ConfigError(f"source and target windows must have one geometry; anchors {anchors} (beat windows vs "
                          "record crops)")
    details, normalization = {}, None
    run.begin_stage("ingest")
    for name, cohort in config.cohorts().items():
        windows, meta, result = read_cohort_windows(config, cohort, folders[name], f"ingest {name}", f"{name} cohort")
        try:
            splits = _assign_splits(config, cohort, meta)
        except ValueError as error:
            raise ConfigError(f"{name}.split: {error}") from None
        meta.insert(meta.columns.get_loc("label_index") + 1, "split", splits)
        if normalization is None:
            normalization = {**normalization_stats(windows[meta["split"].to_numpy() == "train"]), "fit_on": f"{name}/train"}
        info = {
            "name": name,
            "database": str(folders[name]),
            "format": cohort.format,
            "fs_hz": config.windows.fs_hz,
            "window_s": config.windows.window_s,
            "anchor_s": anchors[name],
            "leads": cohort.leads,
            "classes": config.windows.classes,
            "band_hz": config.windows.band_hz,
            "amplitude_normalization": config.windows.amplitude_normalization,
            "normalization": normalization,
            "counts": class_counts(meta, config.windows.classes),
            "records_used": len(result.parts),
            "records_skipped": result.skipped,
            "windows_dropped": dict(result.dropped),
            "synthetic_windows": int(meta["synthetic"].sum()),
        }
        if "on_r_peak" in meta.columns:
            info["beats_on_r_peaks"] = round(float(meta["on_r_peak"].dropna().astype(bool).mean()), 4)
        write_cohort(run.path / "cohorts" / name, windows, meta, info)
        details[name] = {k: info[k] for k in ("counts", "records_used", "records_skipped", "windows_dropped")}
        _print_counts(name, info)
    run.record_stage("ingest", fingerprint=fingerprint, started=started, outputs=outputs, cohorts=details)


def _outside_inputs(config: Config, folders: dict[str, Path]) -> list[Path]:
    """Files ingest reads beyond the database folders: a labels CSV given by a path outside its folder."""
    files = []
    for name, cohort in config.cohorts().items():
        if cohort.labels_csv:
            csv = Path(cohort.labels_csv)
            csv = csv if csv.is_absolute() else folders[name] / csv
            if csv.is_file() and not csv.resolve().is_relative_to(folders[name].resolve()):
                files.append(csv)
    return files


def _assign_splits(config: Config, cohort: CohortConfig, meta) -> np.ndarray:
    """Split names per window: by strat_fold when folds are configured, else by patient; then the labeled budget.

    Synthetic windows (an augment output read back) only ever train: validation and test are real patients.
    """
    real = ~meta["synthetic"].to_numpy(bool)
    real_meta = meta[real]
    splits = np.full(len(meta), "train", dtype=object)
    if cohort.split.folds is not None:
        splits[real] = split_by_fold(real_meta["strat_fold"].tolist(), cohort.split.folds)
    else:
        assignment = split_patients(
            real_meta["patient"].tolist(),
            real_meta["label"].tolist(),
            fractions=cohort.split.fractions,
            seed=config.seed,
            n_train_patients=cohort.split.train_patients,
        )
        splits[real] = real_meta["patient"].map(assignment).to_numpy()
    if cohort.split.train_budget is not None:
        train = np.flatnonzero((splits == "train") & real)
        keep = labeled_budget(meta["label"].to_numpy()[train], cohort.split.train_budget, config.seed)
        splits[train[~keep]] = "train_unused"
    return splits


def _print_counts(name: str, info: dict) -> None:
    counts = info["counts"]
    by_class = " · ".join(f"{label} {count:,}" for label, count in counts["by_class"].items())
    patients = ", ".join(f"{split} {n}" for split, n in counts["patients_by_split"].items())
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(info["windows_dropped"].items())) or "none"
    checks = f"; beats on R peaks: {info['beats_on_r_peaks']:.1%}" if "beats_on_r_peaks" in info else ""
    synthetic = f"; synthetic windows (train only): {info['synthetic_windows']:,}" if info["synthetic_windows"] else ""
    print(
        f"ingest {name}: {counts['total']:,} windows ({by_class}) from {info['records_used']} records "
        f"(patients: {patients}); skipped records: {len(info['records_skipped'])}; dropped windows: {dropped}"
        f"{checks}{synthetic}"
    )
