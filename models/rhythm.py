"""The rhythm channel: the R peaks a rhythm-conditioned U-Net is given, and the real rhythms it samples with.

A 4 s window holds 3–6 beats. A U-Net that must invent their spacing places each beat plausibly
but not one RR interval from the next: the shipped 2026 model's N windows have a median RR
coefficient of variation of 0.13 against 0.026 for real ones (README: generator quality). With
`UNetConfig.rhythm_channel` the network gets one more input channel marking every R peak of the
window (a Gaussian bump per beat, the anchor channel's width), as ControlNet-style spatial
conditioning does for images (Zhang et al. 2023): the rhythm is given, the waveform generated.
Training takes the peaks of each real window; sampling draws whole rhythms of real training
windows of the same class from a `RhythmBank` the model card carries, so an S beat comes with
the prematurity real S beats have. Only R-peak sample positions are stored, never a waveform.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

BANK_RHYTHMS_PER_CLASS = 2000  # rhythms kept per class in a model card (peak positions only: a few kB per class)


def beat_markers(beats: Sequence[np.ndarray], length: int, width: float) -> Tensor:
    """[N, length] float32: per window, the maximum over its R peaks (sample indices) of a unit Gaussian of standard
    deviation `width` samples centred on the peak; 0 where a window has no beat."""
    position = torch.arange(length, dtype=torch.float32)
    markers = torch.zeros(len(beats), length)
    for i, peaks in enumerate(beats):
        peaks = torch.as_tensor(np.asarray(peaks, dtype=np.float32))
        if len(peaks):
            markers[i] = torch.exp(-0.5 * ((position[None] - peaks[:, None]) / width) ** 2).amax(dim=0)
    return markers


def marker_width(length: int, anchor_width: float) -> float:
    """The bump width in samples: the anchor channel's, `anchor_width` of the window (`UNetConfig.anchor_width`)."""
    return anchor_width * length


@dataclass(frozen=True)
class RhythmBank:
    """Per class name, rhythms of real training windows: each a list of R-peak sample indices in the window."""

    rhythms: dict[str, list[list[int]]]

    def __post_init__(self) -> None:
        empty = sorted(name for name, rhythms in self.rhythms.items() if not rhythms)
        if empty:
            raise ValueError(f"rhythm bank: no rhythm of class {empty}; a rhythm-channel model cannot sample them")

    @classmethod
    def from_windows(cls, beats: Sequence[np.ndarray], labels: np.ndarray, classes: Sequence[str], *,
                     per_class: int = BANK_RHYTHMS_PER_CLASS, seed: int = 0) -> RhythmBank:
        """At most `per_class` rhythms of each class, drawn without replacement from the windows' `beats`."""
        rng = np.random.default_rng(seed)
        labels = np.asarray(labels)
        rhythms = {}
        for k, name in enumerate(classes):
            rows = np.flatnonzero(labels == k)
            rows = np.sort(rng.choice(rows, min(per_class, len(rows)), replace=False))
            rhythms[name] = [[int(p) for p in beats[i]] for i in rows]
        return cls(rhythms)

    def draw(self, labels: np.ndarray, classes: Sequence[str], seed: int) -> list[np.ndarray]:
        """One rhythm per label (class indices into `classes`), drawn with replacement from that class's rhythms."""
        rng = np.random.default_rng(seed)
        return [np.asarray(self.rhythms[classes[k]][rng.integers(len(self.rhythms[classes[k]]))], dtype=np.int64)
                for k in np.asarray(labels)]

    def to_card(self) -> dict:
        return {name: [list(rhythm) for rhythm in rhythms] for name, rhythms in self.rhythms.items()}


def with_rhythm(net: nn.Module, markers: Tensor) -> Callable[..., Tensor]:
    """`net` as an ε function (x_t, t, y, raw=False) of windows whose R-peak markers are `markers` [B, T]; a batch
    of k·B windows (classifier-free guidance stacks its conditional and unconditional halves) repeats them k times."""

    def eps(x: Tensor, t: Tensor, y: Tensor, raw: bool = False) -> Tensor:
        if len(x) % len(markers):
            raise ValueError(f"{len(x)} windows for {len(markers)} rhythms")
        return net(x, t, y, raw=raw, rhythm=markers.to(x.device, x.dtype).repeat(len(x) // len(markers), 1))

    return eps
