"""Tests for TGDP's parts on 1-D Gaussians, where every ratio is closed form.

Source p = N(0, 1), target q = N(1, 1): r(x_0) = q/p = exp(x_0 − 1/2). Under the variance-preserving
kernel p_t = N(0, 1) and q_t = N(α_t, 1), so h(x_t, t) = E_p[r | x_t] = q_t/p_t = exp(α_t x_t − α_t²/2)
and the exact source ε is E[ε | x_t] = σ_t x_t.
"""
from __future__ import annotations

import math

import pytest
import torch

from ecg_tgdp.models.density_ratio import (
    DomainClassifier,
    DomainTraining,
    NetConfig,
    clip_ratios,
    ratio_from_logits,
    self_normalize,
    source_ratios,
    train_domain_classifier,
)
from ecg_tgdp.models.guidance import GuidanceNet, grad_log_h, guided_denoiser, guided_denoiser_from_log_h
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.tgdp import GuidanceTraining, consistency_loss, train_guidance, validation_consistency
from ecg_tgdp.models.unet import UNet1D, UNetConfig

SCHEDULE = NoiseSchedule.cosine()
SHIFT = 1.0  # target mean; the source is N(0, 1)
NO_REGULARIZERS = {"eta_cycle": 0.0, "eta_consistency": 0.0}  # the plain regression of h_ψ on r


pytestmark = pytest.mark.usefixtures("one_thread_and_seeded_init")


