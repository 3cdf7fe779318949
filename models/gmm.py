"""Closed forms for equal-weight Gaussian mixtures with covariance c·I: TGDP's correctness check.

TGDP's simulation (Ouyang et al. 2024, Gaussian-mixture experiment; README: TGDP, exactly) puts the source modes
at ±(0.5, 0.5) and the target modes at ±(0.5, −0.5), covariance 0.1·I. Under the forward kernel x_t = α_t x_0 + σ_t ε a
mixture stays a mixture: means α_t μ_k, covariance (α_t² c + σ_t²) I. So the exact source ε, the
density ratio r = q/p and TGDP's guidance h(x_t, t) = E_p[r(x_0) | x_t] = q_t(x_t)/p_t(x_t) are all
closed form, and a sampler driven by them must land on the target.

Points are x [..., D] (D last; e.g. [N, 2], or [B, 1, 2] as the samplers shape them); timesteps t [B]
index the first dimension. The mixtures are unconditional: a label y is part of the denoiser contract
(`DenoiserFn`) and has no effect here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ecg_tgdp.models.samplers import DenoiserFn
from ecg_tgdp.models.schedule import NoiseSchedule


@dataclass(frozen=True, eq=False)  # eq=False: a tensor field has no truth value to compare by
class GaussianMixture:
    """Equal-weight mixture of N(μ_k, c·I) in D dimensions."""

    means: Tensor  # [K, D] float
    var: float  # c: per-coordinate variance of every component

    def __post_init__(self) -> None:
        if self.means.ndim != 2 or len(self.means) == 0 or not self.var > 0:
            raise ValueError(f"means must be [K, D] with K >= 1 and var > 0; got {tuple(self.means.shape)}, {self.var}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws [n, D] float32: a uniform component, then μ_k + √c · z."""
        k = torch.randint(len(self.means), (n,), generator=generator)
        z = torch.randn((n, self.dim), generator=generator)
        return self.means[k].float() + math.sqrt(self.var) * z

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x_0) for x [..., D] → [...]."""
        one = torch.ones((), dtype=x.dtype, device=x.device)  # α = 1: the clean density
        return _mixture_log_prob(x, self.means.to(x), one, one * self.var)

    def log_prob_t(self, x: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
        """log p_t(x_t): the mixture with means α_t μ_k and variance α_t² c + σ_t²; x [B, ..., D] → [B, ...]."""
        alpha, variance = self._noised(x, t, schedule)
        return _mixture_log_prob(x, self.means.to(x), alpha, variance)

    def score_t(self, x: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
        """∇_x log p_t(x_t) = Σ_k w_k(x_t) (α_t μ_k − x_t)/(α_t² c + σ_t²), w_k the component posteriors."""
        alpha, variance = self._noised(x, t, schedule)
        means = alpha[..., None, None] * self.means.to(x)  # [B, ..., K, D]
        weights = torch.softmax(_component_log_probs(x, self.means.to(x), alpha, variance), dim=-1)  # [B, ..., K]
        return ((weights[..., None] * means).sum(-2) - x) / variance[..., None]

    def eps_t(self, x: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
        """The exact ε-prediction E[ε | x_t] = −σ_t ∇ log p_t(x_t) (Vincent 2011; Song et al. 2021); [B, ..., D]."""
        return -_per_row(schedule.sigma(t), x) * self.score_t(x, t, schedule)

    def _noised(self, x: Tensor, t: Tensor, schedule: NoiseSchedule) -> tuple[Tensor, Tensor]:
        """α_t and α_t² c + σ_t², each shaped [B, 1, ..., 1] to broadcast against x [B, ..., D] without its D."""
        alpha, sigma = schedule.alpha(t).to(x), schedule.sigma(t).to(x)
        shape = (-1,) + (1,) * (x.ndim - 2)
        return alpha.view(shape), (alpha ** 2 * self.var + sigma ** 2).view(shape)


def paper_mixtures(var: float = 0.1) -> tuple[GaussianMixture, GaussianMixture]:
    """(source, target) of the paper's 2-D simulation: modes ±(0.5, 0.5) and ±(0.5, −0.5), covariance var·I."""
    source = GaussianMixture(torch.tensor([[0.5, 0.5], [-0.5, -0.5]]), var)
    target = GaussianMixture(torch.tensor([[0.5, -0.5], [-0.5, 0.5]]), var)
    return source, target


def density_ratio(source: GaussianMixture, target: GaussianMixture, x0: Tensor) -> Tensor:
    """r(x_0) = q(x_0)/p(x_0) for clean points x0 [..., D] → [...] (TGDP's importance weight)."""
    return torch.exp(target.log_prob(x0) - source.log_prob(x0))


def log_h(source: GaussianMixture, target: GaussianMixture, x: Tensor, t: Tensor, schedule: NoiseSchedule) -> Tensor:
    """log h(x_t, t) = log q_t(x_t) − log p_t(x_t) [B, ...], exact: E_p[q/p(x_0) | x_t] = q_t/p_t (README: TGDP, exactly)."""
    return target.log_prob_t(x, t, schedule) - source.log_prob_t(x, t, schedule)


def grad_log_h(source: GaussianMixture, target: GaussianMixture, x: Tensor, t: Tensor,
               schedule: NoiseSchedule) -> Tensor:
    """∇_x log h(x_t, t) = ∇ log q_t − ∇ log p_t (TGDP's guidance term), closed form; [B, ..., D]."""
    return target.score_t(x, t, schedule) - source.score_t(x, t, schedule)


def exact_denoiser(mixture: GaussianMixture, schedule: NoiseSchedule) -> DenoiserFn:
    """The exact ε(x_t, t, y) of `mixture` as a sampler's denoiser; x [B, C, D] with D the mixture's dimension."""
    return lambda x, t, y: mixture.eps_t(x, t, schedule)


def exact_log_h_fn(source: GaussianMixture, target: GaussianMixture, schedule: NoiseSchedule):
    """log h as a `log_h_fn(x, t, y) -> [B]` for `models.guidance.guided_denoiser_from_log_h`; x [B, ..., D]."""
    return lambda x, t, y: log_h(source, target, x, t, schedule).reshape(len(x), -1).sum(1)


def target_mode_share(x: Tensor, source: GaussianMixture, target: GaussianMixture) -> float:
    """Share of points x [..., D] nearer to some target mode than to every source mode (the simulation's check)."""
    points = x.reshape(-1, x.shape[-1]).float()
    to_target = torch.cdist(points, target.means.float()).min(1).values
    to_source = torch.cdist(points, source.means.float()).min(1).values
    return (to_target < to_source).float().mean().item()


def _component_log_probs(x: Tensor, means: Tensor, alpha: Tensor, variance: Tensor) -> Tensor:
    """log N(x; α μ_k, v I) − log K [..., K] for x [..., D], means [K, D]; alpha and variance broadcast to x[..., 0]."""
    dim, k = means.shape[1], means.shape[0]
    squared = ((x[..., None, :] - alpha[..., None, None] * means) ** 2).sum(-1)  # [..., K]
    variance = variance[..., None]
    return -0.5 * squared / variance - 0.5 * dim * torch.log(2 * math.pi * variance) - math.log(k)


def _mixture_log_prob(x: Tensor, means: Tensor, alpha: Tensor, variance: Tensor) -> Tensor:
    return torch.logsumexp(_component_log_probs(x, means, alpha, variance), dim=-1)


def _per_row(values: Tensor, x: Tensor) -> Tensor:
    """values [B] shaped [B, 1, ..., 1] to scale x [B, ...] row by row."""
    return values.to(x).view((-1,) + (1,) * (x.ndim - 1))
