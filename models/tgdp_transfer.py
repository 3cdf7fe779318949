"""TGDP end to end for windows: estimate log h = log q_t/p_t, decide where it is reliable, report how well it fits.

The frozen source denoiser ε_θ is never changed; the result is a log h function that
`models.guidance.guided_denoiser_from_log_h` turns into the target denoiser
ε̃ = ε_θ − w f(t) σ_t ∇ log h (TGDP, Ouyang et al. NeurIPS 2024; README: TGDP, exactly). Two estimators:

- "time_classifier": the time-dependent domain classifier c'(x_t, y, t), trained with BCE on balanced
  batches of noised source and target windows and early stopped on held-out log-loss, is the guidance:
  log h = logit c'. Optionally refined with the consistency loss on target windows (the guided
  denoiser must denoise target data), keeping the BCE term so c' stays a classifier.
- "regression" (the paper's): a clean-window classifier c gives r(x_0) = q/p on the source windows,
  from held-out (2-fold cross-fitted) predictions with a temperature fitted on held-out windows; the
  guidance network h_ψ regresses r on noised source windows with the cycle (against c') and
  consistency regularizers (`models.tgdp`).

Either way c' is scored on held-out windows per band of t (`models.ratio_diagnostics`); below the t
where it separates the domains almost perfectly the guidance fades to 0 (t_min), and the effective
sample size and clip share of the source weights r = exp(logit c'(x_0, y, 0)) are reported. Without
held-out windows the scores are in-sample (flagged), and no fade is applied: a classifier always
separates its own few training windows.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ecg_tgdp.models.calibration import BandCalibration, calibrate_by_band, fit_temperature
from ecg_tgdp.models.density_ratio import (
    DomainClassifier,
    DomainTraining,
    HeldOut,
    NetConfig,
    clip_ratios,
    domain_logits,
    self_normalize,
    train_domain_classifier,
)
from ecg_tgdp.models.guidance import GuidanceNet, LogHFn, classifier_log_h
from ecg_tgdp.models.ratio_diagnostics import (
    BandScores,
    bands_table,
    binary_scores,
    choose_t_min,
    clip_share,
    effective_sample_size,
    scores_by_band,
)
from ecg_tgdp.models.samplers import DenoiserFn
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.seeding import seeded
from ecg_tgdp.models.settings import TGDPSettings
from ecg_tgdp.models.tgdp import consistency_loss, given_rhythm, train_guidance


BAND_SCORE_FIELDS = tuple(spec.name for spec in fields(BandScores))


@dataclass
class TGDPFit:
    """What a TGDP fit produced: the network whose log h guides, where guidance starts, and what was measured."""

    estimator: str
    network: nn.Module  # DomainClassifier c' (time_classifier) or GuidanceNet h_ψ (regression), eval mode, CPU
    t_min: int  # guidance fades in above t_min
    fade_steps: int  # over this many steps (one band of t)
    diagnostics: dict  # ess, ess_share, clip_share, clean (c or c' at t = 0), bands (c' per band of t), t_min, ...
    log: list[dict] = field(default_factory=list)  # training rows of every phase (column "phase")
    calibration: BandCalibration | None = None  # time_classifier with held-out windows: c' per band of t

    @property
    def log_h(self) -> LogHFn:
        if self.estimator == "time_classifier":
            return classifier_log_h(self.network)
        return self.network.log_h


def fit_tgdp(
    eps_fn: DenoiserFn, schedule: NoiseSchedule, source: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor],
    settings: TGDPSettings, *, source_val: tuple[Tensor, Tensor] | None = None,
    target_val: tuple[Tensor, Tensor] | None = None, num_classes: int, device: torch.device | str = "cpu",
    target_rhythm: Tensor | None = None, target_val_rhythm: Tensor | None = None,
) -> TGDPFit:
    """Fit TGDP for windows x [N, leads, T] (or vectors [N, D]) with labels y [N]: source/target train pools,
    optional held-out source and target windows (early stopping, temperature, diagnostics; without them the
    diagnostics use the training pools and say so). A rhythm-channel ε_θ denoises target windows (consistency)
    given their R-peak markers, target_rhythm and target_val_rhythm [N, T] (`models.rhythm`)."""
    (source_x, source_y), (target_x, target_y) = source, target
    in_dim = source_x.shape[1] if settings.network == "conv" else int(np.prod(source_x.shape[1:]))
    net = NetConfig(kind=settings.network, in_dim=in_dim, num_classes=num_classes, width=settings.width,
                    depth=settings.depth, label_aware=settings.label_aware)
    held_out = None
    if source_val is not None and target_val is not None:
        held_out = HeldOut(*source_val, *target_val, seed=settings.time_domain.seed + 7)
    log: list[dict] = []
    timed = replace(net, time_conditioned=True)
    time_log: list[dict] = []
    time_classifier = train_domain_classifier(seeded(lambda: DomainClassifier(timed), settings.time_domain.seed),
                                              source_x, source_y, target_x, target_y,
                                              settings.time_domain, schedule=schedule, held_out=held_out,
                                              log=time_log, device=device)
    log += [{"phase": "time_classifier", **row} for row in time_log]
    if settings.estimator == "time_classifier" and settings.refine_steps:
        log += refine_with_consistency(time_classifier, eps_fn, schedule, source, target, settings, device,
                                       target_rhythm)
    # in-sample scores say nothing about overlap (c' separates its own few target windows): no fade and no
    # calibration without held-out windows
    calibrate = settings.calibrate and settings.estimator == "time_classifier" and held_out is not None
    diagnostics, calibration = time_classifier_diagnostics(
        time_classifier, schedule, held_out or HeldOut(*source, *target), settings, device, calibrate)
    diagnostics["held_out"] = held_out is not None
    t_min = choose_t_min_from(diagnostics, settings) if settings.fade and held_out is not None else 0
    fade_steps = round(schedule.num_steps / settings.bands)
    if settings.estimator == "time_classifier":
        network: nn.Module = time_classifier
    else:
        network, regression_log, ratio_info = _fit_regression(eps_fn, schedule, source, target, net, settings,
                                                              time_classifier, held_out, target_val, device,
                                                              (target_rhythm, target_val_rhythm))
        log += regression_log
        diagnostics["regression"] = ratio_info
    diagnostics["t_min"] = t_min
    return TGDPFit(settings.estimator, network.cpu().eval(), t_min, fade_steps, diagnostics, log, calibration)


def time_classifier_diagnostics(classifier: DomainClassifier, schedule: NoiseSchedule, held_out: HeldOut,
                                settings: TGDPSettings, device,
                                calibrate: bool = False) -> tuple[dict, BandCalibration | None]:
    """Held-out log-loss/AUROC/ECE of c' per band of t and at t = 0 (the clean-window classifier it implies),
    and the ESS and clip share of the source weights r = exp(logit c'(x_0, y, 0)) on held-out source windows;
    with `calibrate`, also c''s temperature per band and which bands guide (`models.calibration`), whose
    cross-fitted calibrated log-loss joins each band's row."""
    x_t, y, t, domain = held_out.noised(schedule)
    logits = domain_logits(classifier, x_t, y, t, device=device).numpy()
    bands = scores_by_band(t.numpy(), logits, domain.numpy().astype(bool), schedule.num_steps, settings.bands)
    calibration = None
    if calibrate:
        calibration = calibrate_by_band(t.numpy(), logits, domain.numpy().astype(bool), schedule.num_steps,
                                        settings.bands, held_out.seed + 1)
    x0, y0, _, domain0 = held_out.noised(None)
    zero = torch.zeros(len(x0), dtype=torch.long)
    clean_logits = domain_logits(classifier, x0, y0, zero, device=device).numpy()
    source_logits = clean_logits[domain0.numpy() == 0]
    weights = np.exp(np.clip(source_logits, -50, 50))
    ess = effective_sample_size(weights)
    table = bands_table(bands)
    if calibration is not None:
        by_start = {edge: k for k, edge in enumerate(calibration.edges[:-1])}
        for row in table:
            k = by_start[row["t_low"]]
            row |= {"temperature": calibration.temperature[k], "calibrated_log_loss": calibration.cross_fitted_log_loss[k],
                    "guided": calibration.guided[k]}
    return {
        "bands": table,
        "clean": binary_scores(clean_logits, domain0.numpy().astype(bool)),
        "ess": ess, "ess_share": ess / len(weights), "n_source_weights": len(weights),
        "clip_share": clip_share(source_logits, 1e-3, 1e3),
        "near_perfect_auroc": settings.near_perfect_auroc,
        "calibrated": calibration is not None,
    }, calibration


def choose_t_min_from(diagnostics: dict, settings: TGDPSettings) -> int:
    """t_min from the per-band scores of `time_classifier_diagnostics`."""
    scores = [BandScores(**{key: band[key] for key in BAND_SCORE_FIELDS}) for band in diagnostics["bands"]]
    return choose_t_min(scores, settings.near_perfect_auroc)


def refine_with_consistency(classifier: DomainClassifier, eps_fn: DenoiserFn, schedule: NoiseSchedule,
                            source: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor], settings: TGDPSettings,
                            device, target_rhythm: Tensor | None = None) -> list[dict]:
    """Continue training c' on BCE + η₂ · consistency(ε_θ − σ_t ∇ logit c', target windows) (README: TGDP, exactly, step 4) for
    `refine_steps` steps at the classifier's final learning rate; the BCE term keeps logit c' a log ratio."""
    training = settings.time_domain
    eta = settings.guidance.eta_consistency or 1.0
    if isinstance(eps_fn, nn.Module):
        eps_fn.requires_grad_(False).eval()
    generator = torch.Generator().manual_seed(training.seed + 11)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=training.lr * training.min_lr_ratio,
                                  weight_decay=training.weight_decay)
    (source_x, source_y), (target_x, target_y) = source, target
    classifier.to(device).train()
    rows = []
    half = training.batch_size // 2
    for step in tqdm(range(1, settings.refine_steps + 1), desc="refine c' (consistency)", unit="step",
                     leave=False, disable=None):
        src = torch.randint(len(source_x), (half,), generator=generator)
        tgt = torch.randint(len(target_x), (half,), generator=generator)
        x0 = torch.cat([source_x[src], target_x[tgt]]).float()
        y = torch.cat([source_y[src], target_y[tgt]]).long()
        domain = torch.cat([torch.zeros(half), torch.ones(half)])
        t = torch.randint(schedule.num_steps, (len(x0),), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        x0, y, domain, t, eps = (v.to(device) for v in (x0, y, domain, t, eps))
        bce = F.binary_cross_entropy_with_logits(classifier(schedule.add_noise(x0, eps, t), y, t), domain)
        consistency = consistency_loss(given_rhythm(eps_fn, target_rhythm, tgt, device), classifier_log_h(classifier),
                                       schedule, x0[half:], y[half:], t[half:], eps[half:])
        loss = bce + eta * consistency
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        rows.append({"phase": "refine", "step": step, "train_loss": bce.item(), "consistency": consistency.item()})
    classifier.eval()
    return rows


def _fit_regression(eps_fn: DenoiserFn, schedule: NoiseSchedule, source: tuple[Tensor, Tensor],
                    target: tuple[Tensor, Tensor], net: NetConfig, settings: TGDPSettings,
                    time_classifier: DomainClassifier, held_out: HeldOut | None,
                    target_val: tuple[Tensor, Tensor] | None, device,
                    rhythm: tuple[Tensor | None, Tensor | None] = (None, None)) -> tuple[GuidanceNet, list[dict], dict]:
    """The paper's estimator with held-out ratios: r from 2-fold cross-fitted, temperature-scaled c; h_ψ on r.
    `rhythm`: the target and target validation windows' R-peak markers, for a rhythm-channel ε_θ."""
    (source_x, source_y), (target_x, target_y) = source, target
    log_r, temperature, clean_scores = cross_fitted_log_ratios(source, target, net, settings.domain, held_out, device)
    r, clipped = clip_ratios(log_r.exp(), settings.guidance.r_min, settings.guidance.r_max)
    if settings.ratio_normalization == "self_normalize":
        r = self_normalize(r)
    guidance_net = seeded(lambda: GuidanceNet(replace(net, time_conditioned=True)), settings.guidance.seed)
    uses_target = settings.guidance.eta_cycle > 0 or settings.guidance.eta_consistency > 0
    result = train_guidance(
        guidance_net, eps_fn, schedule, source_x, source_y, r, settings.guidance,
        target_x=target_x if uses_target else None, target_y=target_y if uses_target else None,
        time_classifier=time_classifier if settings.guidance.eta_cycle > 0 else None,
        val_x=None if target_val is None else target_val[0], val_y=None if target_val is None else target_val[1],
        normalize_cycle=settings.ratio_normalization == "self_normalize", device=device,
        target_rhythm=rhythm[0] if uses_target else None, val_rhythm=rhythm[1],
    )
    weights = r.double().numpy()
    info = {"temperature": temperature, "clean": clean_scores, "ratio_clipped_share": clipped,
            "ess": effective_sample_size(weights), "ess_share": effective_sample_size(weights) / len(weights),
            "ratio_summary": {"mean": r.mean().item(), "median": r.median().item(), "max": r.max().item(),
                              "min": r.min().item()},
            "best_step": result.best_step, "best_val_consistency": result.best_val_consistency}
    return guidance_net, [{"phase": "guidance", **row} for row in result.log], info


def cross_fitted_log_ratios(source: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor], net: NetConfig,
                            training: DomainTraining, held_out: HeldOut | None,
                            device) -> tuple[Tensor, float, dict]:
    """log r(x_0, y) [N] for every source window from the fold's classifier that did not see it (2-fold
    cross-fitting), divided by a temperature fitted on held-out windows (1 without them); also the temperature
    and the held-out scores of c (or its out-of-fold scores on the training pools)."""
    (source_x, source_y), (target_x, target_y) = source, target
    generator = torch.Generator().manual_seed(training.seed + 3)
    source_fold = torch.randperm(len(source_x), generator=generator) % 2
    target_fold = torch.randperm(len(target_x), generator=generator) % 2
    log_r = torch.zeros(len(source_x))
    out_of_fold_target = torch.zeros(len(target_x))
    classifiers = []
    for fold in (0, 1):
        fit_s, fit_t = source_fold != fold, target_fold != fold
        if not fit_t.any():  # a single target window: both folds share it
            fit_t = torch.ones_like(fit_t)
        fold_training = replace(training, seed=training.seed + fold)
        classifier = train_domain_classifier(seeded(lambda: DomainClassifier(net), fold_training.seed), source_x[fit_s],
                                             source_y[fit_s], target_x[fit_t], target_y[fit_t], fold_training,
                                             held_out=held_out, device=device)
        classifiers.append(classifier)
        log_r[source_fold == fold] = domain_logits(classifier, source_x[source_fold == fold],
                                                   source_y[source_fold == fold], device=device)
        out_of_fold_target[target_fold == fold] = domain_logits(classifier, target_x[target_fold == fold],
                                                                target_y[target_fold == fold], device=device)
    if held_out is not None:
        x, y, _, domain = held_out.noised(None)
        logits = torch.stack([domain_logits(c, x, y, device=device) for c in classifiers]).mean(0)
    else:  # no held-out windows: the out-of-fold predictions on the training pools
        logits = torch.cat([log_r, out_of_fold_target])
        domain = torch.cat([torch.zeros(len(log_r)), torch.ones(len(out_of_fold_target))])
    temperature = fit_temperature(logits.numpy(), domain.numpy().astype(bool)) if held_out is not None else 1.0
    scores = binary_scores((logits / temperature).numpy(), domain.numpy().astype(bool))
    return log_r / temperature, temperature, scores
