"""Fidelity statistics per class (DESIGN §7): synthetic windows against held-out real target windows.

Per class, and over all windows pooled ("all", which also reflects any difference in
class proportions): RBF MMD on the windows; Fréchet distance and precision/recall/
density/coverage in the feature space of one frozen encoder trained on real data; the
Welch PSD distance; Wasserstein distances of clinical measurements; and the cross-
validated AUROC of a real-vs-synthetic discriminator.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from evaluation.clinical import MEASUREMENTS, compare_measurements
from evaluation.discriminator import discriminator_auroc
from evaluation.distances import frechet_distance, mmd_rbf, prdc, welch_psd_distance
from models.classifier import ClassifierTraining, ECGClassifier, train_classifier

ENCODER_METRICS = ("frechet", "precision", "recall", "density", "coverage")
METRICS = (
    "n_real", "n_fake", "mmd", *ENCODER_METRICS, "psd_l1", *(f"wasserstein_{name}" for name in MEASUREMENTS), "discriminator_auroc",
)


def train_encoder(
    windows: np.ndarray,
    labels: np.ndarray,
    val_windows: np.ndarray,
    val_labels: np.ndarray,
    seed: int,
    *,
    num_classes: int,
    settings: ClassifierTraining | None = None,
    device: torch.device | str = "cpu",
) -> ECGClassifier:
    """The frozen feature encoder of the fidelity statistics: the project's classifier trained on real windows.

    Windows [N, leads, T] are passed to the network as given (normalized, like every
    classifier input); labels are class indices. The returned model is in eval mode
    with gradients off; its `.features` are the embedding. `seed` replaces `settings.seed`.
    """
    settings = replace(settings or ClassifierTraining(), seed=seed)
    with torch.random.fork_rng(devices=[]):  # seeded initialization without moving the caller's global stream
        torch.manual_seed(seed)
        model = ECGClassifier(leads=np.asarray(windows).shape[1], num_classes=num_classes)
    model = train_classifier(model, windows, labels, settings, val_x=val_windows, val_y=val_labels, device=device)
    return model.requires_grad_(False).eval()


@torch.no_grad()
def encoder_features(encoder: ECGClassifier, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Encoder embeddings [N, width·4] of windows [N, leads, T], on the encoder's device."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [
        encoder.features(torch.as_tensor(np.asarray(windows[start : start + batch_size]), dtype=torch.float32, device=device)).cpu().numpy()
        for start in range(0, len(windows), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


def fidelity_per_class(
    real: np.ndarray,
    real_labels: np.ndarray,
    fake: np.ndarray,
    fake_labels: np.ndarray,
    classes: Sequence[str],
    fs_hz: float,
    encoder: ECGClassifier | None = None,
    seed: int = 0,
    *,
    encoder_input: Callable[[np.ndarray], np.ndarray] | None = None,
    real_features: np.ndarray | None = None,
    min_windows: int = 10,
) -> dict[str, dict[str, float]]:
    """{class name or "all": {metric: value}} for every name in METRICS.

    real, fake: windows [N, leads, T] in mV (the clinical measurements need mV); labels
    are indices into `classes`. The encoder sees `encoder_input(windows)`, e.g. a cohort's
    `.normalized`, or the windows as given when None; without an encoder the
    ENCODER_METRICS are NaN. `real_features`, the encoder's features of `real`, saves
    recomputing them when several fake sets are scored against the same real windows. A
    class with fewer than `min_windows` windows on either side (PRDC needs more than k = 5)
    gets NaN metrics and a warning.
    """
    real, fake = np.asarray(real), np.asarray(fake)
    real_labels, fake_labels = _checked_labels(real_labels, len(real), classes), _checked_labels(fake_labels, len(fake), classes)
    if encoder is None:
        real_features = fake_features = None
    else:
        prepare = encoder_input or np.asarray
        if real_features is None:
            real_features = encoder_features(encoder, prepare(real))
        fake_features = encoder_features(encoder, prepare(fake))
    groups = {name: (real_labels == k, fake_labels == k) for k, name in enumerate(classes)}
    groups["all"] = (np.ones(len(real), dtype=bool), np.ones(len(fake), dtype=bool))
    results = {}
    for name, (in_real, in_fake) in groups.items():
        n_real, n_fake = int(in_real.sum()), int(in_fake.sum())
        row = dict.fromkeys(METRICS, float("nan")) | {"n_real": float(n_real), "n_fake": float(n_fake)}
        if min(n_real, n_fake) < min_windows:
            warnings.warn(f"fidelity: class {name!r} has {n_real} real and {n_fake} synthetic windows "
                          f"(fewer than {min_windows} on a side); its metrics are NaN", stacklevel=2)
        else:
            features = None if real_features is None else (real_features[in_real], fake_features[in_fake])
            row |= _class_metrics(real[in_real], fake[in_fake], features, fs_hz, seed)
        results[name] = row
    return results


def _class_metrics(
    real: np.ndarray, fake: np.ndarray, features: tuple[np.ndarray, np.ndarray] | None, fs_hz: float, seed: int
) -> dict[str, float]:
    """Every metric of METRICS but the counts, for one group of real and fake windows."""
    out = {"mmd": mmd_rbf(real, fake, seed=seed), "psd_l1": welch_psd_distance(real, fake, fs_hz)}
    if features is not None:
        out["frechet"] = frechet_distance(*features)
        out |= prdc(*features, k=5, seed=seed)
    out |= {f"wasserstein_{name}": value for name, value in compare_measurements(real, fake, fs_hz, seed=seed).items()}
    out["discriminator_auroc"] = discriminator_auroc(real, fake, seed)
    return out


def _checked_labels(labels: np.ndarray, count: int, classes: Sequence[str]) -> np.ndarray:
    """Labels as an integer array [count] of indices into `classes`; a wrong length or index is an error."""
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"fidelity: labels must be {count} class indices, got {labels.dtype} array of shape {labels.shape}")
    if count and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"fidelity: label indices {labels.min()}..{labels.max()} outside the {len(classes)} classes {list(classes)}")
    return labels
