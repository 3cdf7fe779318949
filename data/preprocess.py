"""Signal conditioning: zero-phase band-pass, polyphase resampling, and window quality checks."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal


def bandpass(x: np.ndarray, fs_hz: float, band_hz: tuple[float, float], order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass along the last axis (scipy `sosfiltfilt`).

    The upper edge is capped below Nyquist so low-rate records (PTB-XL at 100 Hz)
    can share one config with 360 Hz ones. ValueError (a plain sentence) when the edges do not
    fit the rate or the signal is too short for the filter's edge padding.
    """
    low, high = band_hz
    nyquist = fs_hz / 2.0
    high = min(high, 0.95 * nyquist)
    if not 0 < low < high:
        raise ValueError(f"band-pass edges {band_hz} Hz do not fit a {fs_hz} Hz record")
    sos = signal.butter(order, [low, high], btype="bandpass", fs=fs_hz, output="sos")
    padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))  # sosfiltfilt's default
    if x.shape[-1] <= padlen:
        raise ValueError(f"{x.shape[-1]} samples ({x.shape[-1] / fs_hz:g} s) are too short for the band-pass, "
                         f"which needs more than {padlen}")
    return signal.sosfiltfilt(sos, x, axis=-1)


# resample_poly's filter has 20·max(up, down) + 1 taps; past this factor a ratio (1000/3 Hz written as 333.333...) is
# resampled through a close ratio and interpolated onto the exact clock instead.
MAX_POLYPHASE_FACTOR = 4096
_OVERSAMPLE = 4  # the close-ratio path interpolates linearly on a 4× band-limited grid: at worst -0.3 dB at 40 Hz of 128


def rate_ratio(fs_from_hz: float, fs_to_hz: float) -> Fraction:
    """fs_to / fs_from, the exact fraction of the rates' decimal values: 512.5 → 128 Hz is 256/1025, 360 → 128 16/45.

    `resample` and `resampled_index` both use it, so a beat mapped onto the new clock stays on its R peak over hours
    (a ratio rounded to 249/997 put a 2 h record's last beats 25 samples late)."""
    return Fraction(repr(float(fs_to_hz))) / Fraction(repr(float(fs_from_hz)))


def resample(x: np.ndarray, fs_from_hz: float, fs_to_hz: float) -> np.ndarray:
    """Resample along the last axis, anti-aliased, to ceil(n · ratio) samples; output sample k lies at exactly
    k / fs_to_hz seconds (`rate_ratio`): `scipy.signal.resample_poly` by the exact ratio, or, when its factors
    exceed MAX_POLYPHASE_FACTOR, `_resample_close_ratio`."""
    if fs_from_hz == fs_to_hz:
        return x
    ratio = rate_ratio(fs_from_hz, fs_to_hz)
    if max(ratio.numerator, ratio.denominator) <= MAX_POLYPHASE_FACTOR:
        return signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    return _resample_close_ratio(x, ratio)


