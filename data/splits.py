"""Patient-level train/val/test splits: no patient's windows ever sit on both sides."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def split_patients(
    patients: Sequence[str],
    labels: Sequence[str],
    *,
    fractions: tuple[float, float, float],
    seed: int,
    n_train_patients: int | None = None,
    candidates: int = 256,
) -> dict[str, str]:
    """Assign each patient to train/val/test, balancing class shares across splits.

    Patients are shuffled with `seed`; among `candidates` seeded shuffles the one whose
    per-split class shares deviate least from `fractions` wins, so rare classes (S beats
    sit in few MIT-BIH records) land in every split when they can. `n_train_patients`
    fixes the train split to that many patients (a small target budget); the rest is
    shared between val and test in the ratio of their fractions.
    """
    counts = pd.crosstab(pd.Series(patients, name="patient"), pd.Series(labels, name="label"))
    names = counts.index.to_numpy()
    sizes = _split_sizes(len(names), fractions, n_train_patients)
    target = np.asarray(fractions if n_train_patients is None else sizes, dtype=float)
    rng = np.random.default_rng(seed)
    best_order, best_cost = None, np.inf
    for _ in range(candidates):
        order = rng.permutation(len(names))
        cost = _imbalance(counts.to_numpy()[order], sizes, target / target.sum())
        if cost < best_cost:
            best_order, best_cost = order, cost
    assignment = np.repeat(SPLITS, sizes)
    return {str(names[i]): str(split) for i, split in zip(best_order, assignment)}


def split_by_fold(folds: Sequence[int], fold_splits: dict[str, list[int]]) -> list[str]:
    """Map each window's stratification fold (PTB-XL `strat_fold`) to its split name."""
    by_fold = {fold: split for split, split_folds in fold_splits.items() for fold in split_folds}
    unassigned = sorted(set(folds) - set(by_fold))
    if unassigned:
        raise ValueError(f"strat_fold {unassigned} belongs to no split in {fold_splits}")
    return [by_fold[fold] for fold in folds]


def _split_sizes(n: int, fractions: tuple[float, float, float], n_train: int | None) -> list[int]:
    """Patients per split; every split with a positive fraction gets at least one patient."""
    needed = 3 if n_train is not None else sum(f > 0 for f in fractions)
    if n < needed:
        raise ValueError(f"a patient-level split into {fractions} needs at least {needed} patients, got {n}")
    if n_train is not None:
        if not 1 <= n_train <= n - 2:
            raise ValueError(f"train_patients={n_train} leaves no patients for val and test (of {n})")
        rest = n - n_train
        n_val = min(rest - 1, max(1, round(rest * fractions[1] / (fractions[1] + fractions[2]))))
        return [n_train, n_val, rest - n_val]
    total = sum(fractions)
    # a split with a positive fraction gets at least one patient; a zero fraction means no such split
    n_val = max(1, round(n * fractions[1] / total)) if fractions[1] > 0 else 0
    n_test = max(1, round(n * fractions[2] / total)) if fractions[2] > 0 else 0
    return [n - n_val - n_test, n_val, n_test]


def _imbalance(class_counts: np.ndarray, sizes: list[int], target: np.ndarray) -> float:
    """Sum over splits and classes of |class share in split − target share|; missing classes cost extra."""
    totals = class_counts.sum(axis=0).clip(min=1)
    bounds = np.cumsum([0, *sizes])
    cost = 0.0
    for k in range(len(SPLITS)):
        share = class_counts[bounds[k] : bounds[k + 1]].sum(axis=0) / totals
        cost += np.abs(share - target[k]).sum() + (share == 0).sum()
    return cost


def labeled_budget(labels: Sequence[str], budget: int, seed: int) -> np.ndarray:
    """Boolean mask [n] keeping `budget` windows in the class proportions of `labels` (at least one of
    each class that has any), drawn with `seed`: a small labeled budget inside the train patients."""
    labels = np.asarray(labels)
    if budget >= len(labels):
        return np.ones(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(budget * counts / counts.sum())).astype(int)
    while quota.sum() > budget:  # the at-least-one floor overshot: take from the largest class
        quota[quota.argmax()] -= 1
    remainder = budget - quota.sum()
    quota[np.argsort(-counts)[:remainder]] += 1
    keep = np.zeros(len(labels), dtype=bool)
    for name, n in zip(classes, np.minimum(quota, counts)):
        keep[rng.choice(np.flatnonzero(labels == name), size=n, replace=False)] = True
    return keep
