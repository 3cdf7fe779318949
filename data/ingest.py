"""Reading many records in parallel and assembling their windows into one cohort table."""
from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ecg_tgdp.data.records import NoWindowsError, RecordError, RecordWindows, counts_text

RecordTask = tuple[str, Callable[[], RecordWindows]]


@dataclass
class ReadResult:
    """Windows of the records that were read, and the reason each skipped record was skipped.

    A record that yields no window is skipped too (`NoWindowsError`); what it dropped still counts in `dropped`."""

    parts: list[RecordWindows]
    skipped: dict[str, str] = field(default_factory=dict)
    dropped_before_reading: Counter = field(default_factory=Counter)  # e.g. records without a usable label
    notes: list[str] = field(default_factory=list)  # warnings from before reading (e.g. a labels CSV's rows)
    dropped_in_skipped: Counter = field(default_factory=Counter)  # by the records skipped for yielding no window

    @property
    def dropped(self) -> Counter:
        total: Counter = Counter(self.dropped_before_reading) + self.dropped_in_skipped
        for part in self.parts:
            total.update(part.dropped)
        return total

    @property
    def warnings(self) -> list[str]:
        """Every warning once (an arrays file's warnings travel with each of its patients)."""
        return list(dict.fromkeys(self.notes + [message for part in self.parts for message in part.warnings]))


def list_wfdb_records(folder: Path, records: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> list[Path]:
    """Record paths (without extension) of a WFDB folder: the given names, else RECORDS, else every header in it
    and its subfolders. A record is named by its path relative to the folder (`record_name`), so `site1/100` and
    `site2/100` stay two records."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: database folder not found")
    if records is None:
        listing = folder / "RECORDS"
        if listing.is_file():
            records = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        else:
            headers = [path for path in folder.rglob("*.hea") if not _hidden(path.relative_to(folder))]
            records = sorted(path.relative_to(folder).with_suffix("").as_posix() for path in headers)
            if not records:
                raise RecordError(f"{folder}: no WFDB header (.hea) found{_other_formats(folder)}")
    return [folder / name for name in dict.fromkeys(records) if name not in set(exclude)]


WFDB_SUFFIXES = (".hea", ".dat", ".atr")


def unmatched_entries(where: str, names: Sequence[str], *, records: Sequence[str] | None = None,
                      exclude: Sequence[str] = (), patients: Mapping[str, str] | None = None) -> list[str]:
    """One warning per cohort setting (`records`, `exclude_records`, `patients`) whose entries name no record of
    `names` (all the records `where` holds), so a typo (`802.hea` for `802`) does not silently change the cohort."""
    known = set(names)
    warnings = []
    for setting, entries, effect in (("records", records or (), "they are not read"),
                                     ("exclude_records", exclude, "they leave nothing out"),
                                     ("patients", list(patients or {}), "their patient is not used")):
        missing = [str(entry) for entry in dict.fromkeys(entries) if entry not in known]
        if missing:
            hint = "; record names have no extension" if any(Path(m).suffix in WFDB_SUFFIXES for m in missing) else ""
            examples = few_names(sorted(known), 3) or "nothing: it has none"
            warnings.append(f"{where}: {setting} {few_names(missing)} match no record of the cohort, {effect} "
                            f"(records are named like {examples}{hint})")
    return warnings


def few_names(names: Sequence[str], shown: int = 5) -> str:
    """Names for a message: the first `shown`, then how many more."""
    names = [str(name) for name in names]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def record_name(folder: Path, record_path: Path) -> str:
    """A record's name: its path relative to the database folder, without extension (`100`, `site1/100`)."""
    return Path(record_path).relative_to(folder).as_posix()


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _other_formats(folder: Path) -> str:
    """What the folder holds instead of WFDB headers, as a hint for the error message."""
    suffixes = Counter(path.suffix.lower() for path in folder.rglob("*") if path.is_file() and path.suffix)
    if not suffixes:
        return " (the folder holds no files)"
    listed = ", ".join(f"{n} {suffix}" for suffix, n in suffixes.most_common(3))
    hint = "; convert EDF to WFDB first (wfdb.io.convert.edf.read_edf, then wrsamp)" if ".edf" in suffixes else ""
    return f" (it holds {listed} files{hint})"


def read_records(tasks: Sequence[RecordTask], *, workers: int, desc: str) -> ReadResult:
    """Run each task (one record each) in `workers` processes with a progress bar.

    A record that fails is skipped and its reason kept; results come back in task order,
    so the cohort does not depend on which worker finished first. Workers ignore Ctrl-C: the
    main process takes it, cancels what is queued and stops, without a traceback per worker.
    """
    names = [name for name, _ in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"record names are not unique: {sorted({n for n in names if names.count(n) > 1})}")
    workers = workers or os.cpu_count() or 1
    outcomes: dict[str, RecordWindows | _Skip] = {}
    progress = tqdm(total=len(tasks), desc=desc, unit="rec", leave=False, disable=None)
    if workers == 1 or len(tasks) < 2:
        for name, task in tasks:
            outcomes[name] = _attempt(task)
            progress.update()
    else:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=_ignore_interrupts)
        try:
            futures = {pool.submit(_attempt, task): name for name, task in tasks}
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                progress.update()
        finally:
            pool.shutdown(cancel_futures=True)
    progress.close()
    result = ReadResult(parts=[])
    for name, _ in tasks:
        outcome = outcomes[name]
        if isinstance(outcome, RecordWindows) and not len(outcome.labels):  # a reader that does not say why
            outcome = _Skip(f"{name}: no window remains ({counts_text(outcome.dropped)})", outcome.dropped,
                            outcome.warnings)
        if isinstance(outcome, _Skip):
            result.skipped[name] = outcome.reason
            result.dropped_in_skipped.update(outcome.dropped)
            result.notes.extend(outcome.warnings)
        else:
            result.parts.append(outcome)
    return result


