"""A user's own labeled windows, from an NPZ or CSV file, as a target cohort: one RecordWindows per patient.

A file may say how it was made, so that what `data.export` writes reads back as written:
`fs_hz`, `band_hz` (already band-passed with these edges: not filtered again), `anchor_s`
(where each window's beat sits) and a boolean `synthetic` per window. An NPZ stores them as
arrays; a CSV as a first line `# ecg-tgdp fs_hz=128 band_hz=0.5,40 anchor_s=2` and a
`synthetic` column.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from zipfile import BadZipFile

import numpy as np
import pandas as pd

from ecg_tgdp.data import preprocess
from ecg_tgdp.data.plausibility import check_amplitude
from ecg_tgdp.data.records import RecordError, RecordWindows


@dataclass
class _Arrays:
    """What a file holds before conditioning."""

    windows: np.ndarray  # float64 [N, leads, T] mV at the file's rate
    labels: np.ndarray  # str [N]; "" where a row has no label
    patients: np.ndarray | None  # str [N]
    fs_hz: float | None
    leads: list[str] | None
    band_hz: tuple[float, float] | None = None  # the file's windows were band-passed with these edges
    anchor_s: float | None = None  # seconds from a window's start to its beat
    synthetic: np.ndarray | None = None  # bool [N]
    notes: list[str] = field(default_factory=list)  # what reading assumed (a blank `synthetic` cell is false)


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
    anchor_s: float | None = None,
) -> list[RecordWindows]:
    """Windows of an NPZ or CSV file, filtered, resampled to `fs_hz` and cropped to `window_s`, per patient.

    NPZ: `windows` (or `x`) [N, T] or [N, leads, T] in mV, labels under `label_column`,
    `labels` or `y`, optional patients under `patient_column` or `patients`, optional
    scalar `fs_hz` (used when `fs_in_hz` is None) and lead names `leads`.
    CSV: one single-lead window per row: the label column, an optional patient column,
    and every other column a sample; `fs_in_hz` is required unless the first line gives it.
    A blank label or patient cell (an empty NPZ patient) is an error naming its lines (rows); a blank
    `synthetic` cell reads as false (real), with a warning, and any value but true/false/1/0 is an error.
    Windows are band-passed unless the file stores `band_hz`; the crop puts the file's anchor
    (`anchor_s` stored, else the centre) at `anchor_s` (default the centre).
    Rows with NaN, inf or a flat lead (a blank sample cell is NaN) are dropped (`nan_or_flat`), NPZ
    rows labeled "" too (`no_label`); sample_index is the window's row in the file, as arrays carry no
    record time. A patient left without a window comes back with none (the caller skips it, by name).
    """
    path = Path(path)
    arrays = _load(path, label_column, patient_column)
    fs_in = fs_in_hz if fs_in_hz is not None else arrays.fs_hz
    if fs_in is None:
        raise RecordError(f"{path}: no sampling rate in the file; give fs_in_hz")
    if not np.isfinite(fs_in) or fs_in <= 0:
        finite = "" if np.isfinite(fs_in) else " and finite"
        raise RecordError(f"{path}: sampling rate {fs_in:g} Hz is not positive{finite}")
    x = _select_leads(path, arrays, leads)

    invalid = preprocess.nan_windows(x) | preprocess.flat_windows(np.nan_to_num(x))
    keep = ~invalid & (arrays.labels != "")
    if not keep.any():
        raise RecordError(f"{path}: none of its {len(x)} windows is labeled and free of NaN, inf and flat leads")
    reasons = np.where(invalid, "nan_or_flat", "no_label")  # meaningful where ~keep

    warnings = list(arrays.notes)
    patients = arrays.patients
    if patients is None:
        patients = np.full(len(x), path.stem)
        warnings.append(
            f"{path}: no patient column, so the whole file is one patient {path.stem!r}; "
            "patient-level splits need a patient column"
        )
    filter_band = None if arrays.band_hz is not None else band_hz
    crop = _Crop(fs_in, fs_hz, window_s, arrays.anchor_s, anchor_s)
    windows = _condition(path, x[keep], filter_band, crop)
    check_amplitude(np.moveaxis(windows, 1, 0).reshape(windows.shape[1], -1), str(path), leads or arrays.leads
                    or [f"lead {i}" for i in range(windows.shape[1])])
    synthetic = np.zeros(len(x), bool) if arrays.synthetic is None else arrays.synthetic
    kept = RecordWindows(
        record=path.stem,
        patient=path.stem,
        windows=windows,
        labels=arrays.labels[keep],
        sample_index=np.flatnonzero(keep),
        columns={"synthetic": synthetic[keep]},
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


def array_file_rate(path: Path) -> float | None:
    """The sampling rate an NPZ or CSV of windows stores (`fs_hz`), or None."""
    return _load(Path(path), "label", "patient").fs_hz


def _load(path: Path, label_column: str, patient_column: str) -> _Arrays:
    """Read the file by its extension and check its shapes."""
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    loaders = {".npz": _load_npz, ".csv": _load_csv}
    if path.suffix.lower() not in loaders:
        raise RecordError(f"{path}: unknown extension {path.suffix!r}; use .npz or .csv")
    arrays = loaders[path.suffix.lower()](path, label_column, patient_column)
    shape = arrays.windows.shape
    if arrays.windows.ndim != 3 or len(arrays.windows) == 0:
        raise RecordError(f"{path}: windows have shape {shape}; expected [N, T] or [N, leads, T] with N > 0")
    if shape[2] < shape[1]:
        raise RecordError(f"{path}: windows have shape {shape}, fewer samples than leads; expected [N, leads, T] "
                          f"(channel-first: np.moveaxis(windows, -1, 1) gives {(shape[0], shape[2], shape[1])})")
    if arrays.leads is not None and len(arrays.leads) != shape[1]:
        raise RecordError(f"{path}: leads names {len(arrays.leads)} leads ({', '.join(arrays.leads)}) but its windows "
                          f"[N, leads, T] = {shape} have {shape[1]}")
    n = len(arrays.windows)
    for name, values in (("labels", arrays.labels), ("patients", arrays.patients), ("synthetic", arrays.synthetic)):
        if values is not None and values.shape != (n,):
            raise RecordError(f"{path}: {name} have shape {values.shape}; expected [{n}], one per window")
    scalars = (("fs_hz", arrays.fs_hz), ("anchor_s", arrays.anchor_s), *zip(("band_hz",) * 2, arrays.band_hz or ()))
    for name, value in scalars:
        if value is not None and not np.isfinite(value):
            raise RecordError(f"{path}: {name} is {value}; expected a finite number")
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
    band = _first(path, contents, ("band_hz",), required=False)
    anchor = _first(path, contents, ("anchor_s",), required=False)
    synthetic = _first(path, contents, ("synthetic",), required=False)
    if windows.dtype.kind not in "fiu":
        raise RecordError(f"{path}: windows are {windows.dtype}, not numbers")
    if windows.ndim == 2:
        windows = windows[:, None, :]
    if band is not None and (np.shape(band) != (2,) or band.dtype.kind not in "fiu"):
        raise RecordError(f"{path}: band_hz is {band.dtype} of shape {np.shape(band)}; expected the two edges "
                          "[low, high] in Hz")
    if patients is not None and (blank := np.char.strip(patients.astype(str)) == "").any():
        rows = np.flatnonzero(blank)
        raise RecordError(f"{path}: patients is blank for {len(rows)} windows (rows {few_rows(rows)}); name each "
                          "window's patient, or leave the array out to make the file one patient")
    notes: list[str] = []
    return _Arrays(
        windows=windows.astype(np.float64),
        labels=labels.astype(str),
        patients=None if patients is None else patients.astype(str),
        fs_hz=_npz_scalar(path, "fs_hz", fs),
        leads=None if lead_names is None else [str(name) for name in np.atleast_1d(lead_names)],
        band_hz=None if band is None else (float(band[0]), float(band[1])),
        anchor_s=_npz_scalar(path, "anchor_s", anchor),
        synthetic=None if synthetic is None else _npz_synthetic(path, synthetic, notes),
        notes=notes,
    )


def _npz_scalar(path: Path, name: str, value: np.ndarray | None) -> float | None:
    """A number the NPZ stores as a scalar (fs_hz, anchor_s); an array of several values, or text, names the key."""
    if value is None:
        return None
    if value.size != 1 or value.dtype.kind not in "fiu":
        raise RecordError(f"{path}: {name} is {value.dtype} of shape {value.shape}; expected one number (a scalar)")
    return float(value.reshape(()))


def _npz_synthetic(path: Path, synthetic: np.ndarray, notes: list[str]) -> np.ndarray:
    """The NPZ's `synthetic` flags as booleans: bool, 0/1 numbers, or the text a CSV column may hold."""
    if synthetic.dtype.kind == "b":
        return synthetic
    if synthetic.dtype.kind in "iuf":
        other = sorted({float(value) for value in np.unique(synthetic)} - {0.0, 1.0})
        if other:
            raise RecordError(f"{path}: synthetic holds {', '.join(f'{value:g}' for value in other[:5])}; expected "
                              "true/false or 1/0")
        return synthetic == 1
    if synthetic.dtype.kind in "US":
        return _synthetic_flags(path, pd.Series(synthetic.astype(str)), notes)
    raise RecordError(f"{path}: synthetic is {synthetic.dtype}; expected true/false or 1/0 per window")


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
    """One single-lead window per row; every column but the label, patient and synthetic ones is a sample."""
    described = _csv_description(path)
    table, first_line = _read_csv_rows(path, label_column, patient_column, skip=1 if described else 0)
    if label_column not in table.columns:
        raise RecordError(f"{path}: no label column {label_column!r} (columns: {', '.join(table.columns[:5])}, ...)")
    named = [column for column in (label_column, patient_column, "synthetic") if column in table.columns]
    samples = table.drop(columns=named)
    if samples.shape[1] == 0:
        raise RecordError(f"{path}: no sample columns, only {', '.join(named)}")
    non_numeric = [column for column in samples.columns if not pd.api.types.is_numeric_dtype(samples[column])]
    if non_numeric:
        raise RecordError(f"{path}: sample column {non_numeric[0]!r} holds non-numeric values")
    has_patient = patient_column in table.columns
    for column in (label_column, patient_column) if has_patient else (label_column,):
        blank = blank_cells(table[column])
        if blank.any():
            raise RecordError(f"{path}: column {column!r} is blank on {line_numbers(table.index[blank], first_line)}")
    notes: list[str] = []
    try:
        band = tuple(float(edge) for edge in described["band_hz"].split(",")) if "band_hz" in described else None
        return _Arrays(
            windows=samples.to_numpy(dtype=np.float64)[:, None, :],
            labels=table[label_column].str.strip().to_numpy(dtype=str),
            patients=table[patient_column].str.strip().to_numpy(dtype=str) if has_patient else None,
            fs_hz=float(described["fs_hz"]) if "fs_hz" in described else None,
            leads=described["leads"].split(",") if "leads" in described else None,
            band_hz=band,
            anchor_s=float(described["anchor_s"]) if "anchor_s" in described else None,
            synthetic=_synthetic_flags(path, table["synthetic"], notes) if "synthetic" in table.columns else None,
            notes=notes,
        )
    except ValueError as error:
        raise RecordError(f"{path}: first line {CSV_DESCRIPTION!r} does not parse ({error})") from None


