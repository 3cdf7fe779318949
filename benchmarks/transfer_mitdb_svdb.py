"""MIT-BIH → SVDB: every transfer method at several target budgets, judged by the evaluation protocol.

    python benchmarks/transfer_mitdb_svdb.py [--budgets 50 200 1000] [--config mitdb_to_svdb] [--data-root DIR] \
        [--run-dir-pattern runs/mitdb_to_svdb_budget{budget}] [--set evaluation.seeds=[0,1,2] ...]

The databases (mitdb/, svdb/) are read from --data-root, else $ECG_TGDP_DATA_ROOT, else the folder
`ecg-tgdp fetch` downloads to; the development checkout uses `--data-root ../shared/physionet` (or sets
ECG_TGDP_DATA_ROOT to it).

For each budget (labeled target beats drawn from the recipe's training patients): ingest,
adopt the shipped source model, run every method of `transfer.methods`, sample, evaluate;
each stage is timed, and cached stages are reused (a rerun only redoes what changed).
Writes benchmarks/results/transfer_mitdb_svdb.json (every row and stage time), .md (the
README tables) and, with several budgets, _budgets.png (macro-F1 against the budget): per
method and budget, macro-F1, S and V sensitivity/PPV and macro AUROC of "target real +
synthetic", with the seed interval, and MMD, Fréchet distance and memorized share of its
samples; the real-data arms of the same budget as reference rows; real + TGDP against real +
the untransferred source model's samples, real + the fine-tuned models' and the real target
windows alone (paired: the same classifier seeds); utility against the guidance weight w;
TGDP's ratio diagnostics per budget; the real-data arms next to those of the 1 s-window run
(`transfer_mitdb_svdb_1s_windows.json`, kept from before the context windows); and the
seconds each stage took.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from harness import RESULTS, add_data_root, data_root, recipe, write_result

from ecg_tgdp.evaluation.report import json_ready
from ecg_tgdp.evaluation.utility import seed_interval
from ecg_tgdp.pipeline import stages
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.diffusion_stages import train_source_stage
from ecg_tgdp.pipeline.evaluate_stage import evaluate_stage
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.sample_stage import sample_stage
from ecg_tgdp.pipeline.transfer_stage import transfer_stage

REAL_ARMS = ("target_real", "source_real+target_real", "source_real")
UTILITY_COLUMNS = ("macro_f1", "macro_auroc", "sensitivity_S", "ppv_S", "sensitivity_V", "ppv_V")


def run_budget(config_path: Path, budget: int, run_dir: Path, overrides: list[str]) -> dict:
    """All stages for one target budget; returns stage seconds and the report's tables as records."""
    config = load_config(config_path, [f"target.split.train_budget={budget}", *overrides])
    run = RunDir.open(config, run_dir)
    seconds = {}

    def timed(name, stage, *args):
        started = time.perf_counter()
        stage(config, run, *args)
        seconds[name] = round(time.perf_counter() - started, 1)

    timed("ingest", stages.ingest_stage)
    timed("train-source", train_source_stage)
    for method in config.transfer.methods:
        timed(f"transfer.{method}", transfer_stage, [method])
    timed("sample", sample_stage)
    timed("evaluate", evaluate_stage)
    report = run.path / "report"
    diagnostics = run.path / "models" / "tgdp" / "diagnostics.json"
    metrics = json.loads((report / "metrics.json").read_text())
    return {
        "budget": budget,
        "ratio_diagnostics": json.loads(diagnostics.read_text()) if diagnostics.is_file() else None,
        "per_seed": metrics["utility"]["per_seed"],
        "transfer_scale_sweep": (metrics.get("sweeps") or {}).get("transfer_scale", []),
        "run_dir": str(run.path),
        "seconds_this_call": seconds,  # ≈ 0 for stages that were cached
        "seconds_when_computed": {stage: entry["seconds"] for stage, entry in run.manifest()["stages"].items()},
        "utility": pd.read_csv(report / "utility.csv").to_dict(orient="records"),
        "fidelity": pd.read_csv(report / "fidelity.csv").to_dict(orient="records"),
        "privacy": pd.read_csv(report / "privacy.csv").to_dict(orient="records"),
    }


