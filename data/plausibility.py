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
# Synthetic windows are kept within this many robust standard deviations (1.4826 × MAD, at least
# MIN_LOG_SIGMA) of the log amplitude and log steepest slope of the real windows of their class; a class
# with fewer than MIN_CLASS_WINDOWS real windows is judged against all of them. (Against all real windows at
# once, 92% of svdb's real V beats fell outside: a range fit on the majority class is too narrow.)
SCREEN_SPREAD = 5.0
MIN_LOG_SIGMA = 0.05
MIN_CLASS_WINDOWS = 20


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


@dataclass(frozen=True)
class PlausibleRange:
    """Bounds [features, leads] of window_features: what real windows look like, robustly."""

    low: np.ndarray
    high: np.ndarray

    def contains(self, windows: np.ndarray) -> np.ndarray:
        """Boolean [N]: windows [N, leads, T] whose every feature of every lead lies inside the bounds."""
        features = window_features(windows)
        return ((features >= self.low) & (features <= self.high)).all(axis=(1, 2))


def window_features(windows: np.ndarray) -> np.ndarray:
    """[N, 2, leads]: log peak-to-peak amplitude and log steepest slope (mV per sample) of windows [N, leads, T];
    −inf for a flat lead, NaN for a non-finite window (both outside any range)."""
    windows = np.asarray(windows, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        amplitude = np.log(np.ptp(windows, axis=-1))
        slope = np.log(np.abs(np.diff(windows, axis=-1)).max(axis=-1))
    return np.stack([amplitude, slope], axis=1)


def plausible_range(real_windows: np.ndarray, spread: float = SCREEN_SPREAD) -> PlausibleRange:
    """Median ± `spread` robust standard deviations (1.4826 × MAD) of the real windows' features, per lead."""
    features = window_features(real_windows)
    features = np.where(np.isfinite(features), features, np.nan)
    median = np.nanmedian(features, axis=0)
    sigma = np.maximum(1.4826 * np.nanmedian(np.abs(features - median), axis=0), MIN_LOG_SIGMA)
    return PlausibleRange(low=median - spread * sigma, high=median + spread * sigma)


def plausible_by_class(real_windows: np.ndarray, real_labels: np.ndarray, windows: np.ndarray,
                       labels: np.ndarray) -> np.ndarray:
    """Boolean [N]: windows [N, leads, T] inside the plausible range of the real windows of their own label."""
    real_labels, labels = np.asarray(real_labels), np.asarray(labels)
    pooled = plausible_range(real_windows)
    inside = np.zeros(len(windows), dtype=bool)
    for label in np.unique(labels):
        own = real_labels == label
        bounds = plausible_range(real_windows[own]) if own.sum() >= MIN_CLASS_WINDOWS else pooled
        inside[labels == label] = bounds.contains(windows[labels == label])
    return inside
