"""Beat windows from beat-annotated WFDB records (mitdb, svdb, incartdb, a user's folder)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from data import preprocess
from data.labels import NON_BEAT_SYMBOLS
from data.records import RecordError, RecordWindows
from data.wfdb_io import read_annotations, read_header, read_leads


def read_beat_windows(
    record_path: Path,
    leads: list[str],
    *,
    fs_hz: float,
    window_s: float,
    band_hz: tuple[float, float],
    symbol_to_class: dict[str, str],
    classes: list[str],
    patient: str | None = None,
    annotator: str = "atr",
    anchor_s: float | None = None,
    amplitude_normalization: str = "none",
) -> RecordWindows:
    """One window of `window_s` seconds around each annotated beat of the class list, the beat at `anchor_s`
    seconds from the window's start (default: the centre), so the window holds the neighbouring beats.

    The named leads are band-passed at the record's own rate, resampled to `fs_hz` and
    cut into float32 [n, leads, T] windows in mV; with `amplitude_normalization="median_r"` each lead is first
    rescaled so that the record's median R amplitude is 1 mV (`preprocess.normalize_amplitude`; the factor is
    kept in the column `amplitude_factor`). Beats are dropped, and counted by reason,
    when their window runs past the record's edge or touches NaN or flat-line samples,
    when their symbol is not in the label map, or when their class is not in `classes`.
    """
    record_path = Path(record_path)
    header = read_header(record_path)
    annotation = read_annotations(record_path, annotator)
    raw = read_leads(record_path, leads, header)  # [leads, samples] mV
    if np.isnan(raw).all():
        raise RecordError(f"{record_path}: every sample of {', '.join(leads)} is invalid (NaN)")

    samples = np.asarray(annotation.sample, dtype=np.int64)
    symbols = np.asarray(annotation.symbol, dtype=object)
    is_beat = ~np.isin(symbols, list(NON_BEAT_SYMBOLS))
    samples, symbols = samples[is_beat], symbols[is_beat]
    rr_prev_s, rr_next_s = _rr_context(samples, header.fs)

    dropped: Counter = Counter()
    warnings: list[str] = []
    known = np.isin(symbols, list(symbol_to_class))
    if not known.all():
        unknown = Counter(symbols[~known])
        dropped["unknown_symbol"] += int((~known).sum())
        listed = ", ".join(f"{symbol!r}×{count}" for symbol, count in sorted(unknown.items()))
        warnings.append(f"{record_path}: skipped beats with unknown annotation symbols {listed}")
    labels = np.array([symbol_to_class.get(symbol, "") for symbol in symbols], dtype=object)
    selected = known & np.isin(labels, classes)
    dropped["class_not_selected"] += int((known & ~selected).sum())

    bad = preprocess.invalid_samples(raw, header.fs)
    signal = preprocess.bandpass(preprocess.fill_invalid(raw, bad), header.fs, band_hz)
    signal = preprocess.resample(signal, header.fs, fs_hz)
    beats_here = preprocess.resampled_index(samples, header.fs, fs_hz)
    signal, factor = preprocess.normalize_amplitude(signal, beats_here, fs_hz, amplitude_normalization)
    bad = bad[np.minimum(np.arange(signal.shape[-1]) * header.fs / fs_hz, len(bad) - 1).astype(np.int64)]

    length = round(window_s * fs_hz)
    anchor = length // 2 if anchor_s is None else round(anchor_s * fs_hz)
    starts = beats_here - anchor
    inside = (starts >= 0) & (starts + length <= signal.shape[-1])
    dropped["edge"] += int((selected & ~inside).sum())
    keep = selected & inside
    touching = np.zeros(len(keep), dtype=bool)
    touching[keep] = preprocess.windows_touching(bad, starts[keep], length)
    dropped["nan_or_flat"] += int(touching.sum())
    keep &= ~touching

    windows = preprocess.cut_windows(signal, starts[keep], length).astype(np.float32)
    return RecordWindows(
        record=record_path.name,
        patient=patient or record_path.name,
        windows=windows,
        labels=labels[keep].astype(str),
        sample_index=samples[keep],
        columns={
            "symbol": symbols[keep].astype(str),
            "rr_prev_s": rr_prev_s[keep],
            "rr_next_s": rr_next_s[keep],
            "amplitude_factor": np.full(int(keep.sum()), factor[0], dtype=np.float32),
        },
        dropped=+dropped,
        warnings=warnings,
    )


def _rr_context(samples: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """RR interval before and after each beat in seconds (NaN at the record's ends)."""
    rr = np.diff(samples) / fs_hz
    before = np.concatenate([[np.nan], rr])
    after = np.concatenate([rr, [np.nan]])
    return before.astype(np.float32), after.astype(np.float32)