def markdown_table(results: list[dict]) -> str:
    """One row per budget and arm: utility with the seed interval, then the samples' fidelity and privacy."""
    lines = ["| budget | arm | macro-F1 [95% seeds] | macro AUROC [95% seeds] | S sens. | S PPV | V sens. | V PPV | MMD | Fréchet | memorized |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        utility = pd.DataFrame(result["utility"]).set_index("arm")
        fidelity = pd.DataFrame(result["fidelity"])
        fidelity = fidelity[fidelity["class"] == "all"].set_index("method")
        privacy = pd.DataFrame(result["privacy"]).set_index("method")
        arms = [arm for arm in utility.index if arm.startswith("target_real+synthetic:")] + list(REAL_ARMS)
        for arm in arms:
            row = utility.loc[arm]
            method = arm.split(":", 1)[1] if ":" in arm else None
            cells = [f"{row[m]:.3f} [{row[m + '_seed_low']:.3f}, {row[m + '_seed_high']:.3f}]" for m in UTILITY_COLUMNS[:2]]
            cells += [_number(row[column]) for column in UTILITY_COLUMNS[2:]]
            if method is not None:
                cells += [f"{fidelity.loc[method, 'mmd']:.4f}", f"{fidelity.loc[method, 'frechet']:.2f}",
                          f"{privacy.loc[method, 'memorized_share']:.3f}"]
            else:
                cells += ["", "", ""]
            label = f"real + synthetic: {method}" if method else arm
            lines.append(f"| {result['budget']} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


TGDP = "target_real+synthetic:tgdp"
# (arm, reference arm) pairs compared per classifier seed: TGDP against the untransferred source model (what the
# guidance adds), the fine-tuning baselines, the real target windows alone (what any samples add), and the real
# source and target windows together (the moonshot: whether sharing the model can replace sharing the source data).
PAIRED = tuple((TGDP, reference) for reference in ("target_real+synthetic:source_only", "target_real+synthetic:finetune",
                                                   "target_real+synthetic:finetune_partial", "target_real",
                                                   "source_real+target_real"))


def paired_table(results: list[dict], pairs: tuple[tuple[str, str], ...] = PAIRED) -> str:
    """Per budget and pair: macro-F1 of the arm minus that of the reference arm, per classifier seed (paired), with
    the Student-t 95% interval of the mean difference."""
    lines = ["| budget | arm − reference | macro-F1 difference [95% seeds] | arm higher at |", "|---|---|---|---|"]
    for result in results:
        seeds = result["per_seed"]
        for arm, reference in pairs:
            a, b = seeds.get(arm), seeds.get(reference)
            if a is None or b is None:
                continue
            differences = [a[s]["macro_f1"] - b[s]["macro_f1"] for s in a]
            mean, low, high = seed_interval(differences)
            name = f"{_short(arm)} − {_short(reference)}"
            lines.append(f"| {result['budget']} | {name} | {mean:+.3f} [{low:+.3f}, {high:+.3f}] | "
                         f"{sum(d > 0 for d in differences)} of {len(differences)} seeds |")
    return "\n".join(lines) + "\n"


def _short(arm: str) -> str:
    """`target_real+synthetic:tgdp` → `real + tgdp`, `source_real+target_real` → `real source + real`."""
    if arm == "source_real+target_real":
        return "real source + real"
    return arm.replace("target_real+synthetic:", "real + ").replace("target_real", "real alone")


def transfer_scale_table(results: list[dict]) -> str:
    """Per budget: macro-F1 of real + a guided method's samples at each guidance weight w (w = 0: the source model)."""
    lines = ["| budget | method | w | macro-F1 [95% seeds] |", "|---|---|---|---|"]
    for result in results:
        for row in result.get("transfer_scale_sweep", []):
            lines.append(f"| {result['budget']} | {row['method']} | {row['transfer_scale']:g} | {row['macro_f1']:.3f} "
                         f"[{row['macro_f1_low']:.3f}, {row['macro_f1_high']:.3f}] |")
    return "\n".join(lines) + "\n"


def diagnostics_table(results: list[dict]) -> str:
    """TGDP's ratio diagnostics per budget (models/tgdp/diagnostics.json)."""
    lines = [("| budget | ESS share | ratios outside [1e-3, 1e3] | clean AUROC | clean log-loss | c' AUROC by t band "
             "(0 → T) | t_min |"), "|---|---|---|---|---|---|---|"]
    for result in results:
        d = result["ratio_diagnostics"]
        if d is None:
            continue
        bands = " ".join(f"{band['auroc']:.2f}" for band in d["bands"])
        lines.append(f"| {result['budget']} | {d['ess_share']:.3f} | {d['clip_share']:.3f} | {d['clean']['auroc']:.3f} | "
                     f"{d['clean']['log_loss']:.3f} | {bands} | {d['t_min']} |")
    return "\n".join(lines) + "\n"


def window_comparison_table(results: list[dict], before: Path, config: str) -> str:
    """The real-data arms' macro-F1 and S sensitivity with 4 s context windows against the 1 s-window run of the
    same recipe, with its heading ("" for another recipe)."""
    if not before.is_file():
        return ""
    earlier = json.loads(before.read_text())
    if Path(earlier["config"]).stem != Path(config).stem:
        return ""
    old = {entry["budget"]: pd.DataFrame(entry["utility"]).set_index("arm") for entry in earlier["budgets"]}
    lines = ["\nReal-data arms, 1 s windows (the run before context windows) against 4 s:\n",
             ("| budget | arm | macro-F1, 1 s windows | macro-F1, 4 s | S sens., 1 s | S sens., 4 s | V sens., 1 s | "
             "V sens., 4 s |"), "|---|---|---|---|---|---|---|---|"]
    for result in results:
        new, previous = pd.DataFrame(result["utility"]).set_index("arm"), old.get(result["budget"])
        if previous is None:
            continue
        for arm in REAL_ARMS:
            cells = [f"{frame.loc[arm, metric]:.3f}" for metric in ("macro_f1", "sensitivity_S", "sensitivity_V")
                     for frame in (previous, new)]
            lines.append(f"| {result['budget']} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def budget_figure(results: list[dict], path: Path) -> None:
    """Macro-F1 [seed interval] against the labeled target budget, one line per arm (`figures.budget_sweep`)."""
    from ecg_tgdp.evaluation import figures

    rows = []
    for result in results:
        for row in result["utility"]:
            arm = row["arm"]
            if arm.startswith("target_real+synthetic:") or arm in ("target_real", "source_real+target_real"):
                rows.append({"method_or_arm": arm.removeprefix("target_real+synthetic:"), "budget": result["budget"],
                             "macro_f1": row["macro_f1"], "macro_f1_low": row["macro_f1_seed_low"],
                             "macro_f1_high": row["macro_f1_seed_high"]})
    names = list(dict.fromkeys(row["method_or_arm"] for row in rows))
    figure = figures.budget_sweep(rows, figures.method_colors(names))
    figure.savefig(path, dpi=110, bbox_inches="tight")


def _number(value: float) -> str:
    """Three decimals; "–" for an undefined metric (PPV of a class the classifier never predicts)."""
    return "–" if pd.isna(value) else f"{value:.3f}"


def stage_seconds_table(results: list[dict]) -> str:
    """Wall-clock seconds of every stage (rows) per budget (columns), as recorded when the stage was computed."""
    stages_seen = list(dict.fromkeys(stage for result in results for stage in result["seconds_when_computed"]))
    lines = ["| stage | " + " | ".join(f"budget {result['budget']}" for result in results) + " |",
             "|---|" + "---|" * len(results)]
    for stage in stages_seen:
        cells = [result["seconds_when_computed"].get(stage) for result in results]
        lines.append(f"| {stage} | " + " | ".join("" if c is None else f"{c:.0f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mitdb_to_svdb", help="a shipped recipe's name or a TOML path")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--run-dir-pattern", default="runs/mitdb_to_svdb_budget{budget}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every budget")
    add_data_root(parser)
    parser.add_argument("--out", type=Path, default=RESULTS / "transfer_mitdb_svdb")
    args = parser.parse_args()
    args.overrides = [f"data_root={str(data_root(args.data_root, 'mitdb', 'svdb'))!r}", *args.overrides]
    config_path = recipe(args.config)
    results = [run_budget(config_path, budget, Path(args.run_dir_pattern.format(budget=budget)), args.overrides)
               for budget in args.budgets]
    report = {"benchmark": "transfer_mitdb_svdb", "config": args.config, "overrides": args.overrides,
              "budgets": results}
    write_result(args.out.with_suffix(".json"), json_ready(report))
    table = (markdown_table(results) + "\nReal + TGDP samples against other arms, paired by classifier seed:\n\n"
             + paired_table(results) + "\nUtility against the guidance weight w (samples drawn again at each w; nothing retrained):\n\n"
             + transfer_scale_table(results) + "\nTGDP's ratio diagnostics:\n\n" + diagnostics_table(results)
             + window_comparison_table(results, RESULTS / "transfer_mitdb_svdb_1s_windows.json", args.config)
             + "\nSeconds per stage (2-core CPU unless stated):\n\n" + stage_seconds_table(results))
    args.out.with_suffix(".md").write_text(table)
    if len(results) > 1:
        budget_figure(results, args.out.parent / f"{args.out.name}_budgets.png")
    print(table)


if __name__ == "__main__":
    main()