@dataclass
class _Skip:
    """Why a record was skipped, and what it dropped and warned about before that (a record without windows)."""

    reason: str
    dropped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _attempt(task: Callable[[], RecordWindows]) -> RecordWindows | _Skip:
    """The record's windows, or the one-line reason it cannot be used."""
    try:
        return task()
    except NoWindowsError as error:
        return _Skip(str(error), error.dropped, error.warnings)
    except RecordError as error:
        return _Skip(str(error))
    except Exception as error:  # noqa: BLE001 (a corrupt file can make wfdb/numpy raise anything; keep the others going)
        return _Skip(f"{type(error).__name__}: {error}")


def assemble(parts: Sequence[RecordWindows], classes: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Concatenate records into windows [N, leads, T] and one meta row per window."""
    parts = [part for part in parts if len(part.labels)]
    if not parts:
        raise RecordError("no usable windows remain after reading and filtering every record")
    windows = np.concatenate([part.windows for part in parts]).astype(np.float32, copy=False)
    index = {name: i for i, name in enumerate(classes)}
    frames = []
    for part in parts:
        frame = pd.DataFrame(
            {
                "record": part.record,
                "patient": part.patient,
                "label": part.labels,
                "label_index": np.array([index[label] for label in part.labels], dtype=np.int64),
                "sample_index": part.sample_index.astype(np.int64),
                **part.columns,
                "synthetic": part.columns.get("synthetic", np.zeros(len(part.labels), dtype=bool)).astype(bool),
            }
        )
        frames.append(frame)
    return windows, pd.concat(frames, ignore_index=True)


def normalization_stats(windows: np.ndarray) -> dict[str, list[float]]:
    """Per-lead mean and standard deviation over windows [N, leads, T] (fit on source train)."""
    mean = windows.mean(axis=(0, 2), dtype=np.float64)
    std = windows.std(axis=(0, 2), dtype=np.float64)
    return {"mean": mean.tolist(), "std": np.maximum(std, 1e-6).tolist()}


def class_counts(meta: pd.DataFrame, classes: Sequence[str]) -> dict:
    """Window counts per split and class, and in total."""
    table = pd.crosstab(meta["split"], meta["label"]).reindex(columns=list(classes), fill_value=0)
    return {
        "total": len(meta),
        "by_class": {name: int((meta["label"] == name).sum()) for name in classes},
        "by_split": {split: {k: int(v) for k, v in row.items()} for split, row in table.iterrows()},
        "patients_by_split": {k: int(v) for k, v in meta.groupby("split")["patient"].nunique().items()},
    }
