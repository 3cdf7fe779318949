"""A trained diffusion checkpoint as a generator of labeled windows in mV.

A model file (`models.model_file`) carries everything sampling needs, nanoGPT style: the EMA weights
and the model card (`models.model_card`: network and schedule configuration, label names, window
geometry and the normalization statistics that take samples back to mV); a transferred model also
carries its transfer (domain guidance's reference network, or TGDP's log h and where its guidance
starts). The guidance weight w is asked for at sampling.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ecg_tgdp.models.calibration import BandCalibration
from ecg_tgdp.models.density_ratio import DomainClassifier, NetConfig
from ecg_tgdp.models.guidance import GuidanceNet, LogHFn, classifier_log_h, fade_weight, guided_denoiser_from_log_h
from ecg_tgdp.models.model_card import ModelCard
from ecg_tgdp.models.model_file import ModelFile
from ecg_tgdp.models.rhythm import beat_markers, marker_width, with_rhythm
from ecg_tgdp.models.samplers import DenoiserFn, classifier_free_guidance, sample
from ecg_tgdp.models.settings import DEFAULT_SAMPLER, DEFAULT_STEPS, TransferSettings
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.transfer.baselines import domain_guidance
from ecg_tgdp.models.unet import UNet1D


@dataclass
class DiffusionModel:
    """EMA network, schedule and model card of a checkpoint, and its transfer guidance if it has one."""

    net: UNet1D
    schedule: NoiseSchedule
    card: ModelCard
    reference: UNet1D | None = None  # domain guidance: the source network ε_src
    log_h: LogHFn | None = None  # TGDP: log h(x_t, y, t), from c' or h_ψ
    guidance_weight: Callable[[Tensor], Tensor] | None = None  # TGDP: f(t), the fade and c''s calibration per band

    @classmethod
    def load(cls, path: Path | str, device: torch.device | str = "cpu") -> DiffusionModel:
        """A model file (`models.model_file`), or a training checkpoint's EMA weights and card, ready to sample."""
        return cls.from_file(ModelFile.load(path), device)

    @classmethod
    def from_file(cls, model: ModelFile, device: torch.device | str = "cpu") -> DiffusionModel:
        card = model.card
        reference = None if model.reference_weights is None else _frozen_unet(card, model.reference_weights, device)
        log_h, weight = (None, None) if model.guidance is None else _guidance(model.guidance, device)
        return cls(_frozen_unet(card, model.weights, device), card.noise_schedule(), card, reference, log_h, weight)

    @property
    def net_device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    @property
    def method(self) -> str:
        return self.card.method

    def denoiser(self, cfg_scale: float = 1.0, transfer_scale: float | None = None,
                 rhythm: Tensor | None = None) -> DenoiserFn:
        """The model's ε function: classifier-free guidance at `cfg_scale` (1 = plain conditional), then the
        transfer method's guidance at weight w = `transfer_scale`, or the method's default w when None
        (`TransferSettings.transfer_scale`; the composition at a CFG scale ≠ 1 is stated in `models.guidance`).
        A rhythm-channel model's ε function is for one batch of windows, whose R-peak markers are `rhythm` [B, T]."""
        net, reference = self.net, self.reference
        if rhythm is not None:
            net = with_rhythm(net, rhythm)
            reference = None if reference is None else with_rhythm(reference, rhythm)
        eps = classifier_free_guidance(net, self.net.null_class, cfg_scale)
        scale = TransferSettings().transfer_scale(self.method) if transfer_scale is None else transfer_scale
        scale = 1.0 if scale is None else scale
        if self.reference is not None:
            return domain_guidance(classifier_free_guidance(reference, self.net.null_class, cfg_scale), eps, scale)
        if self.log_h is not None:
            return guided_denoiser_from_log_h(eps, self.log_h, self.schedule, scale, self.guidance_weight)
        return eps

    @property
    def window_shape(self) -> tuple[int, int]:
        """(leads, samples) of one window: the shape the network generates."""
        return self.card.window_shape

    def sample_mv(self, labels: np.ndarray, *, sampler: str = DEFAULT_SAMPLER, steps: int = DEFAULT_STEPS, seed: int = 0,
                  batch_size: int = 256, cfg_scale: float = 1.0, transfer_scale: float | None = None,
                  clip: bool = True, progress: bool = False, beats: list[np.ndarray] | None = None) -> np.ndarray:
        """Windows [len(labels), leads, T] in mV for class indices `labels`, sampled with `generate`; x̂_0 clipped
        at the card's level when it has one, unless `clip` is False. A rhythm-channel model draws each window's
        rhythm from its card's bank (seeded by `seed`), or takes it from `beats` (R-peak samples per window)."""
        rhythm = self.rhythm_markers(labels, seed, beats)
        denoiser = self.denoiser(cfg_scale, transfer_scale) if rhythm is None else \
            (lambda markers: self.denoiser(cfg_scale, transfer_scale, markers))
        normalized = generate(denoiser, self.schedule, labels, self.window_shape, sampler=sampler, steps=steps,
                              seed=seed, batch_size=batch_size, device=self.net_device,
                              clip_x0=self.card.clip_x0 if clip else None, progress=progress, rhythm=rhythm)
        return self.to_mv(normalized)

    def rhythm_markers(self, labels: np.ndarray, seed: int, beats: list[np.ndarray] | None = None) -> Tensor | None:
        """R-peak markers [len(labels), T] of the windows to sample (from `beats`, else drawn from the card's bank);
        None for a model without a rhythm channel, which takes no beats."""
        bank, length = self.card.rhythms(), self.window_shape[1]
        if bank is None:
            if beats is not None:
                raise ValueError("this model has no rhythm channel; it takes no beats")
            return None
        if beats is None:
            beats = bank.draw(labels, self.classes, seed)
        elif len(beats) != len(labels):
            raise ValueError(f"{len(beats)} rhythms for {len(labels)} windows")
        return beat_markers(beats, length, marker_width(length, self.net.config.anchor_width))

    def to_mv(self, x: Tensor | np.ndarray) -> np.ndarray:
        """Undo the per-lead normalization: x · std + mean, as float32 [N, leads, T] in mV."""
        return to_mv(x, self.card.normalization)


