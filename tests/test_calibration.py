"""Tests for models.calibration: c' per band of t gets a temperature, and uninformative bands lose their guidance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_tgdp.models.calibration import (
    CONSTANT_GUESS_LOG_LOSS,
    BandCalibration,
    calibrate_by_band,
    fit_temperature,
    log_loss,
)


def _overconfident(n: int, true_scale: float, overconfidence: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels and logits whose true log-odds are true_scale · z but that report overconfidence × that."""
    z = rng.standard_normal(n)
    domain = rng.random(n) < 1 / (1 + np.exp(-true_scale * z))
    return overconfidence * true_scale * z, domain


def test_temperature_scaling_undoes_overconfidence():
    logits, domain = _overconfident(20000, 2.0, 3.0, np.random.default_rng(0))
    temperature = fit_temperature(logits, domain)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert log_loss(logits / temperature, domain) < log_loss(logits, domain)


def test_each_band_gets_its_temperature_and_a_band_that_knows_nothing_is_not_guided():
    rng = np.random.default_rng(1)
    n = 4000
    t = rng.integers(0, 100, n)
    informative, domain = _overconfident(n, 2.0, 2.5, rng)
    noise_band = t >= 50  # here the logits say nothing about the domain, loudly
    logits = np.where(noise_band, 4.0 * rng.standard_normal(n), informative)
    calibration = calibrate_by_band(t, logits, domain, num_steps=100, bands=2, seed=0)
    assert calibration.edges == [0, 50, 100] and calibration.guided == [True, False]
    assert calibration.temperature[0] == pytest.approx(2.5, rel=0.15)
    assert calibration.cross_fitted_log_loss[0] < CONSTANT_GUESS_LOG_LOSS - 0.1
    assert calibration.cross_fitted_log_loss[1] >= CONSTANT_GUESS_LOG_LOSS - 0.01
    factor = calibration.factor(torch.tensor([0, 49, 50, 99]))
    torch.testing.assert_close(factor, torch.tensor([1 / calibration.temperature[0]] * 2 + [0.0, 0.0]))


def test_a_band_without_both_domains_is_not_guided():
    t = np.array([0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17])
    domain = np.array([True] * 4 + [True, False] * 4)
    calibration = calibrate_by_band(t, np.zeros(len(t)), domain, num_steps=20, bands=2, seed=0)
    assert calibration.guided[0] is False and calibration.cross_fitted_log_loss[0] is None


def test_the_calibration_survives_a_model_file_round_trip():
    calibration = BandCalibration([0, 50, 100], [2.0, 1.0], [True, False], [0.4, 0.7])
    assert BandCalibration(**calibration.to_dict()) == calibration
