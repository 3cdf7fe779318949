"""TGDP's time-classifier estimator and its diagnostics, on 1-D Gaussians where every quantity is closed form.

Source p = N(0, 1), target q = N(1, 1). Under the variance-preserving kernel p_t = N(0, 1) and q_t = N(α_t, 1),
so log h(x_t, t) = log q_t/p_t = α_t x_t − α_t²/2, ∇ log h = α_t, and the exact target ε is σ_t (x_t − α_t),
which the guided source ε, σ_t x_t − σ_t ∇ log h, must equal.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_tgdp.models.density_ratio import DomainClassifier, DomainTraining, HeldOut, NetConfig, train_domain_classifier
from ecg_tgdp.models.guidance import classifier_log_h, fade_weight, grad_log_h, guided_denoiser_from_log_h
from ecg_tgdp.models.ratio_diagnostics import (
    BandScores,
    binary_scores,
    choose_t_min,
    clip_share,
    effective_sample_size,
    scores_by_band,
)
from ecg_tgdp.models.samplers import classifier_free_guidance
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.tgdp_transfer import TGDPSettings, fit_tgdp

SCHEDULE = NoiseSchedule.cosine()


pytestmark = pytest.mark.usefixtures("one_thread_and_seeded_init")


def _mlp(width: int = 32) -> NetConfig:
    return NetConfig(kind="mlp", in_dim=1, num_classes=1, width=width, depth=3, time_conditioned=True)


def _source_eps(x, t, y):
    """Exact ε of the source N(0, 1): σ_t x_t."""
    return SCHEDULE.sigma(t).view((-1,) + (1,) * (x.ndim - 1)) * x


@pytest.fixture(scope="module")
def time_classifier():
    g = torch.Generator().manual_seed(1)
    source_x, target_x = torch.randn(4000, 1, generator=g), torch.randn(4000, 1, generator=g) + 1.0
    labels = torch.zeros(4000, dtype=torch.long)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return train_domain_classifier(DomainClassifier(_mlp()), source_x, labels, target_x, labels,
                                       DomainTraining(steps=600, lr=1e-2), schedule=SCHEDULE)


def test_time_classifier_guidance_is_the_closed_form_gradient_of_log_q_t_over_p_t(time_classifier):
    log_h = classifier_log_h(time_classifier)
    x = torch.linspace(-1.0, 2.0, 31)[:, None]  # between the two modes, where both domains have mass
    y = torch.zeros(31, dtype=torch.long)
    for step in (100, 400, 700):
        t = torch.full((31,), step)
        alpha = SCHEDULE.alpha(t)[0].item()
        gradient = grad_log_h(log_h, x, t, y, create_graph=False)[:, 0]
        # a learned gradient within 25% of α_t (the wrong sign or a dropped σ_t would be off by 100% or more)
        assert (gradient - alpha).abs().mean() < 0.25 * max(alpha, 0.3), (step, gradient)
        guided = guided_denoiser_from_log_h(_source_eps, log_h, SCHEDULE, 1.0)(x, t, y)
        exact = SCHEDULE.sigma(t)[:, None] * (x - alpha)  # the target's ε
        assert (guided - exact).abs().mean() < 0.1, step


def test_fade_switches_guidance_off_below_t_min():
    weight = fade_weight(300, 100)
    assert weight(torch.tensor([0, 299, 300, 350, 400, 999])).tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert fade_weight(0, 100)(torch.tensor([0, 5])).tolist() == [1.0, 1.0]
    x, y = torch.randn(4, 1), torch.zeros(4, dtype=torch.long)

    def log_h(x, t, y):
        return 3.0 * x.sum(1)

    guided = guided_denoiser_from_log_h(_source_eps, log_h, SCHEDULE, 1.0, weight)
    torch.testing.assert_close(guided(x, torch.full((4,), 100), y), _source_eps(x, torch.full((4,), 100), y))
    t = torch.full((4,), 800)
    torch.testing.assert_close(guided(x, t, y), _source_eps(x, t, y) - 3.0 * SCHEDULE.sigma(t)[:, None])


def test_tgdp_composes_with_classifier_free_guidance_by_adding_to_the_cfg_epsilon():
    """ε̃ = ε_uncond + s (ε_cond − ε_uncond) − w σ_t ∇ log h at any CFG scale s (models.guidance docstring)."""
    class TwoClassEps(torch.nn.Module):
        def forward(self, x, t, y):  # class 0 ↦ σ x, class 1 ↦ σ (x − 1), null class 2 ↦ σ (x − 0.5)
            return SCHEDULE.sigma(t)[:, None] * (x - 0.5 * y[:, None].float())

    net, x, t = TwoClassEps(), torch.randn(6, 1), torch.full((6,), 500)
    y = torch.tensor([0, 1, 0, 1, 0, 1])

    def log_h(x, t, y):
        return 2.0 * x.sum(1)

    for s in (1.0, 3.0):
        cfg = classifier_free_guidance(net, 2, s)
        composed = guided_denoiser_from_log_h(cfg, log_h, SCHEDULE, 0.5)(x, t, y)
        sigma = SCHEDULE.sigma(t)[:, None]
        expected = net(x, t, torch.full_like(y, 2)) + s * (net(x, t, y) - net(x, t, torch.full_like(y, 2)))
        torch.testing.assert_close(composed, expected - 0.5 * sigma * 2.0)


def test_effective_sample_size_and_clip_share_on_known_weights():
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size(np.array([1.0, 0, 0, 0])) == pytest.approx(1)
    assert effective_sample_size(np.array([2.0, 1.0, 1.0])) == pytest.approx(16 / 6)
    sigma = 1.0  # log-normal weights: ESS / N → exp(−σ²)
    weights = np.exp(np.random.default_rng(0).normal(0, sigma, 200_000))
    assert effective_sample_size(weights) / len(weights) == pytest.approx(np.exp(-sigma ** 2), rel=0.03)
    assert clip_share(np.log(np.array([1e-4, 0.5, 2.0, 1e4])), 1e-3, 1e3) == 0.5
    with pytest.raises(ValueError, match="non-negative"):
        effective_sample_size(np.array([1.0, -1.0]))


def test_binary_scores_of_a_blind_a_perfect_and_a_calibrated_classifier():
    domain = np.repeat([False, True], 500)
    blind = binary_scores(np.zeros(1000), domain)
    assert blind["log_loss"] == pytest.approx(np.log(2)) and blind["auroc"] == 0.5 and blind["ece"] == 0.0
    perfect = binary_scores(np.where(domain, 20.0, -20.0), domain)
    assert perfect["auroc"] == 1.0 and perfect["log_loss"] < 1e-8
    rng = np.random.default_rng(1)
    x = rng.normal(np.where(domain, 1.0, 0.0), 1.0)
    calibrated = binary_scores(x - 0.5, domain)  # the exact logit of N(1, 1) vs N(0, 1)
    assert calibrated["ece"] < 0.05 and 0.7 < calibrated["auroc"] < 0.8
    assert binary_scores(3 * (x - 0.5), domain)["ece"] > calibrated["ece"] + 0.05  # overconfident


def test_t_min_is_where_the_held_out_classifier_stops_being_near_perfect():
    bands = [BandScores(0, 100, 0.01, 0.999, 0.0), BandScores(100, 200, 0.05, 0.995, 0.0),
             BandScores(200, 300, 0.3, 0.95, 0.0), BandScores(300, 400, 0.6, 0.7, 0.0)]
    assert choose_t_min(bands) == 200
    assert choose_t_min(bands, near_perfect=0.9) == 300
    assert choose_t_min(bands[2:]) == 0  # nowhere near-perfect: guide everywhere


def test_diagnostics_of_domains_separable_only_at_small_t():
    """Narrow source and target (std 0.05) 1 apart: separable when clean, overlapping once noised: t_min > 0."""
    g = torch.Generator().manual_seed(3)
    source_x = 0.05 * torch.randn(3000, 1, generator=g)
    target_x = 1.0 + 0.05 * torch.randn(3000, 1, generator=g)
    val_source, val_target = 0.05 * torch.randn(500, 1, generator=g), 1.0 + 0.05 * torch.randn(500, 1, generator=g)
    y = torch.zeros(3000, dtype=torch.long)
    settings = TGDPSettings(network="mlp", width=32, time_domain=DomainTraining(steps=400, lr=1e-2, val_every=100))
    fit = fit_tgdp(_source_eps, SCHEDULE, (source_x, y), (target_x, y), settings, source_val=(val_source, y[:500]),
                   target_val=(val_target, y[:500]), num_classes=1)
    diagnostics = fit.diagnostics
    assert diagnostics["held_out"] and diagnostics["clean"]["auroc"] > 0.99
    auroc = [band["auroc"] for band in diagnostics["bands"]]
    assert auroc[0] > 0.99 > auroc[-1] and auroc[-1] < 0.7  # overlap grows with t
    assert 0 < fit.t_min < SCHEDULE.num_steps and diagnostics["t_min"] == fit.t_min
    assert 0 < diagnostics["ess"] <= diagnostics["n_source_weights"] == 500
    assert {row["phase"] for row in fit.log} == {"time_classifier"}


def test_label_aware_reaches_the_fitted_network_and_the_cache_key_only_when_switched_off():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(400, 1, generator=g), torch.arange(400) % 2
    settings = TGDPSettings(network="mlp", width=32, label_aware=False, time_domain=DomainTraining(steps=20))
    fit = fit_tgdp(_source_eps, SCHEDULE, (x, y), (x + 1, y), settings, num_classes=2)
    assert fit.network.config.label_aware is False
    assert settings.fit_settings()["label_aware"] is False
    # fits cached before the switch existed keep their key
    assert "label_aware" not in TGDPSettings().fit_settings()


def test_scores_by_band_groups_by_t():
    t = np.repeat([5, 15, 25, 35], 50)
    domain = np.tile([False, True], 100)
    bands = scores_by_band(t, np.where(domain, 1.0, -1.0), domain, num_steps=40, bands=4)
    assert [(band.t_low, band.t_high) for band in bands] == [(0, 10), (10, 20), (20, 30), (30, 40)]


def test_held_out_windows_are_balanced_and_the_same_each_time():
    source_x, target_x = torch.randn(50, 1), torch.randn(8, 1)
    held_out = HeldOut(source_x, torch.zeros(50, dtype=torch.long), target_x, torch.zeros(8, dtype=torch.long))
    x, _, t, domain = held_out.noised(SCHEDULE)
    assert len(x) == 2 * 8 * held_out.draws and domain.mean() == 0.5 and t is not None
    again = held_out.noised(SCHEDULE)
    torch.testing.assert_close(again[0], x)
