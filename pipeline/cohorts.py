"""Which reader serves which cohort format: config in, per-record read tasks out."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_tgdp.data.arrays import blank_cells, line_numbers, read_array_windows
from ecg_tgdp.data.ingest import (
    ReadResult,
    assemble,
    few_names,
    list_wfdb_records,
    read_records,
    record_name,
    unmatched_entries,
)
from ecg_tgdp.data.labels import symbol_map
from ecg_tgdp.data.ptbxl import FilterError, ptbxl_index, ptbxl_label, read_ptbxl_windows
from ecg_tgdp.data.records import RecordError, counts_text
from ecg_tgdp.data.wfdb_beats import read_beat_windows
from ecg_tgdp.pipeline.config import CohortConfig, Config, ConfigError


def read_cohort_records(config: Config, cohort: CohortConfig, folder: Path, desc: str) -> ReadResult:
    """Read every record of a cohort with the reader its format needs.

    `records`, `exclude_records` and `patients` entries that name no record of the cohort (`802.hea` for `802`, a
    patient mapping for a record that is not there) are named in a warning; for arrays they name its patients."""
    geometry = {"fs_hz": config.windows.fs_hz, "window_s": config.windows.window_s, "band_hz": config.windows.band_hz}
    classes = config.windows.classes
    if cohort.format == "arrays":
        return _read_arrays(config, cohort, folder, geometry)
    if cohort.format == "ptbxl":
        try:
            index = ptbxl_index(folder, rate_hz=cohort.rate_hz, filters=cohort.filters)
        except FilterError as error:
            raise ConfigError(str(error)) from None
        return _read_labeled_records(config, cohort, index, geometry, desc, where=folder / "ptbxl_database.csv")
    if cohort.labels_csv:
        table, notes, csv = _labels_table(folder, cohort)
        result = _read_labeled_records(config, cohort, table, geometry, desc, where=csv)
        result.notes[:0] = notes
        return result
    listed = {path: record_name(folder, path) for path in list_wfdb_records(folder, cohort.records)}
    notes = unmatched_entries(str(folder), list(listed.values()), exclude=cohort.exclude_records,
                              patients=cohort.patients)
    names = {path: name for path, name in listed.items() if name not in set(cohort.exclude_records)}
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
    result = read_records(tasks, workers=config.workers, desc=desc)
    result.notes[:0] = notes
    return result


def _read_arrays(config: Config, cohort: CohortConfig, path: Path, geometry: dict) -> ReadResult:
    """A user's NPZ/CSV, one part per patient (its `records`); a patient left without a window is skipped by name,
    what it dropped still counted."""
    parts = read_array_windows(path, fs_in_hz=cohort.fs_in_hz, leads=cohort.leads,
                               anchor_s=config.windows.beat_anchor_s(), **geometry)
    result = ReadResult(parts=[], notes=unmatched_entries(str(path), [part.record for part in parts],
                                                          records=cohort.records, exclude=cohort.exclude_records,
                                                          patients=cohort.patients))
    for part in parts:
        if not _selected(cohort, part.record):
            continue
        part = replace(part, patient=cohort.patients.get(part.record, part.patient))
        if len(part.labels):
            _check_classes(path, part, config.windows.classes)
            result.parts.append(part)
            continue
        result.skipped[part.record] = f"{path} (patient {part.record}): no usable window ({counts_text(part.dropped)})"
        result.dropped_in_skipped.update(part.dropped)
        result.notes.extend(part.warnings)
    return result


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


def _read_labeled_records(config: Config, cohort: CohortConfig, index: pd.DataFrame, geometry: dict, desc: str,
                          where: Path) -> ReadResult:
    """Records with one label each (PTB-XL superclasses, or a user's labels CSV, `where`), cut into crops. The
    cohort's `patients` mapping overrides the table's patient of the records it names."""
    classes = config.windows.classes
    dropped: Counter = Counter()
    outside: dict[str, list[str]] = {}  # label not among classes → its records
    tasks = []
    notes = unmatched_entries(str(where), index["record"].astype(str).tolist(), records=cohort.records,
                              exclude=cohort.exclude_records, patients=cohort.patients)
    extra_columns = [c for c in index.columns if c not in ("record", "patient", "path", "superclasses", "label")]
    for row in index.itertuples(index=False):
        row = row._asdict()
        if not _selected(cohort, row["record"]):
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
                                    patient=cohort.patients.get(row["record"], str(row["patient"])), columns=columns,
                                    record=str(row["record"]), **geometry))
        )
    listed = "; ".join(f"{label!r} ({len(records)} records: {few_names(records)})" for label, records in sorted(outside.items()))
    if outside and not tasks:
        raise ConfigError(f"labels_csv {cohort.labels_csv}: no record has a label among windows.classes {classes}; "
                          f"its labels are {listed}")
    result = read_records(tasks, workers=config.workers, desc=desc)
    result.dropped_before_reading.update(dropped)
    result.notes[:0] = notes
    if outside:
        result.notes.append(f"labels_csv {cohort.labels_csv}: records left out, their labels are not among windows.classes "
                            f"{classes}: {listed}")
    return result


def _labels_table(folder: Path, cohort: CohortConfig) -> tuple[pd.DataFrame, list[str], Path]:
    """A user's record-level labels: CSV with columns record, label and optionally patient; what was wrong with its
    rows; and the CSV's path. A record listed twice with one label is read once; with two labels it is left out,
    by name. A blank record or label cell is an error naming its lines. A blank patient cell is one too, unless the
    whole column is blank: a record without its patient could land in another split than that patient's other
    records, so only a column with no patient at all is read as one patient per record (with a warning)."""
    csv = Path(cohort.labels_csv)
    csv = csv if csv.is_absolute() else folder / csv
    if not csv.is_file():
        raise ConfigError(f"labels_csv: {csv} not found")
    table = _read_labels_csv(csv)
    missing = {"record", "label"} - set(table.columns)
    if missing:
        raise ConfigError(f"{csv}: missing columns {sorted(missing)} (need record, label[, patient])")
    notes = []
    if "patient" in table.columns and blank_cells(table["patient"]).all():
        notes.append(f"{csv}: the patient column is blank, so each record is its own patient")
        table = table.drop(columns="patient")
    for column in ("record", "label", "patient"):
        if column in table.columns:
            blank = blank_cells(table[column])
            if blank.any():
                raise ConfigError(f"{csv}: column {column!r} is blank on {line_numbers(table.index[blank], 2)}")
            table[column] = table[column].str.strip()
    if "patient" not in table.columns:
        table["patient"] = table["record"]
    labels_per_record = table.groupby("record")["label"].nunique()
    conflicting = sorted(labels_per_record.index[labels_per_record > 1])
    if conflicting:
        notes.append(f"{csv}: records listed with more than one label are left out: {few_names(conflicting)}")
        table = table[~table["record"].isin(conflicting)]
    repeated = sorted(table.loc[table["record"].duplicated(), "record"].unique())
    if repeated:
        notes.append(f"{csv}: records listed more than once (same label), read once: {few_names(repeated)}")
        table = table.drop_duplicates("record")
    table = table.assign(path=[folder / record for record in table["record"]])
    return table, notes, csv


def _read_labels_csv(csv: Path) -> pd.DataFrame:
    """The labels CSV as text, blank lines dropped but counted (the index + 2 is a row's line in the file)."""
    try:
        table = pd.read_csv(csv, dtype=str, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{csv}: the file is empty; expected a header record,label[,patient] and one row per "
                          "record") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ConfigError(f"{csv}: does not parse as CSV ({str(error).strip().splitlines()[0]})") from None
    table = table.dropna(how="all")
    if table.empty:
        raise ConfigError(f"{csv}: a header and no rows; expected one row per record (record, label[, patient])")
    return table


def _selected(cohort: CohortConfig, record: str) -> bool:
    """Whether the cohort's `records` (when given) and `exclude_records` keep this record."""
    return record not in cohort.exclude_records and (cohort.records is None or record in cohort.records)


def _check_classes(path: Path, part, classes: list[str]) -> None:
    unknown = sorted(str(label) for label in set(part.labels) - set(classes))
    if unknown:
        raise ConfigError(f"{path} (patient {part.patient}): labels {unknown} are not among windows.classes {classes}")