def _seed(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _log_ratio(x: torch.Tensor, shift: float = SHIFT) -> torch.Tensor:
    """log q/p for p = N(0, 1), q = N(shift, 1)."""
    return shift * x - shift ** 2 / 2


def _source_eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact ε of the source N(0, 1): σ_t x_t / (α_t² + σ_t²) = σ_t x_t."""
    return SCHEDULE.sigma(t).view((-1,) + (1,) * (x.ndim - 1)) * x


def _batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """x [n, 1] ~ N(0, 1), t [n] uniform on 0..999, ε [n, 1] ~ N(0, 1), labels [n] all 0."""
    x, t = torch.randn(n, 1, generator=generator), torch.randint(1000, (n,), generator=generator)
    return x, t, torch.randn(n, 1, generator=generator), torch.zeros(n, dtype=torch.long)


def _mlp(time_conditioned: bool, num_classes: int = 1, width: int = 32) -> NetConfig:
    return NetConfig(kind="mlp", in_dim=1, num_classes=num_classes, width=width, depth=2,
                     time_conditioned=time_conditioned)


# --- density ratio ---------------------------------------------------------------------------------------------

def test_ratio_from_a_calibrated_classifier_is_the_density_ratio():
    x = torch.linspace(-3, 4, 71, dtype=torch.float64)
    n_source, n_target = 5000, 200
    truth = torch.exp(_log_ratio(x))
    # a calibrated classifier on unbalanced pools outputs log(n_t q / (n_s p)); on balanced batches log(q / p)
    unbalanced_logits = math.log(n_target / n_source) + _log_ratio(x)
    torch.testing.assert_close(ratio_from_logits(unbalanced_logits, n_source, n_target, balanced=False), truth)
    torch.testing.assert_close(ratio_from_logits(_log_ratio(x), n_source, n_target, balanced=True), truth)
    # leaving out the prior factor would be off by n_s/n_t = 25
    torch.testing.assert_close(ratio_from_logits(unbalanced_logits, n_source, n_target, balanced=True),
                               truth * n_target / n_source)


def test_clipping_reports_its_rate_and_self_normalizing_gives_mean_one():
    r = torch.tensor([1e-5, 0.5, 1.0, 2.0, 1e4, float("inf")])
    clipped, rate = clip_ratios(r, 1e-3, 1e3)
    assert rate == pytest.approx(3 / 6)
    assert clipped.tolist() == pytest.approx([1e-3, 0.5, 1.0, 2.0, 1e3, 1e3])
    assert self_normalize(clipped).mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="clip them first"):
        self_normalize(r)


def test_source_ratios_apply_the_recorded_prior_then_clip_or_normalize():
    classifier = DomainClassifier(_mlp(False))  # untrained: logit 0 everywhere
    classifier.pool_sizes.copy_(torch.tensor([1000, 10]))
    classifier.balanced.fill_(False)
    x, y = torch.randn(2500, 1, generator=_seed()), torch.zeros(2500, dtype=torch.long)
    r, rate = source_ratios(classifier, x, y, batch_size=1000)  # three batches, the last one short
    assert r.shape == (2500,) and rate == 0.0
    torch.testing.assert_close(r, torch.full((2500,), 100.0))  # c/(1 − c) = 1 times n_s/n_t
    r, rate = source_ratios(classifier, x, y, r_max=50.0)
    assert rate == 1.0 and torch.all(r == 50.0)
    r, rate = source_ratios(classifier, x, y, normalize=True)
    assert rate == 0.0 and torch.allclose(r, torch.ones(2500))


@pytest.mark.parametrize("balanced", [True, False])
def test_trained_domain_classifier_recovers_the_label_conditional_ratio(balanced):
    """The target shifts to +1 for label 0 and to −1 for label 1, so a classifier blind to y would learn r ≈ 1."""
    g = _seed()
    n_source, n_target = 8000, 4000
    source_y, target_y = torch.arange(n_source) % 2, torch.arange(n_target) % 2
    source_x = torch.randn(n_source, 1, generator=g)
    target_x = torch.randn(n_target, 1, generator=g) + (1 - 2 * target_y[:, None].float()) * SHIFT
    classifier = train_domain_classifier(DomainClassifier(_mlp(False, num_classes=2)), source_x, source_y,
                                         target_x, target_y, DomainTraining(steps=400, lr=1e-2, balanced=balanced))
    x = torch.linspace(-1.5, 1.5, 31)[:, None]  # the bulk of the source
    for label, shift in ((0, SHIFT), (1, -SHIFT)):
        estimate = classifier.ratio(x, torch.full((31,), label)).log()
        design = torch.stack([x[:, 0], torch.ones(31)], 1)
        slope, intercept = torch.linalg.lstsq(design, estimate[:, None]).solution[:, 0]
        # log r = ±x − 1/2; a label-blind classifier learns log cosh(x) − 1/2: slope 0, off by 0.77 on average
        assert abs(slope - shift) < 0.3 and abs(intercept + 0.5) < 0.3, (label, slope, intercept)
        assert (estimate - _log_ratio(x[:, 0], shift)).abs().mean() < 0.3, label


def test_label_free_classifier_learns_the_marginal_ratio_for_every_label():
    """label_aware = False (the ablation's row) on the data above: one ratio q(x)/p(x) = cosh(x) e^(−1/2) for both
    labels, which is wrong for each of them."""
    g = _seed()
    source_y, target_y = torch.arange(8000) % 2, torch.arange(4000) % 2
    source_x = torch.randn(8000, 1, generator=g)
    target_x = torch.randn(4000, 1, generator=g) + (1 - 2 * target_y[:, None].float()) * SHIFT
    config = NetConfig(kind="mlp", in_dim=1, num_classes=2, width=32, depth=2, label_aware=False)
    classifier = train_domain_classifier(DomainClassifier(config), source_x, source_y, target_x, target_y,
                                         DomainTraining(steps=400, lr=1e-2))
    x = torch.linspace(-1.5, 1.5, 31)[:, None]
    by_label = [classifier.ratio(x, torch.full((31,), label)).log() for label in (0, 1)]
    assert torch.equal(by_label[0], by_label[1])
    assert (by_label[0] - (torch.cosh(x[:, 0]).log() - 0.5)).abs().mean() < 0.2
    assert classifier.net.label_emb.num_embeddings == 1


def test_time_dependent_classifier_recovers_the_noised_ratio():
    """c'(x_t, y, t)/(1 − c') estimates q_t/p_t = exp(α_t x − α_t²/2), the cycle regularizer's target."""
    g = _seed(1)
    source_x, target_x = torch.randn(4000, 1, generator=g), torch.randn(4000, 1, generator=g) + SHIFT
    labels = torch.zeros(4000, dtype=torch.long)
    classifier = train_domain_classifier(DomainClassifier(_mlp(True)), source_x, labels, target_x, labels,
                                         DomainTraining(steps=600, lr=1e-2), schedule=SCHEDULE)
    x = torch.linspace(-1.5, 1.5, 31)[:, None]
    for step in (100, 500, 900):
        t = torch.full((31,), step)
        alpha = SCHEDULE.alpha(t)[0].item()
        error = (classifier.ratio(x, torch.zeros(31, dtype=torch.long), t).log() - _log_ratio(x[:, 0], alpha)).abs()
        assert error.mean() < 0.2 and error.max() < 0.5, (step, error)


# --- guidance network ------------------------------------------------------------------------------------------

def test_guidance_net_trained_on_exact_ratios_matches_the_conditional_expectation():
    """h_ψ → E_p[r(x_0) | x_t] = q_t/p_t; relative error < 25% over the central 80% of p_t at every t checked."""
    x0 = torch.randn(20000, 1, generator=_seed(2))
    net = GuidanceNet(_mlp(True))
    result = train_guidance(net, _source_eps, SCHEDULE, x0, torch.zeros(20000, dtype=torch.long),
                            torch.exp(_log_ratio(x0[:, 0])), GuidanceTraining(steps=800, batch_size=512, lr=3e-3, **NO_REGULARIZERS))
    assert len(result.log) == 800
    x = torch.linspace(-1.28, 1.28, 41)[:, None]  # p_t = N(0, 1): its 10% and 90% quantiles
    for step in (0, 100, 300, 500, 700, 900):
        t = torch.full((41,), step)
        alpha = SCHEDULE.alpha(t)[0].item()
        with torch.no_grad():
            relative = net(x, t, torch.zeros(41, dtype=torch.long)) / torch.exp(_log_ratio(x[:, 0], alpha)) - 1
        assert relative.abs().max() < 0.25, step


def test_consistency_gradient_reaches_psi_only_with_create_graph():
    net = GuidanceNet(_mlp(True))
    torch.nn.init.normal_(net.net.head.weight, std=0.5, generator=_seed(3))  # a net with a non-constant h
    g = _seed(4)
    x0, t, eps, y = _batch(64, g)
    x0 = x0 + SHIFT  # target windows

    loss = consistency_loss(_source_eps, net.log_h, SCHEDULE, x0, y, t, eps)
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    assert sum(g.norm() for g in grads if g is not None) > 1e-3

    # the paper's code: ∇ log h with create_graph=False is a constant to autograd, so ψ gets nothing
    x_t = SCHEDULE.add_noise(x0, eps, t)
    detached = grad_log_h(net.log_h, x_t, t, y, create_graph=False)
    paper_loss = torch.nn.functional.mse_loss(_source_eps(x_t, t, y) - SCHEDULE.sigma(t)[:, None] * detached, eps)
    assert not paper_loss.requires_grad
    torch.testing.assert_close(paper_loss, loss.detach())  # same value, no gradient
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(paper_loss, list(net.parameters()), allow_unused=True)


def _regularized_run(settings: GuidanceTraining, with_target: bool) -> tuple[GuidanceNet, list[dict]]:
    """20 steps on source N(0, 1) with exact ratios; target N(1, 1) and an untrained c' when `with_target`."""
    g = _seed(5)
    source_x, target_x = torch.randn(500, 1, generator=g), torch.randn(100, 1, generator=g) + SHIFT
    labels = torch.zeros(500, dtype=torch.long)
    torch.manual_seed(0)  # identical initial weights in every run (the fixture restores the global generator)
    net, time_classifier = GuidanceNet(_mlp(True)), DomainClassifier(_mlp(True))
    torch.nn.init.normal_(time_classifier.net.head.weight)  # c'/(1 − c') ≠ 1 = h_ψ at the start: cycle > 0
    target = {"target_x": target_x, "target_y": labels[:100], "time_classifier": time_classifier} if with_target else {}
    result = train_guidance(net, _source_eps, SCHEDULE, source_x, labels, torch.exp(_log_ratio(source_x[:, 0])),
                            settings, **target)
    return net, result.log


def test_regularizers_switch_off_with_eta_zero():
    steps = {"steps": 20, "lr": 1e-2}
    off, off_log = _regularized_run(GuidanceTraining(**steps, **NO_REGULARIZERS), with_target=True)
    bare, _ = _regularized_run(GuidanceTraining(**steps, **NO_REGULARIZERS), with_target=False)
    assert all(row["cycle"] == 0.0 and row["consistency"] == 0.0 for row in off_log)
    assert off_log[0]["grad_share_guidance"] == 1.0  # the only term
    for a, b in zip(off.parameters(), bare.parameters()):  # target data given but unused: the very same run
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    on, on_log = _regularized_run(GuidanceTraining(**steps, eta_cycle=0.5, eta_consistency=2.0), with_target=True)
    assert all(row["cycle"] > 0 and row["consistency"] > 0 for row in on_log)
    shares = [on_log[0][f"grad_share_{term}"] for term in ("guidance", "cycle", "consistency")]
    assert shares == pytest.approx([1 / 3.5, 0.5 / 3.5, 2 / 3.5])  # η are the terms' shares of the gradient
    assert any(not torch.equal(a, b) for a, b in zip(on.parameters(), off.parameters()))

    _only_cycle, cycle_log = _regularized_run(GuidanceTraining(**steps, eta_cycle=0.5, eta_consistency=0.0),
                                             with_target=True)
    assert all(row["consistency"] == 0.0 and row["cycle"] > 0 for row in cycle_log)


def test_loss_terms_are_put_on_one_scale_and_their_gradient_shares_logged():
    g = _seed(5)
    source_x, target_x = torch.randn(500, 1, generator=g), torch.randn(100, 1, generator=g) + SHIFT
    labels = torch.zeros(500, dtype=torch.long)
    time_classifier = DomainClassifier(_mlp(True))
    torch.nn.init.normal_(time_classifier.net.head.weight)
    result = train_guidance(GuidanceNet(_mlp(True)), _source_eps, SCHEDULE, source_x, labels,
                            100 * torch.exp(_log_ratio(source_x[:, 0])),  # a regression term 10⁴ times larger
                            GuidanceTraining(steps=30, scale_every=10, eta_cycle=1.0, eta_consistency=1.0),
                            target_x=target_x, target_y=labels[:100], time_classifier=time_classifier)
    measured = [row for row in result.log if row["step"] == 1 or row["step"] % 10 == 0]
    for row in measured:
        shares = [row[f"grad_share_{term}"] for term in ("guidance", "cycle", "consistency")]
        assert sum(shares) == pytest.approx(1.0) and min(shares) > 0.15  # every term pulls on ψ, none drowns
    assert all(math.isnan(row["grad_share_cycle"]) for row in result.log if row not in measured)


def test_regularizers_without_their_inputs_fail_loudly():
    x, y = torch.randn(10, 1), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="needs target_x"):
        train_guidance(GuidanceNet(_mlp(True)), _source_eps, SCHEDULE, x, y, torch.ones(10),
                       GuidanceTraining(steps=1, eta_consistency=1.0))
    with pytest.raises(ValueError, match="time_classifier"):
        train_guidance(GuidanceNet(_mlp(True)), _source_eps, SCHEDULE, x, y, torch.ones(10),
                       GuidanceTraining(steps=1, eta_cycle=1.0), target_x=x, target_y=y)


