"""What `ecg-tgdp augment` can be asked besides its paths, with its defaults written once (the CLI reads them here,
without importing torch)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ecg_tgdp.data.balance import DEFAULT_MAX_PER_CLASS, DEFAULT_TARGET_SHARE
from ecg_tgdp.models.settings import DEFAULT_STEPS, TRANSFER_METHODS
from ecg_tgdp.pipeline.shipped import SHIPPED_MODEL_NAME


@dataclass(frozen=True)
class AugmentOptions:
    """The settings of one augment call (README: Augment your own data)."""

    source_model: str = SHIPPED_MODEL_NAME  # a checkpoint path or a shipped model's name
    method: str = "tgdp"  # one of TRANSFER_METHODS
    n_per_class: int | None = None  # add this many of every class; None: top the rare classes up
    target_share: float = DEFAULT_TARGET_SHARE  # top each class up to this share of the majority class's count
    max_per_class: int | None = DEFAULT_MAX_PER_CLASS  # at most this many synthetic windows of a class
    fmt: str = "npz"  # npz, wfdb or csv
    labels_csv: str | None = None  # record-level labels for a WFDB folder
    leads: tuple[str, ...] | None = None  # the target's lead names, in the model's lead order
    fs_in_hz: float | None = None  # rate of a CSV (or an NPZ without fs_hz)
    resample: bool = False  # allow records at another rate than the model's
    min_per_class: int = 20  # fewest real windows of each class accepted
    source_per_class: int = 500  # source-model samples per class standing in for the source cohort
    source_val_share: float = 0.2  # of those, held out for TGDP's early stopping, diagnostics and fade
    sampling_steps: int = DEFAULT_STEPS
    seed: int = 0  # the split, the transfer and the sampler
    device: str = "auto"
    work_dir: Path | None = None  # default: .<out>.work beside the output folder

    def __post_init__(self) -> None:
        problems = []
        if self.method not in TRANSFER_METHODS:
            problems.append(f"--method must be one of {', '.join(TRANSFER_METHODS)}, got {self.method!r}")
        if not (math.isfinite(self.target_share) and self.target_share > 0):
            problems.append(f"--target-share must be a positive number, got {self.target_share}")
        if self.fs_in_hz is not None and not (math.isfinite(self.fs_in_hz) and self.fs_in_hz > 0):
            problems.append(f"--fs-in-hz must be a positive number, got {self.fs_in_hz}")
        if not 0 < self.source_val_share < 1:
            problems.append(f"source_val_share must lie in (0, 1), got {self.source_val_share}")
        for name in ("n_per_class", "max_per_class"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"--{name.replace('_', '-')} must be at least 0, got {value}")
        for name in ("min_per_class", "source_per_class", "sampling_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if problems:
            raise ValueError("; ".join(problems))
