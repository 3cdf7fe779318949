"""The source-model ablation: sample quality against training compute for each candidate training recipe.

    python benchmarks/generator_ablation.py [--train] [--arms v_uniform v_rotary ...] [--runs runs/ablation] \
        [--data-root DIR] [--out benchmarks/results/generator_ablation]

Each arm trains the `mitdb_to_svdb` source model from scratch (`ecg-tgdp train-source`, 6000 steps of 64
windows on a cosine schedule, no early stopping) with its own settings (ARMS), and at every 1000 steps
the training's sample monitor (`ecg_tgdp.evaluation.generator_quality.SampleQualityMonitor`: 64 windows
per class, SDE-DPM-Solver++ 25 steps, x̂_0 unclipped) logs the discriminator AUROC against training and
held-out (val) patients, the share of windows with an off-beat excursion, and the RR coefficient of
variation. Without --train it reads the arms' existing logs (runs/ablation/<arm>/models/source/log.csv);
training is deterministic, so a log's first rows are the same whether a run went on or was stopped. Writes
OUT.json (every row), OUT.md (the README table) and OUT.png (the figures against training windows seen).
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

COMMON = ["source_model.pretrained=''", "source_model.training.steps=6000", "source_model.training.val_every=1000",
          "source_model.training.checkpoint_every=1000", "source_model.training.early_stopping_patience=0"]
ARMS = {  # name → (what it tries, the settings beside COMMON; the network is the recipe's 504k-parameter U-Net)
    "eps_uniform": ("ε-prediction, uniform ε-MSE (the shipped model's recipe, without early stopping)", []),
    "v_minsnr5": ("v-prediction, Min-SNR-5 weighting",
                  ["source_model.model.prediction='v'", "source_model.training.min_snr_gamma=5"]),
    "v_uniform": ("v-prediction, uniform ε-MSE", ["source_model.model.prediction='v'"]),
    "v_rotary": ("v-prediction, uniform ε-MSE, attention at the 2 lowest resolutions with rotary positions",
                 ["source_model.model.prediction='v'", "source_model.model.attention_levels=2",
                  "source_model.model.rotary=true"]),
}
MONITOR = ("auroc_train", "auroc_held_out", "excursion_share", "rr_cv")
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
            ax.plot(group["windows_seen"] / 1e3, group[metric], marker="o", label=arm)
        ax.set_title(metric)
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
    parser.add_argument("--out", type=Path, default=RESULTS / "generator_ablation")
    args = parser.parse_args()
    if args.train:
        root = data_root(args.data_root, "mitdb", "svdb")
        for arm in args.arms:
            train(arm, args.runs, root)
    table = pd.concat([rows(arm, args.runs) for arm in args.arms if (args.runs / arm).is_dir()], ignore_index=True)
    write_result(args.out.with_suffix(".json"), {"benchmark": "generator_ablation", "batch": BATCH,
                                                 "arms": {arm: {"tries": ARMS[arm][0], "settings": ARMS[arm][1]}
                                                          for arm in args.arms},
                                                 "rows": table.to_dict(orient="records")})
    args.out.with_suffix(".md").write_text(markdown(table))
    figure(table, args.out.with_suffix(".png"))
    print(markdown(table))


if __name__ == "__main__":
    main()
