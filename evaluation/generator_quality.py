"""How good a source generator's windows are, read against the floor that real windows of other patients set.

A generator of the training patients' windows cannot be told from held-out patients' windows better
than the training patients' own real windows can: those real windows against the held-out ones are the
**floor** every figure here is read against. For each class, a set of windows (the floor's, or a
sampler's) is scored against real windows of held-out patients of the source cohort:

- the fidelity statistics of `evaluation.fidelity` (discriminator AUROC, Fréchet distance and
  precision/recall/density/coverage in a frozen encoder, PSD distance, rhythm W1, ...);
- `discriminator_auroc_train`: the same discriminator (its spectrum read within the windows' pass band, as
  `discriminator_auroc` is; `discriminator_auroc_full_band` reads it up to Nyquist, see
  `evaluation.discriminator`) against other windows of the training patients,
  the distribution the generator learned; there the floor is near 0.5, so it shows a generator's own
  artifacts where the held-out reading (patients differ: its floor is near 1 with a few held-out
  patients) cannot;
- `excursion_share`: windows whose largest deflection away from the labeled beat exceeds the 99th
  percentile of the real training windows of the class (the spikes a cardiologist would reject);
- `r_peaks` (mean R peaks per window) and `rr_cv` (median over windows of the coefficient of variation
  of their RR intervals, neurokit2's detector): a sinus rhythm is regular within 4 s;
- `assigned_share`: the share the judge (the project's classifier trained on real training windows)
  assigns to the class the window was made for;
- TSTR (train on the set, test on the held-out patients; Esteban et al. 2017) as macro-F1: the floor's
  is TRTR, the same classifier trained on as many real training windows per class.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from ecg_tgdp.data.plausibility import beat_mask
from ecg_tgdp.data.rhythm import detect_r_peaks
from ecg_tgdp.data.store import Cohort
from ecg_tgdp.evaluation.classifier_inputs import PreparedInputs, WindowGeometry
from ecg_tgdp.evaluation.discriminator import discriminator_auroc
from ecg_tgdp.evaluation.downstream import DownstreamClassifier
from ecg_tgdp.evaluation.fidelity import encoder_features, fidelity_per_class, train_encoder
from ecg_tgdp.models.classifier import ClassifierTraining, ECGClassifier, predict
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.models.model_card import ModelCard
from ecg_tgdp.models.settings import DEFAULT_SAMPLER, DEFAULT_STEPS

EXCURSION_PERCENTILE = 99.0
JUDGE_WINDOWS_PER_CLASS = 3000  # training windows the judge learns from, per class at most
HELD_OUT_PER_CLASS = 1000  # held-out windows scored against, per class at most (the discriminator reads ≤ 1000)
MIN_DISCRIMINATOR_WINDOWS = 10  # per side and class: the discriminator's 5-fold cross-validation needs a few per fold
JUDGE_TRAINING = ClassifierTraining(epochs=10, steps_per_epoch=100)  # no early stopping: held-out patients stay unseen


@dataclass
class LabeledWindows:
    """Windows [N, leads, T] in mV and their class indices [N]."""

    windows: np.ndarray
    labels: np.ndarray

    def of_class(self, k: int) -> np.ndarray:
        return self.windows[self.labels == k]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class QualityReference:
    """The real windows a generator is judged with, all from one source cohort (its train split and held-out
    patients), and the judge: the project's classifier trained on other training windows."""

    classes: list[str]
    geometry: WindowGeometry
    held_out: LabeledWindows  # windows of patients the generator never saw
    floor: LabeledWindows  # training patients' windows, n per class: the best any generator of them can do
    train_other: LabeledWindows  # other training windows: the judge learns from them, `discriminator_auroc_train`
    judge: ECGClassifier | None  # the project's classifier trained on `train_other`; embeds (encoder) and assigns
    #                              classes; None for a reference that only monitors training
    excursion_threshold: np.ndarray  # [classes] mV, EXCURSION_PERCENTILE of the judge's training windows
    prepared: PreparedInputs  # classifier inputs, computed once per array
    band_hz: tuple[float, float] | None  # the pass band the cohort's windows were filtered with

    @property
    def spectral_band(self) -> tuple[float, float] | None:
        """(fs_hz, upper band edge): what the discriminator reads the spectrum up to (`evaluation.discriminator`)."""
        return None if self.band_hz is None else (self.geometry.fs_hz, self.band_hz[1])


