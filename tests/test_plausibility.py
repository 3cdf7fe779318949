"""Plausibility: records outside the physiological amplitude range, synthetic windows outside the real range."""
from __future__ import annotations

import numpy as np
import pytest

from ecg_tgdp.data.plausibility import FEATURES, check_amplitude, plausible_by_class, plausible_range
from ecg_tgdp.data.records import RecordError


FS, BEAT = 128.0, 128  # two-second windows, the labeled beat in the middle


def _beats(n: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """[n, 1, 256] windows of three beats (the labeled one at BEAT): a QRS-like spike of 0.8-1.2 mV (× scale) and
    a T wave over small noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(256)
    beat = sum(np.exp(-0.5 * ((t - r) / 1.5) ** 2) + 0.2 * np.exp(-0.5 * ((t - r - 32) / 6.4) ** 2)
               for r in (BEAT - 100, BEAT, BEAT + 96))
    return scale * beat[None, None] * rng.uniform(0.8, 1.2, (n, 1, 1)) + 0.01 * rng.standard_normal((n, 1, 256))


def test_windows_unlike_an_ecg_are_screened_and_similar_ones_kept():
    bounds = plausible_range(_beats(60), BEAT, FS)
    fresh = _beats(20, seed=1)
    assert bounds.contains(fresh).all()
    rng = np.random.default_rng(2)
    spike = fresh[3].copy()
    spike[0, 60] += 4.0  # four times the beat's height, away from the beat
    wrong = np.stack([fresh[0] * 40, fresh[1] / 40, rng.normal(0, 0.4, (1, 256)), np.zeros((1, 256)),
                      np.where(np.arange(256) == 5, np.nan, fresh[2]), spike])
    assert not bounds.contains(wrong).any()  # too large, too small, noise (too busy), flat, non-finite, a spike


def test_the_range_allows_for_other_patients():
    """Three times the amplitude is another patient's ECG, not an implausible one; the real windows' own spread (one
    patient here) alone would reject it."""
    real, other_patient = _beats(60), _beats(20, seed=5, scale=3.0)
    assert plausible_range(real, BEAT, FS).contains(other_patient).all()
    assert not plausible_range(real, BEAT, FS, between_patients=[0.0] * len(FEATURES)).contains(other_patient).any()


def test_records_outside_the_physiological_amplitude_name_the_lead():
    beats = np.concatenate(list(_beats(10)), axis=-1)  # [1, samples]
    check_amplitude(beats, "r1", ["MLII"])
    with pytest.raises(RecordError, match=r"^r1: lead MLII has a typical amplitude of \d{3} mV, outside"):
        check_amplitude(beats * 1000, "r1", ["MLII"])
    with pytest.raises(RecordError, match="outside the physiological 0.01-20 mV"):
        check_amplitude(beats / 1000, "r1", ["MLII"])


def test_each_class_is_judged_against_its_own_real_windows():
    normal, ventricular = _beats(200), _beats(30, seed=3, scale=10.0)  # V beats ten times as large as N beats
    real, labels = np.concatenate([normal, ventricular]), np.array(["N"] * 200 + ["V"] * 30)
    assert not plausible_range(real, BEAT, FS).contains(ventricular).any()  # a range fit on all windows rejects them
    synthetic = _beats(10, seed=4, scale=10.0)
    assert plausible_by_class(real, labels, synthetic, np.array(["V"] * 10), BEAT, FS).all()
    assert not plausible_by_class(real, labels, synthetic, np.array(["N"] * 10), BEAT, FS).any()


def test_every_lead_is_judged_and_crops_skip_the_beat():
    real = np.concatenate([_beats(60), _beats(60, seed=6)], axis=1)  # two leads
    fresh = np.concatenate([_beats(5, seed=7), _beats(5, seed=8)], axis=1)
    assert plausible_range(real, BEAT, FS).contains(fresh).all()
    fresh[0, 1] *= 40  # the second lead of one window
    assert plausible_range(real, BEAT, FS).contains(fresh).tolist() == [False] + [True] * 4
    spike = _beats(1, seed=9) + 3.5 * np.exp(-0.5 * ((np.arange(256) - 60) / 3.0) ** 2)  # a smooth bump off the beat
    assert not plausible_range(_beats(60), BEAT, FS).contains(spike).any()
    assert plausible_range(_beats(60), None, FS).contains(spike).all()  # a crop has no beat to be away from


def test_a_beat_the_window_cannot_hold_is_an_error():
    with pytest.raises(ValueError, match="does not fit a window of 32 samples at 128 Hz"):
        plausible_range(_beats(20)[..., :32], 16, FS)
    with pytest.raises(ValueError, match="does not fit"):
        plausible_range(_beats(20), 300, FS)
    with pytest.raises(ValueError, match="one SD per feature"):
        plausible_range(_beats(20), BEAT, FS, between_patients=[0.3])
