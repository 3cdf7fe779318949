"""Is it an ECG in mV? A physiological amplitude range for records, and the robust range of the real windows of
their class for synthetic ones."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import median_abs_deviation

from ecg_tgdp.data.records import RecordError

# Robust amplitude (99th percentile of |x − median|, about the R-wave height) of a band-passed ECG lead:
# real leads sit between about 0.1 and 5 mV; outside this range the units are wrong (µV read as mV, volts).
PHYSIOLOGICAL_MV = (0.01, 20.0)
# Synthetic windows are screened on FEATURES of each lead (window_features) and kept when every one lies within
# SCREEN_SPREAD standard deviations of the median of the real windows of their class. The standard deviation is
# the real windows' robust one (1.4826 × MAD) combined in quadrature with BETWEEN_PATIENT_LOG_SD, the spread of
# per-patient medians over MIT-BIH's patients (median over N, S, V; `benchmarks/plausibility_screen.py`): a
# user's windows often come from a few patients, whose own spread in size and slope is 3-12× smaller than the
# spread between patients, and a range fit on it alone rejected about half the real windows of other patients.
# (Measured on the first lead of 4 s MIT-BIH windows; SVDB's patients differ more in size, 0.57-0.68.) A class
# with fewer than MIN_CLASS_WINDOWS real windows is judged against all of them.
FEATURES = ("log peak-to-peak", "log steepest slope", "log total variation per peak-to-peak",
            "log excursion per beat")
BETWEEN_PATIENT_LOG_SD = (0.36, 0.41, 0.23, 0.26)
SCREEN_SPREAD = 4.0
MIN_CLASS_WINDOWS = 20
# The labeled beat's QRS: deflections this close to the beat are the beat itself (the screen's excursion feature
# and the generator-quality excursion share both read it).
BEAT_GUARD_S = 0.15


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
    """Boolean [length]: the samples within ±BEAT_GUARD_S of the labeled beat at sample `beat`; ValueError when the
    beat lies outside the window or the guard covers all of it."""
    guard = round(BEAT_GUARD_S * fs_hz)
    if not 0 <= beat < length or length <= 2 * guard + 1:
        raise ValueError(f"a labeled beat at sample {beat} with a ±{BEAT_GUARD_S} s guard does not fit a window of "
                         f"{length} samples at {fs_hz:g} Hz")
    inside = np.zeros(length, dtype=bool)
    inside[max(0, beat - guard):beat + guard + 1] = True
    return inside


def window_features(windows: np.ndarray, beat: int | None, fs_hz: float) -> np.ndarray:
    """[N, len(FEATURES), leads] of windows [N, leads, T] (mV) whose labeled beat is at sample `beat`: the logs of
    the peak-to-peak amplitude, the steepest slope (mV per sample), the total variation per peak-to-peak (how busy
    the trace is: noise is many times busier than an ECG) and the largest |x − median| outside the labeled beat
    (`beat_mask`) per the largest inside it (a spike away from the beat; 0 for every window of record crops,
    `beat` None, which have no labeled beat). −inf or NaN for a flat lead, NaN for a non-finite window: outside
    any range."""
    windows = np.asarray(windows, dtype=np.float64)
    steps = np.abs(np.diff(windows, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        peak_to_peak = np.ptp(windows, axis=-1)
        features = [np.log(peak_to_peak), np.log(steps.max(axis=-1)), np.log(steps.sum(axis=-1) / peak_to_peak),
                    _log_excursion_per_beat(windows, beat, fs_hz)]
    return np.stack(features, axis=1)


def _log_excursion_per_beat(windows: np.ndarray, beat: int | None, fs_hz: float) -> np.ndarray:
    """[N, leads]: log of the largest |x − median| outside the labeled beat per the largest inside it; 0 without
    a beat."""
    if beat is None:
        return np.zeros(windows.shape[:2])
    deviation = np.abs(windows - np.median(windows, axis=-1, keepdims=True))
    inside = beat_mask(windows.shape[-1], beat, fs_hz)
    return np.log(deviation[..., ~inside].max(axis=-1) / deviation[..., inside].max(axis=-1))


@dataclass(frozen=True)
class PlausibleRange:
    """Bounds [features, leads] of window_features for windows whose labeled beat is at sample `beat`."""

    low: np.ndarray
    high: np.ndarray
    beat: int | None
    fs_hz: float

    def contains(self, windows: np.ndarray) -> np.ndarray:
        """Boolean [N]: windows [N, leads, T] whose every feature of every lead lies inside the bounds."""
        return self.covers(window_features(windows, self.beat, self.fs_hz))

    def covers(self, features: np.ndarray) -> np.ndarray:
        """Boolean [N]: windows whose `window_features` [N, features, leads] all lie inside the bounds."""
        return ((features >= self.low) & (features <= self.high)).all(axis=(1, 2))


def plausible_range(real_windows: np.ndarray, beat: int | None, fs_hz: float, spread: float = SCREEN_SPREAD,
                    between_patients: Sequence[float] = BETWEEN_PATIENT_LOG_SD) -> PlausibleRange:
    """Median ± `spread` × √(robust SD² + between-patient SD²) of the real windows' features, per feature and lead
    (the robust SD is 1.4826 × MAD); `between_patients` gives one SD per feature, in FEATURES' order."""
    if len(between_patients) != len(FEATURES):
        raise ValueError(f"between_patients needs one SD per feature ({len(FEATURES)}), got {len(between_patients)}")
    features = window_features(real_windows, beat, fs_hz)
    features = np.where(np.isfinite(features), features, np.nan)
    median = np.nanmedian(features, axis=0)
    robust_sd = median_abs_deviation(features, axis=0, scale="normal", nan_policy="omit")
    sd = np.hypot(robust_sd, np.asarray(between_patients, dtype=np.float64)[:, None])
    return PlausibleRange(low=median - spread * sd, high=median + spread * sd, beat=beat, fs_hz=fs_hz)


def screen_settings() -> dict:
    """Every setting the screen's outcome depends on besides the windows (for cache keys)."""
    return {"features": FEATURES, "spread": SCREEN_SPREAD, "between_patients": BETWEEN_PATIENT_LOG_SD,
            "beat_guard_s": BEAT_GUARD_S, "min_class_windows": MIN_CLASS_WINDOWS}


def plausible_by_class(real_windows: np.ndarray, real_labels: np.ndarray, windows: np.ndarray,
                       labels: np.ndarray, beat: int | None, fs_hz: float) -> np.ndarray:
    """Boolean [N]: windows [N, leads, T] (labeled beat at sample `beat`, None for record crops) inside the
    plausible range of the real windows of their own label."""
    real_labels, labels = np.asarray(real_labels), np.asarray(labels)
    inside = np.zeros(len(windows), dtype=bool)
    for label in np.unique(labels):
        own = real_labels == label
        reference = real_windows[own] if own.sum() >= MIN_CLASS_WINDOWS else real_windows
        inside[labels == label] = plausible_range(reference, beat, fs_hz).contains(windows[labels == label])
    return inside
