"""TGDP's parts, one at a time: does label-aware guidance, the consistency refinement, the paper's regression
estimator, its cycle or its consistency regularizer help at a budget? (issue "Transfer where the shift is real", 4.)

    python benchmarks/tgdp_ablation.py --config mitdb_ds1_to_ds2_v1 --budgets 200 \
        --base-run-dir-pattern 'runs/mitdb_ds1_to_ds2_v1_budget{budget}' [--variants label_free consistency ...] \
        --out benchmarks/results/tgdp_ablation_lead_v1

Each variant is the recipe with a few `--set` overrides (VARIANTS), run in its own folder beside the base run
(`<base run>_<variant>`) with TGDP as the only method and no w sweep: ingest, the shipped source model, the TGDP
fit, sampling, evaluation (`transfer_mitdb_svdb.run_budget`; finished stages are cached). The base run — the
default TGDP of `transfer_mitdb_svdb.py` with the same recipe and budget — must exist. Per budget and variant:
macro-F1 of real target + the variant's samples, paired by classifier seed against real + the default TGDP's
samples and against the real target windows alone, the fit's held-out diagnostics and its seconds.
Writes <out>.json and <out>.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import RESULTS, add_data_root, data_root, recipe, write_result
from transfer_mitdb_svdb import TGDP, run_budget

from ecg_tgdp.evaluation.report import json_ready
from ecg_tgdp.evaluation.utility import seed_interval

# name → (what it changes against the default TGDP, its config overrides)
VARIANTS = {
    "label_free": ("c' ignores the label: one marginal ratio q(x)/p(x) guides every class",
                   ["transfer.tgdp.label_aware=false"]),
    "consistency": ("c' refined for 300 steps on cross-entropy + the consistency loss on target windows (η₂ = 1)",
                    ["transfer.tgdp.refine_steps=300"]),
    "regression": ("the paper's estimator: h_ψ regressed on r(x_0) with the cycle (η₁ = 1) and consistency "
                   "(η₂ = 1) regularizers", ["transfer.tgdp.estimator='regression'"]),
    "regression_no_cycle": ("the paper's estimator without the cycle regularizer (η₁ = 0)",
                            ["transfer.tgdp.estimator='regression'", "transfer.tgdp.guidance.eta_cycle=0"]),
    "regression_no_consistency": ("the paper's estimator without the consistency regularizer (η₂ = 0)",
                                  ["transfer.tgdp.estimator='regression'",
                                   "transfer.tgdp.guidance.eta_consistency=0"]),
}
DEFAULT = "the default TGDP: time classifier c'(x_t, y, t), label-aware, calibrated"
ONLY_TGDP = ["transfer.methods=['tgdp']", "evaluation.transfer_scales=[]"]


def paired(a: dict, b: dict) -> tuple[float, float, float, int, int]:
    """Mean macro-F1 difference a − b over the classifier seeds both have, its 95% interval, seeds a is higher."""
    differences = [a[seed]["macro_f1"] - b[seed]["macro_f1"] for seed in a if seed in b]
    return (*seed_interval(differences), sum(d > 0 for d in differences), len(differences))


def ablation_row(variant: str, changes: str, result: dict, base_per_seed: dict) -> dict:
    """One table row: the variant's utility, paired against the base run's default TGDP and real target alone."""
    utility = {row["arm"]: row for row in result["utility"]}[TGDP]
    diagnostics = result["ratio_diagnostics"] or {}
    mine = result["per_seed"][TGDP]
    return {"budget": result["budget"], "variant": variant, "changes": changes,
            "macro_f1": utility["macro_f1"], "macro_f1_low": utility["macro_f1_seed_low"],
            "macro_f1_high": utility["macro_f1_seed_high"],
            "minus_default_tgdp": paired(mine, base_per_seed[TGDP]),
            "minus_real_alone": paired(mine, result["per_seed"]["target_real"]),
            "clean_auroc": (diagnostics.get("clean") or {}).get("auroc"), "ess_share": diagnostics.get("ess_share"),
            "fit_seconds": result["seconds_when_computed"].get("transfer.tgdp")}


def markdown(rows: list[dict]) -> str:
    lines = ["| budget | variant | what changes | real + TGDP macro-F1 [95% seeds] | − default TGDP [95%, paired] | "
             "− real alone [95%, paired] | clean AUROC | ESS share | fit s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row['macro_f1']:.3f} [{row['macro_f1_low']:.3f}, {row['macro_f1_high']:.3f}]"]
        for key in ("minus_default_tgdp", "minus_real_alone"):
            mean, low, high, higher, n = row[key]
            cells.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}] ({higher} of {n} higher)")
        cells += [f"{row['clean_auroc']:.3f}" if row["clean_auroc"] is not None else "",
                  f"{row['ess_share']:.3f}" if row["ess_share"] is not None else "",
                  f"{row['fit_seconds']:.0f}" if row["fit_seconds"] is not None else ""]
        lines.append(f"| {row['budget']} | {row['variant']} | {row['changes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def base_result(config_path: Path, budget: int, run_dir: Path, overrides: list[str]) -> dict:
    """The base run's default TGDP (cached stages only: it must have been evaluated by transfer_mitdb_svdb.py)."""
    if not (run_dir / "report" / "metrics.json").is_file():
        raise SystemExit(f"{run_dir}: no evaluated base run; run benchmarks/transfer_mitdb_svdb.py with the same "
                         "--config, budget and --run-dir-pattern first")
    return run_budget(config_path, budget, run_dir, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mitdb_ds1_to_ds2_v1", help="a shipped recipe's name or a TOML path")
    parser.add_argument("--budgets", type=int, nargs="+", default=[200])
    parser.add_argument("--base-run-dir-pattern", default="runs/mitdb_ds1_to_ds2_v1_budget{budget}")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every run")
    add_data_root(parser)
    parser.add_argument("--out", type=Path, default=RESULTS / "tgdp_ablation_lead_v1")
    args = parser.parse_args()
    args.overrides = [f"data_root={str(data_root(args.data_root, 'mitdb'))!r}", *args.overrides]
    config_path = recipe(args.config)
    rows = []
    for budget in args.budgets:
        base_dir = Path(args.base_run_dir_pattern.format(budget=budget))
        base = base_result(config_path, budget, base_dir, args.overrides)
        rows.append(ablation_row("default", DEFAULT, base, base["per_seed"]))
        for variant in args.variants:
            result = run_budget(config_path, budget, base_dir.with_name(f"{base_dir.name}_{variant}"),
                                [*args.overrides, *ONLY_TGDP, *VARIANTS[variant][1]])
            rows.append(ablation_row(variant, VARIANTS[variant][0], result, base["per_seed"]))
            # after every variant, so a stopped run keeps the rows it finished
            write_result(args.out.with_suffix(".json"), json_ready({
                "benchmark": "tgdp_ablation", "config": args.config, "overrides": args.overrides,
                "variants": {name: VARIANTS[name] for name in args.variants}, "rows": rows}))
            args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
