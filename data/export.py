"""Writing labeled windows (real or synthetic) out as NPZ, CSV or WFDB that `ecg-tgdp ingest` reads back."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ecg_tgdp.data.arrays import CSV_DESCRIPTION
from ecg_tgdp.data.atomic import staged_directory
from ecg_tgdp.data.store import write_cohort
from ecg_tgdp.data.wfdb_io import PREPROCESSED_COMMENT

# Annotation symbol written for each AAMI class (its most common MIT-BIH symbol).
CLASS_TO_SYMBOL: dict[str, str] = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}
FORMATS = ("npz", "csv", "wfdb")


def write_synthetic_cohort(
    out_dir: Path, windows: np.ndarray, label_index: np.ndarray, *, classes: Sequence[str], description: dict, method: str,
    split: str | np.ndarray = "synthetic",
) -> None:
    """Synthetic windows [N, leads, T] (mV) in the cohort layout, so evaluation reads them like real ones; `split` is
    one split name for every window, or one per window."""
    labels = np.asarray(classes)[label_index]
    meta = pd.DataFrame(
        {
            "record": method, "patient": method, "label": labels, "label_index": label_index.astype(np.int64),
            "split": split, "sample_index": np.arange(len(labels), dtype=np.int64), "synthetic": True,
        }
    )
    counts = {"total": len(labels), "by_class": {name: int((labels == name).sum()) for name in classes}}
    write_cohort(out_dir, windows, meta, {**description, "name": method, "classes": list(classes), "counts": counts})


def export_windows(
    out_dir: Path,
    windows: np.ndarray,
    labels: Sequence[str],
    *,
    fs_hz: float,
    leads: Sequence[str],
    fmt: str,
    patients: Sequence[str] | None = None,
    name: str = "synthetic",
    synthetic: Sequence[bool] | None = None,
    band_hz: tuple[float, float] | None = None,
    anchor_s: float | None = None,
) -> Path:
    """Write windows [N, leads, T] in mV with their labels into out_dir; return the main file or folder.

    npz: arrays windows, labels, patients, fs_hz, leads (and band_hz, anchor_s, synthetic when
    given). csv (one lead): a first line `# ecg-tgdp fs_hz=... band_hz=... anchor_s=...`, then
    a label, a patient and a synthetic column and one column per sample. wfdb: AAMI beat classes
    become one record per patient with the windows back to back and a beat annotation (class
    symbol) at each window's anchor (default its centre); other labels become one record per
    window plus labels.csv (record, label, patient) for `labels_csv`; a header comment carries
    band_hz and the synthetic flag. `band_hz` says the windows are already band-passed with
    those edges, so `ecg-tgdp ingest` reads them back without filtering them again.
    """
    windows = np.asarray(windows, dtype=np.float32)
    labels = np.asarray(labels, dtype=str)
    patients = np.full(len(labels), name) if patients is None else np.asarray(patients, dtype=str)
    flags = np.zeros(len(labels), dtype=bool) if synthetic is None else np.asarray(synthetic, dtype=bool)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        path = out_dir / f"{name}.npz"
        temporary = out_dir / f".{name}.tmp.npz"
        described = {key: value for key, value in (("band_hz", band_hz), ("anchor_s", anchor_s)) if value is not None}
        np.savez_compressed(temporary, windows=windows, labels=labels, patients=patients, fs_hz=fs_hz,
                            leads=np.asarray(leads), synthetic=flags, **described)
        temporary.replace(path)
        return path
    if fmt == "csv":
        return _write_csv(out_dir / f"{name}.csv", windows, labels, patients, flags,
                          _csv_description(fs_hz, leads, band_hz, anchor_s))
    return _write_wfdb(out_dir / name, windows, labels, patients, flags, fs_hz, list(leads), band_hz, anchor_s)


def _csv_description(fs_hz: float, leads: Sequence[str], band_hz: tuple[float, float] | None,
                     anchor_s: float | None) -> str:
    """The first line `data.arrays` reads back: rate, lead, and (when given) band-pass edges and anchor."""
    words = [CSV_DESCRIPTION, f"fs_hz={fs_hz:g}", f"leads={','.join(leads)}"]
    if band_hz is not None:
        words.append(f"band_hz={band_hz[0]:g},{band_hz[1]:g}")
    if anchor_s is not None:
        words.append(f"anchor_s={anchor_s:g}")
    return " ".join(words)


def _write_csv(path: Path, windows: np.ndarray, labels: np.ndarray, patients: np.ndarray, synthetic: np.ndarray,
               description: str) -> Path:
    if windows.shape[1] != 1:
        raise ValueError(f"{path}: CSV export holds one lead per window, got {windows.shape[1]}; use npz or wfdb")
    table = pd.DataFrame(windows[:, 0], columns=[f"s{i}" for i in range(windows.shape[-1])])
    table.insert(0, "synthetic", synthetic.astype(int))
    table.insert(0, "patient", patients)
    table.insert(0, "label", labels)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="") as file:
        file.write(description + "\n")
        table.to_csv(file, index=False, float_format="%.5f")
    temporary.replace(path)
    return path


def _write_wfdb(folder: Path, windows: np.ndarray, labels: np.ndarray, patients: np.ndarray, synthetic: np.ndarray,
                fs_hz: float, leads: list[str], band_hz: tuple[float, float] | None, anchor_s: float | None) -> Path:
    beat_classes = set(labels) <= set(CLASS_TO_SYMBOL)
    anchor = windows.shape[-1] // 2 if anchor_s is None else round(anchor_s * fs_hz)
    with staged_directory(folder) as staging:
        names = []
        if beat_classes:
            for patient in dict.fromkeys(patients):
                rows = np.flatnonzero(patients == patient)
                names.append(_record_name(patient))
                comment = _wfdb_comment(band_hz, bool(synthetic[rows].all()))
                _write_beat_record(staging, names[-1], windows[rows], labels[rows], fs_hz, leads, anchor, comment)
        else:
            for i, (window, label) in enumerate(zip(windows, labels)):
                names.append(f"w{i:06d}")
                _write_signal(staging, names[-1], window, fs_hz, leads, _wfdb_comment(band_hz, bool(synthetic[i])))
            pd.DataFrame({"record": names, "label": labels, "patient": patients}).to_csv(staging / "labels.csv", index=False)
        (staging / "RECORDS").write_text("".join(f"{record}\n" for record in names))
    return folder


def _wfdb_comment(band_hz: tuple[float, float] | None, synthetic: bool) -> list[str]:
    """The header comment `data.wfdb_io` reads: already band-passed (with these edges), synthetic or not."""
    if band_hz is None:
        return []
    return [f"{PREPROCESSED_COMMENT} band_hz={band_hz[0]:g},{band_hz[1]:g}" + (" synthetic" if synthetic else "")]


def _write_beat_record(folder: Path, name: str, windows: np.ndarray, labels: np.ndarray, fs_hz: float,
                       leads: list[str], anchor: int, comments: list[str]) -> None:
    """Windows back to back, each annotated at its anchor sample with its class symbol."""
    length = windows.shape[-1]
    _write_signal(folder, name, np.concatenate(list(windows), axis=-1), fs_hz, leads, comments)
    beats = np.arange(len(windows)) * length + anchor
    symbols = [CLASS_TO_SYMBOL[label] for label in labels]
    wfdb.wrann(name, "atr", sample=beats, symbol=symbols, fs=fs_hz, write_dir=str(folder))


def _write_signal(folder: Path, name: str, signal: np.ndarray, fs_hz: float, leads: list[str],
                  comments: list[str]) -> None:
    """signal [leads, samples] in mV as a format-16 WFDB record at 1 µV resolution (±32 mV range)."""
    signal = np.clip(np.asarray(signal, dtype=np.float64), -32.0, 32.0)
    wfdb.wrsamp(
        name, fs=fs_hz, units=["mV"] * len(leads), sig_name=leads, p_signal=signal.T,
        fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads), write_dir=str(folder),
        comments=comments,
    )


def _record_name(patient: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in patient) or "record"
