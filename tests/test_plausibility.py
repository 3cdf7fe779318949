"""Plausibility: records outside the physiological amplitude range, synthetic windows outside the real range."""
from __future__ import annotations

import numpy as np
import pytest

from ecg_tgdp.data.plausibility import check_amplitude, plausible_by_class, plausible_range
from ecg_tgdp.data.records import RecordError


def _beats(n: int, seed: int = 0) -> np.ndarray:
    """[n, 1, 128] one-second windows with a QRS-like spike of 0.8-1.2 mV and a T wave over small noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(128) / 128.0
    beat = np.exp(-0.5 * ((t - 0.5) / 0.012) ** 2) + 0.2 * np.exp(-0.5 * ((t - 0.75) / 0.05) ** 2)
    return beat[None, None] * rng.uniform(0.8, 1.2, (n, 1, 1)) + 0.01 * rng.standard_normal((n, 1, 128))


def test_windows_beyond_the_real_range_are_screened_and_similar_ones_kept():
    bounds = plausible_range(_beats(60))
    fresh = _beats(20, seed=1)
    assert bounds.contains(fresh).all()
    rng = np.random.default_rng(2)
    wrong = np.stack([fresh[0] * 40, fresh[1] / 40, rng.normal(0, 0.4, (1, 128)), np.zeros((1, 128)),
                      np.where(np.arange(128) == 5, np.nan, fresh[2])])
    assert not bounds.contains(wrong).any()  # too large, too small, noise (too steep), flat, non-finite


def test_records_outside_the_physiological_amplitude_name_the_lead():
    beats = np.concatenate(list(_beats(10)), axis=-1)  # [1, samples]
    check_amplitude(beats, "r1", ["MLII"])
    with pytest.raises(RecordError, match=r"^r1: lead MLII has a typical amplitude of \d{3} mV, outside"):
        check_amplitude(beats * 1000, "r1", ["MLII"])
    with pytest.raises(RecordError, match="outside the physiological 0.01-20 mV"):
        check_amplitude(beats / 1000, "r1", ["MLII"])


def test_each_class_is_judged_against_its_own_real_windows():
    normal, ventricular = _beats(200), 4.0 * _beats(30, seed=3)  # V beats four times as large as N beats
    real, labels = np.concatenate([normal, ventricular]), np.array(["N"] * 200 + ["V"] * 30)
    assert not plausible_range(real).contains(ventricular).any()  # a range fit on all real windows rejects them
    synthetic = 4.0 * _beats(10, seed=4)
    assert plausible_by_class(real, labels, synthetic, np.array(["V"] * 10)).all()
    assert not plausible_by_class(real, labels, synthetic, np.array(["N"] * 10)).any()