def reference_from_cohort(cohort: Cohort, n_per_class: int, *, held_out: Sequence[str] = ("val", "test"),
                          seed: int = 0, judge: bool = True, device="cpu") -> QualityReference:
    """The reference of a beat-window cohort: the `held_out` splits' patients scored against, `n_per_class` floor
    windows per class from train, and (`judge`) a judge trained on up to JUDGE_WINDOWS_PER_CLASS other train
    windows per class (fixed length, no early stopping: every held-out patient stays unseen)."""
    geometry = WindowGeometry.of(cohort.info)
    if geometry.anchor is None:
        raise ValueError(f"{cohort.info.get('name', 'cohort')}: generator quality needs beat windows (an anchor)")
    rng = np.random.default_rng(seed)
    train = _labeled(cohort.split("train"))
    floor_rows, judge_rows = [], []
    for k in range(len(cohort.classes)):
        rows = rng.permutation(np.flatnonzero(train.labels == k))
        needed = n_per_class + (MIN_DISCRIMINATOR_WINDOWS if judge else 0)
        if len(rows) < needed:
            raise ValueError(f"class {cohort.classes[k]!r} has {len(rows)} training windows; the floor needs "
                             f"{n_per_class} and the judge at least {MIN_DISCRIMINATOR_WINDOWS} more")
        floor_rows.append(rows[:n_per_class])
        judge_rows.append(rows[n_per_class:n_per_class + JUDGE_WINDOWS_PER_CLASS])
    floor, judge_train = (_take(train, np.sort(np.concatenate(rows))) for rows in (floor_rows, judge_rows))
    held = _per_class_subsample(_labeled(cohort.split(*held_out)), HELD_OUT_PER_CLASS, rng)
    prepared = PreparedInputs(geometry)
    judge = train_encoder(prepared(judge_train.windows), judge_train.labels, None, None, seed,
                          num_classes=len(cohort.classes), settings=JUDGE_TRAINING, device=device) if judge else None
    excursions = excursion(judge_train.windows, geometry.anchor, geometry.fs_hz)
    threshold = np.array([np.percentile(excursions[judge_train.labels == k], EXCURSION_PERCENTILE)
                          if (judge_train.labels == k).any() else np.nan for k in range(len(cohort.classes))])
    band = cohort.info.get("band_hz")
    return QualityReference(list(cohort.classes), geometry, held, floor, judge_train, judge, threshold, prepared,
                            None if band is None else tuple(band))


def scoreable_classes(reference: QualityReference, min_windows: int = MIN_DISCRIMINATOR_WINDOWS) -> list[int]:
    """The classes with at least `min_windows` training and held-out windows: those a discriminator can score."""
    return [k for k in range(len(reference.classes))
            if min(len(reference.train_other.of_class(k)), len(reference.held_out.of_class(k))) >= min_windows]


def excursion(windows: np.ndarray, anchor: int, fs_hz: float) -> np.ndarray:
    """The largest |x − median(x)| of each window [N, leads, T] (mV) outside the labeled beat at `anchor`
    (`data.plausibility.beat_mask`): [N]."""
    windows = np.asarray(windows, dtype=np.float64)
    deviation = np.abs(windows - np.median(windows, axis=-1, keepdims=True)).max(axis=1)  # [N, T]
    return deviation[:, ~beat_mask(windows.shape[-1], anchor, fs_hz)].max(axis=1)


