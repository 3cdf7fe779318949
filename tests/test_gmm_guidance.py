"""TGDP's correctness check with everything exact: the paper's 2-D Gaussian mixtures (README: TGDP, exactly).

Source modes ±(0.5, 0.5), target modes ±(0.5, −0.5), covariance 0.1·I. The exact source ε guided by the
exact h = q_t/p_t through the unedited samplers must reproduce the target's share of points nearer a target
mode (≈ 0.89), within 2 points; the wrong sign, or the paper code's missing σ_t, must not.
"""
from __future__ import annotations

import math

import pytest
import torch

from ecg_tgdp.models import gmm
from ecg_tgdp.models.guidance import grad_log_h, guided_denoiser_from_log_h
from ecg_tgdp.models.samplers import sample
from ecg_tgdp.models.schedule import NoiseSchedule

N = 4000
SOURCE, TARGET = gmm.paper_mixtures()
TOLERANCE = 0.02  # 2 points; the standard error of a difference of two 4000-sample shares is 0.007
CASES = [("cosine", "dpmpp", 50), ("linear", "ddim", 100), ("cosine", "ddpm", 200)]


@pytest.fixture(autouse=True)
def _one_thread():
    """Keep CPU use light (a long training shares this machine); restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _exact_share(mixture: gmm.GaussianMixture) -> float:
    return gmm.target_mode_share(mixture.sample(N, torch.Generator().manual_seed(10)), SOURCE, TARGET)


def _sampled_share(denoiser, schedule: NoiseSchedule, method: str, steps: int) -> float:
    x = sample(denoiser, schedule, (N, 1, 2), torch.zeros(N, dtype=torch.long), sampler=method, steps=steps,
               generator=torch.Generator().manual_seed(1))
    return gmm.target_mode_share(x, SOURCE, TARGET)


@pytest.mark.parametrize(("kind", "method", "steps"), CASES)
def test_exact_guidance_reproduces_the_target_and_the_flipped_sign_does_not(kind, method, steps):
    schedule = NoiseSchedule.from_name(kind, 1000)
    eps, log_h = gmm.exact_denoiser(SOURCE, schedule), gmm.exact_log_h_fn(SOURCE, TARGET, schedule)
    target_share, source_share = _exact_share(TARGET), _exact_share(SOURCE)
    assert 0.87 < target_share < 0.91 and 0.09 < source_share < 0.13

    guided = _sampled_share(guided_denoiser_from_log_h(eps, log_h, schedule, 1.0), schedule, method, steps)
    unguided = _sampled_share(guided_denoiser_from_log_h(eps, log_h, schedule, 0.0), schedule, method, steps)
    flipped = _sampled_share(guided_denoiser_from_log_h(eps, log_h, schedule, -1.0), schedule, method, steps)
    assert abs(guided - target_share) < TOLERANCE, (guided, target_share)
    assert abs(unguided - source_share) < TOLERANCE, (unguided, source_share)
    assert abs(flipped - target_share) > TOLERANCE, flipped  # the paper code's plus sign: away from the target


def test_guidance_without_sigma_overshoots_the_target():
    """ε − ∇ log h (the σ_t factor dropped) over-weights the guidance where σ_t < 1: the target share overshoots."""
    schedule = NoiseSchedule.cosine()
    eps = gmm.exact_denoiser(SOURCE, schedule)

    def without_sigma(x, t, y):
        return eps(x, t, y) - gmm.grad_log_h(SOURCE, TARGET, x, t, schedule)

    assert _sampled_share(without_sigma, schedule, "dpmpp", 50) - _exact_share(TARGET) > TOLERANCE


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_closed_forms_agree_with_autograd(kind):
    """score_t and grad_log_h are the autograd gradients of log_prob_t and log_h; eps_t = −σ_t · score."""
    schedule = NoiseSchedule.from_name(kind, 1000)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 1, 2, generator=g, dtype=torch.float64)
    t, y = torch.randint(1000, (64,), generator=g), torch.zeros(64, dtype=torch.long)
    xs = x.clone().requires_grad_(True)
    (score,) = torch.autograd.grad(SOURCE.log_prob_t(xs, t, schedule).sum(), xs)
    torch.testing.assert_close(SOURCE.score_t(x, t, schedule), score)
    torch.testing.assert_close(SOURCE.eps_t(x, t, schedule), -schedule.sigma(t).double()[:, None, None] * score)
    log_h = gmm.exact_log_h_fn(SOURCE, TARGET, schedule)
    torch.testing.assert_close(grad_log_h(log_h, x, t, y, create_graph=False),
                               gmm.grad_log_h(SOURCE, TARGET, x, t, schedule))


def test_density_ratio_and_log_h_at_t_zero():
    """r(x_0) = q/p in closed form; h at small t approaches r (x_t ≈ x_0), far from it at large t (h → 1)."""
    points = torch.tensor([[0.5, -0.5], [0.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    r = gmm.density_ratio(SOURCE, TARGET, points)
    # at a target mode both source components are 1 away and the other target one √2: r = (1 + e^−10) / (2 e^−5)
    assert r[0].item() == pytest.approx((1 + math.exp(-10)) / (2 * math.exp(-5)))
    assert r[1].item() == pytest.approx(1.0) and r[2].item() == pytest.approx(1 / r[0].item())
    schedule = NoiseSchedule.cosine()
    h_small = gmm.log_h(SOURCE, TARGET, points, torch.zeros(3, dtype=torch.long), schedule).exp()
    h_large = gmm.log_h(SOURCE, TARGET, points, torch.full((3,), 999), schedule).exp()
    torch.testing.assert_close(h_small, r, rtol=0.02, atol=0)
    torch.testing.assert_close(h_large, torch.ones(3, dtype=torch.float64), rtol=1e-3, atol=0)
