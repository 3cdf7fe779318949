"""Fidelity statistics per class (README: The evaluation protocol): synthetic windows against held-out real target windows.

Per class, and over all windows pooled ("all", which also reflects any difference in
class proportions): RBF MMD on the windows; Fréchet distance and precision/recall/
density/coverage in the feature space of one frozen encoder trained on real data; the
Welch PSD distance; Wasserstein distances of clinical measurements and of the rhythm
around the anchor beat (log of its preceding over its following RR interval, detected in
the window by `data.rhythm`); and the cross-validated AUROC of a real-vs-synthetic
discriminator.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from scipy import stats

from ecg_tgdp.evaluation.clinical import MEASUREMENTS, compare_measurements
from ecg_tgdp.evaluation.discriminator import discriminator_auroc
from ecg_tgdp.evaluation.distances import frechet_distance, mmd_rbf, prdc, welch_psd_distance
from ecg_tgdp.models.classifier import (
    ClassifierInputs,
    ClassifierTraining,
    ECGClassifier,
    classifier_for,
    embed,
    train_classifier,
)

ENCODER_METRICS = ("frechet", "precision", "recall", "density", "coverage")
METRICS = (
    "n_real", "n_fake", "mmd", *ENCODER_METRICS, "psd_l1", *(f"wasserstein_{name}" for name in MEASUREMENTS),
    "wasserstein_log_rr_ratio", "discriminator_auroc", "discriminator_auroc_full_band",
)


def train_encoder(
    inputs: ClassifierInputs,
    labels: np.ndarray,
    val_inputs: ClassifierInputs,
    val_labels: np.ndarray,
    seed: int,
    *,
    num_classes: int,
    settings: ClassifierTraining | None = None,
    device: torch.device | str = "cpu",
) -> ECGClassifier:
    """The frozen feature encoder of the fidelity statistics: the project's classifier trained on real windows.

    Inputs are prepared by `evaluation.classifier_inputs`; labels are class indices. The returned model is
    in eval mode with gradients off; `models.classifier.embed` gives its embedding. `seed` replaces
    `settings.seed`.
    """
    settings = replace(settings or ClassifierTraining(), seed=seed)
    with torch.random.fork_rng(devices=[]):  # seeded initialization without moving the caller's global stream
        torch.manual_seed(seed)
        model = classifier_for(inputs, num_classes)
    model = train_classifier(model, inputs, labels, settings, val_x=val_inputs, val_y=val_labels, device=device)
    return model.requires_grad_(False).eval()


def encoder_features(encoder: ECGClassifier, inputs: ClassifierInputs) -> np.ndarray:
    """Encoder embeddings [N, embedding] of prepared inputs, on the encoder's device."""
    return embed(encoder, inputs)


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
    encoder_input: Callable[[np.ndarray], ClassifierInputs] | None = None,
    real_features: np.ndarray | None = None,
    rhythm: tuple[np.ndarray, np.ndarray] | None = None,
    anchor: int | None = None,
    band_hz: tuple[float, float] | None = None,
    min_windows: int = 10,
) -> dict[str, dict[str, float]]:
    """{class name or "all": {metric: value}} for every name in METRICS.

    real, fake: windows [N, leads, T] in mV (the clinical measurements need mV); labels
    are indices into `classes`. The encoder sees `encoder_input(windows)` (the evaluation's
    `classifier_inputs`); without an encoder the ENCODER_METRICS are NaN. `real_features`,
    the encoder's features of `real`, saves recomputing them when several fake sets are
    scored against the same real windows. `rhythm` holds the anchor beats' log RR ratios
    (`data.rhythm.BeatContext.log_rr_ratio`) of real and fake windows; without it (record
    crops) the rhythm distance is NaN. `anchor` is the anchor beat's sample (default the centre). `band_hz`, the pass
    band the real windows were filtered with, limits the discriminator's spectrum to it (`discriminator_auroc`; the
    full-band score is kept as discriminator_auroc_full_band). A class with fewer than `min_windows` windows on
    either side (PRDC needs more than k = 5) gets NaN metrics and a warning.
    """
    real, fake = np.asarray(real), np.asarray(fake)
    real_labels, fake_labels = _checked_labels(real_labels, len(real), classes), _checked_labels(fake_labels, len(fake), classes)
    if encoder is None:
        real_features = fake_features = None
    else:
        if encoder_input is None:
            raise ValueError("fidelity: an encoder needs encoder_input, the preparation of its inputs")
        if real_features is None:
            real_features = encoder_features(encoder, encoder_input(real))
        fake_features = encoder_features(encoder, encoder_input(fake))
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
            row |= _class_metrics(real[in_real], fake[in_fake], features, fs_hz, seed, anchor, band_hz)
            if rhythm is not None:
                row["wasserstein_log_rr_ratio"] = rhythm_distance(rhythm[0][in_real], rhythm[1][in_fake])
        results[name] = row
    return results


def _class_metrics(
    real: np.ndarray, fake: np.ndarray, features: tuple[np.ndarray, np.ndarray] | None, fs_hz: float, seed: int,
    anchor: int | None, band_hz: tuple[float, float] | None,
) -> dict[str, float]:
    """Every metric of METRICS but the counts, for one group of real and fake windows."""
    out = {"mmd": mmd_rbf(real, fake, seed=seed), "psd_l1": welch_psd_distance(real, fake, fs_hz)}
    if features is not None:
        out["frechet"] = frechet_distance(*features)
        out |= prdc(*features, k=5, seed=seed)
    out |= {f"wasserstein_{name}": value for name, value in compare_measurements(real, fake, fs_hz, seed=seed, anchor=anchor).items()}
    out["discriminator_auroc_full_band"] = discriminator_auroc(real, fake, seed)
    out["discriminator_auroc"] = (out["discriminator_auroc_full_band"] if band_hz is None
                                  else discriminator_auroc(real, fake, seed, band=(fs_hz, band_hz[1])))
    return out


def rhythm_distance(real_log_rr_ratio: np.ndarray, fake_log_rr_ratio: np.ndarray, min_values: int = 5) -> float:
    """Wasserstein-1 distance between the finite log(RR before / RR after) values of real and fake anchor beats
    (NaN with fewer than `min_values` on a side): how well the synthetic beats keep their class's prematurity."""
    u = real_log_rr_ratio[np.isfinite(real_log_rr_ratio)]
    v = fake_log_rr_ratio[np.isfinite(fake_log_rr_ratio)]
    return float(stats.wasserstein_distance(u, v)) if min(len(u), len(v)) >= min_values else float("nan")


def _checked_labels(labels: np.ndarray, count: int, classes: Sequence[str]) -> np.ndarray:
    """Labels as an integer array [count] of indices into `classes`; a wrong length or index is an error."""
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"fidelity: labels must be {count} class indices, got {labels.dtype} array of shape {labels.shape}")
    if count and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"fidelity: label indices {labels.min()}..{labels.max()} outside the {len(classes)} classes {list(classes)}")
    return labels
