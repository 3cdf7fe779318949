"""Beats stay on their R peaks over hours at any sampling rate: the resampler's clock is the one beats map onto."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ecg_tgdp.data.preprocess import MAX_POLYPHASE_FACTOR, condition_record, rate_ratio, resample, resampled_index

FS_OUT = 128.0
REACH = round(0.05 * FS_OUT)  # the R peak is the maximum within ±50 ms of the mapped annotation


def _long_spiky_record(fs_hz: float, hours: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A spiky ECG [1, samples] (a 1 mV Gaussian spike, σ = 10 ms, on each beat, over small noise) of irregular beats
    (RR 0.6-1.2 s) at `fs_hz`, and its beat samples; written spike by spike, so hours take a fraction of a second."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * fs_hz)
    beats = np.rint(np.cumsum(rng.uniform(0.6, 1.2, int(hours * 3600 / 0.6))) * fs_hz).astype(np.int64)
    beats = beats[beats < n - fs_hz]
    x = 0.02 * rng.standard_normal(n)
    offsets = np.arange(-round(0.05 * fs_hz), round(0.05 * fs_hz) + 1)
    spike = np.exp(-0.5 * (offsets / (0.01 * fs_hz)) ** 2)
    np.add.at(x, beats[:, None] + offsets[None, :], spike[None, :])
    return x[None, :], beats


def _on_r_peak(lead: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Boolean [n]: the largest sample within ±50 ms of each mapped beat lies within 1 sample of it."""
    around = beats[:, None] + np.arange(-REACH, REACH + 1)[None, :]
    return np.abs(np.argmax(lead[around], axis=1) - REACH) <= 1


@pytest.mark.parametrize(("fs_hz", "ratio"), [(512.5, Fraction(256, 1025)), (360.0, Fraction(16, 45)),
                                              (257.0, Fraction(128, 257)), (250.5, Fraction(256, 501))])
def test_the_ratio_is_the_exact_one_of_the_decimal_rates(fs_hz, ratio):
    assert rate_ratio(fs_hz, FS_OUT) == ratio


@pytest.mark.parametrize("fs_hz", [512.5, 360.0, 257.0, 250.5, 1000 / 3, 499.999])
def test_beats_stay_on_their_r_peaks_for_two_hours(fs_hz):
    # 512.5 Hz used to be resampled by 249/997 instead of 256/1025: 25 samples late after 2 h; 1000/3 and 499.999 Hz
    # have polyphase factors past MAX_POLYPHASE_FACTOR and take the close-ratio path
    x, beats = _long_spiky_record(fs_hz, hours=2.0)
    conditioned, bad = condition_record(x, fs_hz, FS_OUT, (0.5, 40.0))
    ratio = rate_ratio(fs_hz, FS_OUT)
    assert conditioned.shape[-1] == -(-x.shape[-1] * ratio.numerator // ratio.denominator) == len(bad)
    mapped = resampled_index(beats, fs_hz, FS_OUT)
    on_peak = _on_r_peak(conditioned[0], mapped)
    first, last = on_peak[beats < 600 * fs_hz], on_peak[beats > x.shape[-1] - 600 * fs_hz]
    assert len(first) > 400 and len(last) > 400
    assert first.mean() > 0.99 and abs(last.mean() - first.mean()) <= 0.01


@pytest.mark.parametrize("fs_hz", [512.5, 1000 / 3])
def test_the_output_clock_is_exact_for_a_sine(fs_hz):
    # output sample k lies at k / 128 s: a 7.3 Hz sine matches its formula at the end of 2 h as at the start
    n = int(7200 * fs_hz)
    y = resample(np.sin(2 * np.pi * 7.3 * np.arange(n) / fs_hz), fs_hz, FS_OUT)
    error = np.abs(y - np.sin(2 * np.pi * 7.3 * np.arange(len(y)) / FS_OUT))
    assert error[1000:100_000].max() < 0.005 and error[-100_000:-1000].max() < 0.005
    assert (max(rate_ratio(fs_hz, FS_OUT).numerator, rate_ratio(fs_hz, FS_OUT).denominator) > MAX_POLYPHASE_FACTOR) \
        == (fs_hz != 512.5)


def test_mapped_indices_are_exact_rational_rounding():
    samples = np.array([0, 1, 2, 1025, 3_690_000, 10**12])
    expected = [round(Fraction(int(s)) * Fraction(256, 1025)) for s in samples]
    assert resampled_index(samples, 512.5, FS_OUT).tolist() == expected
