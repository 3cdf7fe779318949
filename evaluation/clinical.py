"""Clinical measurements of beat-centred windows and their real-vs-synthetic Wasserstein distances (README: The evaluation protocol).

A window [leads, T] holds one annotated beat at its anchor sample (by default T // 2); the first lead is measured.
neurokit2's delineators need several beats (`nk.ecg_delineate` raises "The data length
is too small to be segmented" on a 1 s window) and its R-peak detector misses peaks in
the first ~0.1 s of a signal, where the previous beat of a short window lies; so each
window is measured directly with the classical rules below, and the tests check them
against neurokit2's DWT delineation of full simulated records.

- isoelectric level: the window's median;
- R amplitude: the largest value relative to that level within ±40 ms of the centre;
- QRS onset and offset: where the Savitzky-Golay slope first drops below a fixed share
  of the QRS's peak slope (the slope-threshold rule of Laguna et al. 1994, Comput.
  Biomed. Res. 27:45), searched outward from the dominant QRS deflection;
- RR context: from the previous QRS peak (≥ half the centre QRS's size, ≥ 200 ms
  earlier) to the centre's, NaN when no earlier beat is visible in the window;
- QT: QRS onset to the T-wave end by the tangent method (the tangent at the steepest
  point of the T wave's descending limb meets the isoelectric line; Lepeschkin &
  Surawicz 1952, Circulation 6:378), NaN when no T wave is found inside the window.
"""
from __future__ import annotations

import numpy as np
from scipy import signal, stats

from ecg_tgdp.evaluation.distances import subsample

MEASUREMENTS = ("r_amplitude_mv", "qrs_ms", "rr_prev_ms", "qt_ms")

_R_SEARCH_S = 0.04  # annotated beat position vs the R peak after resampling
_QRS_SEARCH_S = 0.15  # boundaries searched within ±150 ms of the dominant deflection
_QRS_SLOPE_SHARE = 0.1  # boundary: slope below 10% of the QRS's peak slope
_QRS_GAP_S = 0.025  # slope dips this short (at wave peaks, between Q, R and S) stay inside the QRS
_REFRACTORY_S = 0.2  # no two QRS complexes closer than this
_NEIGHBOUR_SHARE = 0.5  # a neighbouring QRS is at least half the centre QRS's size
_ST_MIN_S = 0.04  # T wave searched from this long after QRS offset ...
_QT_MAX_S = 0.6  # ... up to this long after the dominant deflection
_T_MIN_SHARE = 0.05  # a T wave smaller than 5% of the QRS size counts as absent


