"""Beat windows from beat-annotated WFDB records (mitdb, svdb, incartdb, a user's folder)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ecg_tgdp.data import preprocess
from ecg_tgdp.data.labels import NON_BEAT_SYMBOLS
from ecg_tgdp.data.plausibility import check_amplitude
from ecg_tgdp.data.records import NoWindowsError, RecordError, RecordWindows, counts_text
from ecg_tgdp.data.rhythm import ANCHOR_SEARCH_S
from ecg_tgdp.data.wfdb_io import read_annotations, read_header, read_leads

# Beats sit on their QRS complex when the steepest slope within ±0.4 s lies within ANCHOR_SEARCH_S of the annotation:
# for 78-100% of a record's beats in mitdb (MLII) and svdb (ECG1), 69-100% in simulated records; for 17-40% when the
# annotation is read at half or twice its rate. (neurokit2's R-peak detector found only 31% of a simulated record's
# low-amplitude ECG1 beats, so the check uses the slope, whatever the QRS polarity.)
SLOPE_SEARCH_S = 0.4
MIN_SHARE_ON_R_PEAKS = 0.5
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
    amplitude_normalization: str = "none",
    record: str | None = None,
) -> RecordWindows:
    """One window of `window_s` seconds around each annotated beat of the class list, the beat at `anchor_s`
    seconds from the window's start (default: the centre), so the window holds the neighbouring beats.

    The named leads (case-insensitive) are band-passed at the record's own rate (unless its header says
    they already were, as `data.export` writes), resampled to `fs_hz` and cut into float32
    [n, leads, T] windows in mV; with `amplitude_normalization="median_r"` each lead is first rescaled so
    that the record's median R amplitude is 1 mV (`preprocess.normalize_amplitude`; the factor is kept in
    the column `amplitude_factor`). Beats are dropped, and counted by reason, when their window runs past
    the record's edge or touches NaN or flat-line samples, when their symbol is not in the label map,
    when their class is not in `classes`, or when they repeat an earlier beat annotation at the same sample
    (`duplicate_annotation`: an annotator run twice would double the windows, half with RR = 0). A record
    whose amplitude is not an ECG's in mV is a RecordError, one left without any window a NoWindowsError
    (skipped, with its reason); one whose beats mostly miss the R peaks (an annotation of another record or
    rate) keeps its windows with a warning, as does a lead with ADC gain 0. `record` names the record in the
    meta (default: the file name).
    """
    record_path = Path(record_path)
    name = record or record_path.name
    annotation_file = record_path.with_suffix(f".{annotator}")
    header = read_header(record_path)
    samples, symbols = read_annotations(record_path, annotator, header.fs)
    raw = read_leads(record_path, leads, header)  # [leads, samples] mV
    if np.isnan(raw).all():
        raise RecordError(f"{record_path}: every sample of {', '.join(leads)} is invalid (NaN)")

    dropped: Counter = Counter()
    warnings: list[str] = header.gain_warnings(record_path, leads)
    is_beat = ~np.isin(symbols, list(NON_BEAT_SYMBOLS))
    non_beats = Counter(symbols[~is_beat])
    samples, symbols = _once_per_sample(annotation_file, samples[is_beat], symbols[is_beat], dropped, warnings)
    rr_prev_s, rr_next_s = _rr_context(samples, header.fs)

    known = np.isin(symbols, list(symbol_to_class))
    if not known.all():
        unknown = Counter(symbols[~known])
        dropped["unknown_symbol"] += int((~known).sum())
        listed = ", ".join(f"{symbol!r}×{count}" for symbol, count in sorted(unknown.items()))
        warnings.append(f"{record_path}: skipped beats with unknown annotation symbols {listed}")
    labels = np.array([symbol_to_class.get(symbol, "") for symbol in symbols], dtype=object)
    selected = known & np.isin(labels, classes)
    dropped["class_not_selected"] += int((known & ~selected).sum())
    if not selected.any():
        raise NoWindowsError(f"{annotation_file}: no beat annotations of the chosen classes {', '.join(classes)} "
                             f"({_annotation_contents(symbols, non_beats)})", +dropped, warnings)

    try:
        signal, bad = preprocess.condition_record(raw, header.fs, fs_hz, None if header.preprocessed_band_hz else band_hz)
    except ValueError as error:
        raise RecordError(f"{record_path}: {error}") from None
    check_amplitude(signal, str(record_path), leads, valid=~bad)

    length = round(window_s * fs_hz)
    anchor = length // 2 if anchor_s is None else round(anchor_s * fs_hz)
    beats = preprocess.resampled_index(samples, header.fs, fs_hz)
    signal, factor = preprocess.normalize_amplitude(signal, beats, fs_hz, amplitude_normalization)
    starts = beats - anchor
    inside = (starts >= 0) & (starts + length <= signal.shape[-1])
    dropped["edge"] += int((selected & ~inside).sum())
    keep = selected & inside
    touching = np.zeros(len(keep), dtype=bool)
    touching[keep] = preprocess.windows_touching(bad, starts[keep], length)
    dropped["nan_or_flat"] += int(touching.sum())
    keep &= ~touching
    if not keep.any():
        raise NoWindowsError(f"{record_path}: no beat window remains of its {int(selected.sum())} beats of the chosen "
                             f"classes ({counts_text(dropped)})", +dropped, warnings)

    on_r_peak = beats_at_steepest_slope(signal[0], beats[keep], fs_hz)
    if len(on_r_peak) >= MIN_BEATS_FOR_R_PEAK_CHECK and on_r_peak.mean() < MIN_SHARE_ON_R_PEAKS:
        warnings.append(
            f"{record_path}: only {on_r_peak.mean():.0%} of {len(on_r_peak)} annotated beats lie within "
            f"{ANCHOR_SEARCH_S:g} s of their QRS complex (the steepest slope of {leads[0]}); is "
            f"{record_path.name}.{annotator} this record's, at its rate?"
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
            "amplitude_factor": np.full(int(keep.sum()), factor[0], dtype=np.float32),
            "on_r_peak": on_r_peak,
            "synthetic": np.full(int(keep.sum()), header.synthetic),
        },
        dropped=+dropped,
        warnings=warnings,
    )


def beats_at_steepest_slope(lead: np.ndarray, beats: np.ndarray, fs_hz: float) -> np.ndarray:
    """Boolean [n]: whether the steepest slope of the lead [samples] within ±SLOPE_SEARCH_S of each beat sample lies
    within ANCHOR_SEARCH_S of it, as it does when the annotation marks the QRS complex (of either polarity)."""
    beats = np.asarray(beats, dtype=np.int64)
    slope = np.abs(np.gradient(lead)) if len(lead) > 1 else np.zeros(len(lead))
    reach = round(SLOPE_SEARCH_S * fs_hz)
    around = np.clip(beats[:, None] + np.arange(-reach, reach + 1)[None, :], 0, len(lead) - 1)  # [n, 2 reach + 1]
    steepest = around[np.arange(len(beats)), np.argmax(slope[around], axis=1)]
    return np.abs(steepest - beats) <= ANCHOR_SEARCH_S * fs_hz


def _once_per_sample(annotation_file: Path, samples: np.ndarray, symbols: np.ndarray, dropped: Counter,
                     warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Beat annotations without those that repeat an earlier one at the same sample (an annotator run twice would give
    twice the windows, half with RR = 0); counted in `dropped` as duplicate_annotation and said in `warnings`."""
    repeated = repeated_annotations(samples)
    if repeated.any():
        dropped["duplicate_annotation"] += int(repeated.sum())
        warnings.append(f"{annotation_file}: {int(repeated.sum())} beat annotations repeat an earlier one at the same "
                        "sample; dropped (duplicate_annotation)")
    return samples[~repeated], symbols[~repeated]


def repeated_annotations(samples: np.ndarray) -> np.ndarray:
    """Boolean [n]: annotations at the same sample as an earlier one (the first of each sample is kept)."""
    first = np.zeros(len(samples), dtype=bool)
    first[np.unique(samples, return_index=True)[1]] = True
    return ~first


def _annotation_contents(beat_symbols: np.ndarray, non_beats: Counter) -> str:
    """What an annotation file without a usable beat holds, for the message: its beats, else its other symbols."""
    def listed(counts: Counter) -> str:
        return ", ".join(f"{symbol!r}×{count}" for symbol, count in sorted(counts.items()))
    if len(beat_symbols):
        return f"its beats: {listed(Counter(beat_symbols))}"
    if non_beats:
        return f"it holds only non-beat annotations: {listed(non_beats)}"
    return "it holds no annotations"


def _rr_context(samples: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """RR interval before and after each beat in seconds (NaN at the record's ends)."""
    rr = np.diff(samples) / fs_hz
    before = np.concatenate([[np.nan], rr])
    after = np.concatenate([rr, [np.nan]])
    return before.astype(np.float32), after.astype(np.float32)
