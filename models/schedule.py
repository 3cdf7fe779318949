"""Discrete-time variance-preserving noise schedules, kept as data apart from network and samplers.

Timesteps are integers t = 0..T-1; index t holds ᾱ_t after t+1 noising steps, so the
forward kernel is x_t = α_t x_0 + σ_t ε with α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t)
(Ho et al. 2020, eq. 4). Samplers treat "t = −1" as clean data (ᾱ = 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

_MAX_BETA = 0.999  # Nichol & Dhariwal 2021 §3.2: clip β to avoid the singularity at t = T


@dataclass(frozen=True, eq=False)  # eq=False: a tensor field has no truth value to compare by
class NoiseSchedule:
    """Discrete-time variance-preserving schedule: x_t = alpha_t x_0 + sigma_t eps, alpha_t = sqrt(abar_t)."""

    alphas_cumprod: torch.Tensor  # [T] float64, strictly decreasing in (0, 1), t = 0..T-1
    kind: str  # "cosine" | "linear": how it was built, saved with checkpoints
    params: dict = field(default_factory=dict)  # the builder's arguments besides T (s; beta_start, beta_end)
    # device → (α [T], σ [T]) float32, so a step indexes on the timesteps' device instead of copying them to the host
    _tables: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        abar = self.alphas_cumprod
        if abar.ndim != 1 or abar.dtype != torch.float64 or len(abar) < 2:
            raise ValueError(f"alphas_cumprod must be 1-D float64 with T >= 2, got {abar.dtype} {tuple(abar.shape)}")
        if not (abar[0] < 1 and abar[-1] > 0 and bool((abar[1:] < abar[:-1]).all())):
            raise ValueError(f"{self.kind} schedule: alphas_cumprod must decrease strictly inside (0, 1)")

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008) -> NoiseSchedule:
        """Cosine schedule, Nichol & Dhariwal 2021 eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2)."""
        grid = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
        # 1. β_t = 1 − ᾱ(t+1)/ᾱ(t), clipped at 0.999 (§3.2); ᾱ is rebuilt from the clipped β
        betas = (1 - f[1:] / f[:-1]).clamp(max=_MAX_BETA)
        return cls(torch.cumprod(1 - betas, dim=0), "cosine", {"s": s})

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """Linear β schedule of Ho et al. 2020 §4: β_t evenly spaced in [1e-4, 0.02], ᾱ_t = Π(1 − β_s)."""
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        return cls(torch.cumprod(1 - betas, dim=0), "linear", {"beta_start": beta_start, "beta_end": beta_end})

    @classmethod
    def from_name(cls, kind: str, num_steps: int, **params: float) -> NoiseSchedule:
        """The named schedule ("cosine" or "linear") with its parameters (defaults where not given)."""
        builders = {"cosine": cls.cosine, "linear": cls.linear}
        if kind not in builders:
            raise ValueError(f"unknown noise schedule {kind!r}; expected one of {sorted(builders)}")
        return builders[kind](num_steps, **params)

    def card(self) -> dict:
        """What rebuilds this schedule with `from_card`: kind, T and the builder's parameters."""
        return {"kind": self.kind, "num_steps": self.num_steps, **self.params}

    @classmethod
    def from_card(cls, card: dict) -> NoiseSchedule:
        """The schedule `card()` describes."""
        params = {key: value for key, value in card.items() if key not in ("kind", "num_steps")}
        return cls.from_name(card["kind"], card["num_steps"], **params)

    @property
    def num_steps(self) -> int:
        return len(self.alphas_cumprod)

    def _table(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, σ) for all T timesteps on t's device, computed in float64 then rounded to float32 once."""
        if t.is_floating_point():
            raise TypeError(f"timesteps must be integers in [0, {self.num_steps}), got dtype {t.dtype}")
        if t.device not in self._tables:
            abar = self.alphas_cumprod
            self._tables[t.device] = (abar.sqrt().float().to(t.device), (1 - abar).sqrt().float().to(t.device))
        return self._tables[t.device]

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """α_t = √ᾱ_t for integer timesteps t [B]; float32 [B] on t's device."""
        return self._table(t)[0][t.long()]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ_t = √(1 − ᾱ_t) for integer timesteps t [B]; float32 [B] on t's device."""
        return self._table(t)[1][t.long()]

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward kernel q(x_t | x_0), Ho et al. 2020 eq. 4: x_t = α_t x_0 + σ_t ε; x0, eps [B, C, L], t [B]."""
        shape = (-1,) + (1,) * (x0.ndim - 1)
        return self.alpha(t).view(shape) * x0 + self.sigma(t).view(shape) * eps
