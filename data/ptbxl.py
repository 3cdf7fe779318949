"""PTB-XL (Wagner et al. 2020, Sci Data 7:154): record index with diagnostic superclasses, record-labeled crops."""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_tgdp.data import preprocess
from ecg_tgdp.data.plausibility import check_amplitude
from ecg_tgdp.data.records import NoWindowsError, RecordError, RecordWindows
from ecg_tgdp.data.wfdb_io import read_header, read_leads

PTBXL_SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")

# PTB-XL ships every record twice; the database lists both paths, relative to its folder.
_PATH_COLUMN = {100: "filename_lr", 500: "filename_hr"}


class FilterError(ValueError):
    """A `filters` entry that cannot select what was meant: a column the database lacks, a value no record has, or
    text for a numeric column. The message names the file, the key and the values that exist; the caller makes it
    a config error."""


def ptbxl_index(
    db_dir: Path,
    *,
    rate_hz: int = 100,
    filters: dict[str, list[str]] | None = None,
    min_likelihood: float = 0.0,
) -> pd.DataFrame:
    """One row per record: record, patient, path (no extension), strat_fold, superclasses, and each filter column.

    `filters` keeps rows whose column value, stripped of surrounding whitespace, starts with
    one of the given strings, so {"device": ["AT-6"]} keeps "AT-6 C 5.5", "AT-6 C", ...;
    a numeric column (strat_fold, age) must equal one of the values, so 1 does not keep 10.
    A filter key that is not a column, or a value that matches no record, is a FilterError (a typo
    would otherwise silently shrink the cohort); a table that lacks its own columns is a RecordError.
    """
    db_dir = Path(db_dir)
    if rate_hz not in _PATH_COLUMN:
        raise ValueError(f"PTB-XL has records at {sorted(_PATH_COLUMN)} Hz, not {rate_hz} Hz")
    database_csv = db_dir / "ptbxl_database.csv"
    filters = filters or {}
    required = ["ecg_id", "patient_id", "scp_codes", "strat_fold", _PATH_COLUMN[rate_hz]]
    database = _read_table(database_csv, required)
    statements = _read_table(db_dir / "scp_statements.csv", ["diagnostic", "diagnostic_class"], index_col=0)
    _check_complete(database_csv, database, required)

    database = database[_filter_mask(database_csv, database, filters)]
    code_to_class = statements.loc[statements["diagnostic"] == 1, "diagnostic_class"].to_dict()
    index = pd.DataFrame(
        {
            "record": database["ecg_id"].astype(int).astype(str),
            "patient": database["patient_id"].astype(int).astype(str),
            "path": [db_dir / name for name in database[_PATH_COLUMN[rate_hz]]],
            "strat_fold": database["strat_fold"].astype(int),
            "superclasses": [
                _superclasses(codes, code_to_class, min_likelihood, database_csv, ecg_id)
                for codes, ecg_id in zip(database["scp_codes"], database["ecg_id"])
            ],
        }
    )
    for column in filters:
        index[column] = database[column]
    return index.reset_index(drop=True)


def _read_table(csv_path: Path, columns: list[str], **read_csv_kwargs: object) -> pd.DataFrame:
    """Read a CSV and check it has the named columns; the error names the file and the columns."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: PTB-XL table not found")
    try:
        table = pd.read_csv(csv_path, **read_csv_kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RecordError(f"{csv_path}: does not parse as CSV ({_first_line(error)})") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise RecordError(f"{csv_path}: no column {', '.join(map(repr, missing))}")
    return table


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _check_complete(csv_path: Path, table: pd.DataFrame, columns: list[str]) -> None:
    """Identifier, fold and path columns must be filled in every row (they become ints and paths)."""
    for column in columns:
        n_missing = int(table[column].isna().sum())
        if n_missing:
            raise RecordError(f"{csv_path}: column {column!r} is empty in {n_missing} rows")


def _filter_mask(csv_path: Path, database: pd.DataFrame, filters: dict[str, list[str]]) -> pd.Series:
    """Boolean rows whose every filter column equals (numbers) or starts with (text) one of its values; FilterError
    for a key that is not a column or a value that matches no row (each value is checked against the whole table)."""
    keep = pd.Series(True, index=database.index)
    for column, prefixes in filters.items():
        if column not in database.columns:
            raise FilterError(f"{csv_path}: filters.{column}: no column {column!r} (columns: "
                              f"{_few(list(database.columns), 12)})")
        prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        if not prefixes:
            raise FilterError(f"{csv_path}: filters.{column}: no value given, so no record would be kept")
        matches = {str(value): _matches(csv_path, database[column], column, value) for value in prefixes}
        unmatched = [value for value, match in matches.items() if not match.any()]
        if unmatched:
            raise FilterError(f"{csv_path}: filters.{column}: {', '.join(map(repr, unmatched))} "
                              f"{'matches' if len(unmatched) == 1 else 'match'} no record "
                              f"(values of {column!r} include {_common_values(database[column])})")
        keep &= np.logical_or.reduce(list(matches.values()))
    return keep


def _matches(csv_path: Path, column: pd.Series, key: str, value: object) -> pd.Series:
    """Boolean rows where a numeric column equals `value`, or a text column starts with it (both stripped)."""
    if pd.api.types.is_numeric_dtype(column):
        try:
            return column == float(value)
        except (TypeError, ValueError):
            raise FilterError(f"{csv_path}: filters.{key}: {value!r} is not a number, but the column is "
                              f"numeric (values include {_common_values(column)})") from None
    # Device names carry padding and firmware suffixes ("CS-12   E", "AT-6 C 5.5").
    return column.fillna("").astype(str).str.strip().str.startswith(str(value).strip())


def _common_values(column: pd.Series, shown: int = 5) -> str:
    """The column's most frequent values, for a message."""
    counts = column.dropna().astype(str).str.strip().value_counts()
    if counts.empty:
        return "none: the column is empty"
    return _few([repr(value) for value in counts.index], shown)


