"""TGDP's guidance h(x_t, y, t) = q_t/p_t and the guided denoiser built on it.

With r = q/p, q_t(x_t | y) = p_t(x_t | y) · h(x_t, y, t), so ∇ log q_t = ∇ log p_t + ∇ log h (TGDP §3,
README: TGDP, exactly). Since ε = −σ_t ∇ log p_t (Song et al. 2021), the target's ε-prediction is

    ε̃(x_t, y, t) = ε_θ(x_t, y, t) − w · f(t) · σ_t · ∇_x log h(x_t, y, t),   w = 1 in theory,

with f(t) ∈ [0, 1] switching the guidance off below t_min, where the domains are separable and the
estimate of h is not to be trusted (`fade_weight`). Two estimates of log h:

- the guidance network h_ψ (the paper's), regressed on the clean-window ratio r (`GuidanceNet`);
- the time-dependent domain classifier itself, log h = logit c'(x_t, y, t) (`classifier_log_h`): trained
  with BCE on balanced batches of noised source and target windows, its logit is at the optimum exactly
  log q_t(x_t, y)/p_t(x_t, y) (discriminator guidance, Kim et al. ICML 2023, applied to transfer).

The paper's released code adds the gradient with a plus sign and without σ_t, which pushes samples away
from the target and mis-scales the guidance across t; here the sign and factor follow the identity above
(pinned by tests/test_gmm_guidance.py). Guidance wraps the denoiser function; samplers are never edited.

Composed with classifier-free guidance at scale s (`models.samplers.classifier_free_guidance`), the
transfer term is added to the CFG ε: ε̃ = ε_uncond + s (ε_cond − ε_uncond) − w σ_t ∇ log h. h is fit
against the conditional source p(x | y), so the composition is exact at s = 1 (the target q(x | y)); at
s ≠ 1 the base is the sharpened source p(x | y) p(y | x)^(s−1) and the same h tilts it by q/p, which
targets q(x | y) p(y | x)^(s−1): the target, sharpened by the *source's* class posterior.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecg_tgdp.models.density_ratio import ConditionedNet, DomainClassifier, NetConfig
from ecg_tgdp.models.samplers import DenoiserFn
from ecg_tgdp.models.schedule import NoiseSchedule

LogHFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x_t [B, ...], t [B] long, y [B] long) -> log h [B]

_SOFTPLUS_INVERSE_OF_ONE = math.log(math.e - 1)  # softplus(b) = 1: a fresh network starts at h ≡ 1, no guidance
_LOG_SOFTPLUS_LINEAR_BELOW = -20.0  # softplus(z) = e^z to float precision here, and log(softplus) would underflow


class GuidanceNet(nn.Module):
    """h_ψ(x_t, y, t) = softplus(f_ψ(x_t, y, t)) > 0 with f a label- and time-conditioned `ConditionedNet`.

    The label enters through its embedding (the paper's code drops it, so one h serves every class although
    r(x_0, y) depends on y). Softplus rather than exp keeps the regression of h on r (which can reach 10³)
    linear in f for large r; the head starts at h ≡ 1 (r's mean under p), so an untrained net leaves ε_θ as it is.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        if not config.time_conditioned:
            raise ValueError("GuidanceNet needs a time-conditioned NetConfig (h depends on t)")
        self.net = ConditionedNet(config)
        nn.init.zeros_(self.net.head.weight)
        nn.init.constant_(self.net.head.bias, _SOFTPLUS_INVERSE_OF_ONE)

    @property
    def config(self) -> NetConfig:
        return self.net.config

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """h_ψ(x_t, y, t) [B] for x_t [B, ...], t [B] long, y [B] long."""
        return F.softplus(self.net(x, y, t))

    def log_h(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """log h_ψ(x_t, y, t) [B], a `LogHFn`; exact in the tail where softplus(z) ≈ e^z (log z there is z)."""
        z = self.net(x, y, t)
        # the clamp keeps the unused branch finite, or its gradient (0 · ∞) would be NaN
        return torch.where(z < _LOG_SOFTPLUS_LINEAR_BELOW, z, F.softplus(z.clamp(min=_LOG_SOFTPLUS_LINEAR_BELOW)).log())


def grad_log_h(log_h_fn: LogHFn, x: Tensor, t: Tensor, y: Tensor, *, create_graph: bool) -> Tensor:
    """∇_x log h(x_t, y, t), shaped like x [B, ...]; each row's log h depends on its own x only, so one
    backward pass of Σ_b log h_b gives every row's gradient.

    `create_graph=True` keeps the gradient differentiable in ψ, which the consistency regularizer needs (its
    loss depends on ψ only through this gradient; the paper's code passes False, so ψ never learns from it).
    Sampling passes False. A log h that does not depend on x (a constant) has gradient zero.
    """
    with torch.enable_grad():  # samplers run under no_grad
        x = x.detach().requires_grad_(True)
        log_h = log_h_fn(x, t, y)
        if log_h.shape != (len(x),):
            raise ValueError(f"log_h_fn must return one value per example [{len(x)}], got {tuple(log_h.shape)}")
        if not log_h.requires_grad:
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(log_h.sum(), x, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def classifier_log_h(classifier: DomainClassifier) -> LogHFn:
    """log h(x_t, y, t) = logit c'(x_t, y, t) of a time-dependent domain classifier trained on balanced batches
    (the label-prior constant dropped: it has no gradient)."""
    if not classifier.config.time_conditioned:
        raise ValueError("classifier_log_h needs a time-dependent classifier c'(x_t, y, t)")
    return lambda x, t, y: classifier(x, y, t)


def fade_weight(t_min: int, fade_steps: int) -> Callable[[Tensor], Tensor]:
    """f(t) [B] for timesteps t [B]: 0 below t_min, rising linearly to 1 over `fade_steps` steps above it;
    1 everywhere when t_min = 0."""
    def weight(t: Tensor) -> Tensor:
        if t_min <= 0:
            return torch.ones(t.shape, dtype=torch.float32, device=t.device)
        return ((t.float() - t_min) / max(fade_steps, 1)).clamp(0.0, 1.0)

    return weight


def guided_denoiser_from_log_h(eps_fn: DenoiserFn, log_h_fn: LogHFn, schedule: NoiseSchedule, scale: float,
                               weight: Callable[[Tensor], Tensor] | None = None) -> DenoiserFn:
    """ε̃ = ε_θ(x_t, y, t) − w · f(t) · σ_t · ∇_x log h(x_t, y, t) for any log h (a network's, a classifier's, or a
    closed form in tests); f = `weight` (default 1). Rows where f(t) = 0 cost no gradient when all of a batch's are."""
    if scale == 0.0:
        return eps_fn

    def guided(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        factor = scale * schedule.sigma(t).to(x)
        if weight is not None:
            factor = factor * weight(t).to(x)
        if not bool((factor != 0).any()):
            return eps_fn(x, t, y)
        factor = factor.view((-1,) + (1,) * (x.ndim - 1))
        return eps_fn(x, t, y) - factor * grad_log_h(log_h_fn, x, t, y, create_graph=False)

    return guided


def guided_denoiser(eps_fn: DenoiserFn, guidance_net: GuidanceNet, schedule: NoiseSchedule,
                    scale: float, weight: Callable[[Tensor], Tensor] | None = None) -> DenoiserFn:
    """The TGDP target denoiser: `eps_fn` guided by a trained h_ψ at scale w (1 in theory, swept in practice)."""
    return guided_denoiser_from_log_h(eps_fn, guidance_net.log_h, schedule, scale, weight)