def rhythm_regularity(windows: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """R peaks per window [N] (neurokit2 on the first lead) and the coefficient of variation of each window's RR
    intervals [N] (NaN with fewer than two intervals)."""
    counts, cv = np.zeros(len(windows)), np.full(len(windows), np.nan)
    for i, window in enumerate(np.asarray(windows)):
        peaks = detect_r_peaks(window[0], fs_hz)
        counts[i] = len(peaks)
        if len(peaks) >= 3:
            rr = np.diff(peaks)
            cv[i] = rr.std() / rr.mean()
    return counts, cv


def score_windows(windows: LabeledWindows, reference: QualityReference, *, tstr_seeds: Sequence[int] = (0,),
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """{class name or "all": {metric: value}} of a set of windows against the reference's held-out patients
    (module docstring); TSTR macro-F1 and per-class F1 are in "all" and in each class's row respectively."""
    held, prepared, geometry = reference.held_out, reference.prepared, reference.geometry
    fidelity = fidelity_per_class(
        held.windows, held.labels, windows.windows, windows.labels, reference.classes, geometry.fs_hz,
        reference.judge, seed, encoder_input=prepared, real_features=encoder_features(reference.judge,
                                                                                      prepared(held.windows)),
        rhythm=(prepared.log_rr_ratio(held.windows), prepared.log_rr_ratio(windows.windows)), anchor=geometry.anchor,
        band_hz=reference.band_hz,
    )
    for k, name in enumerate(reference.classes):
        fidelity[name]["discriminator_auroc_train"] = discriminator_auroc(
            reference.train_other.of_class(k), windows.of_class(k), seed, band=reference.spectral_band)
    assigned = predict(reference.judge, prepared(windows.windows)).argmax(1)
    over = excursion(windows.windows, geometry.anchor, geometry.fs_hz) > reference.excursion_threshold[windows.labels]
    counts, cv = rhythm_regularity(windows.windows, geometry.fs_hz)
    tstr = tstr_f1(windows, reference, tstr_seeds)
    for k, name in enumerate(reference.classes):
        mine = windows.labels == k
        fidelity[name] |= {"excursion_share": float(over[mine].mean()), "r_peaks": float(counts[mine].mean()),
                           "rr_cv": _nanmedian(cv[mine]), "assigned_share": float((assigned[mine] == k).mean()),
                           "tstr_f1": float(tstr[k])}
    fidelity["all"] |= {"discriminator_auroc_train": float(np.mean([fidelity[name]["discriminator_auroc_train"]
                                                                     for name in reference.classes])),
                        "excursion_share": float(over.mean()), "r_peaks": float(counts.mean()),
                        "rr_cv": _nanmedian(cv), "assigned_share": float((assigned == windows.labels).mean()),
                        "tstr_f1": float(tstr.mean())}
    return fidelity


def held_out_rhythm(reference: QualityReference) -> dict[str, float]:
    """The held-out patients' median RR coefficient of variation per class: what `rr_cv` is compared with."""
    _, cv = rhythm_regularity(reference.held_out.windows, reference.geometry.fs_hz)
    return {name: _nanmedian(cv[reference.held_out.labels == k]) for k, name in enumerate(reference.classes)}


def tstr_f1(windows: LabeledWindows, reference: QualityReference, seeds: Sequence[int]) -> np.ndarray:
    """Per-class F1 [classes] on the held-out patients of the project's classifier trained on `windows` (fixed
    length, as the judge), averaged over `seeds`."""
    prepared, held = reference.prepared, reference.held_out
    classifier = DownstreamClassifier(reference.geometry, len(reference.classes), JUDGE_TRAINING, prepared=prepared)
    scores = []
    for seed in seeds:
        predict_proba = classifier.fit(prepared(windows.windows), windows.labels, None, None, seed)
        predicted = predict_proba(prepared(held.windows)).argmax(1)
        scores.append(f1_score(held.labels, predicted, labels=range(len(reference.classes)), average=None,
                               zero_division=0))
    return np.mean(scores, axis=0)


def _labeled(cohort: Cohort) -> LabeledWindows:
    return LabeledWindows(np.asarray(cohort.windows, dtype=np.float32), cohort.meta["label_index"].to_numpy())


def _take(windows: LabeledWindows, rows: np.ndarray) -> LabeledWindows:
    return LabeledWindows(windows.windows[rows], windows.labels[rows])


def _per_class_subsample(windows: LabeledWindows, per_class: int, rng: np.random.Generator) -> LabeledWindows:
    rows = [rng.permutation(np.flatnonzero(windows.labels == k))[:per_class] for k in np.unique(windows.labels)]
    return _take(windows, np.sort(np.concatenate(rows)))


def _nanmedian(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else float("nan")



class SampleQualityMonitor:
    """A `models.training.Monitor`: samples `n_per_class` windows per class from the weights being trained (the
    default sampler, x̂_0 unclipped) and scores them against a reference; best.pt is the validation whose samples
    the discriminator tells least well from the training patients' windows (`auroc_train`, mean over classes)."""

    columns = ("auroc_train", "auroc_held_out", "excursion_share", "rr_cv")
    score = "auroc_train"

    def __init__(self, reference: QualityReference, card: ModelCard, n_per_class: int = 64, *,
                 sampler: str = DEFAULT_SAMPLER, steps: int = DEFAULT_STEPS, seed: int = 0) -> None:
        self.reference, self.card, self.sampler, self.steps, self.seed = reference, card, sampler, steps, seed
        self.labels = np.repeat(np.arange(len(reference.classes)), n_per_class)
        self.scored = scoreable_classes(reference)
        if not self.scored:
            raise ValueError(f"judging samples needs {MIN_DISCRIMINATOR_WINDOWS} training and held-out windows of "
                             "some class; this cohort has fewer of every class")

    def __call__(self, net) -> dict[str, float]:
        model = DiffusionModel(net, self.card.noise_schedule(), self.card)
        windows = model.sample_mv(self.labels, sampler=self.sampler, steps=self.steps, seed=self.seed, clip=False)
        figures = monitor_figures(LabeledWindows(windows, self.labels), self.reference, self.scored, self.seed)
        return {"auroc_train": float(np.mean(list(figures.auroc_train.values()))),
                "auroc_held_out": float(np.mean(list(figures.auroc_held_out.values()))),
                "excursion_share": float(figures.over.mean()), "rr_cv": _nanmedian(figures.rr_cv)}


@dataclass(frozen=True)
class MonitorFigures:
    """What the sample monitor reads of a set of windows: per scored class k, the in-band discriminator AUROC
    against the training patients' and the held-out patients' windows; per window, whether it has an excursion
    and its RR coefficient of variation (NaN with fewer than three R peaks)."""

    auroc_train: dict[int, float]
    auroc_held_out: dict[int, float]
    over: np.ndarray
    rr_cv: np.ndarray


def monitor_figures(windows: LabeledWindows, reference: QualityReference, classes: Sequence[int],
                    seed: int) -> MonitorFigures:
    """The figures `SampleQualityMonitor` averages, per class and per window (the quick subset of
    `score_windows`: no encoder, no TSTR), for the `classes` a discriminator can score."""
    band, geometry = reference.spectral_band, reference.geometry
    auroc_train = {k: discriminator_auroc(reference.train_other.of_class(k), windows.of_class(k), seed, band=band)
                   for k in classes}
    auroc_held = {k: discriminator_auroc(reference.held_out.of_class(k), windows.of_class(k), seed, band=band)
                  for k in classes}
    over = excursion(windows.windows, geometry.anchor, geometry.fs_hz) > reference.excursion_threshold[windows.labels]
    return MonitorFigures(auroc_train, auroc_held, over, rhythm_regularity(windows.windows, geometry.fs_hz)[1])


@dataclass(frozen=True)
class Criterion:
    """One "done when" test of a generator against its floor: `metric` of `sampler`'s windows, per class."""

    name: str
    metric: str
    sampler: str  # key of the scored sampler sets
    rule: str  # "≤ floor +", "≤ × floor", "≤" or "≥ × floor", with `amount` as x
    amount: float
    classes: tuple[str, ...] | None = None  # None: every class; ("all",): the pooled row

    def bound(self, floor_value: float) -> float:
        return {"≤ floor +": floor_value + self.amount, "≤ × floor": self.amount * floor_value,
                "≤": self.amount, "≥ × floor": self.amount * floor_value}[self.rule]

    def holds(self, value: float, floor_value: float) -> bool:
        bound = self.bound(floor_value)
        return bool(value >= bound if self.rule.startswith("≥") else value <= bound)


def criteria(default: str, deterministic: str, default_unclipped: str) -> list[Criterion]:
    """The generator's "done when" list (README, the source model), for the named sampler sets."""
    return [
        Criterion("discriminator AUROC vs held-out ≤ floor + 0.05", "discriminator_auroc", default, "≤ floor +", 0.05),
        Criterion("Fréchet distance ≤ 2 × floor", "frechet", default, "≤ × floor", 2.0),
        Criterion("excursion share ≤ 2%, default sampler unclipped", "excursion_share", default_unclipped, "≤", 0.02),
        Criterion("excursion share ≤ 2%, deterministic sampler unclipped", "excursion_share", deterministic, "≤",
                  0.02),
        Criterion("RR coefficient of variation of N windows ≤ 1.5 × floor", "rr_cv", default, "≤ × floor", 1.5,
                  classes=("N",)),
        Criterion("TSTR macro-F1 ≥ 0.9 × TRTR", "tstr_f1", default, "≥ × floor", 0.9, classes=("all",)),
    ]


def check_criteria(floor: dict[str, dict[str, float]], scored: dict[str, dict[str, dict[str, float]]],
                   rules: list[Criterion], classes: Sequence[str]) -> list[dict]:
    """One row per criterion and class: value, floor, bound, whether it holds (False where a value is NaN)."""
    rows = []
    for rule in rules:
        for name in rule.classes or classes:
            value, floor_value = scored[rule.sampler][name][rule.metric], floor[name][rule.metric]
            finite = np.isfinite(value) and np.isfinite(floor_value)
            rows.append({"criterion": rule.name, "class": name, "sampler": rule.sampler, "value": value,
                         "floor": floor_value, "bound": rule.bound(floor_value),
                         "holds": bool(finite and rule.holds(value, floor_value))})
    return rows
