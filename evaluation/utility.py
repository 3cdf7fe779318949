"""Downstream utility (README: The evaluation protocol): one fixed classifier trained per arm, tested on held-out real target patients.

Arms differ only in their training windows: target real; target real + synthetic from
each method; synthetic only (train-synthetic-test-real); source real + target real;
source real. Every arm early-stops on the target "val" split and is tested on the target
"test" split, whose patients never appear in any training split.

Scale: every window (source, target, synthetic) is stored in mV and goes through the same
input preparation of the downstream classifier (`evaluation.downstream`): the project's
classifier reads each beat against its own window's rhythm and neighbouring beats
(`evaluation.classifier_inputs`), a user's classifier the windows normalized with the
target cohort's statistics (`ecg-tgdp ingest` fits them on the source train split and
writes the same numbers into both cohorts' cohort.json).

Reported: macro-F1, balanced accuracy, macro AUROC and per-class sensitivity and
positive predictive value (the AAMI way for S and V); per metric the mean over seeds
with a Student-t 95% interval, and a 95% percentile interval from resampling test
patients, computed on the seed-averaged probabilities.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from ecg_tgdp.data.store import Cohort
from ecg_tgdp.evaluation.downstream import DownstreamClassifier
from ecg_tgdp.evaluation.report import json_ready
from ecg_tgdp.models.classifier import ClassifierInputs


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Macro-F1, balanced accuracy, macro one-vs-rest AUROC, and sensitivity and PPV per class.

    y_true [N] class indices, probabilities [N, classes]. Classes absent from y_true are
    left out of every macro average (AUROC of a class is undefined without positives);
    their sensitivity is NaN, and a class never predicted has PPV NaN. The values equal
    scikit-learn's `f1_score(labels=present, average="macro", zero_division=0)`,
    `balanced_accuracy_score` and `roc_auc_score` per class (tests check this); they are
    computed from one confusion matrix and ranks because the patient bootstrap calls
    this hundreds of times per arm, where scikit-learn's input checks dominate.
    """
    y_true, probabilities = _check_predictions(y_true, probabilities, classes)
    n = len(classes)
    predicted = probabilities.argmax(axis=1)
    counts = np.bincount(y_true * n + predicted, minlength=n * n).reshape(n, n)  # rows: true, columns: predicted
    hits, support, called = np.diag(counts).astype(float), counts.sum(axis=1), counts.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity = np.where(support > 0, hits / support, np.nan)
        ppv = np.where(called > 0, hits / called, np.nan)
    present = np.flatnonzero(support)
    f1 = 2 * hits[present] / (support[present] + called[present])  # 2TP / (2TP + FP + FN)
    metrics = {
        "macro_f1": float(f1.mean()),
        "balanced_accuracy": float(sensitivity[present].mean()),
        "macro_auroc": _macro_auroc(y_true, probabilities, present),
    }
    for k, name in enumerate(classes):
        metrics[f"sensitivity_{name}"] = float(sensitivity[k])
        metrics[f"ppv_{name}"] = float(ppv[k])
    return metrics


def _check_predictions(y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y_true, probabilities = np.asarray(y_true, dtype=np.int64), np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), len(classes)):
        raise ValueError(f"probabilities {probabilities.shape} do not match {len(y_true)} labels × {len(classes)} classes")
    if len(y_true) == 0:
        raise ValueError("no predictions to score")
    if y_true.min() < 0 or y_true.max() >= len(classes):
        raise ValueError(f"labels must be class indices in [0, {len(classes)}), got {y_true.min()}..{y_true.max()}")
    return y_true, probabilities


