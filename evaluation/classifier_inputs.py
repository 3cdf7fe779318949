"""How a window becomes the project classifier's input: the anchor beat against its own rhythm.

Beat windows (an annotated beat at a known anchor sample, its neighbours around it) give
(`data.rhythm.beat_context`):

- signal channels per lead: the anchor beat's segment, the median segment of the window's other
  beats, and their difference, each baseline-free (segment median) and divided by the template's
  peak amplitude (+ 0.05 mV), so gain differences between patients and devices cancel and what is
  left is how the beat differs from that patient's own beats;
- features: log(RR before / mean RR), log(RR after / mean RR), log(RR before / RR after) of the
  anchor beat, divided by 0.2 (±20% of the local rhythm ↦ ±1), 0 where unknown, plus one flag per
  unknown value and one for a window without neighbouring beats.

Measured on MIT-BIH DS1 → DS2 (README, "Beats that carry their rhythm"), these inputs are what make
the classifier generalize across patients; the same function serves real and synthetic windows, so
no annotation ever enters. Record crops without an anchor beat (PTB-XL) are the whole window
normalized with the cohort's per-lead statistics, and no features.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ecg_tgdp.data.rhythm import BeatContext, beat_context
from ecg_tgdp.models.classifier import ClassifierInputs

RR_SCALE = 0.2  # log-RR ratios are divided by this
AMPLITUDE_FLOOR_MV = 0.05  # added to the template's peak amplitude before dividing by it


@dataclass(frozen=True)
class WindowGeometry:
    """What the input preparation needs to know about a cohort's windows (its cohort.json)."""

    fs_hz: float
    samples: int  # window length
    anchor: int | None  # sample of the anchor beat; None for record crops
    mean: tuple[float, ...]  # per-lead normalization statistics (crops only)
    std: tuple[float, ...]

    @classmethod
    def of(cls, info: dict) -> WindowGeometry:
        """From a cohort's (or checkpoint's) description: fs_hz, window_s, anchor_s, normalization."""
        fs_hz, anchor_s, stats = float(info["fs_hz"]), info.get("anchor_s"), info["normalization"]
        anchor = None if anchor_s is None else round(anchor_s * fs_hz)
        return cls(fs_hz, round(info["window_s"] * fs_hz), anchor, tuple(stats["mean"]), tuple(stats["std"]))

    def normalized(self, windows: np.ndarray) -> np.ndarray:
        mean, std = (np.asarray(v, dtype=np.float32)[:, None] for v in (self.mean, self.std))
        return ((np.asarray(windows, dtype=np.float32) - mean) / std).astype(np.float32)


def classifier_inputs(windows_mv: np.ndarray, geometry: WindowGeometry) -> ClassifierInputs:
    """The project classifier's inputs for windows [N, leads, T] in mV (module docstring)."""
    windows_mv = np.asarray(windows_mv)
    if geometry.anchor is None:
        return ClassifierInputs(geometry.normalized(windows_mv), np.zeros((len(windows_mv), 0), dtype=np.float32))
    return _from_context(beat_context(windows_mv, geometry.fs_hz, geometry.anchor))


class PreparedInputs:
    """`classifier_inputs` and the anchor beats' log RR ratios of window arrays, each computed once per content.

    One evaluation prepares the same windows for the utility arms, the fidelity encoder and the rhythm
    statistic; the R-peak detection behind all three is the slow part, so arrays are keyed by a hash of their
    bytes (a fraction of a second for 100,000 windows, against seconds of detection).
    """

    def __init__(self, geometry: WindowGeometry) -> None:
        self.geometry = geometry
        self._cache: dict[str, tuple[ClassifierInputs, np.ndarray | None]] = {}

    def __call__(self, windows_mv: np.ndarray) -> ClassifierInputs:
        return self._prepared(windows_mv)[0]

    def log_rr_ratio(self, windows_mv: np.ndarray) -> np.ndarray | None:
        """log(RR before / RR after) of each anchor beat [N] (`BeatContext.log_rr_ratio`); None for record crops."""
        return self._prepared(windows_mv)[1]

    def _prepared(self, windows_mv: np.ndarray) -> tuple[ClassifierInputs, np.ndarray | None]:
        windows_mv = np.ascontiguousarray(windows_mv, dtype=np.float32)
        key = hashlib.blake2b(windows_mv.view(np.uint8), digest_size=16).hexdigest() + str(windows_mv.shape)
        if key not in self._cache:
            if self.geometry.anchor is None:
                self._cache[key] = (classifier_inputs(windows_mv, self.geometry), None)
            else:
                context = beat_context(windows_mv, self.geometry.fs_hz, self.geometry.anchor)
                self._cache[key] = (_from_context(context), context.log_rr_ratio())
        return self._cache[key]


def _from_context(context: BeatContext) -> ClassifierInputs:
    """Signal channels and features of beat windows from their rhythm context (module docstring)."""
    beat = context.beat - np.median(context.beat, axis=-1, keepdims=True)
    template = context.template - np.median(context.template, axis=-1, keepdims=True)
    alone = context.neighbours == 0
    template[alone] = beat[alone]  # no neighbours to compare with: the beat is its own template (flagged below)
    scale = np.abs(template).max(axis=-1, keepdims=True) + AMPLITUDE_FLOOR_MV
    signal = np.concatenate([beat / scale, template / scale, (beat - template) / scale], axis=1)
    pre, post, mean = context.rr_s.T
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log(np.column_stack([pre / mean, post / mean, pre / post]))
    unknown = ~np.isfinite(ratios)
    features = np.column_stack([np.where(unknown, 0.0, ratios / RR_SCALE), unknown, alone])
    return ClassifierInputs(signal.astype(np.float32), features.astype(np.float32))
