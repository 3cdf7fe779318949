"""A user's own labeled windows, from an NPZ or CSV file, as a target cohort: one RecordWindows per patient."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from zipfile import BadZipFile

import numpy as np
import pandas as pd

from data import preprocess
from data.records import RecordError, RecordWindows


@dataclass
class _Arrays:
    """What a file holds before conditioning."""

    windows: np.ndarray  # float64 [N, leads, T] mV at the file's rate
    labels: np.ndarray  # str [N]; "" where a row has no label
    patients: np.ndarray | None  # str [N]
    fs_hz: float | None
    leads: list[str] | None


def read_array_windows(
    path: Path,
    *,
    fs_in_hz: float | None,
    fs_hz: float,
    window_s: float,
    band_hz: tuple[float, float] | None,
    label_column: str = "label",
    patient_column: str = "patient",
    leads: list[str] | None = None,
) -> list[RecordWindows]:
    """Windows of an NPZ or CSV file, filtered, resampled to `fs_hz` and centre-cropped to `window_s`, per patient.

    NPZ: `windows` (or `x`) [N, T] or [N, leads, T] in mV, labels under `label_column`,
    `labels` or `y`, optional patients under `patient_column` or `patients`, optional
    scalar `fs_hz` (used when `fs_in_hz` is None) and lead names `leads`.
    CSV: one single-lead window per row: the label column, an optional patient column,
    and every other column a sample; `fs_in_hz` is required.
    Rows with NaN or a flat lead are dropped (`nan_or_flat`), rows without a label too
    (`no_label`); sample_index is the window's row in the file, as arrays carry no record time.
    """
    path = Path(path)
    arrays = _load(path, label_column, patient_column)
    fs_in = fs_in_hz if fs_in_hz is not None else arrays.fs_hz
    if fs_in is None:
        raise RecordError(f"{path}: no sampling rate in the file; give fs_in_hz")
    x = _select_leads(path, arrays, leads)

    invalid = preprocess.nan_windows(x) | preprocess.flat_windows(np.nan_to_num(x))
    keep = ~invalid & (arrays.labels != "")
    if not keep.any():
        raise RecordError(f"{path}: none of its {len(x)} windows is labeled and free of NaN and flat leads")
    reasons = np.where(invalid, "nan_or_flat", "no_label")  # meaningful where ~keep

    warnings = []
    patients = arrays.patients
    if patients is None:
        patients = np.full(len(x), path.stem)
        warnings.append(
            f"{path}: no patient column, so the whole file is one patient {path.stem!r}; "
            "patient-level splits need a patient column"
        )
    kept = RecordWindows(
        record=path.stem,
        patient=path.stem,
        windows=_condition(path, x[keep], fs_in, fs_hz, window_s, band_hz),
        labels=arrays.labels[keep],
        sample_index=np.flatnonzero(keep),
        warnings=warnings,
    )
    return [
        replace(
            kept.select(patients[keep] == patient),
            record=patient,
            patient=patient,
            dropped=+Counter(reasons[(patients == patient) & ~keep].tolist()),
        )
        for patient in pd.unique(patients)
    ]


def _load(path: Path, label_column: str, patient_column: str) -> _Arrays:
    """Read the file by its extension and check its shapes."""
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    loaders = {".npz": _load_npz, ".csv": _load_csv}
    if path.suffix.lower() not in loaders:
        raise RecordError(f"{path}: unknown extension {path.suffix!r}; use .npz or .csv")
    arrays = loaders[path.suffix.lower()](path, label_column, patient_column)
    if arrays.windows.ndim != 3 or len(arrays.windows) == 0:
        raise RecordError(
            f"{path}: windows have shape {arrays.windows.shape}; expected [N, T] or [N, leads, T] with N > 0"
        )
    n = len(arrays.windows)
    for name, values in (("labels", arrays.labels), ("patients", arrays.patients)):
        if values is not None and values.shape != (n,):
            raise RecordError(f"{path}: {name} have shape {values.shape}; expected [{n}], one per window")
    return arrays


def _load_npz(path: Path, label_column: str, patient_column: str) -> _Arrays:
    """Arrays of an `.npz` file; pickled object arrays are refused rather than unpickled."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except (BadZipFile, OSError, ValueError) as error:  # ValueError: object arrays need pickle
        raise RecordError(f"{path}: not a readable NPZ of plain arrays ({error})") from None
    windows = _first(path, contents, ("windows", "x"))
    labels = _first(path, contents, (label_column, "labels", "y"))
    patients = _first(path, contents, (patient_column, "patients"), required=False)
    fs = _first(path, contents, ("fs_hz",), required=False)
    lead_names = _first(path, contents, ("leads",), required=False)
    if windows.dtype.kind not in "fiu":
        raise RecordError(f"{path}: windows are {windows.dtype}, not numbers")
    if windows.ndim == 2:
        windows = windows[:, None, :]
    return _Arrays(
        windows=windows.astype(np.float64),
        labels=labels.astype(str),
        patients=None if patients is None else patients.astype(str),
        fs_hz=None if fs is None else float(fs),
        leads=None if lead_names is None else [str(name) for name in np.atleast_1d(lead_names)],
    )