def _macro_auroc(y_true: np.ndarray, probabilities: np.ndarray, present: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the classes that have both positives and negatives; NaN if none has.

    AUROC as the Mann-Whitney U statistic over ranks, ties counting one half (Hanley & McNeil 1982).
    """
    scores = []
    for k in present:
        positive = y_true == k
        n_pos, n_neg = positive.sum(), (~positive).sum()
        if n_neg:
            ranks = stats.rankdata(probabilities[:, k])
            scores.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(scores)) if scores else float("nan")


def patient_bootstrap(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    patients: Sequence[str],
    classes: Sequence[str],
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile interval of every `classification_metrics` value, resampling test patients.

    Windows of one patient are correlated, so the resampling unit is the patient (a
    cluster bootstrap): each replicate draws as many patients as there are, with
    replacement, and keeps all windows of each draw. Replicates where a metric is
    undefined (NaN) are left out of that metric's interval.
    """
    y_true, probabilities = _check_predictions(y_true, probabilities, classes)
    patients = np.asarray(patients)
    if len(patients) != len(y_true):
        raise ValueError(f"{len(patients)} patient ids for {len(y_true)} predictions")
    _, cluster = np.unique(patients, return_inverse=True)
    rows_of = [np.flatnonzero(cluster == c) for c in range(cluster.max() + 1)]
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(n_boot):
        rows = np.concatenate([rows_of[c] for c in rng.integers(len(rows_of), size=len(rows_of))])
        replicates.append(classification_metrics(y_true[rows], probabilities[rows], classes))
    table = pd.DataFrame(replicates)
    return {name: _percentile_interval(table[name].to_numpy()) for name in table.columns}


def _percentile_interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class Arm:
    """One training set of the utility protocol: prepared classifier inputs and target class indices [N]."""

    name: str
    inputs: ClassifierInputs
    labels: np.ndarray
    parts: tuple[str, ...] = ()  # what it is made of, e.g. ("target_real", "synthetic:tgdp")


def build_arms(
    source: Cohort, target: Cohort, synthetic: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    prepare: Callable[[np.ndarray], ClassifierInputs],
) -> list[Arm]:
    """The arms of README: The evaluation protocol from the source and target train splits and synthetic windows per method.

    synthetic: method → (windows [N, leads, T] in mV, class name per window), e.g. read from
    samples/<method>. Labels are mapped to the target's class indices by name; every part's
    windows (in mV) go through `prepare` once, the downstream classifier's input preparation.
    """
    target_train, source_train = target.split("train"), source.split("train")
    windows = {
        "target_real": (target_train.windows, target_train.meta["label"], "target train"),
        "source_real": (source_train.windows, source_train.meta["label"], "source train"),
    }
    for method, (x, labels) in synthetic.items():
        windows[f"synthetic:{method}"] = (x, labels, f"synthetic {method}")
    shapes = {name: np.asarray(x).shape[1:] for name, (x, _, _) in windows.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"training windows differ in [leads, T]: {shapes}")
    empty = [name for name, (x, _, _) in windows.items() if not len(x)]
    if empty:
        raise ValueError(f"no training windows in {empty}")
    labels = {name: class_indices(y, target.classes, where) for name, (_, y, where) in windows.items()}
    inputs = {name: prepare(np.asarray(x, dtype=np.float32)) for name, (x, _, _) in windows.items()}
    recipes = {"target_real": ("target_real",)}
    recipes |= {f"target_real+synthetic:{m}": ("target_real", f"synthetic:{m}") for m in synthetic}
    recipes |= {f"synthetic_only:{m}": (f"synthetic:{m}",) for m in synthetic}
    recipes |= {"source_real+target_real": ("source_real", "target_real"), "source_real": ("source_real",)}
    return [Arm(name, ClassifierInputs.concat([inputs[p] for p in recipe]),
                np.concatenate([labels[p] for p in recipe]), recipe) for name, recipe in recipes.items()]


def class_indices(labels: Sequence[str], classes: Sequence[str], where: str) -> np.ndarray:
    """Class names → indices into `classes`; a name that is not a class fails loudly."""
    labels = pd.Series(np.asarray(labels, dtype=str))
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"{where}: labels {unknown} are not among the target classes {list(classes)}")
    return labels.map({name: k for k, name in enumerate(classes)}).to_numpy(dtype=np.int64)


