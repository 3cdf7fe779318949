"""Initial weights that come from a seed, not from whatever state the global generator is in."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

Built = TypeVar("Built")


def seeded(build: Callable[[], Built], seed: int) -> Built:
    """`build()` (a module constructor: its initializations draw from the global CPU generator) with that generator
    seeded by `seed`, then restored, so the caller's random stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
