"""Samplers as functions of a denoiser function ε(x_t, t, y), after k-diffusion's `sampling.py`.

A sampler only ever calls `denoiser(x, t, y)`; guidance (classifier-free, TGDP) wraps the
denoiser and never edits a sampler. Loops run under `torch.no_grad()`, which a guided
denoiser may lift inside itself with `torch.enable_grad()` (a network passed as the denoiser
should be in `eval()` mode). Each sampler evaluates the denoiser once per entry of
`timesteps(...)`, the last time at t = 0, and returns that evaluation's x̂_0 (t = −1 is clean
data, ᾱ = 1). Noise comes from the given CPU `torch.Generator`, so samples do not depend on
the device's random state.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.settings import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLER_NAMES

# Samplers start at the last t with λ_t = log(α_t/σ_t) ≥ −5.1 (diffusers' `lambda_min_clipped` for the cosine
# schedule). The cosine schedule's clipped last β puts ᾱ_{T−1} near 2e-9 (λ ≈ −10): there x̂_0 = (x − σ ε̂)/α
# multiplies a learned network's ε error by 2e4, and the first step carries it into the samples (a trained
# ECG model gave samples of std ≈ 700 from every sampler). At λ = −5.1, α ≈ 0.006: starting from pure noise
# there instead of at ᾱ = 0 changes the marginal by less than 1% of the data scale. The linear schedule
# (λ_{T−1} = −5.06) starts at T−1 as before.
LOGSNR_START = -5.1
DenoiserFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x_t [B, C, L], t [B] long, y [B] long) -> ε [B, C, L]


def start_timestep(schedule: NoiseSchedule) -> int:
    """The last t with half-log-SNR λ_t ≥ LOGSNR_START: where every sampler begins, from pure noise."""
    abar = schedule.alphas_cumprod
    lam = 0.5 * torch.log(abar / (1 - abar))  # [T], decreasing in t
    return int(torch.nonzero(lam >= LOGSNR_START).max())


def timesteps(schedule: NoiseSchedule, steps: int, spacing: str = "time") -> list[int]:
    """`steps` distinct integer timesteps from `start_timestep(schedule)` down to 0, both included.

    "time": evenly spaced in t (diffusers' "linspace" spacing; DDIM's "linear" τ, Song et al. 2021 App. D.2).
    "logsnr": evenly spaced in half-log-SNR λ = log(α/σ) from λ_start to λ_0, rounded to the nearest
    integer t and pushed apart where rounding collides (the "logSNR" step schedule of DPM-Solver,
    Lu et al. 2022a §3.3).
    """
    first = start_timestep(schedule)
    if not 1 <= steps <= first + 1:
        raise ValueError(f"steps must be in [1, {first + 1}], got {steps}")
    if spacing == "time":
        return torch.linspace(first, 0, steps, dtype=torch.float64).round().long().tolist()
    if spacing != "logsnr":
        raise ValueError(f"unknown timestep spacing {spacing!r}; expected 'time' or 'logsnr'")
    abar = schedule.alphas_cumprod
    lam = 0.5 * torch.log(abar / (1 - abar))  # [T], decreasing in t
    targets = torch.linspace(float(lam[first]), float(lam[0]), steps, dtype=torch.float64)
    ts = (lam[None, :] - targets[:, None]).abs().argmin(dim=1).tolist()
    # 1. pin both ends and make the list strictly decreasing: push up from t = 0, then down from the start
    ts[-1] = 0
    for i in range(steps - 2, -1, -1):
        ts[i] = max(ts[i], ts[i + 1] + 1)
    ts[0] = first
    for i in range(1, steps):
        ts[i] = min(ts[i], ts[i - 1] - 1)
    return ts


def _abar(schedule: NoiseSchedule, t: int) -> float:
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def _x0_and_eps(denoiser: DenoiserFn, x: Tensor, t: int, y: Tensor, schedule: NoiseSchedule,
                clip_x0: float | None) -> tuple[Tensor, Tensor]:
    """ε̂ = denoiser(x_t, t, y) and x̂_0 = (x_t − σ_t ε̂)/α_t (Ho et al. 2020 eq. 15), ε̂ re-derived if x̂_0 is clipped."""
    abar = _abar(schedule, t)
    alpha, sigma = abar ** 0.5, (1 - abar) ** 0.5
    eps = denoiser(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device), y)
    x0 = (x - sigma * eps) / alpha
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x - alpha * x0) / sigma
    return x0, eps


def _setup(shape: Sequence[int], labels: Tensor, generator: torch.Generator,
           device: torch.device | str | None) -> tuple[Tensor, Tensor, Callable[[], Tensor]]:
    """x_{T−1} ~ N(0, I) [B, C, L] on `device` (default: labels' device), labels there, and a noise source."""
    if len(shape) != 3 or labels.shape != (shape[0],):
        raise ValueError(f"shape must be (B, C, L) and labels [B]; got shape {tuple(shape)}, labels {tuple(labels.shape)}")
    device = torch.device(device) if device is not None else labels.device

    def noise() -> Tensor:
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)

    return noise(), labels.to(device), noise


