"""Which reader serves which cohort format: config in, per-record read tasks out."""
from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from data.arrays import read_array_windows
from data.ingest import ReadResult, assemble, list_wfdb_records, read_records
from data.labels import symbol_map
from data.ptbxl import ptbxl_index, ptbxl_label, read_ptbxl_windows
from data.records import RecordError
from data.wfdb_beats import read_beat_windows
from pipeline.config import CohortConfig, Config, ConfigError


def read_cohort_records(config: Config, cohort: CohortConfig, folder: Path, desc: str) -> ReadResult:
    """Read every record of a cohort with the reader its format needs."""
    geometry = {"fs_hz": config.windows.fs_hz, "window_s": config.windows.window_s, "band_hz": config.windows.band_hz}
    classes = config.windows.classes
    if cohort.format == "arrays":
        parts = read_array_windows(folder, fs_in_hz=cohort.fs_in_hz, leads=cohort.leads, **geometry)
        return ReadResult(parts=[part for part in parts if _keep_classes(folder, part, classes)])
    if cohort.format == "ptbxl":
        index = ptbxl_index(folder, rate_hz=cohort.rate_hz, filters=cohort.filters)
        return _read_labeled_records(config, cohort, index, geometry, desc)
    if cohort.labels_csv:
        return _read_labeled_records(config, cohort, _labels_table(folder, cohort), geometry, desc)
    tasks = [
        (
            path.name,
            partial(
                read_beat_windows, path, cohort.leads, symbol_to_class=symbol_map(cohort.label_map), classes=classes,
                patient=cohort.patients.get(path.name, path.name), annotator=cohort.annotator,
                anchor_s=config.windows.beat_anchor_s(),
                amplitude_normalization=config.windows.amplitude_normalization, **geometry,
            ),
        )
        for path in list_wfdb_records(folder, cohort.records, cohort.exclude_records)
    ]
    return read_records(tasks, workers=config.workers, desc=desc)


def anchor_of(config: Config, cohort: CohortConfig) -> float | None:
    """Seconds from a window's start to its annotated beat: beat windows (beat-annotated WFDB, simulated records,
    arrays of beat windows) have one; record crops (PTB-XL, record labels from a CSV) have none."""
    crops = cohort.format == "ptbxl" or (cohort.format in ("wfdb", "simulated") and cohort.labels_csv)
    return None if crops else config.windows.beat_anchor_s()


def read_cohort_windows(config: Config, cohort: CohortConfig, folder: Path, desc: str,
                        label: str | None = None) -> tuple[np.ndarray, pd.DataFrame, ReadResult]:
    """Windows [N, leads, T] and one meta row per window of a cohort; prints what was skipped and why."""
    result = read_cohort_records(config, cohort, folder, desc)
    for message in result.warnings:
        print(f"warning: {message}")
    for record, reason in result.skipped.items():
        print(f"skipped {record}: {reason}")
    try:
        windows, meta = assemble(result.parts, config.windows.classes)
    except RecordError as error:
        where = f"{label} ({folder})" if label else str(folder)
        raise RecordError(f"{where}: {error}") from None
    return windows, meta, result


def _read_labeled_records(config: Config, cohort: CohortConfig, index: pd.DataFrame, geometry: dict, desc: str) -> ReadResult:
    """Records with one label each (PTB-XL superclasses, or a user's labels CSV), cut into crops."""
    classes = config.windows.classes
    dropped: Counter = Counter()
    tasks = []
    extra_columns = [c for c in index.columns if c not in ("record", "patient", "path", "superclasses", "label")]
    for row in index.itertuples(index=False):
        row = row._asdict()
        if row["record"] in cohort.exclude_records or (cohort.records and row["record"] not in cohort.records):
            continue
        label = row["label"] if "label" in row else ptbxl_label(row["superclasses"], classes)
        if label not in classes:
            several = "superclasses" in row and sum(c in classes for c in row["superclasses"]) > 1
            dropped["multi_label" if several else "no_label"] += 1
            continue
        columns = {name: row[name] for name in extra_columns}
        tasks.append(
            (row["record"], partial(read_ptbxl_windows, Path(row["path"]), cohort.leads, label=label,
                                    patient=str(row["patient"]), columns=columns, record=str(row["record"]), **geometry))
        )
    result = read_records(tasks, workers=config.workers, desc=desc)
    result.dropped_before_reading.update(dropped)
    return result


def _labels_table(folder: Path, cohort: CohortConfig) -> pd.DataFrame:
    """A user's record-level labels: CSV with columns record, label and optionally patient."""
    csv = Path(cohort.labels_csv)
    csv = csv if csv.is_absolute() else folder / csv
    if not csv.is_file():
        raise ConfigError(f"labels_csv: {csv} not found")
    table = pd.read_csv(csv, dtype=str)
    missing = {"record", "label"} - set(table.columns)
    if missing:
        raise ConfigError(f"{csv}: missing columns {sorted(missing)} (need record, label[, patient])")
    if "patient" not in table.columns:
        table["patient"] = table["record"]
    table["path"] = [folder / record for record in table["record"]]
    return table


def _keep_classes(path: Path, part, classes: list[str]) -> bool:
    unknown = sorted(str(label) for label in set(part.labels) - set(classes))
    if unknown:
        raise ConfigError(f"{path} (patient {part.patient}): labels {unknown} are not among windows.classes {classes}")
    return len(part.labels) > 0
