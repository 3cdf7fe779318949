"""Tests for models.samplers: exact-denoiser Gaussian checks, convergence order, seeding, CFG, autograd inside."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from ecg_tgdp.models.samplers import (
    LOGSNR_START,
    classifier_free_guidance,
    ddim_sample,
    ddpm_sample,
    dpmpp_sample,
    dpmpp_sde_sample,
    sample,
    start_timestep,
    timesteps,
)
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.unet import UNet1D, UNetConfig

SCHEDULE = NoiseSchedule.cosine()
MU = torch.tensor([0.7, -0.4])  # per-class data mean
SD = 0.3  # data standard deviation, every coordinate
SHAPE = (4000, 2, 4)
LABELS = torch.arange(SHAPE[0]) % 2


def exact_eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, mu: torch.Tensor = MU) -> torch.Tensor:
    """E[ε | x_t] for x_0 ~ N(μ_y, s²): σ_t (x_t − α_t μ_y) / (α_t² s² + σ_t²)."""
    alpha, sigma = SCHEDULE.alpha(t)[:, None, None], SCHEDULE.sigma(t)[:, None, None]
    return sigma * (x - alpha * mu[y][:, None, None]) / (alpha ** 2 * SD ** 2 + sigma ** 2)


def _seed(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Std tolerances: each solver's discretization bias on this toy (std −0.5% at DDPM 1000, −5% at DDPM 100,
# −4.5% at DDIM 50, −9.5% at DDIM η=1, +3%/+1%/+0.25% at DPM++ 10/25/50) plus ~3 standard errors of a
# 16,000-value sample std (0.56%). The mean is exact for every sampler up to its standard error (0.0024).
CASES = [
    (ddpm_sample, {"steps": None}, 0.025),
    (ddpm_sample, {"steps": 100}, 0.07),
    (ddim_sample, {"steps": 50, "eta": 0.0}, 0.06),
    (ddim_sample, {"steps": 50, "eta": 1.0}, 0.12),
    (dpmpp_sample, {"steps": 10}, 0.05),
    (dpmpp_sample, {"steps": 25}, 0.025),
    (dpmpp_sample, {"steps": 50}, 0.015),
    (dpmpp_sde_sample, {"steps": 25}, 0.05),
    (dpmpp_sde_sample, {"steps": 50}, 0.03),
]


@pytest.mark.parametrize(("sampler", "options", "std_tol"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_exact_denoiser_recovers_the_gaussian_per_class(sampler, options, std_tol):
    x = sampler(exact_eps, SCHEDULE, SHAPE, LABELS, generator=_seed(), **options)
    assert x.shape == SHAPE and x.dtype == torch.float32
    for label in (0, 1):
        values = x[LABELS == label]
        assert abs(values.mean().item() - MU[label].item()) < 0.012
        assert abs(values.std().item() / SD - 1) < std_tol


def _gain_error(sampler, steps: int) -> float:
    """Relative error of the deterministic sampler's gain x_0/x_T against the exact flow √(v_0/v_T), μ = 0."""
    zero_mean = torch.zeros(2)
    x0 = sampler(lambda x, t, y: exact_eps(x, t, y, zero_mean), SCHEDULE, (1, 1, 1), torch.zeros(1, dtype=torch.long),
                 generator=_seed(), steps=steps)
    x_start = torch.randn((1, 1, 1), generator=_seed())  # the sampler's first draw
    abar = SCHEDULE.alphas_cumprod[start_timestep(SCHEDULE)].item()
    return (x0 / x_start).item() / (SD / math.sqrt(abar * SD ** 2 + 1 - abar)) - 1


def test_ddim_is_first_order_and_dpmpp_second_order():
    ddim_ratio = _gain_error(ddim_sample, 50) / _gain_error(ddim_sample, 100)
    dpmpp_ratio = _gain_error(dpmpp_sample, 20) / _gain_error(dpmpp_sample, 40)
    assert 1.8 < ddim_ratio < 2.2
    assert 3.0 < dpmpp_ratio < 5.5


@pytest.mark.parametrize("spacing", ["time", "logsnr"])
@pytest.mark.parametrize("steps", [1, 2, 10, 25, 995, 996])
def test_timesteps_are_distinct_and_span_the_schedule(spacing, steps):
    ts = timesteps(SCHEDULE, steps, spacing)
    assert len(ts) == steps and ts[0] == 995 and (steps == 1 or ts[-1] == 0)
    assert all(a > b for a, b in itertools.pairwise(ts))


def test_timestep_golden_lists():
    assert timesteps(SCHEDULE, 5) == [995, 746, 498, 249, 0]
    assert timesteps(NoiseSchedule.linear(), 10, "logsnr") == [999, 886, 757, 603, 410, 202, 73, 22, 5, 0]


