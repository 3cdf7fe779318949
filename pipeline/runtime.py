"""What every stage needs around the library: the device, seeded initial weights, its training folder and the
R-peak markers of a rhythm-channel model's windows."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from ecg_tgdp.data.rhythm import window_beats
from ecg_tgdp.models.rhythm import beat_markers, marker_width
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.seeding import seeded
from ecg_tgdp.models.unet import UNet1D, UNetConfig
from ecg_tgdp.pipeline.config import ConfigError
from ecg_tgdp.pipeline.distributed import rank_device


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; anything else as torch names it; under torchrun a rank's own GPU."""
    if name == "auto":
        return rank_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch build sees no CUDA device")
    return rank_device(device)


def seeded_unet(unet: UNetConfig, schedule: NoiseSchedule, seed: int) -> UNet1D:
    """A U-Net whose initial weights come from `seed`, not from whatever state the global generator is in (a fresh
    process seeds it at random); the global generator is left as it was."""
    return seeded(lambda: UNet1D(unet, schedule), seed)


def prepare_out_dir(out_dir: Path, fingerprint: str, force: bool) -> None:
    """A training folder for `fingerprint`: emptied first when forced or when it holds an (interrupted) run of other
    inputs or settings, else kept, so that training resumes from its checkpoint."""
    if force or fingerprint_changed(out_dir, fingerprint):
        shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fingerprint.txt").write_text(fingerprint)


def fingerprint_changed(out_dir: Path, fingerprint: str) -> bool:
    """True when out_dir holds an (interrupted) run made with other inputs or settings."""
    marker = out_dir / "fingerprint.txt"
    return marker.is_file() and marker.read_text() != fingerprint


def window_rhythm(windows_mv: np.ndarray, info: dict, anchor_width: float) -> tuple[list[np.ndarray], torch.Tensor]:
    """The R peaks of beat windows [N, leads, T] in mV (`data.rhythm.window_beats`, the anchor beat always among
    them) described by cohort.json `info`, and their markers [N, T] for a rhythm-channel U-Net of `anchor_width`."""
    length = np.asarray(windows_mv).shape[-1]
    anchor = None if info.get("anchor_s") is None else round(info["anchor_s"] * info["fs_hz"])
    beats = window_beats(windows_mv, info["fs_hz"], anchor)
    return beats, beat_markers(beats, length, marker_width(length, anchor_width))
