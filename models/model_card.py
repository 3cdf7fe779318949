"""The model card every diffusion checkpoint carries: what it generates and what built it.

A checkpoint must sample on its own (README: Stages and artifacts; nanoGPT's checkpoints carry their config, diffusers'
`register_to_config` saves every constructor argument), so the card holds the network's and the
schedule's full configuration, the data description (classes, leads, rate, window, anchor,
normalization), and for a transferred model the transfer method and the target it was moved to.
It is written as a plain dict under the checkpoint's "card" key and read back here, checked: an
unknown or missing key is an error naming it.
"""
from __future__ import annotations

import platform
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from importlib import metadata

from ecg_tgdp.models.rhythm import RhythmBank
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.unet import UNet1D, UNetConfig

X0_CLIP_PERCENTILE, X0_CLIP_MARGIN = 99.9, 1.5
# keys older cards carry and this version ignores: the guidance weight w is asked for at sampling, not stored
RETIRED_KEYS = frozenset({"transfer_scale"})


def x0_clip_for(normalized_windows) -> float:
    """Static thresholding of x̂_0 (Saharia et al. 2022, Imagen §2.3) at 1.5 × the 99.9th percentile of |x| of the
    normalized training windows: a 4 s window generator's x̂_0 at high noise overshoots into spikes of 20-30 σ
    (real data: 7), and each sampler step carries that into the samples; clipping leaves real ECG values alone."""
    import numpy as np

    return float(X0_CLIP_MARGIN * np.percentile(np.abs(np.asarray(normalized_windows)), X0_CLIP_PERCENTILE))


class ModelCardError(ValueError):
    """A card that does not describe a model; the message names the key."""


def _built_by() -> dict[str, str]:
    """Versions of what built the checkpoint."""
    versions = {"python": platform.python_version()}
    for package in ("ecg-tgdp", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class ModelCard:
    """Everything a checkpoint needs to be sampled and audited."""

    classes: tuple[str, ...]  # label names in label-index order
    leads: tuple[str, ...]  # lead names, in the network's channel order
    fs_hz: float
    window_s: float
    anchor_s: float | None  # seconds from a window's start to its labeled beat; None for record crops
    normalization: dict  # per-lead "mean" and "std" (mV) the network's inputs were scaled with, and "fit_on"
    unet: dict  # UNetConfig fields
    schedule: dict  # NoiseSchedule.card(): kind, num_steps and the builder's parameters
    amplitude_normalization: str = "none"  # `data.preprocess.normalize_amplitude` method applied at ingest
    trained_on: str = ""  # the source cohort's database
    method: str = "source"  # the transfer method that made it ("source": the source model itself)
    target: str | None = None  # the target cohort's database, for a transferred model
    clip_x0: float | None = None  # samplers clip x̂_0 to ±this (normalized units; `x0_clip_for`)
    rhythm_bank: dict | None = None  # rhythm-channel models: class name → R-peak positions of real training windows
    #                                  (`models.rhythm.RhythmBank`), the rhythms sampling draws from
    built_by: dict = field(default_factory=_built_by)  # package versions

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "leads", tuple(self.leads))
        if not self.classes or not self.leads or not self.fs_hz > 0 or not self.window_s > 0:
            raise ModelCardError(f"model card: classes, leads, fs_hz > 0 and window_s > 0 are needed, got {self}")
        if bool(self.unet.get("rhythm_channel")) != (self.rhythm_bank is not None):
            raise ModelCardError("model card: a rhythm-channel network needs a rhythm_bank, and only such a network "
                                 "has one")
        if len(self.normalization.get("mean", ())) != len(self.leads):
            raise ModelCardError(f"model card: normalization has {len(self.normalization.get('mean', ()))} means "
                                 f"for {len(self.leads)} leads")

    def to_dict(self) -> dict:
        """The card as plain data (what `torch.load(weights_only=True)` accepts)."""
        card = asdict(self)
        card["classes"], card["leads"] = list(self.classes), list(self.leads)
        return card

    @classmethod
    def from_dict(cls, card: dict, where: str = "checkpoint") -> ModelCard:
        """A card read back from `to_dict`'s output; ModelCardError names an unknown or missing key."""
        card = {key: value for key, value in card.items() if key not in RETIRED_KEYS}
        unknown = sorted(set(card) - {spec.name for spec in fields(cls)})
        if unknown:
            raise ModelCardError(f"{where}: model card has unknown keys {unknown}")
        missing = [spec.name for spec in fields(cls)
                   if spec.name not in card and spec.default is MISSING and spec.default_factory is MISSING]
        if missing:
            raise ModelCardError(f"{where}: model card lacks {missing}")
        return cls(**card)

    def updated(self, **changes) -> ModelCard:
        """A copy with some fields changed (a transferred model's method, target, w)."""
        return replace(self, **changes)

    def rhythms(self) -> RhythmBank | None:
        """The rhythm bank of a rhythm-channel model; None for any other."""
        return None if self.rhythm_bank is None else RhythmBank(self.rhythm_bank)

    def unet_config(self) -> UNetConfig:
        return UNetConfig(**self.unet)

    def noise_schedule(self) -> NoiseSchedule:
        return NoiseSchedule.from_card(self.schedule)

    def new_network(self) -> UNet1D:
        """An untrained U-Net of this card's shape (its parameterization needs the schedule)."""
        return UNet1D(self.unet_config(), self.noise_schedule())

    def window_description(self) -> dict:
        """What a cohort.json of this model's windows says about them (fs_hz, window_s, anchor_s, leads, ...)."""
        return {"fs_hz": self.fs_hz, "window_s": self.window_s, "anchor_s": self.anchor_s, "leads": list(self.leads),
                "normalization": self.normalization, "amplitude_normalization": self.amplitude_normalization}

    @property
    def window_shape(self) -> tuple[int, int]:
        """(leads, samples) of one window: the shape the network generates."""
        return len(self.leads), round(self.fs_hz * self.window_s)

    @property
    def anchor_fraction(self) -> float | None:
        """Where the labeled beat sits as a fraction of the window (the U-Net's anchor channel)."""
        return None if self.anchor_s is None else self.anchor_s / self.window_s