def _pairs(ts: list[int], progress: bool, name: str) -> Iterable[tuple[int, int]]:
    pairs = list(zip(ts, ts[1:] + [-1]))  # (t, next t); −1 is clean data
    return tqdm(pairs, desc=name, leave=False) if progress else pairs


@torch.no_grad()
def ddpm_sample(denoiser: DenoiserFn, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor, *,
                generator: torch.Generator, steps: int | None = None, clip_x0: float | None = None,
                device: torch.device | str | None = None, progress: bool = False) -> Tensor:
    """Ancestral sampling, Ho et al. 2020 Alg. 2 with σ² = β̃; `steps` < T respaces β (Nichol & Dhariwal 2021 §4)."""
    x, labels, noise = _setup(shape, labels, generator, device)
    n_steps = start_timestep(schedule) + 1 if steps is None else steps
    for t, s in _pairs(timesteps(schedule, n_steps), progress, "ddpm"):
        x0, _ = _x0_and_eps(denoiser, x, t, labels, schedule, clip_x0)
        abar_t, abar_s = _abar(schedule, t), _abar(schedule, s)
        # 1. respaced β_t between consecutive kept timesteps (Nichol & Dhariwal 2021 §4)
        beta = 1 - abar_t / abar_s
        # 2. posterior q(x_s | x_t, x̂_0), Ho et al. 2020 eq. 7
        mean = (abar_s ** 0.5 * beta * x0 + (1 - beta) ** 0.5 * (1 - abar_s) * x) / (1 - abar_t)
        var = (1 - abar_s) / (1 - abar_t) * beta
        x = mean + var ** 0.5 * noise() if s >= 0 else mean
    return x


@torch.no_grad()
def ddim_sample(denoiser: DenoiserFn, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor, *,
                generator: torch.Generator, steps: int = 50, eta: float = 0.0, clip_x0: float | None = None,
                device: torch.device | str | None = None, progress: bool = False) -> Tensor:
    """DDIM, Song et al. 2021 eq. 12 with σ_t(η) of eq. 16; η = 0 is deterministic, η = 1 is DDPM-like."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    x, labels, noise = _setup(shape, labels, generator, device)
    for t, s in _pairs(timesteps(schedule, steps), progress, "ddim"):
        x0, eps = _x0_and_eps(denoiser, x, t, labels, schedule, clip_x0)
        abar_t, abar_s = _abar(schedule, t), _abar(schedule, s)
        # 1. σ_t(η), eq. 16
        std = eta * ((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)) ** 0.5
        # 2. eq. 12: predicted x_0, direction pointing to x_t, random noise
        x = abar_s ** 0.5 * x0 + max(1 - abar_s - std ** 2, 0.0) ** 0.5 * eps
        if std > 0:
            x = x + std * noise()
    return x


def dpmpp_sample(denoiser: DenoiserFn, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor, *,
                 generator: torch.Generator, steps: int = DEFAULT_STEPS, spacing: str = "logsnr",
                 clip_x0: float | None = None,
                 device: torch.device | str | None = None, progress: bool = False) -> Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 Alg. 2 (data prediction), first order on the first and final step.

    Steps are uniform in λ by default: on uniform-t steps the multistep extrapolation overshoots
    where x̂_0 saturates (std +13% at 25 steps on a N(μ, 0.3²) toy with the cosine schedule).
    Exact for an exact denoiser, but a deterministic solver carries a learned network's ε error
    at high noise to the end: the pretrained mitdb model's samples come out ~2× too wide with it,
    and at the right width with `dpmpp_sde_sample`.
    """
    return _dpm_solver_pp(denoiser, schedule, shape, labels, generator, steps, spacing, clip_x0, device, progress,
                          stochastic=False)