def test_samplers_start_where_the_log_snr_reaches_the_floor():
    """Cosine: ᾱ_{T−1} ≈ 2e-9 after the β clip; starting there would divide any ε error by √ᾱ ≈ 5e-5."""
    lam = lambda t: 0.5 * math.log(SCHEDULE.alphas_cumprod[t].item() / (1 - SCHEDULE.alphas_cumprod[t].item()))
    first = start_timestep(SCHEDULE)
    assert lam(first) >= LOGSNR_START > lam(first + 1)
    assert start_timestep(NoiseSchedule.linear()) == 999


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpmpp", "dpmpp_sde"])
def test_a_small_denoiser_error_stays_small(method):
    """ε off by 0.01 everywhere (a learned network is off by more at high noise) keeps samples near the data;
    started at t = T−1 it would shift x̂_0 by 0.01 σ/α ≈ 200 on the first step."""
    x = sample(lambda x, t, y: exact_eps(x, t, y) + 0.01, SCHEDULE, SHAPE, LABELS, sampler=method, steps=50,
               generator=_seed())
    for label in (0, 1):
        values = x[LABELS == label]
        assert abs(values.mean().item() - MU[label].item()) < 0.1
        assert abs(values.std().item() / SD - 1) < 0.2


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpmpp", "dpmpp_sde"])
def test_same_seed_same_samples(method):
    eta = 1.0 if method == "ddim" else 0.0  # exercise the noise path of DDIM too
    draw = lambda seed: sample(exact_eps, SCHEDULE, (6, 1, 8), LABELS[:6], sampler=method, steps=10, eta=eta,
                               generator=_seed(seed), device="cpu")
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_classifier_free_guidance_scales():
    calls = []

    def model_fn(x, t, y):
        calls.append(len(y))
        return x * (1.0 + y[:, None, None].float())  # the null class 2 gives 3x

    x, t, y = torch.randn(4, 1, 5), torch.full((4,), 10), torch.tensor([0, 1, 0, 1])
    assert classifier_free_guidance(model_fn, null_class=2, scale=1.0) is model_fn
    torch.testing.assert_close(classifier_free_guidance(model_fn, 2, 0.0)(x, t, y), 3 * x)
    guided = classifier_free_guidance(model_fn, 2, 2.5)(x, t, y)
    torch.testing.assert_close(guided, 3 * x + 2.5 * (model_fn(x, t, y) - 3 * x))
    assert calls[1] == 8  # conditional and unconditional halves in one batched call


def test_bad_arguments_raise_naming_the_value():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        sample(exact_eps, SCHEDULE, (2, 1, 4), LABELS[:2], sampler="euler", generator=_seed())
    with pytest.raises(ValueError, match="eta=0.5 applies only to the sampler 'ddim'"):
        sample(exact_eps, SCHEDULE, (2, 1, 4), LABELS[:2], sampler="dpmpp", eta=0.5, generator=_seed())
    with pytest.raises(ValueError, match="steps must be in"):
        timesteps(SCHEDULE, 1001)
    with pytest.raises(ValueError, match="spacing 'karras'"):
        timesteps(SCHEDULE, 10, "karras")
    with pytest.raises(ValueError, match="labels"):
        ddim_sample(exact_eps, SCHEDULE, (3, 1, 4), LABELS[:2], generator=_seed())


@pytest.mark.parametrize("method", ["ddpm", "ddim", "dpmpp", "dpmpp_sde"])
def test_denoiser_may_use_autograd_inside_a_sampler(method):
    """The TGDP wrapper's shape: ε̃ = ε − w σ_t ∇_x log h, the gradient taken under enable_grad on a detached x."""
    grads = []

    def guided_eps(x, t, y):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_h = -0.5 * (x_in - 1.0).pow(2).sum()
            (grad,) = torch.autograd.grad(log_h, x_in)
        grads.append(grad)
        return exact_eps(x, t, y) - 0.5 * SCHEDULE.sigma(t)[:, None, None] * grad

    x = sample(guided_eps, SCHEDULE, (4, 1, 8), LABELS[:4], sampler=method, steps=8, generator=_seed(), progress=True)
    assert torch.isfinite(x).all() and len(grads) == 8
    assert not x.requires_grad


def test_untrained_unet_with_cfg_samples_finite_windows():
    model = UNet1D(UNetConfig(base_channels=16))
    denoiser = classifier_free_guidance(model, model.null_class, 2.0)
    x = sample(denoiser, SCHEDULE, (3, 1, 40), torch.tensor([0, 1, 2]), steps=4, generator=_seed(), clip_x0=5.0)
    assert x.shape == (3, 1, 40) and torch.isfinite(x).all() and x.abs().max() <= 5.0