def _resample_close_ratio(x: np.ndarray, ratio: Fraction) -> np.ndarray:
    """Resample by a ratio with impractical polyphase factors: polyphase by a close ratio (the anti-aliasing), 4×
    band-limited upsampling, then linear interpolation at the exact output times (k / ratio input samples)."""
    close = ratio.limit_denominator(1000)
    fine = signal.resample_poly(signal.resample_poly(x, close.numerator, close.denominator, axis=-1),
                                _OVERSAMPLE, 1, axis=-1)  # at fs_from · close · 4
    n_out = -(-x.shape[-1] * ratio.numerator // ratio.denominator)  # ceil(n · ratio), as resample_poly gives
    position = np.clip(np.arange(n_out) * float(close * _OVERSAMPLE / ratio), 0, fine.shape[-1] - 1)
    left = np.minimum(position.astype(np.int64), fine.shape[-1] - 2)
    weight = position - left
    return fine[..., left] * (1 - weight) + fine[..., left + 1] * weight


def resampled_index(sample: np.ndarray, fs_from_hz: float, fs_to_hz: float) -> np.ndarray:
    """Map sample indices of the original record onto the resampled one, by the ratio `resample` uses."""
    ratio = rate_ratio(fs_from_hz, fs_to_hz)
    sample = np.asarray(sample, dtype=np.int64)
    if ratio.numerator * (int(np.abs(sample).max(initial=0)) + 1) < 2**53:  # sample · numerator is exact in float64
        return np.rint(sample * ratio.numerator / ratio.denominator).astype(np.int64)
    return np.rint(sample * float(ratio)).astype(np.int64)


AMPLITUDE_NORMALIZATIONS = ("none", "median_r")
_R_PEAK_REACH_S = 0.05  # the R peak is searched this close to a beat annotation


def median_r_amplitude(x: np.ndarray, beat_samples: np.ndarray, fs_hz: float) -> np.ndarray:
    """Per lead, the median over beats of the largest |x| within ±50 ms of each beat: the record's typical
    R-peak (or dominant QRS deflection) amplitude, [leads], from a band-passed x [leads, samples]."""
    reach = max(1, round(_R_PEAK_REACH_S * fs_hz))
    beats = np.asarray(beat_samples, dtype=np.int64)
    beats = beats[(beats >= reach) & (beats < x.shape[-1] - reach)]
    if not len(beats):
        return np.full(x.shape[0], np.nan)
    around = beats[:, None] + np.arange(-reach, reach + 1)[None, :]  # [beats, 2·reach + 1]
    return np.nanmedian(np.abs(x[:, around]).max(axis=-1), axis=-1)


def normalize_amplitude(x: np.ndarray, beat_samples: np.ndarray, fs_hz: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """x [leads, samples] rescaled per lead so that its median R amplitude is 1 mV ("median_r"), or unchanged
    ("none"); also the factors applied [leads]. Removes gain differences between recorders and electrode
    placements, which a domain classifier otherwise learns (TGDP, "Remove acquisition differences")."""
    if method not in AMPLITUDE_NORMALIZATIONS:
        raise ValueError(f"amplitude normalization must be one of {AMPLITUDE_NORMALIZATIONS}, got {method!r}")
    if method == "none":
        return x, np.ones(x.shape[0])
    amplitude = median_r_amplitude(x, beat_samples, fs_hz)
    factor = np.where(np.isfinite(amplitude) & (amplitude > 1e-3), 1.0 / amplitude, 1.0)
    return x * factor[:, None], factor


def cut_windows(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Cut windows [n, leads, length] from x [leads, samples]; every start must fit."""
    offsets = starts[:, None] + np.arange(length)[None, :]  # [n, length]
    return np.ascontiguousarray(np.moveaxis(x[:, offsets], 0, 1))


def flat_windows(windows: np.ndarray, min_std_mv: float = 1e-3) -> np.ndarray:
    """Boolean [n]: windows whose some lead is a flat line (std below `min_std_mv`)."""
    return (windows.std(axis=-1) < min_std_mv).any(axis=-1)


def nan_windows(windows: np.ndarray) -> np.ndarray:
    """Boolean [n]: windows holding any NaN (WFDB's invalid-sample marker) or infinite sample."""
    return ~np.isfinite(windows).all(axis=(1, 2))


def invalid_samples(x: np.ndarray, fs_hz: float, flat_s: float = 0.25, lead_off_s: float = 1.0) -> np.ndarray:
    """Boolean [samples]: non-finite samples, and runs where a lead of x [leads, samples] is stuck at one value.

    A run is stuck when it lasts `lead_off_s` (lead-off, padding), or `flat_s` at the lead's
    own extreme (saturation at the ADC rail, as in mitdb 116 at 0 and 2047). Shorter exactly
    constant runs away from the extremes are kept: isoelectric stretches of finely quantized
    records hold one value for up to 0.32 s (PTB-XL 00042 V5, svdb 811 ECG2).
    """
    bad = ~np.isfinite(x).all(axis=0)
    min_flat = max(2, round(flat_s * fs_hz))
    min_lead_off = max(min_flat, round(lead_off_s * fs_hz))
    for lead in x:
        finite = lead[np.isfinite(lead)]
        if not finite.size:
            continue
        same = np.concatenate([[False], np.diff(lead) == 0])  # sample equals its predecessor
        run_id = np.cumsum(~same)
        run_length = np.bincount(run_id)[run_id]
        at_extreme = (lead == finite.min()) | (lead == finite.max())
        bad |= (run_length >= min_lead_off) | ((run_length >= min_flat) & at_extreme)
    return bad


def fill_invalid(x: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Replace non-finite samples (NaN, inf) by linear interpolation so filtering does not smear them."""
    if np.isfinite(x).all():
        return x
    filled = x.copy()
    index = np.arange(x.shape[-1])
    for lead in filled:
        nan = ~np.isfinite(lead)
        if nan.all():
            lead[:] = 0.0
        elif nan.any():
            lead[nan] = np.interp(index[nan], index[~nan], lead[~nan])
    return filled


def windows_touching(bad: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Boolean [n]: windows [start, start + length) that contain a sample flagged in `bad`."""
    cumulative = np.concatenate([[0], np.cumsum(bad)])
    return cumulative[starts + length] - cumulative[starts] > 0


def condition_record(raw: np.ndarray, fs_in_hz: float, fs_hz: float,
                     band_hz: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """A record's leads [leads, samples] in mV band-passed at their own rate (skipped when `band_hz` is None: the
    signal was already filtered), resampled to `fs_hz`; and its invalid samples on the resampled clock [samples']."""
    bad = invalid_samples(raw, fs_in_hz)
    conditioned = fill_invalid(raw, bad)
    if band_hz is not None:
        conditioned = bandpass(conditioned, fs_in_hz, band_hz)
    conditioned = resample(conditioned, fs_in_hz, fs_hz)
    bad = bad[np.minimum(np.arange(conditioned.shape[-1]) * fs_in_hz / fs_hz, len(bad) - 1).astype(np.int64)]
    return conditioned, bad
