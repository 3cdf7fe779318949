"""Tests for models.schedule: golden ᾱ values against the closed forms, monotonicity, add_noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_tgdp.models.schedule import NoiseSchedule


def _cosine_f(t: np.ndarray, num_steps: int = 1000, s: float = 0.008) -> np.ndarray:
    return np.cos((t / num_steps + s) / (1 + s) * np.pi / 2) ** 2


def test_linear_golden_values():
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))  # Ho et al. 2020 §4, computed independently
    schedule = NoiseSchedule.linear()
    for t in (0, 499, 999):
        assert schedule.alphas_cumprod[t].item() == pytest.approx(abar[t], rel=1e-12)
    assert schedule.alphas_cumprod[0].item() == pytest.approx(0.9999, rel=1e-12)
    assert schedule.alphas_cumprod[999].item() == pytest.approx(4.035829765375676e-05, rel=1e-9)


def test_cosine_golden_values_including_the_clipped_last_beta():
    schedule = NoiseSchedule.cosine()
    abar = schedule.alphas_cumprod.numpy()
    # index t holds ᾱ after t + 1 steps: f(t + 1)/f(0) (Nichol & Dhariwal 2021 eq. 17) while β is unclipped
    for t in (0, 1, 249, 499, 998):
        assert abar[t] == pytest.approx(_cosine_f(t + 1) / _cosine_f(0), rel=1e-10)
    assert abar[499] == pytest.approx(0.49384359044063775, rel=1e-10)
    # f(1000) = 0 would give β = 1; it is clipped to 0.999
    assert abar[999] == pytest.approx(abar[998] * (1 - 0.999), rel=1e-10)
    assert schedule.kind == "cosine" and schedule.num_steps == 1000


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedules_decrease_and_alpha_sigma_are_float32_unit_norm(kind):
    schedule = NoiseSchedule.from_name(kind, 200)
    abar = schedule.alphas_cumprod
    assert abar.dtype == torch.float64 and abar.shape == (200,)
    assert bool((abar[1:] < abar[:-1]).all()) and 0 < abar[-1] < abar[0] < 1
    t = torch.tensor([0, 57, 199])
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    assert alpha.dtype == sigma.dtype == torch.float32 and alpha.shape == (3,)
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones(3))


def test_add_noise_broadcasts_over_channels_and_length():
    schedule = NoiseSchedule.linear(num_steps=10)
    x0, eps = torch.ones(2, 3, 5), torch.full((2, 3, 5), 2.0)
    t = torch.tensor([0, 9])
    xt = schedule.add_noise(x0, eps, t)
    assert xt.shape == (2, 3, 5)
    abar = schedule.alphas_cumprod[t].float()
    expected = abar.sqrt() * 1.0 + (1 - abar).sqrt() * 2.0
    torch.testing.assert_close(xt, expected[:, None, None].expand(2, 3, 5))


def test_unknown_kind_and_float_timesteps_are_rejected():
    with pytest.raises(ValueError, match="unknown noise schedule 'sigmoid'"):
        NoiseSchedule.from_name("sigmoid", 1000)
    with pytest.raises(TypeError, match="integers"):
        NoiseSchedule.cosine().alpha(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="decrease"):
        NoiseSchedule(torch.tensor([0.5, 0.9], dtype=torch.float64), "custom")


def test_alpha_sigma_are_the_float64_values_rounded_once_and_stay_on_the_timesteps_device():
    schedule = NoiseSchedule.cosine(100)
    t = torch.arange(100)
    abar = schedule.alphas_cumprod
    assert torch.equal(schedule.alpha(t), abar.sqrt().float())  # bit for bit what indexing first, then sqrt, gave
    assert torch.equal(schedule.sigma(t), (1 - abar).sqrt().float())
    # a meta tensor has no data to copy to the host, so this fails wherever a step would sync with the host
    on_meta = schedule.add_noise(torch.ones(3, 1, 8, device="meta"), torch.ones(3, 1, 8, device="meta"),
                                 torch.tensor([0, 5, 99], device="meta"))
    assert on_meta.device.type == "meta" and on_meta.shape == (3, 1, 8)
