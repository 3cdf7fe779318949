"""Which reader serves which cohort format: config in, per-record read tasks out."""
from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_tgdp.data.arrays import read_array_windows
from ecg_tgdp.data.ingest import ReadResult, assemble, list_wfdb_records, read_records, record_name
from ecg_tgdp.data.labels import symbol_map
from ecg_tgdp.data.ptbxl import ptbxl_index, ptbxl_label, read_ptbxl_windows
from ecg_tgdp.data.records import RecordError
from ecg_tgdp.data.wfdb_beats import read_beat_windows
from ecg_tgdp.pipeline.config import CohortConfig, Config, ConfigError


def read_cohort_records(config: Config, cohort: CohortConfig, folder: Path, desc: str) -> ReadResult:
    """Read every record of a cohort with the reader its format needs."""
    geometry = {"fs_hz": config.windows.fs_hz, "window_s": config.windows.window_s, "band_hz": config.windows.band_hz}
    classes = config.windows.classes
    if cohort.format == "arrays":
        parts = read_array_windows(folder, fs_in_hz=cohort.fs_in_hz, leads=cohort.leads,
                                   anchor_s=config.windows.beat_anchor_s(), **geometry)
        return ReadResult(parts=[part for part in parts if _keep_classes(folder, part, classes)])
    if cohort.format == "ptbxl":
        index = ptbxl_index(folder, rate_hz=cohort.rate_hz, filters=cohort.filters)
        return _read_labeled_records(config, cohort, index, geometry, desc)
    if cohort.labels_csv:
        table, notes = _labels_table(folder, cohort)
        result = _read_labeled_records(config, cohort, table, geometry, desc)
        result.notes[:0] = notes
        return result
    names = {path: record_name(folder, path) for path in list_wfdb_records(folder, cohort.records, cohort.exclude_records)}
    tasks = [
        (
            name,
            partial(
                read_beat_windows, path, cohort.leads, symbol_to_class=symbol_map(cohort.label_map), classes=classes,
                patient=cohort.patients.get(name, name), annotator=cohort.annotator,
                anchor_s=config.windows.beat_anchor_s(), record=name,
                amplitude_normalization=config.windows.amplitude_normalization, **geometry,
            ),
        )
        for path, name in names.items()
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
        raise RecordError(f"{where}: {error}{_why_empty(result)}") from None
    return windows, meta, result


def _why_empty(result: ReadResult) -> str:
    """What left a cohort without windows, for its one-line error: skipped records and dropped windows."""
    reasons = []
    if result.skipped:
        record, reason = next(iter(result.skipped.items()))
        reasons.append(f"{len(result.skipped)} records skipped (first: {record}: {reason})")
    if result.dropped:
        reasons.append("windows dropped: " + ", ".join(f"{k} {n}" for k, n in sorted(result.dropped.items())))
    return f" ({'; '.join(reasons)})" if reasons else ""


def _read_labeled_records(config: Config, cohort: CohortConfig, index: pd.DataFrame, geometry: dict, desc: str) -> ReadResult:
    """Records with one label each (PTB-XL superclasses, or a user's labels CSV), cut into crops."""
    classes = config.windows.classes
    dropped: Counter = Counter()
    outside: dict[str, list[str]] = {}  # label not among classes → its records
    tasks = []
    extra_columns = [c for c in index.columns if c not in ("record", "patient", "path", "superclasses", "label")]
    for row in index.itertuples(index=False):
        row = row._asdict()
        if row["record"] in cohort.exclude_records or (cohort.records and row["record"] not in cohort.records):
            continue
        label = row["label"] if "label" in row else ptbxl_label(row["superclasses"], classes)
        if "label" in row and label not in classes:
            outside.setdefault(str(label), []).append(str(row["record"]))
            dropped["label_not_in_classes"] += 1
            continue
        if label not in classes:
            several = sum(c in classes for c in row["superclasses"]) > 1
            dropped["multi_label" if several else "no_label"] += 1
            continue
        columns = {name: row[name] for name in extra_columns}
        tasks.append(
            (row["record"], partial(read_ptbxl_windows, Path(row["path"]), cohort.leads, label=label,
                                    patient=str(row["patient"]), columns=columns, record=str(row["record"]), **geometry))
        )
    listed = "; ".join(f"{label!r} ({len(records)} records: {_few(records)})" for label, records in sorted(outside.items()))
    if outside and not tasks:
        raise ConfigError(f"labels_csv {cohort.labels_csv}: no record has a label among windows.classes {classes}; "
                          f"its labels are {listed}")
    result = read_records(tasks, workers=config.workers, desc=desc)
    result.dropped_before_reading.update(dropped)
    if outside:
        result.notes.append(f"labels_csv {cohort.labels_csv}: records left out, their labels are not among windows.classes "
                            f"{classes}: {listed}")
    return result


def _labels_table(folder: Path, cohort: CohortConfig) -> tuple[pd.DataFrame, list[str]]:
    """A user's record-level labels: CSV with columns record, label and optionally patient; and what was wrong with
    its rows. A record listed twice with one label is read once; with two labels it is left out, by name."""
    csv = Path(cohort.labels_csv)
    csv = csv if csv.is_absolute() else folder / csv
    if not csv.is_file():
        raise ConfigError(f"labels_csv: {csv} not found")
    table = pd.read_csv(csv, dtype=str)
    missing = {"record", "label"} - set(table.columns)
    if missing:
        raise ConfigError(f"{csv}: missing columns {sorted(missing)} (need record, label[, patient])")
    if table["record"].isna().any() or table["label"].isna().any():
        raise ConfigError(f"{csv}: {int(table[['record', 'label']].isna().any(axis=1).sum())} rows lack a record or label")
    if "patient" not in table.columns:
        table["patient"] = table["record"]
    notes = []
    labels_per_record = table.groupby("record")["label"].nunique()
    conflicting = sorted(labels_per_record.index[labels_per_record > 1])
    if conflicting:
        notes.append(f"{csv}: records listed with more than one label are left out: {_few(conflicting)}")
        table = table[~table["record"].isin(conflicting)]
    repeated = sorted(table.loc[table["record"].duplicated(), "record"].unique())
    if repeated:
        notes.append(f"{csv}: records listed more than once (same label), read once: {_few(repeated)}")
        table = table.drop_duplicates("record")
    table = table.assign(path=[folder / record for record in table["record"]])
    return table, notes


def _few(names: list[str], shown: int = 5) -> str:
    """Names for a message: the first `shown`, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _keep_classes(path: Path, part, classes: list[str]) -> bool:
    unknown = sorted(str(label) for label in set(part.labels) - set(classes))
    if unknown:
        raise ConfigError(f"{path} (patient {part.patient}): labels {unknown} are not among windows.classes {classes}")
    return len(part.labels) > 0
