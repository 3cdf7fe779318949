"""Exponential moving average of a model's weights, the weights a diffusion model is sampled from."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of `model` whose parameters follow w̄ ← d·w̄ + (1 − d)·w after each optimizer step.

    The decay warms up as d_n = min(decay, (1 + n) / (10 + n)) with n the number of earlier
    updates (tf.train.ExponentialMovingAverage with `num_updates`; the same rule as
    diffusers' EMAModel), so the average is not stuck near the random initialization while
    n ≪ 1 / (1 − decay). Buffers (e.g. normalization statistics) are copied, not averaged.
    The average lives in `self.module` (eval mode, no gradients) on the model's device.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._averaged = {name for name, _ in model.named_parameters(remove_duplicate=False)}

    def current_decay(self) -> float:
        """The decay the next update applies (warm-up rule above)."""
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward `model`'s current weights; call once per optimizer step."""
        decay = self.current_decay()
        source = model.state_dict()
        for name, average in self.module.state_dict().items():
            if name in self._averaged and average.is_floating_point():
                average.lerp_(source[name], 1.0 - decay)
            else:
                average.copy_(source[name])
        self.num_updates += 1

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into `model` (same architecture)."""
        model.load_state_dict(self.module.state_dict())

    def state_dict(self) -> dict:
        """{"decay", "num_updates", "weights"}; "weights" loads into the model with load_state_dict."""
        return {"decay": self.decay, "num_updates": self.num_updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (weights are copied onto this EMA's device)."""
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["weights"])
