"""How far a TGDP density ratio can be trusted: effective sample size, clipping, and held-out calibration per t.

A ratio estimated by a domain classifier is only as good as the overlap of the two domains. Where the
classifier separates source from target perfectly its logit is unbounded and its gradient carries no
information about q/p; the weights r = q/p on source windows then concentrate on a few windows, which
the effective sample size shows (Kish 1965: ESS = (Σ r)² / Σ r²). Per band of diffusion time t the
held-out log-loss, AUROC and expected calibration error (ECE, Naeini et al. 2015) of the time-dependent
classifier c'(x_t, y, t) show where the noised domains overlap; below the t where c' becomes
near-perfect, TGDP's guidance is switched off (`choose_t_min`, README: TGDP, exactly, "Estimating h").
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ecg_tgdp.models.settings import NEAR_PERFECT_AUROC

CALIBRATION_BINS = 10


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (Σ w)² / Σ w² of non-negative importance weights [N]; N for equal weights."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or not len(weights) or (weights < 0).any() or not np.isfinite(weights).all():
        raise ValueError("effective_sample_size needs a non-empty vector of finite non-negative weights")
    total = weights.sum()
    return float(total ** 2 / np.square(weights).sum()) if total > 0 else 0.0


def clip_share(log_ratio: np.ndarray, r_min: float, r_max: float) -> float:
    """Share of ratios exp(log_ratio) outside [r_min, r_max]: the ones a clip would change."""
    log_ratio = np.asarray(log_ratio, dtype=np.float64)
    return float(((log_ratio < np.log(r_min)) | (log_ratio > np.log(r_max))).mean())


def binary_scores(logits: np.ndarray, domain: np.ndarray) -> dict[str, float]:
    """Held-out log-loss (nats), AUROC and ECE of a domain classifier's logits [N] for labels domain [N] (1 = target).

    The log-loss is computed from logits (log-sum-exp, no clipping); AUROC as the Mann-Whitney statistic
    over ranks; ECE with CALIBRATION_BINS equal-width bins of P(target).
    """
    logits, domain = np.asarray(logits, dtype=np.float64), np.asarray(domain, dtype=bool)
    if logits.shape != domain.shape or domain.all() or not domain.any():
        raise ValueError("binary_scores needs one logit per label and both domains present")
    log_loss = float(np.mean(np.logaddexp(0.0, np.where(domain, -logits, logits))))
    ranks = stats.rankdata(logits)
    n_pos, n_neg = domain.sum(), (~domain).sum()
    auroc = float((ranks[domain].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    probability = 1.0 / (1.0 + np.exp(-logits))
    bins = np.minimum((probability * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    ece = sum(abs(probability[bins == b].mean() - domain[bins == b].mean()) * (bins == b).mean()
              for b in range(CALIBRATION_BINS) if (bins == b).any())
    return {"log_loss": log_loss, "auroc": auroc, "ece": float(ece)}


@dataclass
class BandScores:
    """Held-out scores of c'(x_t, y, t) for t in [t_low, t_high)."""

    t_low: int
    t_high: int
    log_loss: float
    auroc: float
    ece: float


def scores_by_band(t: np.ndarray, logits: np.ndarray, domain: np.ndarray, num_steps: int,
                   bands: int = 10) -> list[BandScores]:
    """`binary_scores` of held-out noised windows grouped into `bands` equal bands of t over 0..num_steps−1."""
    t = np.asarray(t)
    edges = np.linspace(0, num_steps, bands + 1).round().astype(int)
    out = []
    for low, high in itertools.pairwise(edges):
        inside = (t >= low) & (t < high)
        if inside.any() and domain[inside].any() and not domain[inside].all():
            out.append(BandScores(int(low), int(high), **binary_scores(logits[inside], domain[inside])))
    return out


def choose_t_min(bands: list[BandScores], near_perfect: float = NEAR_PERFECT_AUROC) -> int:
    """The smallest t from which up every band's held-out AUROC is below `near_perfect`: guidance is reliable
    for t ≥ t_min. 0 when no band is near-perfect; the top band's end when all are."""
    t_min = 0
    for band in bands:  # ascending in t
        if band.auroc >= near_perfect:
            t_min = band.t_high
    return t_min


def bands_table(bands: list[BandScores]) -> list[dict]:
    """The bands as plain dicts (for JSON, CSV and checkpoints)."""
    return [asdict(band) for band in bands]