def test_early_stopping_keeps_the_best_held_out_consistency():
    g = _seed(6)
    source_x, val_x = torch.randn(500, 1, generator=g), torch.randn(200, 1, generator=g) + SHIFT
    labels = torch.zeros(500, dtype=torch.long)
    net = GuidanceNet(_mlp(True))
    result = train_guidance(net, _source_eps, SCHEDULE, source_x, labels, torch.exp(_log_ratio(source_x[:, 0])),
                            GuidanceTraining(steps=60, batch_size=256, lr=1e-2, val_every=5, patience=1,
                                             **NO_REGULARIZERS),
                            val_x=val_x, val_y=labels[:200])
    validated = [row for row in result.log if not math.isnan(row["val_consistency"])]
    assert [row["step"] for row in validated] == list(range(5, len(result.log) + 1, 5))
    assert result.best_val_consistency == min(row["val_consistency"] for row in validated)
    assert result.stopped_early and len(result.log) == result.best_step + 5 < 60  # one validation of patience
    # the net holds the best weights: the same seeded validation gives the best value again
    again = validation_consistency(_source_eps, net.log_h, SCHEDULE, val_x, labels[:200], 256, _seed(1))
    assert again == pytest.approx(result.best_val_consistency, rel=1e-6)


# --- guided denoiser -------------------------------------------------------------------------------------------

