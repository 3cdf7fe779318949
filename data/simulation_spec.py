"""What a simulated hospital is (`data.simulate` writes it): patients, rhythm and cohort shift, checked on creation.

Kept apart from the simulator, without numpy, because the run config (`pipeline.config`) uses these classes
as its schema and the command line must start without importing the numerical stack.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import ClassVar

ECTOPIC_CLASSES = ("S", "V", "F")
_RECORD_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class CohortShift:
    """How one simulated hospital deviates from the reference morphology and recording setup (also the schema
    of a config's `<cohort>.simulation.shift`)."""

    __pydantic_config__: ClassVar[dict] = {"extra": "forbid"}

    morphology: float = 0.0  # 0 = reference; 1 = strongly altered (wider QRS, taller/inverted-ish T, smaller P, longer PR/QT); continuous
    gain: float = 1.0  # amplitude multiplier of the whole signal (device/electrode gain)
    noise_mv: float = 0.02  # std of additive broadband noise (mV)
    baseline_wander_mv: float = 0.05  # amplitude of low-frequency (0.05-0.5 Hz) baseline wander (mV)
    powerline_mv: float = 0.0  # amplitude of 50 Hz mains interference (mV)

    def __post_init__(self) -> None:
        """Reject shifts that would give a meaningless signal."""
        if not 0.0 <= self.morphology <= 2.0:
            raise ValueError(f"shift.morphology must be in [0, 2], got {self.morphology}")
        if not 0.0 < self.gain < 100.0:
            raise ValueError(f"shift.gain must be in (0, 100), got {self.gain}")
        for name in ("noise_mv", "baseline_wander_mv", "powerline_mv"):
            if not 0.0 <= getattr(self, name) <= 10.0:
                raise ValueError(f"shift.{name} must be in [0, 10] mV, got {getattr(self, name)}")


@dataclass(frozen=True)
class SimulationSpec:
    """A simulated hospital: patients, record length, sampling rate, leads, rhythm and cohort shift."""

    n_patients: int
    duration_s: float
    fs_hz: float
    lead_names: tuple[str, ...] = ("MLII",)
    ectopic_rates: tuple[tuple[str, float], ...] = (("S", 0.06), ("V", 0.08), ("F", 0.015))  # per-beat probability of each AAMI class; the rest are N
    heart_rate_bpm: tuple[float, float] = (55.0, 95.0)  # per-patient resting rate drawn uniformly from this range
    shift: CohortShift = CohortShift()
    record_prefix: str = "sim"  # records are named f"{record_prefix}{i:03d}", one record per patient

    def __post_init__(self) -> None:
        """Reject specs that cannot be simulated, naming the offending field."""
        if not isinstance(self.n_patients, numbers.Integral) or isinstance(self.n_patients, bool) or self.n_patients < 1:
            raise ValueError(f"n_patients must be a positive integer, got {self.n_patients}")
        if not self.fs_hz > 0 or not math.isfinite(self.fs_hz):
            raise ValueError(f"fs_hz must be positive, got {self.fs_hz}")
        if not 5.0 <= self.duration_s <= 86400.0 * 7:
            raise ValueError(f"duration_s must be between 5 s (so every record holds beats) and 7 days, got {self.duration_s}")
        _check_leads(self.lead_names)
        _check_rates(self.ectopic_rates)
        low, high = self.heart_rate_bpm
        if not 30.0 <= low <= high <= 200.0:
            raise ValueError(f"heart_rate_bpm must satisfy 30 <= low <= high <= 200, got {self.heart_rate_bpm}")
        if not isinstance(self.shift, CohortShift):
            raise TypeError(f"shift must be a CohortShift, got {type(self.shift).__name__}")
        if not _RECORD_NAME.match(self.record_prefix):
            raise ValueError(f"record_prefix must be letters, digits, '_' or '-', got {self.record_prefix!r}")

    @property
    def n_samples(self) -> int:
        """Samples per record."""
        return round(self.duration_s * self.fs_hz)


def _check_leads(lead_names: tuple[str, ...]) -> None:
    """Lead names must be a non-empty sequence of distinct, non-blank strings."""
    if isinstance(lead_names, str) or not lead_names:
        raise ValueError(f"lead_names must be a non-empty tuple of names, got {lead_names!r}")
    if any(not isinstance(n, str) or not n.strip() or n != n.strip() for n in lead_names):
        raise ValueError(f"lead names must be non-blank strings without surrounding spaces, got {lead_names!r}")
    if len(set(lead_names)) != len(lead_names):
        raise ValueError(f"lead names must be distinct, got {lead_names!r}")


def _check_rates(ectopic_rates: tuple[tuple[str, float], ...]) -> None:
    """Ectopic rates: known classes, each once, in [0, 1], summing to at most 0.5 (no ectopic couplets)."""
    names = [name for name, _ in ectopic_rates]
    unknown = sorted(set(names) - set(ECTOPIC_CLASSES))
    if unknown:
        raise ValueError(f"unknown class {', '.join(unknown)} in ectopic_rates; allowed: {', '.join(ECTOPIC_CLASSES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a class appears twice in ectopic_rates: {names}")
    if any(not 0.0 <= rate <= 1.0 for _, rate in ectopic_rates):
        raise ValueError(f"ectopic rates must lie in [0, 1], got {ectopic_rates}")
    if sum(rate for _, rate in ectopic_rates) > 0.5:
        raise ValueError(
            f"ectopic rates sum to {sum(r for _, r in ectopic_rates):.3f} > 0.5; every ectopic beat is followed by a sinus beat"
        )
