"""The source-model ablation: sample quality against training compute for each candidate training recipe.

    python benchmarks/generator_ablation.py [--train] [--arms v_uniform v_rotary ...] [--runs runs/ablation] \
        [--data-root DIR] [--out benchmarks/results/generator_ablation]

Each arm trains the `mitdb_to_svdb` source model from scratch (`ecg-tgdp train-source`, 6000 steps of 64
windows on a cosine schedule, no early stopping) with its own settings (ARMS), and at every 1000 steps
the training's sample monitor (`ecg_tgdp.evaluation.generator_quality.SampleQualityMonitor`: 64 windows
per class, SDE-DPM-Solver++ 25 steps, x̂_0 unclipped) logs the discriminator AUROC against training and
held-out (val) patients, the share of windows with an off-beat excursion, and the RR coefficient of
variation. Without --train it reads the arms' existing logs (runs/ablation/<arm>/models/source/log.csv);
training is deterministic, so a log's first rows are the same whether a run went on or was stopped (the
first four arms were stopped after 3000-4000 steps and are read as far as they went, v_vloss_rotary ran its
6000; the arms before v_vloss_rotary logged the discriminator over the full spectrum, which later code reads within the pass band).

Then each arm's last checkpoint is judged alike (`judge`): 150 windows per class from the SDE and the ODE
sampler, the in-band discriminator against training and held-out (val) patients, off-beat excursions, the
RR coefficient of variation of N windows and their amplitude against real ones. Writes OUT.json (every
row), OUT.md (the README tables) and OUT.png (the monitor's figures against training windows seen).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from harness import RESULTS, add_data_root, data_root, write_result

from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.evaluation.generator_quality import reference_from_cohort
from ecg_tgdp.evaluation.report import json_ready

COMMON = ["source_model.pretrained=''", "source_model.training.early_stopping_patience=0"]
EPSILON = {"prediction": "'epsilon'", "attention_levels": "1", "rotary": "false"}  # the model settings of the 2025 model


def arm(tries: str, model: dict, loss_target: str = "'epsilon'", min_snr_gamma: str = "0") -> tuple[str, list[str]]:
    """(what an arm tries, every setting it changes from the recipe beside COMMON): spelled out in full, so an
    arm means the same whatever the recipe's own choice is."""
    return tries, [*(f"source_model.model.{key}={value}" for key, value in model.items()),
                   f"source_model.training.loss_target={loss_target}",
                   f"source_model.training.min_snr_gamma={min_snr_gamma}"]


ROTARY = {"prediction": "'v'", "attention_levels": "2", "rotary": "true"}
ARMS = {  # name → arm(...); the network is the recipe's 504k-parameter U-Net (571k with attention at two levels)
    "eps_uniform": arm("ε-prediction, uniform ε-MSE (the 2025 shipped model's recipe, without early stopping)",
                       EPSILON),
    "v_minsnr5": arm("v-prediction, Min-SNR-5 weighting", {**EPSILON, "prediction": "'v'"}, min_snr_gamma="5"),
    "v_uniform": arm("v-prediction, uniform ε-MSE", {**EPSILON, "prediction": "'v'"}),
    "v_rotary": arm("v-prediction, uniform ε-MSE, attention at the 2 lowest resolutions with rotary positions",
                    ROTARY),
    "v_vloss_rotary": arm("as v_rotary, trained on the v-MSE: the recipe itself (v2)", ROTARY,
                          loss_target="'v'"),
    "v_vloss_rotary_rhythm": arm("as v_vloss_rotary, with the rhythm channel: each window's R peaks given "
                                 "(real rhythms at sampling)", {**ROTARY, "rhythm_channel": "true"},
                                 loss_target="'v'"),
}
MONITOR = ("auroc_train", "auroc_held_out", "excursion_share", "rr_cv")
FULL_BAND_ARMS = ("eps_uniform", "v_minsnr5", "v_uniform", "v_rotary")  # monitored before the in-band discriminator
SAMPLERS = ("dpmpp_sde", "dpmpp")  # SDE-DPM-Solver++ and its ODE form, 25 steps
BATCH = 64


def train(arm: str, runs: Path, root: Path) -> None:
    """`ecg-tgdp train-source` for one arm (resumes a stopped one)."""
    command = [str(Path(sys.executable).with_name("ecg-tgdp")), "train-source", "mitdb_to_svdb", "--run-dir",
               str(runs / arm), "--data-root", str(root)]
    for override in COMMON + ARMS[arm][1]:
        command += ["--set", override]
    subprocess.run([command[0], "ingest", *command[2:]], check=True)
    subprocess.run(command, check=True)


def rows(arm: str, runs: Path) -> pd.DataFrame:
    """The monitored validations of one arm's log."""
    log = pd.read_csv(runs / arm / "models" / "source" / "log.csv")
    log = log.dropna(subset=[MONITOR[0]])
    log.insert(0, "arm", arm)
    log["windows_seen"] = log["step"] * BATCH
    return log[["arm", "step", "windows_seen", "seconds", "val_loss", *MONITOR]]