def test_guided_denoiser_is_the_source_denoiser_at_scale_zero_or_constant_h():
    g = _seed(7)
    x, t, _, y = _batch(16, g)
    assert guided_denoiser_from_log_h(_source_eps, lambda x, t, y: x.sum(1), SCHEDULE, 0.0) is _source_eps
    constant = guided_denoiser_from_log_h(_source_eps, lambda x, t, y: torch.full((len(x),), 2.0), SCHEDULE, 1.0)
    torch.testing.assert_close(constant(x, t, y), _source_eps(x, t, y))
    fresh = guided_denoiser(_source_eps, GuidanceNet(_mlp(True)), SCHEDULE, 3.0)  # h ≡ 1 before training
    torch.testing.assert_close(fresh(x, t, y), _source_eps(x, t, y))


def test_guided_denoiser_subtracts_sigma_times_the_log_h_gradient():
    """log h = a·x has gradient a, so ε̃ = ε − w σ_t a: minus sign, σ_t factor (the paper's code: plus, no σ_t)."""
    g = _seed(8)
    x, t, _, y = _batch(16, g)
    guided = guided_denoiser_from_log_h(_source_eps, lambda x, t, y: 0.7 * x.sum(1), SCHEDULE, 2.0)
    torch.testing.assert_close(guided(x, t, y), _source_eps(x, t, y) - 2.0 * SCHEDULE.sigma(t)[:, None] * 0.7)
    with torch.no_grad():  # as inside a sampler
        torch.testing.assert_close(guided(x, t, y), _source_eps(x, t, y) - 2.0 * SCHEDULE.sigma(t)[:, None] * 0.7)


