"""The project's downstream classifier of ECG windows and its class-balanced training loop.

One architecture serves every place the project needs a classifier of real windows: the
downstream utility protocol (README: The evaluation protocol), the conditional-generation check of the source model
and the frozen feature encoder of the fidelity statistics. Its input is prepared outside the
network (`evaluation.classifier_inputs`): for beat windows, the anchor beat, its neighbours'
median beat and their difference, plus RR features of the rhythm around the anchor; for record
crops, the normalized window. A conv body reads the signal channels, a small MLP the features,
and both meet in one embedding (`features`) before the linear head.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.nn import functional as F

from ecg_tgdp.models.settings import ClassifierTraining


@dataclass
class ClassifierInputs:
    """What the classifier reads per window: signal channels [N, C, S] and features [N, K] (K may be 0)."""

    signal: np.ndarray
    features: np.ndarray

    def __post_init__(self) -> None:
        if self.signal.ndim != 3 or self.features.ndim != 2 or len(self.signal) != len(self.features):
            raise ValueError(f"ClassifierInputs: signal [N, C, S] and features [N, K] disagree: "
                             f"{self.signal.shape}, {self.features.shape}")

    def __len__(self) -> int:
        return len(self.signal)

    def take(self, rows: np.ndarray | slice) -> ClassifierInputs:
        return ClassifierInputs(self.signal[rows], self.features[rows])

    @classmethod
    def concat(cls, parts: list[ClassifierInputs]) -> ClassifierInputs:
        return cls(np.concatenate([p.signal for p in parts]), np.concatenate([p.features for p in parts]))


class ECGClassifier(nn.Module):
    """Conv1d → BatchNorm → ReLU → max-pool stages, global average pooling, joined with an MLP of the features.

    forward(signal [B, C, S], features [B, K]) -> logits [B, classes]; `features_of(...)` -> the [B, embedding]
    vector both halves meet in (the fidelity encoder's feature space).
    """

    def __init__(self, in_channels: int, num_classes: int, num_features: int = 0, width: int = 16, depth: int = 3,
                 embedding: int = 64, dropout: float = 0.2):
        super().__init__()
        channels = [in_channels] + [width * 2 ** k for k in range(depth)]
        stages = []
        for c_in, c_out in itertools.pairwise(channels):
            stages += [nn.Conv1d(c_in, c_out, 5, padding=2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(),
                       nn.MaxPool1d(2, ceil_mode=True)]
        self.body = nn.Sequential(*stages)
        self.rhythm = nn.Sequential(nn.Linear(num_features, 32), nn.ReLU()) if num_features else None
        joined = channels[-1] + (32 if num_features else 0)
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(joined, embedding), nn.ReLU())
        self.head = nn.Linear(embedding, num_classes)

    def features_of(self, signal: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        h = self.body(signal).mean(dim=-1)
        if self.rhythm is not None:
            h = torch.cat([h, self.rhythm(features)], dim=1)
        return self.embed(h)

    def forward(self, signal: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.features_of(signal, features))


def classifier_for(inputs: ClassifierInputs, num_classes: int) -> ECGClassifier:
    """The project's classifier shaped for these inputs."""
    return ECGClassifier(inputs.signal.shape[1], num_classes, inputs.features.shape[1])


def train_classifier(
    model: nn.Module,
    x: ClassifierInputs,
    y: np.ndarray,
    settings: ClassifierTraining,
    *,
    val_x: ClassifierInputs | None = None,
    val_y: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Train `model(signal, features) -> logits` with class-balanced sampling; keep the best validation
    macro-F1 epoch's weights when validation windows are given."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # dropout
    model.to(device)
    signal, features = torch.as_tensor(x.signal, dtype=torch.float32), torch.as_tensor(x.features, dtype=torch.float32)
    y_t = torch.tensor(np.asarray(y), dtype=torch.long)  # a copy: y may be a read-only memory map
    weights = 1.0 / torch.bincount(y_t).clamp(min=1).float()[y_t]  # equal probability per class
    steps = settings.steps_per_epoch or max(1, len(y_t) // settings.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    best_score, best_state, waited = -np.inf, copy.deepcopy(model.state_dict()), 0
    low, high = 1 / (1 + settings.gain_jitter), 1 + settings.gain_jitter
    for _ in range(settings.epochs):
        model.train()
        for _ in range(steps):
            rows = torch.multinomial(weights, settings.batch_size, replacement=True, generator=generator)
            batch = signal[rows]
            gain = torch.empty(len(rows), 1, 1).uniform_(low, high, generator=generator)
            batch = batch * gain + settings.noise * torch.randn(batch.shape, generator=generator)
            loss = F.cross_entropy(model(batch.to(device), features[rows].to(device)), y_t[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if val_x is None:
            continue
        score = f1_score(val_y, predict(model, val_x, device=device).argmax(1), average="macro")
        if score > best_score:
            best_score, best_state, waited = score, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= settings.patience:
                break
    if val_x is not None:
        model.load_state_dict(best_state)
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: ClassifierInputs, *, device: torch.device | str = "cpu",
            batch_size: int = 4096) -> np.ndarray:
    """Class probabilities [N, classes] of prepared inputs."""
    model.eval()
    out = [torch.softmax(model(*_batch(x, start, batch_size, device)), dim=1).cpu().numpy()
           for start in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@torch.no_grad()
def embed(model: ECGClassifier, x: ClassifierInputs, *, batch_size: int = 4096) -> np.ndarray:
    """The classifier's embedding [N, embedding] of prepared inputs, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    out = [model.features_of(*_batch(x, start, batch_size, device)).cpu().numpy()
           for start in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64)


def _batch(x: ClassifierInputs, start: int, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    part = x.take(slice(start, start + size))
    return (torch.as_tensor(np.asarray(part.signal), dtype=torch.float32, device=device),
            torch.as_tensor(np.asarray(part.features), dtype=torch.float32, device=device))
