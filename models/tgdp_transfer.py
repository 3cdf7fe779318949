"""TGDP end to end for windows: domain classifier → ratios → (time classifier) → guidance network.

The frozen source denoiser ε_θ is never changed; the result is the guidance network h_ψ that
`models.guidance.guided_denoiser` turns into the target denoiser ε̃ = ε_θ − w σ_t ∇ log h_ψ
(TGDP, Ouyang et al. NeurIPS 2024; DESIGN §6).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from models.density_ratio import DomainClassifier, DomainTraining, NetConfig, source_ratios, train_domain_classifier
from models.guidance import GuidanceNet
from models.samplers import DenoiserFn
from models.schedule import NoiseSchedule
from models.tgdp import GuidanceResult, GuidanceTraining, train_guidance


@dataclass
class TGDPSettings:
    """Every knob of one TGDP fit; η₁ = guidance.eta_cycle, η₂ = guidance.eta_consistency."""

    width: int = 64  # channels of the classifiers and the guidance network
    depth: int = 3
    domain: DomainTraining = field(default_factory=DomainTraining)
    time_domain: DomainTraining = field(default_factory=DomainTraining)  # c'(x_t, y, t), only when η₁ > 0
    guidance: GuidanceTraining = field(default_factory=GuidanceTraining)
    ratio_normalization: str = "clip"  # "clip" to [r_min, r_max], or "self_normalize" (clip, then mean 1 on source)


@dataclass
class TGDPFit:
    """The trained guidance network and what the fit measured."""

    guidance_net: GuidanceNet
    ratio_clipped_share: float
    ratio_summary: dict[str, float]
    guidance: GuidanceResult


def fit_tgdp(
    eps_fn: DenoiserFn, schedule: NoiseSchedule, source: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor],
    settings: TGDPSettings, *, target_val: tuple[Tensor, Tensor] | None = None, num_classes: int,
    device: torch.device | str = "cpu",
) -> TGDPFit:
    """Fit h_ψ for windows x [N, leads, T] with labels y [N]: source/target train pools, held-out target val."""
    (source_x, source_y), (target_x, target_y) = source, target
    net = NetConfig(kind="conv", in_dim=source_x.shape[1], num_classes=num_classes, width=settings.width,
                    depth=settings.depth)
    classifier = train_domain_classifier(DomainClassifier(net), source_x, source_y, target_x, target_y,
                                         settings.domain, device=device)
    if settings.ratio_normalization not in ("clip", "self_normalize"):
        raise ValueError(f"ratio_normalization must be 'clip' or 'self_normalize', got {settings.ratio_normalization!r}")
    r, clipped = source_ratios(classifier, source_x, source_y, r_min=settings.guidance.r_min,
                               r_max=settings.guidance.r_max,
                               normalize=settings.ratio_normalization == "self_normalize", device=device)
    time_classifier = None
    timed = replace(net, time_conditioned=True)
    if settings.guidance.eta_cycle > 0:
        time_classifier = train_domain_classifier(DomainClassifier(timed), source_x, source_y, target_x, target_y,
                                                  settings.time_domain, schedule=schedule, device=device)
    uses_target = settings.guidance.eta_cycle > 0 or settings.guidance.eta_consistency > 0
    guidance_net = GuidanceNet(timed)
    result = train_guidance(
        guidance_net, eps_fn, schedule, source_x, source_y, r, settings.guidance,
        target_x=target_x if uses_target else None, target_y=target_y if uses_target else None,
        time_classifier=time_classifier, val_x=None if target_val is None else target_val[0],
        val_y=None if target_val is None else target_val[1], device=device,
    )
    summary = {"mean": r.mean().item(), "median": r.median().item(), "max": r.max().item(), "min": r.min().item()}
    return TGDPFit(guidance_net.cpu(), clipped, summary, result)
