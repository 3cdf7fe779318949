"""Patient-level splits."""
from __future__ import annotations

import numpy as np
import pytest

from ecg_tgdp.data.splits import labeled_budget, split_by_fold, split_patients


def _cohort(n_patients=20, seed=0):
    rng = np.random.default_rng(seed)
    patients, labels = [], []
    for p in range(n_patients):
        n = rng.integers(50, 100)
        rare = "S" if p % 4 == 0 else "N"  # the rare class sits in a quarter of the patients
        patients += [f"p{p}"] * n
        labels += list(rng.choice(["N", "V", rare], size=n, p=[0.8, 0.1, 0.1]))
    return patients, labels


def test_every_patient_in_exactly_one_split_with_the_rare_class_everywhere():
    patients, labels = _cohort()
    assignment = split_patients(patients, labels, fractions=(0.6, 0.2, 0.2), seed=1)
    assert set(assignment) == set(patients)
    assert sorted(assignment.values()).count("train") == 12
    splits_with_s = {assignment[p] for p, label in zip(patients, labels) if label == "S"}
    assert splits_with_s == {"train", "val", "test"}


def test_same_seed_same_split_and_other_seed_differs():
    patients, labels = _cohort()
    first = split_patients(patients, labels, fractions=(0.6, 0.2, 0.2), seed=3)
    assert first == split_patients(patients, labels, fractions=(0.6, 0.2, 0.2), seed=3)
    assert first != split_patients(patients, labels, fractions=(0.6, 0.2, 0.2), seed=4)


def test_fixed_number_of_train_patients_for_small_budgets():
    patients, labels = _cohort(10)
    assignment = split_patients(patients, labels, fractions=(0.0, 0.5, 0.5), seed=0, n_train_patients=3)
    values = list(assignment.values())
    assert (values.count("train"), values.count("val"), values.count("test")) == (3, 4, 3) or (
        values.count("train"), values.count("val"), values.count("test")) == (3, 3, 4)


def test_too_few_patients_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 patients"):
        split_patients(["a", "b"], ["N", "N"], fractions=(0.7, 0.15, 0.15), seed=0)
    with pytest.raises(ValueError, match="train_patients=5 leaves no patients"):
        split_patients(list("abcde"), ["N"] * 5, fractions=(0.7, 0.15, 0.15), seed=0, n_train_patients=5)


def test_a_zero_fraction_leaves_that_split_empty():
    patients, labels = _cohort(10)
    no_test = split_patients(patients, labels, fractions=(0.8, 0.2, 0.0), seed=0)
    assert sorted(set(no_test.values())) == ["train", "val"] and list(no_test.values()).count("val") == 2
    assert set(split_patients(patients, labels, fractions=(0.0, 0.0, 1.0), seed=0).values()) == {"test"}


def test_folds_map_to_splits_and_unassigned_folds_fail():
    assert split_by_fold([1, 9, 10], {"train": [1], "val": [9], "test": [10]}) == ["train", "val", "test"]
    with pytest.raises(ValueError, match=r"strat_fold \[7\]"):
        split_by_fold([7], {"train": [1], "val": [9], "test": [10]})


def test_labeled_budget_keeps_class_proportions_and_every_class():
    labels = np.array(["N"] * 900 + ["V"] * 90 + ["S"] * 10)
    keep = labeled_budget(labels, 50, seed=0)
    kept = dict(zip(*np.unique(labels[keep], return_counts=True)))
    assert keep.sum() == 50 and kept == {"N": 45, "V": 4, "S": 1}
    assert not np.array_equal(keep, labeled_budget(labels, 50, seed=1))
    assert labeled_budget(labels, 5000, seed=0).all()
