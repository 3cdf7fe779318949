"""Tests for evaluation.generator_quality: off-beat excursions, rhythm regularity, the floor, and the criteria."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecg_tgdp.data.store import Cohort
from ecg_tgdp.evaluation import generator_quality as gq
from ecg_tgdp.models.classifier import ClassifierTraining

FS, SAMPLES, ANCHOR = 128.0, 512, 256


def beat_windows(n: int, label: int, rng: np.random.Generator) -> np.ndarray:
    """n 4 s windows [n, 1, 512]: QRS-like spikes at a regular rate through the anchor; S beats come 30% early
    (the rhythm continues from them), V beats are wide and large with a compensatory pause after."""
    t = np.arange(SAMPLES)
    windows = np.zeros((n, 1, SAMPLES))
    for i in range(n):
        rr = rng.uniform(0.75, 1.0) * FS
        before = rr * (0.7 if label == 1 else 1.0)
        after = rr * (1.4 if label == 2 else 1.0)
        beats = [ANCHOR - before - k * rr for k in range(3)] + [ANCHOR + after + k * rr for k in range(3)]
        sinus = rng.uniform(0.8, 1.6)  # this patient-moment's R amplitude
        width, height = (6.0, 1.6 * sinus) if label == 2 else (2.0, sinus)
        windows[i, 0] = height * np.exp(-0.5 * ((t - ANCHOR) / width) ** 2)
        for beat in beats:
            windows[i, 0] += sinus * np.exp(-0.5 * ((t - beat) / 2.0) ** 2)
        windows[i, 0] += 0.03 * rng.standard_normal(SAMPLES)
    return windows.astype(np.float32)


def toy_cohort(per_class_and_patient: int = 40, seed: int = 0) -> Cohort:
    rng = np.random.default_rng(seed)
    parts, rows = [], []
    splits = {f"p{k}": "train" for k in range(4)} | {"p4": "val", "p5": "test"}
    for patient, split in splits.items():
        for label in range(3):
            parts.append(beat_windows(per_class_and_patient, label, rng))
            rows += [{"patient": patient, "split": split, "label_index": label, "label": "NSV"[label]}
                     ] * per_class_and_patient
    info = {"name": "toy", "fs_hz": FS, "window_s": SAMPLES / FS, "anchor_s": ANCHOR / FS, "classes": ["N", "S", "V"],
            "leads": ["MLII"], "normalization": {"mean": [0.0], "std": [0.4]}}
    return Cohort(np.concatenate(parts), pd.DataFrame(rows), info)


@pytest.fixture
def quick_judge(monkeypatch):
    monkeypatch.setattr(gq, "JUDGE_TRAINING", ClassifierTraining(epochs=3, steps_per_epoch=20, batch_size=32))


def test_excursion_ignores_the_labeled_beat_and_finds_a_spike_elsewhere():
    windows = np.zeros((2, 1, SAMPLES), dtype=np.float32)
    windows[:, 0, ANCHOR] = 3.0  # the labeled beat itself
    windows[1, 0, 40] = -4.0  # a spike away from it
    np.testing.assert_allclose(gq.excursion(windows, ANCHOR, FS), [0.0, 4.0])


def test_rhythm_regularity_counts_beats_and_their_rr_spread():
    rng = np.random.default_rng(1)
    regular = beat_windows(20, 0, rng)
    counts, cv = gq.rhythm_regularity(regular, FS)
    assert np.median(counts) >= 4 and np.nanmedian(cv) < 0.05
    irregular = regular.copy()
    irregular[:, 0, 60:70] += 1.5  # an extra "beat" between two real ones
    assert np.nanmedian(gq.rhythm_regularity(irregular, FS)[1]) > 3 * np.nanmedian(cv)


def test_the_floor_is_indistinguishable_from_training_windows_and_spikes_fail_the_criteria(quick_judge):
    reference = gq.reference_from_cohort(toy_cohort(), 40, seed=0)
    assert len(reference.floor) == 120 and reference.judge is not None
    floor = gq.score_windows(reference.floor, reference)
    for name in ("N", "S", "V"):
        assert floor[name]["discriminator_auroc_train"] < 0.7  # same patients: the floor is near chance
        assert floor[name]["excursion_share"] <= 0.1
    spiky = gq.LabeledWindows(reference.floor.windows.copy(), reference.floor.labels)
    spiky.windows[:, 0, 20:23] += 6.0
    calm = gq.LabeledWindows(0.8 * reference.floor.windows, reference.floor.labels)  # no excursion above the real 99%
    scored = {"sde": gq.score_windows(spiky, reference), "ode": gq.score_windows(calm, reference)}
    assert all(scored["sde"][name]["excursion_share"] == 1.0 for name in ("N", "S", "V"))
    assert all(scored["sde"][name]["discriminator_auroc_train"] > 0.9 for name in ("N", "S", "V"))
    rules = gq.criteria(default="sde", deterministic="ode", default_unclipped="sde")
    rows = gq.check_criteria(floor, scored, rules, reference.classes)
    holds = {(row["criterion"], row["class"]): row["holds"] for row in rows}
    assert not holds[("excursion share ≤ 2%, default sampler unclipped", "N")]
    assert holds[("excursion share ≤ 2%, deterministic sampler unclipped", "N")]


def test_a_monitor_scores_only_classes_it_can_and_refuses_a_cohort_with_none(quick_judge):
    cohort = toy_cohort(per_class_and_patient=4)  # 4 held-out windows per class: too few for a discriminator
    reference = gq.reference_from_cohort(cohort, 0, held_out=("val",), judge=False)
    assert reference.judge is None and gq.scoreable_classes(reference) == []
    with pytest.raises(ValueError, match="needs 10 training and held-out windows"):
        gq.SampleQualityMonitor(reference, card=None)


def test_the_monitors_figures_tell_spiky_windows_from_the_floor_per_class():
    reference = gq.reference_from_cohort(toy_cohort(), 40, seed=0, judge=False)
    floor = gq.monitor_figures(reference.floor, reference, [0, 1, 2], seed=0)
    spiky = gq.LabeledWindows(reference.floor.windows.copy(), reference.floor.labels)
    spiky.windows[:, 0, 20:23] += 6.0
    figures = gq.monitor_figures(spiky, reference, [0, 2], seed=0)
    assert sorted(figures.auroc_train) == [0, 2] and sorted(floor.auroc_held_out) == [0, 1, 2]
    assert all(floor.auroc_train[k] < 0.7 and figures.auroc_train[k] > 0.9 for k in (0, 2))
    assert figures.over.all() and floor.over.mean() <= 0.1
    assert figures.rr_cv.shape == (len(spiky),)
    assert np.nanmedian(floor.rr_cv[reference.floor.labels == 0]) < 0.05  # N: regular; S and V: premature