def judge(arm: str, runs: Path, reference, seed: int = 5, n_per_class: int = 150) -> list[dict]:
    """One row per sampler for an arm's last checkpoint (module docstring)."""
    import numpy as np

    from ecg_tgdp.evaluation.generator_quality import LabeledWindows, monitor_figures
    from ecg_tgdp.models.generate import DiffusionModel
    from ecg_tgdp.models.model_file import ModelFile

    checkpoint = ModelFile.load(runs / arm / "models" / "source" / "checkpoint.pt")
    model, labels = DiffusionModel.from_file(checkpoint), np.repeat(np.arange(len(reference.classes)), n_per_class)
    classes = range(len(reference.classes))
    real_n = reference.train_other.of_class(0)
    rows = []
    for sampler in SAMPLERS:
        windows = LabeledWindows(model.sample_mv(labels, sampler=sampler, seed=seed, clip=False), labels)
        figures = monitor_figures(windows, reference, classes, seed)
        rows.append({"arm": arm, "step": checkpoint.step, "sampler": sampler,
                     **{f"auroc_train_{name}": figures.auroc_train[k] for k, name in enumerate(reference.classes)},
                     **{f"auroc_held_out_{name}": figures.auroc_held_out[k]
                        for k, name in enumerate(reference.classes)},
                     "excursion_share": float(figures.over.mean()),
                     "rr_cv_N": float(np.nanmedian(figures.rr_cv[labels == 0])),
                     "amplitude_ratio_N": float(windows.of_class(0).std() / real_n.std())})
    return rows


def judged_markdown(rows: list[dict], classes: list[str]) -> str:
    lines = ["| arm | step | sampler | AUROC vs training pts " + " / ".join(classes) + " | AUROC vs held-out "
             + " / ".join(classes) + " | excursions | RR CV of N | N amplitude / real |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        train = " / ".join(f"{row[f'auroc_train_{name}']:.3f}" for name in classes)
        held = " / ".join(f"{row[f'auroc_held_out_{name}']:.3f}" for name in classes)
        lines.append(f"| {row['arm']} | {row['step']} | {row['sampler']} | {train} | {held} | "
                     f"{row['excursion_share']:.3f} | {row['rr_cv_N']:.3f} | {row['amplitude_ratio_N']:.2f} |")
    return "\n".join(lines) + "\n"


def markdown(table: pd.DataFrame) -> str:
    lines = ["| arm | what it tries | step | windows seen | AUROC vs training pts | AUROC vs held-out | excursions | "
             "RR CV (all classes) |", "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.arm} | {ARMS[row.arm][0]} | {row.step} | {row.windows_seen:,} | {row.auroc_train:.3f} | "
                     f"{row.auroc_held_out:.3f} | {row.excursion_share:.3f} | {row.rr_cv:.3f} |")
    return "\n".join(lines) + "\n"


def figure(table: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, len(MONITOR), figsize=(4 * len(MONITOR), 3.2), sharex=True)
    for ax, metric in zip(axes, MONITOR):
        for arm, group in table.groupby("arm", sort=False):
            dashed = metric.startswith("auroc") and arm in FULL_BAND_ARMS
            ax.plot(group["windows_seen"] / 1e3, group[metric], marker="o", label=arm, ls="--" if dashed else "-")
        ax.set_title(f"{metric} (dashed: full band)" if metric.startswith("auroc") else metric)
        ax.set_xlabel("training windows seen (thousands)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--train", action="store_true", help="train (or resume) each arm before reading its log")
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="one run folder per arm below this")
    add_data_root(parser)
    parser.add_argument("--cohort", type=Path, default=Path("runs/mitdb_to_svdb/cohorts/source"),
                        help="the ingested source cohort the arms learned (`ecg-tgdp ingest mitdb_to_svdb`)")
    parser.add_argument("--out", type=Path, default=RESULTS / "generator_ablation")
    args = parser.parse_args()
    if args.train:
        root = data_root(args.data_root, "mitdb", "svdb")
        for arm in args.arms:
            train(arm, args.runs, root)
    arms = [arm for arm in args.arms if (args.runs / arm).is_dir()]
    table = pd.concat([rows(arm, args.runs) for arm in arms], ignore_index=True)
    reference = reference_from_cohort(read_cohort(args.cohort), 0, held_out=("val",), judge=False)
    judged = [row for arm in arms for row in judge(arm, args.runs, reference)]
    write_result(args.out.with_suffix(".json"), json_ready({
        "benchmark": "generator_ablation", "batch": BATCH,
        "arms": {arm: {"tries": ARMS[arm][0], "settings": ARMS[arm][1]} for arm in arms},
        "monitor_rows": table.to_dict(orient="records"), "last_checkpoint_judged": judged}))
    text = markdown(table) + "\n" + judged_markdown(judged, reference.classes)
    args.out.with_suffix(".md").write_text(text)
    figure(table, args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
