"""Rhythm context of beat windows, read from the signal alone (README: Beats that carry their rhythm).

A supraventricular beat is defined by its timing against the patient's own rhythm, and a
ventricular one by its shape against the patient's own beats. Synthetic windows carry no
annotations, so both are measured here from the window itself, identically for real and
synthetic windows (never from `.atr` files):

- R peaks: neurokit2's QRS detector (`nk.ecg_findpeaks`, method "neurokit": steepness
  thresholding of the smoothed gradient, Makowski et al. 2021, Behav. Res. 53:1689) on the
  first lead of each window;
- the anchor beat: the detected peak nearest the window's anchor sample (the annotated beat),
  within ±`ANCHOR_SEARCH_S`; the anchor sample itself when the detector missed it;
- RR before and after the anchor beat and the window's mean RR, which normalizes them to the
  local rhythm as de Chazal et al. 2004 (IEEE TBME 51:1196) normalize by the average RR;
- the anchor beat's segment and the median segment of the window's other beats (a template of
  the patient's own beat), as in template-matching beat classifiers (Hamilton & Tompkins 1986).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

DETECTOR = "neurokit"  # nk.ecg_findpeaks method: fastest of neurokit's detectors on short windows (0.1 ms each)
ANCHOR_SEARCH_S = 0.1  # a detected peak this close to the anchor sample is the anchor beat
SEGMENT_S = (0.25, 0.4)  # a beat's segment: this long before and after its R peak (P wave to T wave)
RR_COLUMNS = ("rr_pre_s", "rr_post_s", "rr_mean_s")


@dataclass
class BeatContext:
    """What the rhythm around each window's anchor beat looks like.

    rr_s: [N, 3] seconds, columns RR_COLUMNS (NaN where the neighbouring beat is not in the window);
    beat: [N, leads, S] the anchor beat's segment; template: [N, leads, S] the median segment of the
    window's other beats (NaN rows when it has none); neighbours: [N] how many beats made the template.
    """

    rr_s: np.ndarray
    beat: np.ndarray
    template: np.ndarray
    neighbours: np.ndarray

    def log_rr_ratio(self) -> np.ndarray:
        """log(RR before / RR after) of each anchor beat [N]: < 0 for a premature beat; NaN where unknown."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(self.rr_s[:, 0] / self.rr_s[:, 1])


def segment_samples(fs_hz: float) -> tuple[int, int]:
    """Samples of a beat segment before and after its R peak at `fs_hz`."""
    return round(SEGMENT_S[0] * fs_hz), round(SEGMENT_S[1] * fs_hz)


def detect_r_peaks(lead: np.ndarray, fs_hz: float) -> np.ndarray:
    """Sample indices [k] of the R peaks neurokit2 finds in one lead [T] (band-passed, mV); none on a flat or
    non-finite lead."""
    import neurokit2 as nk

    lead = np.asarray(lead, dtype=np.float64)
    if not np.isfinite(lead).all() or np.ptp(lead) == 0:
        return np.zeros(0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit warns on windows with few peaks; that is what windows are
        try:
            peaks = nk.ecg_findpeaks(lead, sampling_rate=fs_hz, method=DETECTOR)["ECG_R_Peaks"]
        except (ValueError, IndexError):  # its thresholds fail on windows without a single QRS
            return np.zeros(0, dtype=np.int64)
    return np.unique(np.asarray(peaks, dtype=np.int64))


def window_beats(windows: np.ndarray, fs_hz: float, anchor: int | None) -> list[np.ndarray]:
    """The R peaks of each window [N, leads, T] (first lead, `detect_r_peaks`), with the anchor beat at `anchor` added
    where the detector missed it (`anchor_rr`): the rhythm a rhythm-channel model is given (`models.rhythm`)."""
    peaks = (detect_r_peaks(window[0], fs_hz) for window in np.asarray(windows))
    return [p if anchor is None else with_anchor_beat(p, anchor, fs_hz) for p in peaks]


def with_anchor_beat(peaks: np.ndarray, anchor: int, fs_hz: float) -> np.ndarray:
    """Sorted R peaks with `anchor` added when no peak lies within ANCHOR_SEARCH_S of it (the detector missed the
    annotated beat)."""
    peaks = np.asarray(peaks, dtype=np.int64)
    if np.any(np.abs(peaks - anchor) <= ANCHOR_SEARCH_S * fs_hz):
        return peaks
    return np.sort(np.append(peaks, anchor))


def anchor_rr(peaks: np.ndarray, anchor: int, fs_hz: float) -> tuple[int, float, float, float]:
    """(anchor beat's sample, RR before it, RR after it, mean RR of the window) in seconds, NaN where absent.

    peaks: sorted R-peak samples of one window; the anchor beat is the peak within ANCHOR_SEARCH_S of
    `anchor`, or `anchor` itself (added to the peaks) when the detector missed it.
    """
    peaks = with_anchor_beat(peaks, anchor, fs_hz)
    k = int(np.argmin(np.abs(peaks - anchor)))  # the nearest peak within the search window, or the added anchor
    rr = np.diff(peaks) / fs_hz
    before = rr[k - 1] if k > 0 else np.nan
    after = rr[k] if k < len(rr) else np.nan
    mean = rr.mean() if len(rr) else np.nan
    return int(peaks[k]), float(before), float(after), float(mean)


def beat_context(windows: np.ndarray, fs_hz: float, anchor: int) -> BeatContext:
    """RR around the anchor beat, its segment and its neighbours' template for windows [N, leads, T] in mV.

    R peaks are detected on the first lead; the other leads' segments are cut at the same samples.
    """
    windows = np.asarray(windows)
    if windows.ndim != 3:
        raise ValueError(f"beat_context needs windows [N, leads, T], got shape {windows.shape}")
    n, leads, length = windows.shape
    before, after = segment_samples(fs_hz)
    if not before <= anchor <= length - after:
        raise ValueError(f"the anchor beat at sample {anchor} of a {length}-sample window leaves no room for its "
                         f"segment ({-SEGMENT_S[0]} s to +{SEGMENT_S[1]} s) at {fs_hz:g} Hz")
    rr = np.full((n, len(RR_COLUMNS)), np.nan)
    beat = np.zeros((n, leads, before + after), dtype=np.float32)
    template = np.full_like(beat, np.nan)
    neighbours = np.zeros(n, dtype=np.int64)
    for i, window in enumerate(windows):
        window = np.asarray(window, dtype=np.float64)
        peaks = detect_r_peaks(window[0], fs_hz)
        centre, *rr[i] = anchor_rr(peaks, anchor, fs_hz)
        centre = min(max(centre, before), length - after)  # a detected anchor near the edge: keep its segment inside
        beat[i] = window[:, centre - before:centre + after]
        others = [p for p in peaks if abs(p - centre) > ANCHOR_SEARCH_S * fs_hz and before <= p <= length - after]
        if others:
            template[i] = np.median(np.stack([window[:, p - before:p + after] for p in others]), axis=0)
            neighbours[i] = len(others)
    return BeatContext(rr, beat, template, neighbours)
