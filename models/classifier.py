"""A small 1D CNN classifier of ECG windows and its class-balanced training loop.

One fixed architecture serves every place the project needs a classifier of real
windows: the conditional-generation check of the source model, the downstream utility
protocol (DESIGN §7) and the frozen feature encoder of the fidelity statistics.
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


class ECGClassifier(nn.Module):
    """Conv1d → BatchNorm → ReLU stages with stride-2 pooling, global average pooling, linear head.

    forward(x [B, leads, T]) -> logits [B, classes]; `features(x)` -> [B, width * 4].
    """

    def __init__(self, leads: int, num_classes: int, width: int = 32, dropout: float = 0.2):
        super().__init__()
        channels = [leads, width, width * 2, width * 4, width * 4]
        stages = []
        for c_in, c_out in itertools.pairwise(channels):
            stages += [nn.Conv1d(c_in, c_out, 7, padding=3, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(2, ceil_mode=True)]
        self.body = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class ClassifierTraining:
    """How the classifier is trained: class-balanced batches, early stopping on validation macro-F1."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5
    steps_per_epoch: int | None = None  # default: one pass over the training windows
    seed: int = 0


def train_classifier(
    model: ECGClassifier,
    x: np.ndarray,
    y: np.ndarray,
    settings: ClassifierTraining,
    *,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> ECGClassifier:
    """Train with class-balanced sampling; keep the weights of the best validation macro-F1 epoch."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # dropout
    model.to(device)
    x_t, y_t = torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y), dtype=torch.long)
    weights = 1.0 / torch.bincount(y_t).clamp(min=1).float()[y_t]  # equal probability per class
    steps = settings.steps_per_epoch or max(1, len(y_t) // settings.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    best_score, best_state, waited = -np.inf, copy.deepcopy(model.state_dict()), 0
    for _ in range(settings.epochs):
        model.train()
        for _ in range(steps):
            rows = torch.multinomial(weights, settings.batch_size, replacement=True, generator=generator)
            loss = F.cross_entropy(model(x_t[rows].to(device)), y_t[rows].to(device))
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
def predict(model: nn.Module, x: np.ndarray, *, device: torch.device | str = "cpu", batch_size: int = 1024) -> np.ndarray:
    """Class probabilities [N, classes] of windows x [N, leads, T]."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        batch = torch.as_tensor(np.asarray(x[start : start + batch_size]), dtype=torch.float32, device=device)
        out.append(torch.softmax(model(batch), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