def measure_beats(
    windows: np.ndarray, fs_hz: float, *, max_windows: int | None = None, seed: int = 0, anchor: int | None = None
) -> dict[str, np.ndarray]:
    """R amplitude (window units, mV for cohorts), QRS width, RR context and QT (ms) of the beat at sample
    `anchor` (default T // 2) of windows [N, leads, T].

    Returns one float array [n] per name in MEASUREMENTS, NaN where a window cannot be
    measured; n = N, or `max_windows` windows drawn with `seed` when N is larger.
    """
    windows = np.asarray(windows)
    if windows.ndim != 3:
        raise ValueError(f"clinical measurements need windows [N, leads, T], got shape {windows.shape}")
    lead = subsample(windows[:, 0, :], max_windows, np.random.default_rng(seed)).astype(np.float64)
    finite = np.isfinite(lead).all(axis=1)
    lead = np.where(finite[:, None], lead - np.median(lead, axis=1, keepdims=True), 0.0)
    if lead.shape[1] < 2 * _QRS_SEARCH_S * fs_hz:
        raise ValueError(f"clinical measurements: windows of {lead.shape[1]} samples at {fs_hz} Hz are shorter "
                         f"than the {2 * _QRS_SEARCH_S} s a QRS is searched in")
    smoothing = max(5, round(0.04 * fs_hz) // 2 * 2 + 1)  # odd, ~40 ms
    slope = signal.savgol_filter(lead, smoothing, 2, deriv=1, delta=1.0 / fs_hz, axis=1)  # mV/s
    anchor = lead.shape[1] // 2 if anchor is None else anchor
    rows = np.array([_measure_one(x, s, fs_hz, anchor) for x, s in zip(lead, slope)]).reshape(len(lead), len(MEASUREMENTS))
    rows[~finite] = np.nan  # a window with a NaN or infinite sample is not measured
    return {name: rows[:, k] for k, name in enumerate(MEASUREMENTS)}


def compare_measurements(
    real: np.ndarray, fake: np.ndarray, fs_hz: float, *, max_windows: int | None = 1000, seed: int = 0, min_values: int = 5,
    anchor: int | None = None,
) -> dict[str, float]:
    """Wasserstein-1 distance (scipy.stats.wasserstein_distance) per measurement between real and fake windows.

    NaN measurements are dropped; a measurement with fewer than `min_values` values on
    either side gives NaN. Units are those of the measurement (mV or ms).
    """
    a = measure_beats(real, fs_hz, max_windows=max_windows, seed=seed, anchor=anchor)
    b = measure_beats(fake, fs_hz, max_windows=max_windows, seed=seed + 1, anchor=anchor)
    out = {}
    for name in MEASUREMENTS:
        u, v = a[name][np.isfinite(a[name])], b[name][np.isfinite(b[name])]
        out[name] = float(stats.wasserstein_distance(u, v)) if min(len(u), len(v)) >= min_values else float("nan")
    return out


def _measure_one(x: np.ndarray, slope: np.ndarray, fs_hz: float, centre: int) -> tuple[float, float, float, float]:
    """(R amplitude, QRS ms, RR ms, QT ms) of the beat at `centre` of one baseline-free lead x [T] with its slope."""
    length = len(x)
    reach = max(1, round(_R_SEARCH_S * fs_hz))
    near = slice(centre - reach, centre + reach + 1)
    r_amplitude = float(x[near].max())
    dominant = centre - reach + int(np.argmax(np.abs(x[near])))
    size = abs(x[dominant])
    if size == 0:
        return r_amplitude, np.nan, np.nan, np.nan
    onset, offset = _qrs_bounds(slope, dominant, fs_hz)
    refractory = round(_REFRACTORY_S * fs_hz)
    earlier = _qrs_peaks(x[: max(0, dominant - refractory + 1)], size, refractory)
    later = dominant + refractory + _qrs_peaks(x[dominant + refractory :], size, refractory)
    rr = (dominant - earlier[-1]) * 1000.0 / fs_hz if len(earlier) else np.nan
    stop = min(length, dominant + round(_QT_MAX_S * fs_hz), later[0] - refractory // 2 if len(later) else length)
    t_end = _t_wave_end(x, slope, fs_hz, offset + _ST_MIN_S * fs_hz, stop, size)
    qrs = (offset - onset) * 1000.0 / fs_hz
    qt = (t_end - onset) * 1000.0 / fs_hz
    return r_amplitude, qrs, rr, qt


def _qrs_bounds(slope: np.ndarray, dominant: int, fs_hz: float) -> tuple[float, float]:
    """Sub-sample QRS onset and offset around `dominant` by the slope threshold; NaN at the search edge."""
    reach = round(_QRS_SEARCH_S * fs_hz)
    lo, hi = max(0, dominant - reach), min(len(slope), dominant + reach + 1)
    steep = np.abs(slope[lo:hi])
    threshold = _QRS_SLOPE_SHARE * steep.max()
    above = np.flatnonzero(steep >= threshold)
    gap = max(1, round(_QRS_GAP_S * fs_hz))
    runs = np.split(above, np.flatnonzero(np.diff(above) > gap + 1) + 1)
    here = dominant - lo
    first, last = min(runs, key=lambda run: max(run[0] - here, here - run[-1], 0))[[0, -1]]
    if first == 0 or last == len(steep) - 1:
        return np.nan, np.nan  # the complex runs past the search range or the window
    # linear interpolation of the threshold crossing between neighbouring samples
    onset = first - (steep[first] - threshold) / (steep[first] - steep[first - 1])
    offset = last + (steep[last] - threshold) / (steep[last] - steep[last + 1])
    return lo + onset, lo + offset


def _qrs_peaks(x: np.ndarray, size: float, refractory: int) -> np.ndarray:
    """Indices of QRS-sized peaks of |x| (≥ half the centre QRS), at least `refractory` apart."""
    if len(x) < 3:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = signal.find_peaks(np.abs(x), height=_NEIGHBOUR_SHARE * size, distance=max(1, refractory))
    return peaks


def _t_wave_end(x: np.ndarray, slope: np.ndarray, fs_hz: float, start: float, stop: int, size: float) -> float:
    """T-wave end by the tangent method in x[start:stop]; NaN when no T wave or no end inside the window."""
    if not np.isfinite(start):
        return np.nan
    start = int(np.ceil(start))
    if stop - start < 3:
        return np.nan
    peak = start + int(np.argmax(np.abs(x[start:stop])))
    polarity = np.sign(x[peak])
    if abs(x[peak]) < _T_MIN_SHARE * size or peak >= stop - 2:
        return np.nan
    steepest = peak + int(np.argmax(-polarity * slope[peak:stop]))
    if -polarity * slope[steepest] <= 0 or steepest >= stop - 1:
        return np.nan  # no descending limb, or it is cut by the window's end
    end = steepest - x[steepest] / slope[steepest] * fs_hz  # slope is in units per second
    return float(end) if end < len(x) else np.nan
