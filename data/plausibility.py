"""Is it an ECG in mV? A physiological amplitude range for records, and the robust range of the real windows of
their class for synthetic ones."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ecg_tgdp.data.records import RecordError

# Robust amplitude (99th percentile of |x − median|, about the R-wave height) of a band-passed ECG lead:
# real leads sit between about 0.1 and 5 mV; outside this range the units are wrong (µV read as mV, volts).
PHYSIOLOGICAL_MV = (0.01, 20.0)
# Synthetic windows are screened on FEATURES of each lead (window_features) and kept when every one lies within
# SCREEN_SPREAD standard deviations of the median of the real windows of their class. The standard deviation is
# the real windows' robust one (1.4826 × MAD) combined in quadrature with BETWEEN_PATIENT_LOG_SD, the spread of
# per-patient medians over MIT-BIH's patients (median over N, S, V; `benchmarks/plausibility_screen.py`): a
# user's windows often come from a few patients, whose own spread is 3-10× smaller than the spread between
# patients, and a range fit on it alone rejected about half the real windows of other patients. A class with
# fewer than MIN_CLASS_WINDOWS real windows is judged against all of them.
FEATURES = ("log peak-to-peak", "log steepest slope", "log total variation per peak-to-peak",
            "log excursion per beat")
BETWEEN_PATIENT_LOG_SD = (0.36, 0.41, 0.23, 0.26)
SCREEN_SPREAD = 4.0
MIN_CLASS_WINDOWS = 20
BEAT_GUARD_S = 0.15  # the labeled beat's QRS: deflections this close to the beat are the beat itself


def robust_amplitude_mv(x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per lead [leads]: the 99th percentile of |x − median| over the samples of x [leads, samples] that are
    finite (and `valid` [samples], where given)."""
    keep = np.isfinite(x).all(axis=0) if valid is None else valid & np.isfinite(x).all(axis=0)
    if not keep.any():
        return np.zeros(x.shape[0])
    kept = x[:, keep]
    return np.percentile(np.abs(kept - np.median(kept, axis=1, keepdims=True)), 99, axis=1)


def check_amplitude(x: np.ndarray, where: str, lead_names: Sequence[str], valid: np.ndarray | None = None) -> None:
    """RecordError naming `where` and the lead when a lead of x [leads, samples] (mV) lies outside PHYSIOLOGICAL_MV."""
    low, high = PHYSIOLOGICAL_MV
    for name, amplitude in zip(lead_names, robust_amplitude_mv(x, valid)):
        if not low <= amplitude <= high:
            raise RecordError(f"{where}: lead {name} has a typical amplitude of {amplitude:.3g} mV, outside the "
                              f"physiological {low:g}-{high:g} mV; check its units (µV, mV, V)")


def beat_mask(length: int, beat: int, fs_hz: float) -> np.ndarray:
    """Boolean [length]: the samples within ±BEAT_GUARD_S of the labeled beat at sample `beat`."""
    guard = round(BEAT_GUARD_S * fs_hz)
    inside = np.zeros(length, dtype=bool)
    inside[max(0, beat - guard):beat + guard + 1] = True
    return inside


def window_features(windows: np.ndarray, beat: int, fs_hz: float) -> np.ndarray:
    """[N, len(FEATURES), leads] of windows [N, leads, T] (mV) whose labeled beat is at sample `beat`: the logs of
    the peak-to-peak amplitude, the steepest slope (mV per sample), the total variation per peak-to-peak (how busy
    the trace is: noise is many times busier than an ECG) and the largest |x − median| outside the labeled beat
    (`beat_mask`) per the largest inside it (a spike away from the beat). −inf or NaN for a flat lead, NaN for a
    non-finite window: outside any range."""
    windows = np.asarray(windows, dtype=np.float64)
    steps = np.abs(np.diff(windows, axis=-1))
    deviation = np.abs(windows - np.median(windows, axis=-1, keepdims=True))
    inside = beat_mask(windows.shape[-1], beat, fs_hz)
    with np.errstate(divide="ignore", invalid="ignore"):
        peak_to_peak = np.ptp(windows, axis=-1)
        features = [peak_to_peak, steps.max(axis=-1), steps.sum(axis=-1) / peak_to_peak,
                    deviation[..., ~inside].max(axis=-1) / deviation[..., inside].max(axis=-1)]
        return np.log(np.stack(features, axis=1))


@dataclass(frozen=True)
class PlausibleRange:
    """Bounds [features, leads] of window_features for windows whose labeled beat is at sample `beat`."""

    low: np.ndarray
    high: np.ndarray
    beat: int
    fs_hz: float

    def contains(self, windows: np.ndarray) -> np.ndarray:
        """Boolean [N]: windows [N, leads, T] whose every feature of every lead lies inside the bounds."""
        features = window_features(windows, self.beat, self.fs_hz)
        return ((features >= self.low) & (features <= self.high)).all(axis=(1, 2))


def plausible_range(real_windows: np.ndarray, beat: int, fs_hz: float, spread: float = SCREEN_SPREAD,
                    between_patients: Sequence[float] = BETWEEN_PATIENT_LOG_SD) -> PlausibleRange:
    """Median ± `spread` × √(robust SD² + between-patient SD²) of the real windows' features, per feature and lead
    (the robust SD is 1.4826 × MAD)."""
    features = window_features(real_windows, beat, fs_hz)
    features = np.where(np.isfinite(features), features, np.nan)
    median = np.nanmedian(features, axis=0)
    robust_sd = 1.4826 * np.nanmedian(np.abs(features - median), axis=0)
    sd = np.hypot(robust_sd, np.asarray(between_patients, dtype=np.float64)[:, None])
    return PlausibleRange(low=median - spread * sd, high=median + spread * sd, beat=beat, fs_hz=fs_hz)


def plausible_by_class(real_windows: np.ndarray, real_labels: np.ndarray, windows: np.ndarray,
                       labels: np.ndarray, beat: int, fs_hz: float) -> np.ndarray:
    """Boolean [N]: windows [N, leads, T] (labeled beat at sample `beat`) inside the plausible range of the real
    windows of their own label."""
    real_labels, labels = np.asarray(real_labels), np.asarray(labels)
    pooled = plausible_range(real_windows, beat, fs_hz)
    inside = np.zeros(len(windows), dtype=bool)
    for label in np.unique(labels):
        own = real_labels == label
        bounds = plausible_range(real_windows[own], beat, fs_hz) if own.sum() >= MIN_CLASS_WINDOWS else pooled
        inside[labels == label] = bounds.contains(windows[labels == label])
    return inside
