"""Check a trained source model: do its samples look like, and classify as, the classes they were asked for?

    python benchmarks/source_model_check.py --checkpoint runs/pretrain_mitdb/models/source/model.pt \
        --cohort runs/pretrain_mitdb/cohorts/source --out models/pretrained/mitdb_nsv_128hz [--ship]

Trains the project's downstream 1D CNN on the real cohort's train split (early stopped on
val), then classifies real test windows (reference) and generated windows of each class
(DPM-Solver++, 25 steps). Writes check.json and beats.png (generated beats per class next
to real ones) into --out; with --ship also copies model.pt (EMA weights + extra) and log.csv there, for the repository.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data.store import read_cohort  # noqa: E402
from models.classifier import ClassifierTraining, ECGClassifier, predict, train_classifier  # noqa: E402
from models.generate import DiffusionModel, generate  # noqa: E402


def classifier_on_real(cohort, seed: int) -> ECGClassifier:
    train, val = cohort.split("train"), cohort.split("val")
    model = ECGClassifier(len(cohort.info["leads"]), len(cohort.classes))
    settings = ClassifierTraining(epochs=15, steps_per_epoch=200, patience=4, seed=seed)
    return train_classifier(model, cohort.normalized(train.windows), train.meta["label_index"].to_numpy(), settings,
                            val_x=cohort.normalized(val.windows), val_y=val.meta["label_index"].to_numpy())


def per_class_agreement(probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Share of windows of each class that the classifier assigns to that class (sensitivity)."""
    predicted = probabilities.argmax(1)
    return {name: round(float((predicted[labels == k] == k).mean()), 4) for k, name in enumerate(classes)}


def beats_figure(real: dict[str, np.ndarray], generated: dict[str, np.ndarray], fs_hz: float, path: Path) -> None:
    """One column per class: real beats (top) and generated beats (bottom), 30 examples and the mean."""
    classes = list(real)
    fig, axes = plt.subplots(2, len(classes), figsize=(4 * len(classes), 5.5), sharex=True, sharey="col")
    t = np.arange(next(iter(real.values())).shape[-1]) / fs_hz
    for col, name in enumerate(classes):
        for row, (title, windows) in enumerate((("real mitdb", real[name]), ("generated", generated[name]))):
            ax = axes[row, col]
            ax.plot(t, windows[:30, 0].T, color="tab:blue" if row == 0 else "tab:red", lw=0.5, alpha=0.35)
            ax.plot(t, windows[:, 0].mean(0), color="black", lw=1.5)
            ax.set_title(f"{name}: {title}")
            ax.set_xlabel("s") if row == 1 else None
        axes[0, col].set_ylabel("mV") if col == 0 else None
        axes[1, col].set_ylabel("mV") if col == 0 else None
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
    parser.add_argument("--ship", action="store_true", help="also write the slim EMA weights as model.pt")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    cohort = read_cohort(args.cohort)
    classes = cohort.classes
    generator_model = DiffusionModel.load(args.checkpoint)
    labels = np.repeat(np.arange(len(classes)), args.n_per_class)
    shape = (len(cohort.info["leads"]), cohort.windows.shape[-1])
    generated = generate(generator_model.denoiser(), generator_model.schedule, labels, shape, steps=25, seed=args.seed,
                         progress=True)

    classifier = classifier_on_real(cohort, args.seed)
    test = cohort.split("test")
    report = {
        "checkpoint": str(args.checkpoint),
        "classes": classes,
        "n_generated_per_class": args.n_per_class,
        "sampler": "dpmpp, 25 steps, no classifier-free guidance",
        "classifier": "ECGClassifier trained on the real train split, early stopped on val macro-F1",
        "real_test_sensitivity": per_class_agreement(predict(classifier, cohort.normalized(test.windows)),
                                                     test.meta["label_index"].to_numpy(), classes),
        "generated_assigned_to_conditioned_class": per_class_agreement(predict(classifier, generated), labels, classes),
    }
    (args.out / "check.json").write_text(json.dumps(report, indent=2) + "\n")
    train = cohort.split("train")
    real = {name: train.windows[train.meta["label_index"].to_numpy() == k] for k, name in enumerate(classes)}
    fake = {name: generator_model.to_mv(generated[labels == k]) for k, name in enumerate(classes)}
    beats_figure(real, fake, cohort.info["fs_hz"], args.out / "beats.png")
    if args.ship:
        shutil.copyfile(args.checkpoint, args.out / "model.pt")
        shutil.copyfile(args.checkpoint.parent / "log.csv", args.out / "log.csv")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