def to_mv(x: Tensor | np.ndarray, normalization: dict) -> np.ndarray:
    """Normalized windows x [N, leads, T] back in mV: x · std + mean with a card's per-lead `normalization`."""
    mean, std = (np.asarray(normalization[key], dtype=np.float32)[:, None] for key in ("mean", "std"))
    return (np.asarray(x, dtype=np.float32) * std + mean).astype(np.float32)


def _guidance(payload: dict, device) -> tuple[LogHFn, Callable[[Tensor], Tensor]]:
    """TGDP's log h from a model file's guidance entry (c' for time_classifier, h_ψ for regression, frozen) and its
    weight f(t): the fade below t_min times, when c' was calibrated, its per-band factor guided_b / T_b."""
    estimator = payload["estimator"]
    network = (DomainClassifier if estimator == "time_classifier" else GuidanceNet)(NetConfig(**payload["config"]))
    network.load_state_dict(payload["weights"])
    network = network.to(device).eval().requires_grad_(False)
    log_h = classifier_log_h(network) if estimator == "time_classifier" else network.log_h
    fade = fade_weight(int(payload["t_min"]), int(payload["fade_steps"]))
    if payload.get("calibration") is None:
        return log_h, fade
    calibration = BandCalibration(**payload["calibration"])
    return log_h, lambda t: fade(t) * calibration.factor(t)


def _frozen_unet(card: ModelCard, weights: dict, device: torch.device | str) -> UNet1D:
    net = card.new_network()
    net.load_state_dict(weights)
    return net.to(device).eval().requires_grad_(False)


def labels_for_mix(n: int, mix: dict[str, float], classes: list[str]) -> np.ndarray:
    """Class indices [n] in the proportions of `mix` (largest remainder), grouped by class."""
    unknown = sorted(set(mix) - set(classes))
    if unknown:
        raise ValueError(f"class mix names {unknown}, which the model does not know (classes: {classes})")
    if any(share < 0 for share in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"class mix {mix} needs non-negative shares with a positive sum")
    total = sum(mix.values())
    exact = np.array([n * mix.get(name, 0.0) / total for name in classes])
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts))[: n - counts.sum()]] += 1
    return np.repeat(np.arange(len(classes)), counts)


def generate(
    denoiser: DenoiserFn | Callable[[Tensor], DenoiserFn],
    schedule: NoiseSchedule,
    labels: np.ndarray,
    shape: tuple[int, int],
    *,
    sampler: str = DEFAULT_SAMPLER,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    clip_x0: float | None = None,
    progress: bool = False,
    rhythm: Tensor | None = None,
) -> np.ndarray:
    """Sample normalized windows [len(labels), leads, T] in batches from one seeded generator; x̂_0 clipped to
    ±`clip_x0` at every step when given (the model card's value). For a rhythm-channel model `rhythm` [len(labels),
    T] holds the windows' R-peak markers and `denoiser` is a function of a batch's markers giving its ε function."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    batches = range(0, len(labels), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"sample ({sampler}, {steps} steps)", unit="batch")
    for start in batches:
        y = torch.as_tensor(labels[start : start + batch_size], dtype=torch.long)
        batch_denoiser = denoiser if rhythm is None else denoiser(rhythm[start : start + batch_size])
        x = sample(batch_denoiser, schedule, (len(y), *shape), y, sampler=sampler, steps=steps, generator=generator,
                   clip_x0=clip_x0, device=device)
        out.append(x.detach().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *shape), dtype=np.float32)