def _read_csv_rows(path: Path, label_column: str, patient_column: str, skip: int) -> tuple[pd.DataFrame, int]:
    """The CSV's rows (blank lines dropped, the index kept for line numbers) and the file line of row 0."""
    # Labels, patient ids and flags stay text so "007" and "1" are not turned into numbers.
    text_columns = {label_column: str, patient_column: str, "synthetic": str}
    try:
        table = pd.read_csv(path, dtype=text_columns, skiprows=skip, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise RecordError(f"{path}: the file is empty; expected a header line and one window per row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: does not parse as CSV ({str(error).strip().splitlines()[0]})") from None
    table = table.dropna(how="all")
    if table.empty:
        raise RecordError(f"{path}: a header and no rows; expected one window per row")
    return table, skip + 2


_TRUE, _FALSE = frozenset({"true", "1", "1.0"}), frozenset({"false", "0", "0.0"})


def _synthetic_flags(path: Path, column: pd.Series, notes: list[str]) -> np.ndarray:
    """Boolean [N] from a `synthetic` column of true/false or 1/0 (any case); a blank cell is false (a real window),
    said in `notes`, since export always fills it and a hand-made file means its rows are real."""
    text = column.fillna("").astype(str).str.strip()
    lower = text.str.lower()
    other = sorted(set(text[~lower.isin(_TRUE | _FALSE | {""})]))
    if other:
        raise RecordError(f"{path}: column 'synthetic' holds {', '.join(map(repr, other[:5]))}"
                          f"{' and more' if len(other) > 5 else ''}; expected true/false or 1/0")
    blank = int((lower == "").sum())
    if blank:
        notes.append(f"{path}: {blank} rows have a blank 'synthetic' cell; read as false (real windows)")
    return lower.isin(_TRUE).to_numpy()


def blank_cells(column: pd.Series) -> np.ndarray:
    """Boolean [rows]: cells that are empty or only whitespace."""
    return (column.isna() | column.astype(str).str.strip().eq("")).to_numpy()


def line_numbers(rows: pd.Index, first_line: int) -> str:
    """`lines 3, 7 and 2 more` for rows of a table read with `skip_blank_lines=False` (its index counts every line
    after the header); `first_line` is the file line of the row with index 0."""
    return f"line{'s' if len(rows) > 1 else ''} {few_rows(np.asarray(rows) + first_line)}"


def few_rows(rows: np.ndarray, shown: int = 5) -> str:
    """`3, 7 and 2 more`: the first `shown` row or line numbers, then how many more."""
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return ", ".join(str(int(row)) for row in rows[:shown]) + more


CSV_DESCRIPTION = "# ecg-tgdp"


def _csv_description(path: Path) -> dict[str, str]:
    """key=value pairs of a first line `# ecg-tgdp fs_hz=128 band_hz=0.5,40 anchor_s=2`, or {} without one."""
    with open(path, encoding="utf-8", errors="replace") as file:
        first = file.readline().strip()
    if not first.startswith(CSV_DESCRIPTION):
        return {}
    pairs = [word.split("=", 1) for word in first[len(CSV_DESCRIPTION):].split()]
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


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


@dataclass(frozen=True)
class _Crop:
    """Rates and where the beat sits: in the file (`file_anchor_s`, None = centre) and in the cohort (`anchor_s`)."""

    fs_in_hz: float
    fs_hz: float
    window_s: float
    file_anchor_s: float | None
    anchor_s: float | None


def _condition(path: Path, x: np.ndarray, band_hz: tuple[float, float] | None, crop: _Crop) -> np.ndarray:
    """Band-pass at the file's rate (unless `band_hz` is None), resample to `fs_hz` and crop `window_s` with the
    file's anchor at the cohort's: float32 [N, leads, T]."""
    # Same order as the WFDB readers, so an exported window reads back as it was written.
    try:
        if band_hz is not None:
            x = preprocess.bandpass(x, crop.fs_in_hz, band_hz)
    except ValueError as error:
        raise RecordError(f"{path}: {error}") from None
    x = preprocess.resample(x, crop.fs_in_hz, crop.fs_hz)
    length = round(crop.window_s * crop.fs_hz)
    if x.shape[-1] < length:
        raise RecordError(
            f"{path}: windows have {x.shape[-1]} samples at {crop.fs_hz:g} Hz, "
            f"shorter than the {length} a {crop.window_s} s window needs"
        )
    if crop.file_anchor_s is None and crop.anchor_s is None:
        start = (x.shape[-1] - length) // 2
    else:
        file_anchor = x.shape[-1] // 2 if crop.file_anchor_s is None else round(crop.file_anchor_s * crop.fs_hz)
        start = file_anchor - (length // 2 if crop.anchor_s is None else round(crop.anchor_s * crop.fs_hz))
        if not 0 <= start <= x.shape[-1] - length:
            raise RecordError(f"{path}: its beats sit {file_anchor / crop.fs_hz:g} s into {x.shape[-1] / crop.fs_hz:g} s "
                              f"windows; a {crop.window_s} s window with the beat at {crop.anchor_s} s does not fit")
    return x[..., start : start + length].astype(np.float32)
