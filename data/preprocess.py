"""Signal conditioning: zero-phase band-pass, polyphase resampling, and window quality checks."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal


def bandpass(x: np.ndarray, fs_hz: float, band_hz: tuple[float, float], order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the last axis (scipy `sosfiltfilt`).

    The upper edge is capped below Nyquist so low-rate records (PTB-XL at 100 Hz)
    can share one config with 360 Hz ones.
    """
    low, high = band_hz
    nyquist = fs_hz / 2.0
    high = min(high, 0.95 * nyquist)
    if not 0 < low < high:
        raise ValueError(f"band-pass edges {band_hz} Hz do not fit a {fs_hz} Hz record")
    sos = signal.butter(order, [low, high], btype="bandpass", fs=fs_hz, output="sos")
    return signal.sosfiltfilt(sos, x, axis=-1)


def resample(x: np.ndarray, fs_from_hz: float, fs_to_hz: float) -> np.ndarray:
    """Resample along the last axis with `scipy.signal.resample_poly` (anti-aliased, linear phase)."""
    if fs_from_hz == fs_to_hz:
        return x
    ratio = Fraction(fs_to_hz / fs_from_hz).limit_denominator(1000)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def resampled_index(sample: np.ndarray, fs_from_hz: float, fs_to_hz: float) -> np.ndarray:
    """Map sample indices of the original record onto the resampled one."""
    return np.rint(np.asarray(sample) * (fs_to_hz / fs_from_hz)).astype(np.int64)


def cut_windows(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Cut windows [n, leads, length] from x [leads, samples]; every start must fit."""
    offsets = starts[:, None] + np.arange(length)[None, :]  # [n, length]
    return np.ascontiguousarray(np.moveaxis(x[:, offsets], 0, 1))


def flat_windows(windows: np.ndarray, min_std_mv: float = 1e-3) -> np.ndarray:
    """Boolean [n]: windows whose some lead is a flat line (std below `min_std_mv`)."""
    return (windows.std(axis=-1) < min_std_mv).any(axis=-1)


def nan_windows(windows: np.ndarray) -> np.ndarray:
    """Boolean [n]: windows holding any NaN (WFDB's invalid-sample marker)."""
    return np.isnan(windows).any(axis=(1, 2))


def invalid_samples(x: np.ndarray, fs_hz: float, flat_s: float = 0.25) -> np.ndarray:
    """Boolean [samples]: NaN samples, or runs where a lead of x [leads, samples] stays
    exactly constant for at least `flat_s` seconds (lead-off, saturation, padding)."""
    bad = np.isnan(x).any(axis=0)
    min_run = max(2, round(flat_s * fs_hz))
    for lead in x:
        same = np.concatenate([[False], np.diff(lead) == 0])  # sample equals its predecessor
        run_id = np.cumsum(~same)
        run_length = np.bincount(run_id)[run_id]
        bad |= run_length >= min_run
    return bad


def fill_invalid(x: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Replace NaNs by linear interpolation so filtering does not smear them over the record."""
    if not np.isnan(x).any():
        return x
    filled = x.copy()
    index = np.arange(x.shape[-1])
    for lead in filled:
        nan = np.isnan(lead)
        if nan.all():
            lead[:] = 0.0
        elif nan.any():
            lead[nan] = np.interp(index[nan], index[~nan], lead[~nan])
    return filled


def windows_touching(bad: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Boolean [n]: windows [start, start + length) that contain a sample flagged in `bad`."""
    cumulative = np.concatenate([[0], np.cumsum(bad)])
    return cumulative[starts + length] - cumulative[starts] > 0
