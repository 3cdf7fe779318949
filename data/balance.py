"""How many synthetic windows of each class to add: top the rare classes up toward the majority class."""
from __future__ import annotations

# Defaults of `ecg-tgdp augment`: every class up to the majority class's count, at most 5,000 synthetic windows per
# class (about 6 min of CPU sampling for 4 s windows; a 60,000-beat dataset's rare classes gain 5,000 each).
DEFAULT_TARGET_SHARE = 1.0
DEFAULT_MAX_PER_CLASS = 5000


def top_up_counts(real: dict[str, int], *, target_share: float = DEFAULT_TARGET_SHARE,
                  max_per_class: int | None = DEFAULT_MAX_PER_CLASS) -> dict[str, int]:
    """Synthetic windows per class that bring each class to `target_share` × the majority class's real count,
    never negative and at most `max_per_class` (None: no cap); e.g. N 150 · S 25 · V 25 → N 0 · S 125 · V 125."""
    if target_share <= 0:
        raise ValueError(f"target share must be positive, got {target_share}")
    goal = round(target_share * max(real.values(), default=0))
    counts = {name: max(goal - n, 0) for name, n in real.items()}
    if max_per_class is not None:
        counts = {name: min(n, max_per_class) for name, n in counts.items()}
    return counts