@dataclass
class UtilityResult:
    """Test metrics per arm and seed, seed-ensemble metrics and their patient-bootstrap intervals."""

    classes: list[str]
    seeds: tuple[int, ...]
    per_seed: dict[str, dict[int, dict[str, float]]]  # arm → seed → metric → value
    ensemble: dict[str, dict[str, float]]  # arm → metric on the seed-averaged probabilities
    bootstrap: dict[str, dict[str, tuple[float, float]]]  # arm → metric → 95% patient-bootstrap interval
    train_sizes: dict[str, dict[str, int]]  # arm → class → training windows
    classifier: str = "ecg-tgdp"  # the downstream classifier (`evaluation.downstream`)

    def table(self) -> pd.DataFrame:
        """One row per arm: for each metric the seed mean, its t-interval and the patient-bootstrap interval."""
        rows = {}
        for arm, by_seed in self.per_seed.items():
            row = {}
            for metric in by_seed[self.seeds[0]]:
                mean, low, high = seed_interval([by_seed[seed][metric] for seed in self.seeds])
                row.update({metric: mean, f"{metric}_seed_low": low, f"{metric}_seed_high": high})
                row[f"{metric}_boot_low"], row[f"{metric}_boot_high"] = self.bootstrap[arm][metric]
            rows[arm] = row
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("arm")

    def to_json(self) -> dict:
        """A JSON-ready dict (NaN → None) with the table, per-seed values, ensemble metrics and sizes."""
        return json_ready({
            "classes": self.classes,
            "classifier": self.classifier,
            "seeds": list(self.seeds),
            "seed_interval": "Student-t 95% over seeds",
            "bootstrap_interval": "95% percentile, test patients resampled, seed-averaged probabilities",
            "table": self.table().to_dict(orient="index"),
            "per_seed": {arm: {str(seed): values for seed, values in by_seed.items()} for arm, by_seed in self.per_seed.items()},
            "ensemble": self.ensemble,
            "bootstrap": {arm: {m: list(bounds) for m, bounds in by_metric.items()} for arm, by_metric in self.bootstrap.items()},
            "train_sizes": self.train_sizes,
        })


def seed_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): a Student-t 95% interval over the finite values; NaN bounds with fewer than two."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return float("nan"), float("nan"), float("nan")
    mean = float(finite.mean())
    if len(finite) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(finite) - 1) * finite.std(ddof=1) / np.sqrt(len(finite))
    return mean, float(mean - half), float(mean + half)


def run_utility(
    arms: Sequence[Arm],
    val: Cohort,
    test: Cohort,
    classes: Sequence[str],
    downstream: DownstreamClassifier,
    seeds: Sequence[int] = (0, 1, 2),
    progress: bool = True,
    *,
    n_boot: int = 200,
) -> UtilityResult:
    """Train the downstream classifier once per arm and seed, early-stopped on `val`, and score it on `test`.

    val, test: the target cohort's "val" and "test" splits (in mV), prepared like the arms with
    `downstream.prepare`. A seed fixes the weight initialization and the batch sampling. The
    patient bootstrap runs on the seed-averaged test probabilities, so its interval reflects
    which test patients were drawn, not training noise; the seed interval does that.
    """
    classes, seeds = list(classes), tuple(seeds)
    val_x, val_y = downstream.prepare(val.windows), class_indices(val.meta["label"], classes, "target val")
    test_x, test_y = downstream.prepare(test.windows), class_indices(test.meta["label"], classes, "target test")
    patients = test.meta["patient"].astype(str).to_numpy()
    per_seed, ensemble, bootstrap = {}, {}, {}
    bar = tqdm(total=len(arms) * len(seeds), desc="utility", unit="model", disable=not progress)
    for arm in arms:
        probabilities = []
        for seed in seeds:
            bar.set_postfix_str(f"{arm.name} seed {seed}")
            predict_proba = downstream.fit(arm.inputs, arm.labels, val_x, val_y, seed)
            probabilities.append(predict_proba(test_x))
            per_seed.setdefault(arm.name, {})[seed] = classification_metrics(test_y, probabilities[-1], classes)
            bar.update()
        mean_probabilities = np.mean(probabilities, axis=0)
        ensemble[arm.name] = classification_metrics(test_y, mean_probabilities, classes)
        bootstrap[arm.name] = patient_bootstrap(test_y, mean_probabilities, patients, classes, n_boot=n_boot, seed=0)
    bar.close()
    sizes = {arm.name: {name: int((arm.labels == k).sum()) for k, name in enumerate(classes)} for arm in arms}
    return UtilityResult(classes, seeds, per_seed, ensemble, bootstrap, sizes, downstream.name)
