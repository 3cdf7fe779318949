"""What a reader returns for one record: its labeled windows, or the reason it was skipped."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


class RecordError(Exception):
    """A record that cannot be used; the message names the record and the problem."""


class NoWindowsError(RecordError):
    """A record that was read but yields no window (no beat of the chosen classes, every beat at an edge, ...): it is
    skipped like any unusable record, while `dropped` (reason → count) and `warnings` still reach ingest's summary."""

    def __init__(self, message: str, dropped: Counter | None = None, warnings: list[str] | None = None) -> None:
        super().__init__(message)
        self.dropped = Counter(dropped or {})
        self.warnings = list(warnings or [])


def counts_text(counts: Counter) -> str:
    """Reason → count as `edge 3, nan_or_flat 2` for a message."""
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()) if n) or "nothing dropped"


@dataclass
class RecordWindows:
    """Labeled windows cut from one record, already filtered, resampled and in mV.

    windows: float32 [n, leads, T]; labels: class names [n]; sample_index: the window's
    anchor (beat annotation or crop start) in samples of the *original* record [n];
    columns: extra per-window metadata (e.g. RR intervals, symbol, strat_fold), each [n];
    dropped: reason → number of annotated windows left out (edges, NaN, flat, unknown symbol, ...);
    warnings: one-line messages worth showing the user.
    """

    record: str
    patient: str
    windows: np.ndarray
    labels: np.ndarray
    sample_index: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.windows.ndim != 3 or len(self.windows) != n or len(self.sample_index) != n:
            raise ValueError(
                f"{self.record}: windows {self.windows.shape}, labels {n}, "
                f"sample_index {len(self.sample_index)} disagree"
            )
        for name, column in self.columns.items():
            if len(column) != n:
                raise ValueError(f"{self.record}: column {name!r} has {len(column)} rows, expected {n}")

    def select(self, keep: np.ndarray) -> RecordWindows:
        """Return the windows where the boolean mask `keep` [n] is true."""
        return RecordWindows(
            record=self.record,
            patient=self.patient,
            windows=self.windows[keep],
            labels=self.labels[keep],
            sample_index=self.sample_index[keep],
            columns={name: column[keep] for name, column in self.columns.items()},
            dropped=Counter(self.dropped),
            warnings=list(self.warnings),
        )