def _first(
    path: Path, contents: dict[str, np.ndarray], keys: tuple[str, ...], required: bool = True
) -> np.ndarray | None:
    """The first of `keys` present in the NPZ; a missing required one names the file and the keys."""
    for key in keys:
        if key in contents:
            return contents[key]
    if required:
        raise RecordError(f"{path}: no array named {' or '.join(map(repr, keys))}")
    return None


def _load_csv(path: Path, label_column: str, patient_column: str) -> _Arrays:
    """One single-lead window per row; every column but the label and patient ones is a sample."""
    # Labels and patient ids stay text so "007" and "1" are not turned into numbers.
    table = pd.read_csv(path, dtype={label_column: str, patient_column: str})
    if label_column not in table.columns:
        raise RecordError(f"{path}: no label column {label_column!r} (columns: {', '.join(table.columns[:5])}, ...)")
    has_patient = patient_column in table.columns
    samples = table.drop(columns=[label_column] + ([patient_column] if has_patient else []))
    non_numeric = [column for column in samples.columns if not pd.api.types.is_numeric_dtype(samples[column])]
    if non_numeric:
        raise RecordError(f"{path}: sample column {non_numeric[0]!r} holds non-numeric values")
    if has_patient and table[patient_column].isna().any():
        raise RecordError(f"{path}: {int(table[patient_column].isna().sum())} rows have no {patient_column!r}")
    return _Arrays(
        windows=samples.to_numpy(dtype=np.float64)[:, None, :],
        labels=table[label_column].fillna("").to_numpy(dtype=str),
        patients=table[patient_column].to_numpy(dtype=str) if has_patient else None,
        fs_hz=None,
        leads=None,
    )


def _select_leads(path: Path, arrays: _Arrays, leads: list[str] | None) -> np.ndarray:
    """The requested leads by name (case-insensitive), in the requested order; never by position."""
    x = arrays.windows
    if leads is None:
        return x
    if arrays.leads is None:
        if len(leads) == 1 and x.shape[1] == 1:
            return x  # a single unnamed lead is the one the caller names
        raise RecordError(f"{path}: {x.shape[1]} unnamed leads; add a `leads` array to select {', '.join(leads)}")
    by_lower = {name.lower(): i for i, name in enumerate(arrays.leads)}
    missing = [lead for lead in leads if lead.lower() not in by_lower]
    if missing:
        raise RecordError(f"{path}: lead {', '.join(missing)} absent (file has {', '.join(arrays.leads)})")
    return x[:, [by_lower[lead.lower()] for lead in leads]]


def _condition(
    path: Path, x: np.ndarray, fs_in_hz: float, fs_hz: float, window_s: float, band_hz: tuple[float, float] | None
) -> np.ndarray:
    """Band-pass at the file's rate, resample to `fs_hz` and centre-crop to `window_s`: float32 [N, leads, T]."""
    # Same order as the WFDB readers, so an exported window reads back as it was written.
    if band_hz is not None:
        x = preprocess.bandpass(x, fs_in_hz, band_hz)
    x = preprocess.resample(x, fs_in_hz, fs_hz)
    length = round(window_s * fs_hz)
    if x.shape[-1] < length:
        raise RecordError(
            f"{path}: windows have {x.shape[-1]} samples at {fs_hz:g} Hz, "
            f"shorter than the {length} a {window_s} s window needs"
        )
    start = (x.shape[-1] - length) // 2
    return x[..., start : start + length].astype(np.float32)
