"""The utility protocol along one axis: the guidance weight w, or the labeled target budget (README: The evaluation protocol, sweeps).

Both sweeps reuse the protocol of `evaluation.utility` (the same classifier, seeds, validation and test
patients) on the arm "target real + a method's samples", and report the seed mean of macro-F1 with its
Student-t 95% interval per point:

- utility vs w: a guided method (TGDP, domain guidance) sampled again at each w — the weight enters only at
  sampling, so the sweep trains no generator;
- utility vs target size: the target train windows cut to class-proportional budgets
  (`data.splits.labeled_budget`), real alone and with each method's samples; the generators are those
  transferred on the full budget, so this measures what the samples add to a smaller labeled set.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ecg_tgdp.data.splits import labeled_budget
from ecg_tgdp.data.store import Cohort
from ecg_tgdp.evaluation.downstream import DownstreamClassifier
from ecg_tgdp.evaluation.utility import build_arms, run_utility, seed_interval


def utility_vs_transfer_scale(source: Cohort, target: Cohort, samples: Mapping[tuple[str, float], Cohort],
                              val: Cohort, test: Cohort, downstream: DownstreamClassifier, seeds: list[int],
                              n_boot: int) -> list[dict]:
    """One row per (method, w): macro-F1 of target real + that method's samples drawn at w."""
    rows = []
    for (method, scale), cohort in samples.items():
        rows.append({"method": method, "transfer_scale": scale,
                     **_arm_f1(source, target, cohort, "target_real+synthetic:x", val, test, downstream, seeds,
                               n_boot)})
    return rows


def utility_vs_budget(source: Cohort, target: Cohort, synthetic: Mapping[str, Cohort], budgets: list[int],
                      val: Cohort, test: Cohort, downstream: DownstreamClassifier, seeds: list[int], n_boot: int,
                      seed: int) -> list[dict]:
    """One row per (arm, budget): macro-F1 of target real alone and with each method's samples, the target train
    split cut to `budget` windows in its class proportions (drawn with `seed`)."""
    rows = []
    train_rows = np.flatnonzero(target.meta["split"].to_numpy() == "train")
    for budget in budgets:
        keep = labeled_budget(target.meta["label"].to_numpy()[train_rows], budget, seed)
        meta = target.meta.copy()
        meta.iloc[train_rows[~keep], meta.columns.get_loc("split")] = "train_unused"
        smaller = Cohort(target.windows, meta, target.info)
        arms = build_arms(source, smaller, {m: (s.windows, s.meta["label"].tolist()) for m, s in synthetic.items()},
                          downstream.prepare)
        wanted = ["target_real", *(f"target_real+synthetic:{m}" for m in synthetic)]
        result = run_utility([arm for arm in arms if arm.name in wanted], val, test, target.classes, downstream,
                             seeds, progress=False, n_boot=n_boot)
        for arm, by_seed in result.per_seed.items():
            rows.append({"method_or_arm": arm.removeprefix("target_real+synthetic:"), "budget": int(keep.sum()),
                         **_interval([by_seed[s]["macro_f1"] for s in seeds])})
    return rows


def _arm_f1(source: Cohort, target: Cohort, samples: Cohort, name: str, val: Cohort, test: Cohort,
            downstream: DownstreamClassifier, seeds: list[int], n_boot: int) -> dict:
    arms = build_arms(source, target, {"x": (samples.windows, samples.meta["label"].tolist())}, downstream.prepare)
    result = run_utility([arm for arm in arms if arm.name == name], val, test, target.classes, downstream, seeds,
                         progress=False, n_boot=n_boot)
    return _interval([result.per_seed[name][s]["macro_f1"] for s in seeds])


def _interval(values: list[float]) -> dict:
    mean, low, high = seed_interval(values)
    return {"macro_f1": mean, "macro_f1_low": low, "macro_f1_high": high}