def test_conv_guidance_on_windows_end_to_end():
    """Windows [N, leads, T] through conv nets and a frozen U-Net, both regularizers on, then guided sampling."""
    from ecg_tgdp.models.samplers import sample

    g = _seed(9)
    source_x, target_x = torch.randn(32, 2, 24, generator=g), torch.randn(16, 2, 24, generator=g) + 0.5
    source_y, target_y = torch.arange(32) % 3, torch.arange(16) % 3
    conv = NetConfig(kind="conv", in_dim=2, num_classes=3, width=16, depth=2, time_conditioned=True)
    unet = UNet1D(UNetConfig(leads=2, num_classes=3, base_channels=8, channel_mults=(1, 2)))
    time_classifier = train_domain_classifier(DomainClassifier(conv), source_x, source_y, target_x, target_y,
                                              DomainTraining(steps=3, batch_size=8), schedule=SCHEDULE)
    net = GuidanceNet(conv)
    result = train_guidance(net, unet, SCHEDULE, source_x, source_y, torch.rand(32) + 0.5,
                            GuidanceTraining(steps=3, batch_size=8, eta_cycle=1.0, eta_consistency=1.0),
                            target_x=target_x, target_y=target_y, time_classifier=time_classifier,
                            val_x=target_x, val_y=target_y)
    assert not any(p.requires_grad for p in unet.parameters())  # ε_θ frozen
    assert all(math.isfinite(value) for row in result.log for key, value in row.items()
               if key != "val_consistency" and not key.startswith("grad_share"))  # measured at step 1 only
    windows = sample(guided_denoiser(unet, net, SCHEDULE, 1.0), SCHEDULE, (4, 2, 24), torch.tensor([0, 1, 2, 0]),
                     sampler="dpmpp", steps=3, generator=_seed())
    assert windows.shape == (4, 2, 24) and torch.isfinite(windows).all()
