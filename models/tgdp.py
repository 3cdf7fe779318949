"""Training TGDP's guidance network: the regression on r, the cycle and consistency regularizers, the loop.

Loss terms (TGDP §3; README: TGDP, exactly, steps 2–4), with x_t = α_t x_0 + σ_t ε, t uniform on 0..T−1, ε ~ N(0, I):

    guidance     E_{x_0,y ~ source} ‖h_ψ(x_t, y, t) − r(x_0, y)‖²        (regress r, as E[log r] ≠ log E[r])
    cycle        E_{x'_0,y ~ target} ‖h_ψ(x'_t, y, t) − c'/(1 − c')(x'_t, y, t) · prior‖²
    consistency  E_{x'_0,y ~ target} ‖ε_θ(x'_t, y, t) − σ_t ∇_x log h_ψ(x'_t, y, t) − ε‖²  (element mean)

    total = guidance / s_g + η₁ · cycle / s_c + η₂ · consistency / s_k

The three terms live on different scales (on MIT-BIH → SVDB, guidance 51–346, cycle 153–434, consistency
0.4–4.3) and so do their gradients, so each term is divided by a running mean s of the norm of its own
gradient in ψ (measured every `scale_every` steps, exponential average with decay `scale_decay`, GradNorm-
style, Chen et al. 2018): each term then pulls on ψ with a strength proportional to its weight, so η₁ and η₂
are the regularizers' shares of the gradient relative to the regression's, as they say. The measured shares
are logged (`grad_share_*`).

The source denoiser ε_θ stays frozen. The consistency term reaches ψ only through ∇_x log h_ψ, so that
gradient is built with `create_graph=True` (the paper's code used False and ψ learned nothing from it); the
paper's code also lacked the cycle term and fed h_ψ no label. Early stopping watches the consistency loss on
held-out target windows: the one number that says whether the guided denoiser denoises target data.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ecg_tgdp.models.density_ratio import DomainClassifier, clip_ratios, cosine_lr_factor
from ecg_tgdp.models.guidance import GuidanceNet, LogHFn, grad_log_h
from ecg_tgdp.models.rhythm import with_rhythm
from ecg_tgdp.models.samplers import DenoiserFn
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.settings import GuidanceTraining

TERMS = ("guidance", "cycle", "consistency")
LOG_KEYS = ("step", *TERMS, "total", "cycle_clipped", "grad_norm", *(f"grad_share_{term}" for term in TERMS),
            "val_consistency")


@dataclass
class GuidanceResult:
    """How a `train_guidance` call ended; the network holds the weights of `best_step` when validation ran."""

    log: list[dict[str, float]] = field(default_factory=list)  # one row per step, keys LOG_KEYS
    best_step: int | None = None
    best_val_consistency: float | None = None
    stopped_early: bool = False


def guidance_loss(net: GuidanceNet, schedule: NoiseSchedule, x0: Tensor, y: Tensor, r: Tensor, t: Tensor,
                  eps: Tensor) -> Tensor:
    """mean_b (h_ψ(x_t, y, t) − r(x_0, y))² on source windows x0 [B, ...] with their ratios r [B]."""
    return F.mse_loss(net(schedule.add_noise(x0, eps, t), t, y), r)


def cycle_loss(net: GuidanceNet, time_classifier: DomainClassifier, schedule: NoiseSchedule, x0: Tensor, y: Tensor,
               t: Tensor, eps: Tensor, r_min: float, r_max: float,
               source_x_t: Tensor | None = None) -> tuple[Tensor, float]:
    """mean_b (h_ψ(x'_t, y, t) − clip(c'/(1 − c') · prior))² on target windows x0 [B, ...]; also the clip rate.

    h must equal the noised-marginal ratio q_t/p_t, which the time-dependent classifier estimates directly.
    With `source_x_t` (noised source windows of the same t), the target is divided by the mean ratio over
    them, since E_p_t[q_t/p_t] = 1: the same self-normalization as that of r on the source windows.
    """
    x_t = schedule.add_noise(x0, eps, t)
    ratio, clipped = clip_ratios(time_classifier.ratio(x_t, y, t), r_min, r_max)
    if source_x_t is not None:
        source_ratio, _ = clip_ratios(time_classifier.ratio(source_x_t, y, t), r_min, r_max)
        ratio = ratio / source_ratio.mean().clamp(min=r_min)
    return F.mse_loss(net(x_t, t, y), ratio), clipped


def consistency_loss(eps_fn: DenoiserFn, log_h_fn: LogHFn, schedule: NoiseSchedule, x0: Tensor, y: Tensor,
                     t: Tensor, eps: Tensor) -> Tensor:
    """Per-element mean of (ε_θ(x'_t) − σ_t ∇_x log h(x'_t) − ε)² on target windows x0 [B, ...] (README: TGDP, exactly, step 4).

    The guided ε of `models.guidance` at w = 1 must denoise target data. ε_θ does not depend on ψ, so it is
    evaluated without a graph; ∇ log h is built with create_graph=True so the loss reaches ψ.
    """
    x_t = schedule.add_noise(x0, eps, t)
    with torch.no_grad():
        eps_source = eps_fn(x_t, t, y)
    sigma = schedule.sigma(t).to(x_t).view((-1,) + (1,) * (x_t.ndim - 1))
    guided = eps_source - sigma * grad_log_h(log_h_fn, x_t, t, y, create_graph=True)
    return F.mse_loss(guided, eps)


def validation_consistency(eps_fn: DenoiserFn, log_h_fn: LogHFn, schedule: NoiseSchedule, x: Tensor, y: Tensor,
                           batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu",
                           rhythm: Tensor | None = None) -> float:
    """`consistency_loss` averaged over all windows x [N, ...] (their R-peak markers `rhythm` [N, T] for a
    rhythm-channel ε_θ); t and ε from `generator`, so one seeded the same way each time makes validations
    comparable."""
    total = 0.0
    for start in range(0, len(x), batch_size):
        x0, labels = x[start:start + batch_size].float(), y[start:start + batch_size]
        t = torch.randint(schedule.num_steps, (len(x0),), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        x0, labels, t, eps = (v.to(device) for v in (x0, labels, t, eps))
        eps_of_batch = given_rhythm(eps_fn, rhythm, slice(start, start + batch_size), device)
        total += consistency_loss(eps_of_batch, log_h_fn, schedule, x0, labels, t, eps).item() * len(x0)
    return total / len(x)


def train_guidance(
    guidance_net: GuidanceNet, eps_fn: DenoiserFn, schedule: NoiseSchedule, source_x: Tensor, source_y: Tensor,
    source_r: Tensor, settings: GuidanceTraining, *, target_x: Tensor | None = None, target_y: Tensor | None = None,
    time_classifier: DomainClassifier | None = None, val_x: Tensor | None = None, val_y: Tensor | None = None,
    normalize_cycle: bool = False, device: torch.device | str = "cpu", target_rhythm: Tensor | None = None,
    val_rhythm: Tensor | None = None,
) -> GuidanceResult:
    """Fit h_ψ to source ratios source_r [N] (clipped or self-normalized by the caller) with the switched-on
    regularizers on target_x/target_y; windows [N, leads, T] or vectors [N, D], labels [N] long.

    eps_fn is the frozen source denoiser; an `nn.Module` passed as eps_fn is frozen in place (requires_grad
    False, eval mode). With val_x/val_y (held-out target windows) the best held-out consistency loss is kept
    and training stops after `patience` validations without improvement. `normalize_cycle` self-normalizes the
    cycle target (`cycle_loss`), for ratios that were self-normalized. A rhythm-channel ε_θ gets the target and
    validation windows' R-peak markers, target_rhythm and val_rhythm [N, T] (`models.rhythm`).
    """
    _check_inputs(settings, source_x, source_r, target_x, time_classifier, val_x, val_y)
    device = torch.device(device)
    if isinstance(eps_fn, nn.Module):
        eps_fn.requires_grad_(False).eval()
    guidance_net.to(device).train()
    if time_classifier is not None:
        time_classifier.to(device).eval()
    optimizer = torch.optim.AdamW(guidance_net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    result, best_state, bad_validations, scales = GuidanceResult(), None, 0, {}
    for step in tqdm(range(1, settings.steps + 1), desc="guidance network h_ψ", unit="step", leave=False, disable=None):
        losses = _loss_terms(guidance_net, eps_fn, schedule, (source_x, source_y, source_r),
                             (target_x, target_y, target_rhythm), time_classifier, settings, generator, device,
                             normalize_cycle)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * cosine_lr_factor(step - 1, settings.steps, settings.min_lr_ratio)
        row = _update(guidance_net, optimizer, losses, settings, step, scales)
        if val_x is not None and step % settings.val_every == 0:
            validation = torch.Generator().manual_seed(settings.seed + 1)
            row["val_consistency"] = validation_consistency(eps_fn, guidance_net.log_h, schedule, val_x, val_y,
                                                            settings.batch_size, validation, device, val_rhythm)
            if result.best_val_consistency is None or row["val_consistency"] < result.best_val_consistency:
                result.best_step, result.best_val_consistency = step, row["val_consistency"]
                best_state, bad_validations = copy.deepcopy(guidance_net.state_dict()), 0
            else:
                bad_validations += 1
        result.log.append(row)
        if 0 < settings.patience <= bad_validations and step < settings.steps:
            result.stopped_early = True
            break
    if best_state is not None:
        guidance_net.load_state_dict(best_state)
    guidance_net.eval()
    return result


def _loss_terms(net: GuidanceNet, eps_fn: DenoiserFn, schedule: NoiseSchedule, source: tuple, target: tuple,
                time_classifier: DomainClassifier | None, settings: GuidanceTraining, generator: torch.Generator,
                device: torch.device, normalize_cycle: bool = False) -> dict[str, Tensor | float]:
    """One batch's loss terms; a switched-off regularizer draws nothing from `generator` and is 0."""
    source_x, source_y, source_r = source
    rows = torch.randint(len(source_x), (settings.batch_size,), generator=generator)
    x0, y, r, t, eps = _noised_batch(source_x, source_y, rows, schedule, generator, device, source_r)
    terms: dict[str, Tensor | float] = {"guidance": guidance_loss(net, schedule, x0, y, r, t, eps),
                                        "cycle": 0.0, "consistency": 0.0, "cycle_clipped": 0.0}
    if settings.eta_cycle == 0 and settings.eta_consistency == 0:
        return terms
    source_x_t = schedule.add_noise(x0, eps, t) if normalize_cycle else None
    target_x, target_y, target_rhythm = target
    rows = torch.randint(len(target_x), (settings.batch_size,), generator=generator)
    # one target batch serves both regularizers: both ask h_ψ about the same noised target windows
    x0, y, _, t, eps = _noised_batch(target_x, target_y, rows, schedule, generator, device)
    if settings.eta_cycle > 0:
        terms["cycle"], terms["cycle_clipped"] = cycle_loss(net, time_classifier, schedule, x0, y, t, eps,
                                                            settings.r_min, settings.r_max, source_x_t)
    if settings.eta_consistency > 0:
        eps_of_batch = given_rhythm(eps_fn, target_rhythm, rows, device)
        terms["consistency"] = consistency_loss(eps_of_batch, net.log_h, schedule, x0, y, t, eps)
    return terms


def given_rhythm(eps_fn: DenoiserFn, rhythm: Tensor | None, rows: Tensor | slice, device) -> DenoiserFn:
    """eps_fn for the windows `rows` of a set whose R-peak markers are `rhythm` (`models.rhythm.with_rhythm`);
    eps_fn itself when there are none (a network without a rhythm channel)."""
    return eps_fn if rhythm is None else with_rhythm(eps_fn, rhythm[rows].to(device))


def _noised_batch(x: Tensor, y: Tensor, rows: Tensor, schedule: NoiseSchedule, generator: torch.Generator,
                  device: torch.device, r: Tensor | None = None) -> tuple:
    """(x_0, y, r or None, t, ε) for `rows`, on `device`; t uniform on 0..T−1, ε ~ N(0, I)."""
    x0 = x[rows].float()
    t = torch.randint(schedule.num_steps, (len(rows),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    ratio = None if r is None else r[rows].float().to(device)
    return x0.to(device), y[rows].to(device), ratio, t.to(device), eps.to(device)


def _update(net: GuidanceNet, optimizer: torch.optim.Optimizer, terms: dict, settings: GuidanceTraining,
            step: int, scales: dict[str, float]) -> dict[str, float]:
    """One AdamW step on guidance/s_g + η₁ cycle/s_c + η₂ consistency/s_k; the log row of the raw terms.

    `scales` holds each term's running gradient norm s; at step 1 and every `scale_every` steps the norms are
    measured (one backward pass per term), folded into s, and each weighted term's share of the gradient logged.
    """
    weights = {"guidance": 1.0, "cycle": settings.eta_cycle, "consistency": settings.eta_consistency}
    active = [term for term in TERMS if isinstance(terms[term], Tensor) and weights[term] > 0]
    shares = {f"grad_share_{term}": math.nan for term in TERMS}
    if step == 1 or step % settings.scale_every == 0:
        norms = {term: _grad_norm(net, terms[term]) for term in active}
        for term, norm in norms.items():
            scales[term] = norm if term not in scales else settings.scale_decay * scales[term] + (
                1 - settings.scale_decay) * norm
        pulls = {term: weights[term] * norms[term] / max(scales[term], 1e-12) for term in active}
        shares |= {f"grad_share_{term}": pull / max(sum(pulls.values()), 1e-30) for term, pull in pulls.items()}
    total = sum(weights[term] * terms[term] / max(scales[term], 1e-12) for term in active)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip or math.inf).item()
    row = {key: value.item() if isinstance(value, Tensor) else value for key, value in terms.items()}
    row.update(step=step, total=total.item(), grad_norm=grad_norm, val_consistency=math.nan, **shares)
    if not (math.isfinite(row["total"]) and math.isfinite(grad_norm)):
        raise FloatingPointError(f"non-finite guidance loss {row} at step {step}; stopped before the update")
    optimizer.step()
    return {key: row[key] for key in LOG_KEYS}


def _grad_norm(net: nn.Module, loss: Tensor) -> float:
    """‖∇_ψ loss‖ without touching the parameters' .grad (the graph is kept for the real backward pass)."""
    parameters = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.square().sum()) for g in grads if g is not None))


def _check_inputs(settings: GuidanceTraining, source_x: Tensor, source_r: Tensor, target_x: Tensor | None,
                  time_classifier: DomainClassifier | None, val_x: Tensor | None, val_y: Tensor | None) -> None:
    if source_r.shape != (len(source_x),):
        raise ValueError(f"source_r must hold one ratio per source window [{len(source_x)}], "
                         f"got {tuple(source_r.shape)}")
    if (settings.eta_cycle > 0 or settings.eta_consistency > 0) and target_x is None:
        raise ValueError("eta_cycle > 0 or eta_consistency > 0 needs target_x and target_y")
    if settings.eta_cycle > 0 and (time_classifier is None or not time_classifier.config.time_conditioned):
        raise ValueError("eta_cycle > 0 needs a time-conditioned time_classifier c'(x_t, y, t)")
    if (val_x is None) != (val_y is None):
        raise ValueError("pass both val_x and val_y, or neither")
