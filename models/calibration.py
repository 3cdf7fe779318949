"""Calibrating the time-dependent domain classifier c'(x_t, y, t) per band of t, and switching its guidance off where
it knows nothing.

TGDP's default guidance is log h = logit c' (README: TGDP, exactly, "Estimating h"); its gradient is only as right as
the logit's scale. A classifier trained by cross-entropy to its held-out minimum is still overconfident where it
learned the training patients' windows rather than the domains (on SVDB its held-out log-loss at t ≈ 0 was 1.22,
above the log 2 = 0.69 of a constant guess): the guidance is then steepest exactly where it is least right. Per band
of t, a temperature T_b fitted on held-out windows (temperature scaling, Guo et al. 2017) rescales the logit, and a
band whose calibrated held-out log-loss, scored 2-fold cross-fitted (each half with the temperature fitted on the
other), is not below a constant guess's log 2 gets no guidance at all. The guided denoiser then uses
∇ log h_b = ∇ logit c' / T_b in the bands kept, 0 in the others (`BandCalibration.factor`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import optimize
from torch import Tensor

CONSTANT_GUESS_LOG_LOSS = math.log(2.0)  # a balanced held-out set scored with P(target) = 1/2
TEMPERATURE_RANGE = (1e-2, 1e2)


def fit_temperature(logits: np.ndarray, domain: np.ndarray) -> float:
    """T in TEMPERATURE_RANGE minimizing the mean binary cross-entropy of logits / T [N] against domain [N] (1 =
    target): temperature scaling, Guo et al. 2017, a 1-D bounded search over log T."""
    logits, domain = np.asarray(logits, dtype=np.float64), np.asarray(domain, dtype=bool)
    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    result = optimize.minimize_scalar(lambda log_t: log_loss(logits / math.exp(log_t), domain), bounds=(low, high),
                                      method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))


def log_loss(logits: np.ndarray, domain: np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of logits [N] against domain [N], by log-sum-exp."""
    return float(np.mean(np.logaddexp(0.0, np.where(domain, -logits, logits))))


@dataclass
class BandCalibration:
    """Per band [edges[b], edges[b + 1]) of t: the temperature of c' and whether its guidance is kept."""

    edges: list[int]
    temperature: list[float]
    guided: list[bool]
    cross_fitted_log_loss: list[float | None]  # held-out, each half scored with the other half's temperature; None:
    #                                           too few windows to score (a NaN would make equal files compare unequal)

    def factor(self, t: Tensor) -> Tensor:
        """guided_b / T_b for the band of each timestep t [B] (float32 [B] on t's device): what ∇ logit c' is
        multiplied by. Timesteps outside every band (none with edges covering 0..T) get 0."""
        per_band = torch.tensor([g / temperature for g, temperature in zip(self.guided, self.temperature)] + [0.0],
                                dtype=torch.float32, device=t.device)
        edges = torch.tensor(self.edges, device=t.device)
        band = torch.bucketize(t, edges[1:], right=True)  # t in [edges[b], edges[b + 1]) → b; past the end → B
        return per_band[band.clamp(max=len(self.guided))]

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate_by_band(t: np.ndarray, logits: np.ndarray, domain: np.ndarray, num_steps: int, bands: int,
                      seed: int) -> BandCalibration:
    """The calibration of c' from its held-out logits [N] at timesteps t [N] (domain [N], 1 = target, balanced),
    in `bands` equal bands of 0..num_steps−1 (module docstring). A band with too few windows of either domain to
    fit and score (fewer than 4 each) is not guided."""
    t, logits, domain = np.asarray(t), np.asarray(logits, dtype=np.float64), np.asarray(domain, dtype=bool)
    edges = np.linspace(0, num_steps, bands + 1).round().astype(int)
    rng = np.random.default_rng(seed)
    temperatures, guided, scored = [], [], []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = np.flatnonzero((t >= low) & (t < high))
        if min(domain[inside].sum(), (~domain[inside]).sum()) < 4:
            temperatures.append(1.0), guided.append(False), scored.append(None)
            continue
        fold = rng.permutation(len(inside)) % 2
        cross = np.empty(len(inside))
        for half in (0, 1):
            fit, score = inside[fold != half], inside[fold == half]
            cross[fold == half] = logits[score] / fit_temperature(logits[fit], domain[fit])
        loss = log_loss(cross, domain[inside])
        temperatures.append(fit_temperature(logits[inside], domain[inside]))
        guided.append(bool(loss < CONSTANT_GUESS_LOG_LOSS))
        scored.append(loss)
    return BandCalibration([int(edge) for edge in edges], temperatures, guided, scored)
