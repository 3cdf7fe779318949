"""The evaluation protocol's settings, importable without torch: the run config's [evaluation] table."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from ecg_tgdp.models.settings import (
    _STRICT,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    SAMPLER_NAMES,
    ClassifierTraining,
    _require,
)

BUILTIN_CLASSIFIER = "ecg-tgdp"  # evaluation.downstream's own classifier


@dataclass
class EvaluationSettings:
    """How the `sample` and `evaluate` stages judge every method (README: The evaluation protocol)."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    samples_per_class: int = 500  # synthetic windows per class, the same for every method
    sampler: str = DEFAULT_SAMPLER  # one of SAMPLER_NAMES
    sampling_steps: int = DEFAULT_STEPS
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # downstream classifier seeds per arm
    classifier_training: ClassifierTraining = field(default_factory=ClassifierTraining)  # its seed: `seeds`
    max_val_windows: int = 4000  # target val windows for the classifiers' early stopping (a seeded subset)
    classifier: str = BUILTIN_CLASSIFIER  # or "package.module:callable" (evaluation/downstream.py)
    transfer_scales: list[float] = field(default_factory=list)  # sweep: w at which guided methods are resampled
    budgets: list[int] = field(default_factory=list)  # sweep: labeled target train windows (class-proportional)
    bootstrap: int = 200  # resamples of the test patients
    memorization_percentile: float = 5.0

    def __post_init__(self) -> None:
        _require(self, {
            f"sampler must be one of {SAMPLER_NAMES}": self.sampler in SAMPLER_NAMES,
            "samples_per_class, sampling_steps, max_val_windows, bootstrap must be >= 1":
                min(self.samples_per_class, self.sampling_steps, self.max_val_windows, self.bootstrap) >= 1,
            "seeds must not be empty": len(self.seeds) > 0,
            "transfer_scales must be finite and >= 0": all(0 <= w < float("inf") for w in self.transfer_scales),
            "budgets must be >= 1": all(b >= 1 for b in self.budgets),
            "memorization_percentile must be in (0, 100)": 0 < self.memorization_percentile < 100,
        })

    def sampling(self) -> dict:
        """The settings that decide the synthetic windows (the sample stage's cache key)."""
        return {"samples_per_class": self.samples_per_class, "sampler": self.sampler,
                "sampling_steps": self.sampling_steps}

    def as_dict(self) -> dict:
        return asdict(self)