def dpmpp_sde_sample(denoiser: DenoiserFn, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor, *,
                     generator: torch.Generator, steps: int = DEFAULT_STEPS, spacing: str = "logsnr",
                     clip_x0: float | None = None, device: torch.device | str | None = None,
                     progress: bool = False) -> Tensor:
    """SDE-DPM-Solver++(2M), Lu et al. 2022 (DPM-Solver++) App. B; diffusers' "sde-dpmsolver++".

    The stochastic solver of the reverse SDE: the fresh noise of each step contracts the errors of
    earlier ones (Karras et al. 2022 §4), which is why it is the project's default sampler.
    """
    return _dpm_solver_pp(denoiser, schedule, shape, labels, generator, steps, spacing, clip_x0, device, progress,
                          stochastic=True)


@torch.no_grad()
def _dpm_solver_pp(denoiser: DenoiserFn, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor,
                   generator: torch.Generator, steps: int, spacing: str, clip_x0: float | None,
                   device: torch.device | str | None, progress: bool, stochastic: bool) -> Tensor:
    """The multistep loop of DPM-Solver++(2M), as the ODE (stochastic=False) or the SDE solver."""
    x, labels, noise = _setup(shape, labels, generator, device)
    x0_prev, h_prev = None, None
    name = "sde-dpm++" if stochastic else "dpm++"
    for t, s in _pairs(timesteps(schedule, steps, spacing), progress, name):
        x0, _ = _x0_and_eps(denoiser, x, t, labels, schedule, clip_x0)
        if s < 0:  # λ_s = +∞, σ_s = 0: the first-order step lands exactly on x̂_0
            x = x0
            break
        abar_t, abar_s = _abar(schedule, t), _abar(schedule, s)
        # 1. step h_i = λ_s − λ_t in half-log-SNR λ = log(α/σ)
        h = 0.5 * (math.log(abar_s / (1 - abar_s)) - math.log(abar_t / (1 - abar_t)))
        # 2. D_i = x̂_0,i + 1/(2r_i) (x̂_0,i − x̂_0,i−1) with r_i = h_i−1/h_i; first step D_i = x̂_0,i
        d = x0 if x0_prev is None else x0 + h / (2 * h_prev) * (x0 - x0_prev)
        sigma_ratio = ((1 - abar_s) / (1 - abar_t)) ** 0.5
        if stochastic:
            # 3a. x_s = (σ_s/σ_t) e^{−h} x_t + α_s (1 − e^{−2h}) D_i + σ_s √(1 − e^{−2h}) z
            x = (sigma_ratio * math.exp(-h) * x - abar_s ** 0.5 * math.expm1(-2 * h) * d
                 + (1 - abar_s) ** 0.5 * (-math.expm1(-2 * h)) ** 0.5 * noise())
        else:
            # 3b. x_s = (σ_s/σ_t) x_t − α_s (e^{−h_i} − 1) D_i
            x = sigma_ratio * x - abar_s ** 0.5 * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x


_SAMPLERS = {"dpmpp_sde": dpmpp_sde_sample, "dpmpp": dpmpp_sample, "ddim": ddim_sample, "ddpm": ddpm_sample}
SAMPLERS = SAMPLER_NAMES  # tests/test_samplers.py checks that the names are _SAMPLERS' keys


def sample(denoiser: DenoiserFn, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor, *,
           sampler: str = DEFAULT_SAMPLER, steps: int = DEFAULT_STEPS, eta: float = 0.0, generator: torch.Generator,
           clip_x0: float | None = None, device: torch.device | str | None = None, progress: bool = False) -> Tensor:
    """Draw x_0 [B, C, L] for `labels` [B] with the named sampler (one of SAMPLERS)."""
    if sampler not in _SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(_SAMPLERS)}")
    if eta != 0.0 and sampler != "ddim":
        raise ValueError(f"eta={eta} applies only to the sampler 'ddim', not {sampler!r}")
    options = {"eta": eta} if sampler == "ddim" else {}
    return _SAMPLERS[sampler](denoiser, schedule, shape, labels, generator=generator, steps=steps,
                             clip_x0=clip_x0, device=device, progress=progress, **options)


def classifier_free_guidance(model_fn: DenoiserFn, null_class: int, scale: float) -> DenoiserFn:
    """ε̃ = ε(x, ∅) + s (ε(x, y) − ε(x, ∅)), Ho & Salimans 2022 eq. 6 (their w = s − 1); one batched call."""
    if scale == 1.0:
        return model_fn

    def guided(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        eps_cond, eps_uncond = model_fn(
            torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_class)])).chunk(2)
        return eps_uncond + scale * (eps_cond - eps_uncond)

    return guided