def _few(names: list[str], shown: int) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _superclasses(
    scp_codes: str, code_to_class: dict[str, str], min_likelihood: float, csv_path: Path, ecg_id: int
) -> tuple[str, ...]:
    """Sorted diagnostic superclasses of a record's SCP codes, as in PTB-XL's example_physionet.py."""
    try:
        likelihoods = ast.literal_eval(scp_codes)
    except (ValueError, SyntaxError):
        raise RecordError(f"{csv_path}: ecg_id {ecg_id} has unreadable scp_codes {scp_codes!r}") from None
    return tuple(
        sorted(
            {
                code_to_class[code]
                for code, likelihood in likelihoods.items()
                if code in code_to_class and likelihood >= min_likelihood
            }
        )
    )


def ptbxl_label(superclasses: tuple[str, ...], classes: list[str]) -> str | None:
    """The record's one superclass among `classes`, or None when it has none or several.

    Single-label policy: the generator is conditioned on one class and the classifier is a
    softmax over classes, so multi-label records (about a quarter of PTB-XL) are left out
    rather than assigned by an arbitrary class priority. The caller tells the two cases
    apart (`no_label` / `multi_label`) by counting `classes` in `superclasses`.
    """
    present = [superclass for superclass in superclasses if superclass in classes]
    return present[0] if len(present) == 1 else None


def read_ptbxl_windows(
    record_path: Path,
    leads: list[str],
    *,
    label: str,
    patient: str,
    fs_hz: float,
    window_s: float,
    band_hz: tuple[float, float],
    columns: dict[str, object] | None = None,
    record: str | None = None,
) -> RecordWindows:
    """Non-overlapping `window_s` crops of one record, each labeled with the record's `label`.

    The named leads (case-insensitive: "aVR" reads "AVR") are band-passed at the record's
    own rate (unless the header says they already were), resampled to `fs_hz` and cut from the start
    into float32 [n, leads, T] crops in mV; crops touching NaN or flat-line samples are dropped and
    counted; a record whose amplitude is not an ECG's in mV is a RecordError, one whose every crop is dropped a
    NoWindowsError (skipped, with its reason); a lead with ADC gain 0 gets a warning. `columns`
    (e.g. strat_fold, device) are repeated for every crop. `record` names the record in the
    windows' meta (the index's ecg_id, which `records` / `exclude_records` filter on);
    by default the file name.
    """
    record_path = Path(record_path)
    header = read_header(record_path)
    raw = read_leads(record_path, leads, header)  # [leads, samples] mV
    if np.isnan(raw).all():
        raise RecordError(f"{record_path}: every sample of {', '.join(leads)} is invalid (NaN)")
    try:
        signal, bad = preprocess.condition_record(raw, header.fs, fs_hz, None if header.preprocessed_band_hz else band_hz)
    except ValueError as error:
        raise RecordError(f"{record_path}: {error}") from None
    check_amplitude(signal, str(record_path), leads, valid=~bad)

    length = round(window_s * fs_hz)
    if not 0 < length <= signal.shape[-1]:
        raise RecordError(
            f"{record_path}: a {window_s} s window does not fit the {header.sig_len / header.fs:g} s record"
        )
    starts = np.arange(signal.shape[-1] // length, dtype=np.int64) * length
    touching = preprocess.windows_touching(bad, starts, length)
    starts = starts[~touching]
    warnings = header.gain_warnings(record_path, leads)
    if not len(starts):
        raise NoWindowsError(f"{record_path}: no crop remains: all {len(touching)} touch NaN or flat-line samples",
                             Counter(nan_or_flat=int(touching.sum())), warnings)

    n = len(starts)
    return RecordWindows(
        record=record or record_path.name,
        patient=patient,
        windows=preprocess.cut_windows(signal, starts, length).astype(np.float32),
        labels=np.full(n, label),
        sample_index=preprocess.resampled_index(starts, fs_hz, header.fs),
        columns={**{name: np.full(n, value) for name, value in (columns or {}).items()},
                 "synthetic": np.full(n, header.synthetic)},
        dropped=+Counter(nan_or_flat=int(touching.sum())),
        warnings=warnings,
    )
