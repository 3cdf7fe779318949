"""Check a trained source model: do its samples look like, and classify as, the classes they were asked for?

    python benchmarks/source_model_check.py --checkpoint runs/pretrain_mitdb/models/source/model.pt \
        --cohort runs/pretrain_mitdb/cohorts/source --out models/pretrained/mitdb_nsv_128hz [--ship]

Trains the project's downstream classifier on the real cohort's train split (early stopped on
val), then classifies real test windows and n real train windows per class (references) and
generated windows of each class (SDE-DPM-Solver++, 25 steps) at each classifier-free guidance
scale (1 = plain conditional sampling). Per class it also compares the rhythm around the anchor
beat, log(RR before / RR after) detected in the window (`data.rhythm`), of generated and real
train windows (Wasserstein-1 distance and medians). Writes check.json and beats.png (generated
windows per class next to real ones) into --out; with --ship also copies model.pt (EMA weights +
extra) and log.csv there, for the repository.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from harness import write_result

from ecg_tgdp.data.rhythm import beat_context
from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.evaluation.classifier_inputs import WindowGeometry
from ecg_tgdp.evaluation.downstream import DownstreamClassifier
from ecg_tgdp.evaluation.fidelity import rhythm_distance
from ecg_tgdp.models.classifier import ClassifierTraining
from ecg_tgdp.models.generate import DiffusionModel, generate


def classifier_on_real(cohort, seed: int) -> tuple[DownstreamClassifier, callable]:
    """The project's classifier trained on the real train split, early stopped on val: (its inputs, predict_proba)."""
    train, val = cohort.split("train"), cohort.split("val")
    downstream = DownstreamClassifier(WindowGeometry.of(cohort.info), len(cohort.classes),
                                      ClassifierTraining(epochs=15, steps_per_epoch=200, patience=4))
    predict_proba = downstream.fit(downstream.prepare(train.windows), train.meta["label_index"].to_numpy(),
                                   downstream.prepare(val.windows), val.meta["label_index"].to_numpy(), seed)
    return downstream, predict_proba


def rhythm_by_class(windows: np.ndarray, labels: np.ndarray, geometry: WindowGeometry) -> dict[int, np.ndarray]:
    """log(RR before / RR after) of each window's anchor beat, grouped by class index."""
    ratio = beat_context(windows, geometry.fs_hz, geometry.anchor).log_rr_ratio()
    return {k: ratio[labels == k] for k in np.unique(labels)}


def rhythm_summary(real: dict[int, np.ndarray], fake: dict[int, np.ndarray], classes: list[str]) -> dict:
    """Per class: Wasserstein-1 distance and the medians of the two log RR ratio distributions."""
    return {name: {"wasserstein": round(rhythm_distance(real[k], fake[k]), 4),
                   "median_real": round(float(np.nanmedian(real[k])), 4),
                   "median_generated": round(float(np.nanmedian(fake[k])), 4)} for k, name in enumerate(classes)}


def per_class_agreement(probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Share of windows of each class that the classifier assigns to that class (sensitivity)."""
    predicted = probabilities.argmax(1)
    return {name: round(float((predicted[labels == k] == k).mean()), 4) for k, name in enumerate(classes)}


def beats_figure(rows: dict[str, dict[str, np.ndarray]], fs_hz: float, path: Path) -> None:
    """One column per class, one row per source (real first): 30 examples and the mean."""
    classes = list(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), len(classes), figsize=(4 * len(classes), 2.75 * len(rows)), sharex=True,
                             sharey="col", squeeze=False)
    t = np.arange(next(iter(rows["real mitdb"].values())).shape[-1]) / fs_hz
    for col, name in enumerate(classes):
        for row, (title, by_class) in enumerate(rows.items()):
            windows = by_class[name]
            ax = axes[row, col]
            ax.plot(t, windows[:30, 0].T, color="tab:blue" if row == 0 else "tab:red", lw=0.5, alpha=0.35)
            ax.plot(t, windows[:, 0].mean(0), color="black", lw=1.5)
            ax.set_title(f"{name}: {title}")
            if row == len(rows) - 1:
                ax.set_xlabel("s")
            if col == 0:
                ax.set_ylabel("mV")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True, help="the real cohort the model was trained on")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-per-class", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance-scales", type=float, nargs="+", default=[1.0, 2.0],
                        help="classifier-free guidance scales to check (1 = plain conditional sampling)")
    parser.add_argument("--ship", action="store_true", help="also write the slim EMA weights as model.pt")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    cohort = read_cohort(args.cohort)
    classes = cohort.classes
    generator_model = DiffusionModel.load(args.checkpoint)
    labels = np.repeat(np.arange(len(classes)), args.n_per_class)
    shape = (len(cohort.info["leads"]), cohort.windows.shape[-1])
    geometry = WindowGeometry.of(cohort.info)
    downstream, classify = classifier_on_real(cohort, args.seed)
    test = cohort.split("test")
    train = cohort.split("train")
    train_labels = train.meta["label_index"].to_numpy()
    rng = np.random.default_rng(args.seed)
    picked = np.sort(np.concatenate([rng.choice(np.flatnonzero(train_labels == k), args.n_per_class, replace=False)
                                     for k in range(len(classes))]))
    rows = {"real mitdb": {name: train.windows[train_labels == k] for k, name in enumerate(classes)}}
    real_rhythm = rhythm_by_class(train.windows[picked], train_labels[picked], geometry)
    agreement, rhythm = {}, {}
    for scale in args.guidance_scales:
        generated = generator_model.to_mv(generate(generator_model.denoiser(scale), generator_model.schedule, labels,
                                                   shape, steps=25, seed=args.seed,
                                                   clip_x0=generator_model.card.clip_x0, progress=True))
        key = f"guidance_scale_{scale:g}"
        agreement[key] = per_class_agreement(classify(downstream.prepare(generated)), labels, classes)
        rhythm[key] = rhythm_summary(real_rhythm, rhythm_by_class(generated, labels, geometry), classes)
        rows[f"generated, guidance {scale:g}"] = {name: generated[labels == k] for k, name in enumerate(classes)}
    report = {
        "checkpoint": str(args.checkpoint),
        "classes": classes,
        "n_generated_per_class": args.n_per_class,
        "sampler": "dpmpp_sde (SDE-DPM-Solver++(2M)), 25 steps; classifier-free guidance at each scale",
        "classifier": "the project's downstream classifier trained on the real train split, early stopped on val "
                      "macro-F1",
        "real_test_sensitivity": per_class_agreement(classify(downstream.prepare(test.windows)),
                                                     test.meta["label_index"].to_numpy(), classes),
        # the generator learned the train patients: the same classifier on their real windows is the fair reference
        "real_train_sensitivity": per_class_agreement(classify(downstream.prepare(train.windows[picked])),
                                                      train_labels[picked], classes),
        "generated_assigned_to_conditioned_class": agreement,
        "rhythm_log_rr_ratio_vs_real_train": rhythm,
    }
    check = write_result(args.out / "check.json", report)
    beats_figure(rows, cohort.info["fs_hz"], args.out / "beats.png")
    if args.ship:
        shutil.copyfile(args.checkpoint, args.out / "model.pt")
        shutil.copyfile(args.checkpoint.parent / "log.csv", args.out / "log.csv")
    print(check.read_text(), end="")


if __name__ == "__main__":
    main()
