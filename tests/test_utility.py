"""Downstream utility protocol: metric golden values, the patient bootstrap, the arms, and a real gain it can see."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.evaluation.classifier_inputs import WindowGeometry
from ecg_tgdp.evaluation.downstream import DownstreamClassifier, load_downstream
from ecg_tgdp.evaluation.utility import (
    build_arms,
    classification_metrics,
    patient_bootstrap,
    run_utility,
)
from ecg_tgdp.models.classifier import ClassifierInputs, ClassifierTraining
from ecg_tgdp.pipeline.cli import main
from tests.conftest import REPO

CLASSES = ["N", "S", "V"]
# Target: 14 short simulated patients, 5 of them train; the test keeps one train patient
# as the small labeled target and holds the other four back as a stand-in "synthetic" set.
COHORTS = [
    "source.simulation.n_patients=4",
    "source.simulation.duration_s=40",
    "target.simulation.n_patients=14",
    "target.simulation.duration_s=40",
    "target.split.train_patients=5",
    "workers=1",
]
# Sized so the gain is clear on every seed (per-seed gaps 0.034, 0.063, 0.052 macro-F1 with the
# rhythm-aware classifier, which reaches 0.9 from 16 windows of one simulated patient) while six
# classifiers train in a few seconds on one CPU thread.
TRAINING = ClassifierTraining(epochs=12, batch_size=32, lr=3e-3, patience=12, steps_per_epoch=8)


def normalized_windows(target):
    """An input preparation that keeps the normalized windows, so tests can find them again in an arm."""
    geometry = WindowGeometry.of(target.info)
    return lambda windows: ClassifierInputs(geometry.normalized(windows), np.zeros((len(windows), 0), np.float32))


def one_hot(indices, n: int = 3, confidence: float = 0.8) -> np.ndarray:
    """Probabilities [N, n] with `confidence` on the given class and the rest spread evenly."""
    probabilities = np.full((len(indices), n), (1 - confidence) / (n - 1))
    probabilities[np.arange(len(indices)), indices] = confidence
    return probabilities


def test_perfect_predictions_score_one_everywhere():
    y = np.array([0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(y, one_hot(y), CLASSES)
    assert set(metrics) == {"macro_f1", "balanced_accuracy", "macro_auroc"} | {
        f"{kind}_{name}" for kind in ("sensitivity", "ppv") for name in CLASSES}
    assert all(value == 1.0 for value in metrics.values())


def test_metrics_of_a_known_confusion_matrix():
    # rows true N, S, V; columns predicted: [[3, 1, 0], [1, 2, 0], [0, 1, 2]]
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 0, 2, 2, 1])
    metrics = classification_metrics(y, one_hot(predicted), CLASSES)
    assert metrics["sensitivity_N"] == pytest.approx(3 / 4) and metrics["ppv_N"] == pytest.approx(3 / 4)
    assert metrics["sensitivity_S"] == pytest.approx(2 / 3) and metrics["ppv_S"] == pytest.approx(2 / 4)
    assert metrics["sensitivity_V"] == pytest.approx(2 / 3) and metrics["ppv_V"] == pytest.approx(1.0)
    assert metrics["macro_f1"] == pytest.approx((3 / 4 + 4 / 7 + 4 / 5) / 3)
    assert metrics["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))


def test_auroc_golden_value_and_a_class_absent_from_the_labels():
    y = np.array([0, 0, 1, 1])
    p_normal = np.array([0.9, 0.4, 0.6, 0.1])  # 3 of 4 positive-negative pairs ranked right
    two = classification_metrics(y, np.stack([p_normal, 1 - p_normal], axis=1), ["N", "S"])
    assert two["macro_auroc"] == pytest.approx(3 / 4)
    three = classification_metrics(y, np.stack([p_normal, 1 - p_normal, np.zeros(4)], axis=1), CLASSES)
    assert three["macro_auroc"] == pytest.approx(3 / 4)  # V has no positives: left out, not NaN
    assert np.isnan(three["sensitivity_V"]) and np.isnan(three["ppv_V"])
    assert three["macro_f1"] == pytest.approx(two["macro_f1"])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # scikit-learn, when V is absent
@pytest.mark.parametrize("n_classes_present", [3, 2])
def test_metrics_agree_with_scikit_learn(n_classes_present):
    rng = np.random.default_rng(n_classes_present)
    y = rng.integers(n_classes_present, size=300)
    probabilities = np.round(rng.dirichlet([1, 1, 1], size=300) + 0.5 * np.eye(3)[y], 1)  # ties on purpose
    predicted, present = probabilities.argmax(axis=1), np.unique(y)
    metrics = classification_metrics(y, probabilities, CLASSES)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, predicted, labels=present, average="macro", zero_division=0))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert metrics["macro_auroc"] == pytest.approx(np.mean([roc_auc_score(y == k, probabilities[:, k]) for k in present]))
    sensitivity = recall_score(y, predicted, labels=present, average=None)
    ppv = precision_score(y, predicted, labels=present, average=None, zero_division=np.nan)
    for k in present:
        assert metrics[f"sensitivity_{CLASSES[k]}"] == pytest.approx(sensitivity[k])
        assert metrics[f"ppv_{CLASSES[k]}"] == pytest.approx(ppv[k], nan_ok=True)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match 3 labels × 3 classes"):
        classification_metrics(np.array([0, 1, 2]), np.ones((3, 2)) / 2, CLASSES)


def noisy_predictions(n_patients: int, seed: int, per_patient: int = 20):
    """Labels, 75%-right probabilities and patient ids of a simulated test set."""
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=n_patients * per_patient)
    predicted = np.where(rng.random(len(y)) < 0.75, y, rng.integers(3, size=len(y)))
    return y, one_hot(predicted, confidence=0.6), np.repeat([f"p{k}" for k in range(n_patients)], per_patient)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_patients():
    widths = {}
    for n_patients in (6, 60):
        y, probabilities, patients = noisy_predictions(n_patients, seed=n_patients)
        point = classification_metrics(y, probabilities, CLASSES)
        intervals = patient_bootstrap(y, probabilities, patients, CLASSES, n_boot=200, seed=0)
        assert set(intervals) == set(point)
        for metric in ("macro_f1", "balanced_accuracy", "macro_auroc", "sensitivity_S", "ppv_V"):
            low, high = intervals[metric]
            assert low <= point[metric] <= high, metric
        widths[n_patients] = intervals["macro_f1"][1] - intervals["macro_f1"][0]
    assert widths[60] < widths[6] / 2
    assert patient_bootstrap(y, probabilities, patients, CLASSES, seed=3) == patient_bootstrap(
        y, probabilities, patients, CLASSES, seed=3)


def test_bootstrap_resamples_whole_patients():
    # ten patients with four windows per class; patient 0 is wrong on every window
    y = np.tile(np.repeat([0, 1, 2], 4), 10)
    predicted = y.copy()
    predicted[:12] = (y[:12] + 1) % 3
    patients = np.repeat([f"p{k}" for k in range(10)], 12)
    assert classification_metrics(y, one_hot(predicted), CLASSES)["balanced_accuracy"] == pytest.approx(0.9)
    low, high = patient_bootstrap(y, one_hot(predicted), patients, CLASSES, n_boot=400, seed=0)["balanced_accuracy"]
    # A third of the replicates (0.9^10) draw no patient 0 and are perfect; resampling single
    # windows would leave out all twelve of its windows with probability 0.9^120 ≈ 3e-6.
    assert high == 1.0
    assert low <= 0.8


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """Tiny simulated source and target cohorts; 4 of the 5 target train patients relabeled "heldback", and of the
    fifth only 12 N, 2 S and 2 V windows kept for training (the rest "unused"): a small labeled target."""
    run_dir = tmp_path_factory.mktemp("utility") / "run"
    args = ["ingest", str(REPO / "configs/quickstart.toml"), "--run-dir", str(run_dir)]
    for override in COHORTS:
        args += ["--set", override]
    assert main(args) == 0
    source, target = read_cohort(run_dir / "cohorts/source"), read_cohort(run_dir / "cohorts/target", mmap=False)
    train_patients = sorted(target.meta.loc[target.meta["split"] == "train", "patient"].unique())
    meta = target.meta.copy()
    meta.loc[meta["patient"].isin(train_patients[1:]), "split"] = "heldback"
    kept = [meta.index[(meta["patient"] == train_patients[0]) & (meta["label"] == label)][:n]
            for label, n in (("N", 12), ("S", 2), ("V", 2))]
    meta.loc[(meta["split"] == "train") & ~meta.index.isin(np.concatenate(kept)), "split"] = "unused"
    return source, replace(target, meta=meta)


def test_build_arms_sizes_labels_scale_and_no_test_window_in_training(cohorts):
    source, target = cohorts
    rng = np.random.default_rng(0)
    shape = target.windows.shape[1:]
    synthetic = {
        "tgdp": (rng.normal(size=(10, *shape)).astype(np.float32), ["V"] * 6 + ["S"] * 4),
        "finetune": (rng.normal(size=(7, *shape)).astype(np.float32), ["N"] * 7),
    }
    arms = {arm.name: arm for arm in build_arms(source, target, synthetic, normalized_windows(target))}
    n_target, n_source = len(target.split("train").meta), len(source.split("train").meta)
    assert {name: len(arm.labels) for name, arm in arms.items()} == {
        "target_real": n_target,
        "target_real+synthetic:tgdp": n_target + 10,
        "target_real+synthetic:finetune": n_target + 7,
        "synthetic_only:tgdp": 10,
        "synthetic_only:finetune": 7,
        "source_real+target_real": n_source + n_target,
        "source_real": n_source,
    }
    assert arms["target_real+synthetic:tgdp"].parts == ("target_real", "synthetic:tgdp")
    assert arms["synthetic_only:tgdp"].labels.tolist() == [2] * 6 + [1] * 4  # by name: V → 2, S → 1
    np.testing.assert_allclose(arms["synthetic_only:tgdp"].inputs.signal, target.normalized(synthetic["tgdp"][0]),
                               rtol=1e-6)
    np.testing.assert_allclose(arms["target_real"].inputs.signal, target.normalized(target.split("train").windows),
                               rtol=1e-6)
    assert all(arm.inputs.signal.dtype == np.float32 and len(arm.inputs) == len(arm.labels) for arm in arms.values())

    held_out = target.meta.loc[target.meta["split"].isin(["val", "test"]), "patient"]
    assert not set(held_out) & set(target.meta.loc[target.meta["split"] == "train", "patient"])
    evaluation = {window.tobytes() for split in ("val", "test") for window in target.split(split).normalized()}
    trained_on = {window.tobytes() for arm in arms.values() for window in arm.inputs.signal}
    assert len(evaluation) == len(target.meta[target.meta["split"].isin(["val", "test"])])
    assert not evaluation & trained_on


def test_build_arms_rejects_labels_that_are_not_target_classes(cohorts):
    source, target = cohorts
    with pytest.raises(ValueError, match=r"synthetic tgdp: labels \['F'\] are not among the target classes"):
        build_arms(source, target, {"tgdp": (np.zeros((2, *target.windows.shape[1:]), np.float32), ["N", "F"])},
                   normalized_windows(target))


@pytest.fixture(scope="module")
def heldback_result(cohorts):
    """target_real vs target_real plus four held-back real target patients passed as a synthetic method."""
    source, target = cohorts
    heldback = target.split("heldback")
    downstream = DownstreamClassifier(WindowGeometry.of(target.info), len(target.classes), TRAINING)
    arms = build_arms(source, target, {"heldback": (heldback.windows, heldback.meta["label"])}, downstream.prepare)
    arms = [arm for arm in arms if arm.name in ("target_real", "target_real+synthetic:heldback")]
    return run_utility(arms, target.split("val"), target.split("test"), target.classes, downstream, seeds=(0, 1, 2),
                       progress=False, n_boot=50)


def test_protocol_sees_the_gain_of_more_real_target_patients(heldback_result):
    per_seed = {arm: [values["macro_f1"] for values in by_seed.values()] for arm, by_seed in heldback_result.per_seed.items()}
    baseline, more = np.array(per_seed["target_real"]), np.array(per_seed["target_real+synthetic:heldback"])
    assert (more > baseline).all(), per_seed  # on every seed, not only on average
    table = heldback_result.table()
    assert table.loc["target_real+synthetic:heldback", "macro_f1"] > table.loc["target_real", "macro_f1"] + 0.03


def test_result_table_and_json(heldback_result):
    table = heldback_result.table()
    assert list(table.index) == ["target_real", "target_real+synthetic:heldback"]
    for metric in ("macro_f1", "balanced_accuracy", "macro_auroc", "sensitivity_S", "ppv_V"):
        row = table.loc["target_real"]
        assert row[f"{metric}_seed_low"] <= row[metric] <= row[f"{metric}_seed_high"]
        assert row[f"{metric}_boot_low"] <= row[f"{metric}_boot_high"]
    payload = json.loads(json.dumps(heldback_result.to_json(), allow_nan=False))
    assert set(payload["per_seed"]["target_real"]) == {"0", "1", "2"}
    assert payload["train_sizes"]["target_real"] == dict(zip(CLASSES, [12, 2, 2]))


def _small_conv(leads, num_classes):
    """A user's own torch classifier factory, named as 'tests.test_utility:_small_conv'."""
    from torch import nn

    return nn.Sequential(nn.Conv1d(leads, 4, 9, stride=4), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


@pytest.mark.parametrize("spec", ["sklearn.linear_model:LogisticRegression", "tests.test_utility:_small_conv"])
def test_a_users_own_classifier_runs_every_arm_and_seed(cohorts, spec):
    source, target = cohorts
    downstream = load_downstream(spec, WindowGeometry.of(target.info), len(target.classes),
                                 ClassifierTraining(epochs=1, batch_size=16, steps_per_epoch=2))
    assert downstream.name == spec
    arms = [arm for arm in build_arms(source, target, {}, downstream.prepare) if arm.name == "target_real"]
    result = run_utility(arms, target.split("val"), target.split("test"), target.classes, downstream, seeds=(0, 1),
                         progress=False, n_boot=5)
    assert set(result.per_seed["target_real"]) == {0, 1} and result.to_json()["classifier"] == spec
    assert 0 <= result.table().loc["target_real", "macro_f1"] <= 1


@pytest.mark.parametrize("spec, message", [
    ("sklearn.linear_model", "expected 'ecg-tgdp' or 'package.module:callable'"),
    ("no_such_package.module:thing", "cannot import no_such_package.module"),
    ("sklearn.linear_model:NoSuchModel", "has no callable 'NoSuchModel'"),
    ("builtins:dict", "returned a dict; it must return a scikit-learn estimator"),
])
def test_a_classifier_spec_that_cannot_be_used_is_named(cohorts, spec, message):
    _, target = cohorts
    with pytest.raises((ValueError, TypeError), match=message):
        load_downstream(spec, WindowGeometry.of(target.info), 3, TRAINING)
