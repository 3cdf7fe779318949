"""Beat windows from beat-annotated WFDB records (mitdb, svdb, incartdb, a user's folder)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from data import preprocess
from data.labels import NON_BEAT_SYMBOLS
from data.plausibility import check_amplitude
from data.records import RecordError, RecordWindows
from data.rhythm import ANCHOR_SEARCH_S, detect_r_peaks
from data.wfdb_io import read_annotations, read_header, read_leads

# Annotated beats of mitdb and svdb lie on a detected R peak for 82-100% of a record's beats (207, with its
# ventricular flutter, is lowest); annotations of another rate or record, for 13-31%.
MIN_SHARE_ON_R_PEAKS = 0.6
MIN_BEATS_FOR_R_PEAK_CHECK = 20


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
    record: str | None = None,
) -> RecordWindows:
    """One window of `window_s` seconds around each annotated beat of the class list, the beat at `anchor_s`
    seconds from the window's start (default: the centre), so the window holds the neighbouring beats.

    The named leads (case-insensitive) are band-passed at the record's own rate (unless its header says
    they already were, as `data.export` writes), resampled to `fs_hz` and cut into float32
    [n, leads, T] windows in mV. Beats are dropped, and counted by reason, when their window runs past
    the record's edge or touches NaN or flat-line samples, when their symbol is not in the label map,
    or when their class is not in `classes`. A record whose amplitude is not an ECG's in mV is a
    RecordError; one whose beats mostly miss the R peaks (an annotation of another record or rate)
    keeps its windows with a warning. `record` names the record in the meta (default: the file name).
    """
    record_path = Path(record_path)
    name = record or record_path.name
    header = read_header(record_path)
    samples, symbols = read_annotations(record_path, annotator, header.fs)
    raw = read_leads(record_path, leads, header)  # [leads, samples] mV
    if np.isnan(raw).all():
        raise RecordError(f"{record_path}: every sample of {', '.join(leads)} is invalid (NaN)")

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

    try:
        signal, bad = preprocess.condition_record(raw, header.fs, fs_hz, None if header.preprocessed_band_hz else band_hz)
    except ValueError as error:
        raise RecordError(f"{record_path}: {error}") from None
    check_amplitude(signal, str(record_path), leads, valid=~bad)

    length = round(window_s * fs_hz)
    anchor = length // 2 if anchor_s is None else round(anchor_s * fs_hz)
    beats = preprocess.resampled_index(samples, header.fs, fs_hz)
    starts = beats - anchor
    inside = (starts >= 0) & (starts + length <= signal.shape[-1])
    dropped["edge"] += int((selected & ~inside).sum())
    keep = selected & inside
    touching = np.zeros(len(keep), dtype=bool)
    touching[keep] = preprocess.windows_touching(bad, starts[keep], length)
    dropped["nan_or_flat"] += int(touching.sum())
    keep &= ~touching

    on_r_peak = beats_on_r_peaks(signal[0], beats[keep], fs_hz)
    if len(on_r_peak) >= MIN_BEATS_FOR_R_PEAK_CHECK and on_r_peak.mean() < MIN_SHARE_ON_R_PEAKS:
        warnings.append(
            f"{record_path}: only {on_r_peak.mean():.0%} of {len(on_r_peak)} annotated beats lie within "
            f"{ANCHOR_SEARCH_S:g} s of an R peak in {leads[0]}; is {record_path.name}.{annotator} this record's, "
            "at its rate?"
        )
    windows = preprocess.cut_windows(signal, starts[keep], length).astype(np.float32)
    return RecordWindows(
        record=name,
        patient=patient or name,
        windows=windows,
        labels=labels[keep].astype(str),
        sample_index=samples[keep],
        columns={
            "symbol": symbols[keep].astype(str),
            "rr_prev_s": rr_prev_s[keep],
            "rr_next_s": rr_next_s[keep],
            "on_r_peak": on_r_peak,
            "synthetic": np.full(int(keep.sum()), header.synthetic),
        },
        dropped=+dropped,
        warnings=warnings,
    )


def beats_on_r_peaks(lead: np.ndarray, beats: np.ndarray, fs_hz: float) -> np.ndarray:
    """Boolean [n]: whether each beat sample lies within ANCHOR_SEARCH_S of an R peak that neurokit2 finds in the
    whole lead [samples] (one detection per record: 40 ms for 30 min at 128 Hz)."""
    beats = np.asarray(beats, dtype=np.int64)
    peaks = detect_r_peaks(lead, fs_hz)
    if not len(beats) or not len(peaks):
        return np.zeros(len(beats), dtype=bool)
    right = np.clip(np.searchsorted(peaks, beats), 0, len(peaks) - 1)
    left = np.clip(right - 1, 0, len(peaks) - 1)
    distance = np.minimum(np.abs(peaks[right] - beats), np.abs(peaks[left] - beats))
    return distance <= ANCHOR_SEARCH_S * fs_hz


def _rr_context(samples: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """RR interval before and after each beat in seconds (NaN at the record's ends)."""
    rr = np.diff(samples) / fs_hz
    before = np.concatenate([[np.nan], rr])
    after = np.concatenate([rr, [np.nan]])
    return before.astype(np.float32), after.astype(np.float32)
