"""The evaluation protocol (README: The evaluation protocol): utility, fidelity and privacy of every method's samples
against real **target** windows, the sweeps, and the report's tables, figures and sections.

Every statistic is against held-out real target patients: the test split (patients no model or classifier trained
on) for utility and fidelity, the train split as the set a generator might copy for privacy. The `evaluate` stage
reads the cohorts and sample folders, calls `evaluate`, and writes what it returns with `evaluation.report`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ecg_tgdp.data.store import Cohort
from ecg_tgdp.evaluation import figures
from ecg_tgdp.evaluation.classifier_inputs import PreparedInputs, WindowGeometry
from ecg_tgdp.evaluation.downstream import load_downstream
from ecg_tgdp.evaluation.ecg_paper import ecg_strips
from ecg_tgdp.evaluation.fidelity import encoder_features, fidelity_per_class, train_encoder
from ecg_tgdp.evaluation.privacy import memorization
from ecg_tgdp.evaluation.report import Section
from ecg_tgdp.evaluation.report_tables import plain_view, utility_view
from ecg_tgdp.evaluation.settings import EvaluationSettings
from ecg_tgdp.evaluation.sweeps import utility_vs_budget, utility_vs_transfer_scale
from ecg_tgdp.evaluation.utility import build_arms, class_indices, run_utility, seed_interval
from ecg_tgdp.models.classifier import ClassifierInputs
from ecg_tgdp.models.settings import TRANSFER_METHODS

REFERENCE = "real:target_val"  # held-out real target patients scored like a generator: the best a method can hope for


def evaluate(settings: EvaluationSettings, source: Cohort, target: Cohort, synthetic: dict[str, Cohort], *,
             seed: int, transfer_scales: dict[str, float], device: torch.device | str = "cpu",
             resampled: dict[tuple[str, float], Cohort] | None = None, ratio_diagnostics: dict[str, dict] | None = None,
             sweeps: dict | None = None) -> dict:
    """Every statistic, table, figure and section of the report, as `evaluation.report.write_report` takes them.

    `synthetic`: each method's samples; `transfer_scales`: the w each guided method was sampled at; `resampled`:
    guided methods' samples at other weights w (`settings.transfer_scales`), with which (or `settings.budgets`)
    the sweeps are computed, unless `sweeps` (rows as in `sweep_figures`) are given; `ratio_diagnostics`: TGDP's
    held-out diagnostics per method, shown as tables. ValueError when the settings' classifier cannot be used."""
    classes, fs_hz = target.classes, float(target.info["fs_hz"])
    train, val, test = (target.split(name) for name in ("train", "val", "test"))
    early_stopping = val.subsample(settings.max_val_windows, seed)
    classifier = settings.classifier_training
    geometry = WindowGeometry.of(target.info)
    prepare = PreparedInputs(geometry)  # the project classifier's inputs, shared by utility, encoder and rhythm
    try:
        downstream = load_downstream(settings.classifier, geometry, len(classes), classifier, device, prepare)
    except (ValueError, TypeError) as error:
        raise ValueError(f"evaluation.classifier: {error}") from None
    # 1. utility: one classifier per arm and seed, tested on held-out target patients
    arms = build_arms(source, target, {m: (s.windows, s.meta["label"].tolist()) for m, s in synthetic.items()},
                      downstream.prepare)
    utility = run_utility(arms, early_stopping, test, classes, downstream, settings.seeds, n_boot=settings.bootstrap)
    sweeps = sweeps or _sweeps(settings, source, target, synthetic, resampled or {}, utility, early_stopping, test,
                               downstream, seed, transfer_scales)
    # 2. fidelity in one frozen encoder's feature space (the project's classifier) trained on real source + target
    source_train = source.split("train")
    encoder_x = ClassifierInputs.concat([prepare(source_train.windows), prepare(train.windows)])
    encoder_y = np.concatenate([class_indices(part.meta["label"], classes, name)
                                for part, name in ((source_train, "source train"), (train, "target train"))])
    encoder = train_encoder(encoder_x, encoder_y, prepare(early_stopping.windows),
                            class_indices(early_stopping.meta["label"], classes, "target val"), seed,
                            num_classes=len(classes), settings=classifier, device=device)
    test_y = class_indices(test.meta["label"], classes, "target test")
    test_features = encoder_features(encoder, prepare(test.windows))  # the same for every candidate
    test_rhythm = prepare.log_rr_ratio(test.windows)
    candidates = {REFERENCE: val, **synthetic}
    fidelity_rows, privacy_rows = [], []
    for name, candidate in candidates.items():
        labels = class_indices(candidate.meta["label"], classes, name)
        rhythm = None if test_rhythm is None else (test_rhythm, prepare.log_rr_ratio(candidate.windows))
        scores = fidelity_per_class(test.windows, test_y, candidate.windows, labels, classes, fs_hz, encoder, seed,
                                    encoder_input=prepare, real_features=test_features, rhythm=rhythm,
                                    anchor=geometry.anchor, band_hz=target.info.get("band_hz"))
        fidelity_rows += [{"method": name, "class": cls, **values} for cls, values in scores.items()]
        privacy_rows.append({"method": name, **memorization(candidate.windows, train.windows, test.windows,
                                                            percentile=settings.memorization_percentile)})
    tables = {
        "utility": utility.table().reset_index(),
        "fidelity": pd.DataFrame(fidelity_rows),
        "privacy": pd.DataFrame(privacy_rows),
    }
    metrics = {
        "utility": utility.to_json(),
        "fidelity": tables["fidelity"].to_dict(orient="records"),
        "privacy": tables["privacy"].to_dict(orient="records"),
        "counts": {"target_test": len(test.meta), "target_train": len(train.meta),
                   **{f"samples:{m}": len(s.meta) for m, s in synthetic.items()}},
        "settings": settings.as_dict(),
        **({"sweeps": sweeps} if sweeps else {}),
    }
    colors = figures.method_colors(list(dict.fromkeys([*synthetic, *_sweep_methods(sweeps)])))
    evaluation = {
        "metrics": metrics,
        "tables": tables,
        "views": {"utility": utility_view(tables["utility"]),
                  "fidelity": plain_view(tables["fidelity"], ["method", "class"]),
                  "privacy": plain_view(tables["privacy"], ["method"])},
        "figures": report_figures(test, synthetic, classes, target.info.get("anchor_s"), tables["utility"], colors)
        | sweep_figures(sweeps, colors),
        "sections": report_sections(sweeps),
    }
    _add_ratio_diagnostics(evaluation, ratio_diagnostics or {})
    return evaluation


def _sweeps(settings: EvaluationSettings, source: Cohort, target: Cohort, synthetic: dict[str, Cohort],
            resampled: dict[tuple[str, float], Cohort], utility, val: Cohort, test: Cohort, downstream, seed: int,
            transfer_scales: dict[str, float]) -> dict | None:
    """Utility vs w and vs target budget (`evaluation.sweeps`), with the run's own points taken from `utility`:
    each guided method at its configured w, at w = 0 (the source model's samples, when source_only ran), and every
    arm at the full budget."""
    if not resampled and not settings.budgets:
        return None
    seeds, n_boot = settings.seeds, settings.bootstrap

    def from_table(arm: str) -> dict:
        values = [utility.per_seed[arm][s]["macro_f1"] for s in seeds]
        mean, low, high = seed_interval(values)
        return {"macro_f1": mean, "macro_f1_low": low, "macro_f1_high": high}

    out = {}
    if resampled:
        rows = utility_vs_transfer_scale(source, target, resampled, val, test, downstream, seeds, n_boot)
        for method in dict.fromkeys(method for method, _ in resampled):
            rows.append({"method": method, "transfer_scale": transfer_scales[method],
                         **from_table(f"target_real+synthetic:{method}")})
            if "source_only" in synthetic:
                rows.append({"method": method, "transfer_scale": 0.0,
                             **from_table("target_real+synthetic:source_only")})
        out["transfer_scale"] = sorted(rows, key=lambda row: (row["method"], row["transfer_scale"]))
    if settings.budgets:
        rows = utility_vs_budget(source, target, synthetic, settings.budgets, val, test, downstream, seeds, n_boot,
                                 seed)
        full = int((target.meta["split"] == "train").sum())
        rows += [{"method_or_arm": arm.removeprefix("target_real+synthetic:"), "budget": full, **from_table(arm)}
                 for arm in ["target_real", *(f"target_real+synthetic:{m}" for m in synthetic)]]
        out["budget"] = sorted(rows, key=lambda row: (row["method_or_arm"], row["budget"]))
    return out


def _add_ratio_diagnostics(evaluation: dict, found: dict[str, dict]) -> None:
    """TGDP's ratio diagnostics (models/<method>/diagnostics.json) as report tables, when a method has them."""
    if not found:
        return
    summary = [{"method": method, "estimator_diagnostics": "held-out" if d["held_out"] else "in-sample",
                "ess": d["ess"], "ess_share": d["ess_share"], "clip_share": d["clip_share"],
                "clean_auroc": d["clean"]["auroc"], "clean_log_loss": d["clean"]["log_loss"],
                "clean_ece": d["clean"]["ece"], "t_min": d["t_min"]} for method, d in found.items()]
    bands = [{"method": method, **band} for method, d in found.items() for band in d["bands"]]
    evaluation["tables"] |= {"ratio_summary": pd.DataFrame(summary), "ratio_bands": pd.DataFrame(bands)}
    evaluation["metrics"]["ratio_diagnostics"] = found
    evaluation["sections"].append(Section(
        "TGDP ratio diagnostics",
        "How far the estimated log q_t/p_t can be trusted. ess: effective sample size (Σr)²/Σr² of the source "
        "weights r = q/p on held-out source windows (ess_share: as a share of them); clip_share: ratios outside "
        "[1e-3, 1e3]; clean_*: the domain classifier on clean windows; per band of diffusion time t, the held-out "
        "log-loss, AUROC and calibration error of the time-dependent classifier c'. Guidance starts at t_min, "
        "above the bands where c' separates the domains (AUROC ≥ 0.99).",
        tables=["ratio_summary", "ratio_bands"]))


def report_figures(test: Cohort, synthetic: dict[str, Cohort], classes: list[str], anchor_s: float | None,
                   utility: pd.DataFrame, colors: dict[str, str]) -> dict:
    """The report's figures of real vs synthetic windows and of utility; `colors` maps each method to its colour."""
    fs_hz = float(test.info["fs_hz"])
    real = _by_class(test, classes)
    by_method = {m: _by_class(s, classes) for m, s in synthetic.items()}
    grid = {"real target (test)": (test.windows, test.meta["label"].to_numpy())}
    grid |= {m: (s.windows, s.meta["label"].to_numpy()) for m, s in synthetic.items()}
    bars = utility.set_index("arm").rename(columns=lambda c: c.replace("_seed_", "_"))
    return {
        "utility_macro_f1": figures.metric_bars(bars, "macro_f1", "macro-F1 (mean and 95% interval over seeds)",
                                                colors),
        "class_overlays": figures.class_overlays(real, by_method, fs_hz, colors, anchor_s),
        "ecg_paper": ecg_strips(real, by_method, fs_hz, colors, anchor_s),
        "sample_grid": figures.sample_grid(grid, classes, fs_hz, colors, anchor_s),
    }


SWEEP_FIGURES = {"sweep_transfer_scale": ("transfer_scale", figures.transfer_scale_sweep),
                 "sweep_budget": ("budget", figures.budget_sweep)}


def sweep_figures(sweeps: dict | None, colors: dict[str, str]) -> dict:
    """Utility vs transfer scale w and vs target budget from `sweeps`: {"transfer_scale": [{method, transfer_scale,
    macro_f1, macro_f1_low, macro_f1_high}, ...], "budget": [{method_or_arm, budget, macro_f1, ...}, ...]}."""
    return {name: SWEEP_FIGURES[name][1](sweeps[SWEEP_FIGURES[name][0]], colors) for name in _sweeps_present(sweeps)}


def _sweeps_present(sweeps: dict | None) -> list[str]:
    return [name for name, (key, _) in SWEEP_FIGURES.items() if (sweeps or {}).get(key)]


def _sweep_methods(sweeps: dict | None) -> list[str]:
    """Transfer methods named in the sweeps, so that they get colours beside the run's own methods."""
    rows = [*(sweeps or {}).get("transfer_scale", []), *(sweeps or {}).get("budget", [])]
    return [name for name in (row.get("method", row.get("method_or_arm")) for row in rows) if name in TRANSFER_METHODS]


def _by_class(cohort: Cohort, classes: list[str]) -> dict[str, np.ndarray]:
    labels = cohort.meta["label"].to_numpy()
    return {name: cohort.windows[labels == name] for name in classes}


def report_sections(sweeps: dict | None = None) -> list[Section]:
    """The report's sections in reading order; the sweep section only when metrics.json holds sweeps."""
    sections = [
        Section("Downstream utility",
                "One classifier per arm and seed, early stopped on target validation patients, tested on held-out "
                "target patients. Cells: mean over seeds [Student-t 95% interval over seeds], and for macro-F1 also "
                "the 95% interval from resampling test patients; per-class sensitivity and PPV are seed means "
                "(every interval is in utility.csv). Bars: each method's colour, lighter for its synthetic-only arm; "
                "real-data arms grey.",
                tables=["utility"], figures=["utility_macro_f1"]),
    ]
    if _sweeps_present(sweeps):
        sections.append(Section(
            "Utility against transfer scale and target budget",
            "Macro-F1 (mean and 95% interval) against the transfer scale w, the weight of TGDP's and domain "
            "guidance's guidance term applied at sampling, and against the number of labeled target windows; "
            "real-data arms dashed. The numbers are under \"sweeps\" in metrics.json.",
            figures=_sweeps_present(sweeps)))
    sections += [
        Section("Real vs synthetic beats",
                "Mean ± 1 s.d. per class of the held-out real target windows (black) and of each method's samples, "
                "then the first windows of each class on ECG paper and the first four of each set overlaid. Every "
                "panel's y-axis spans the real windows of its class; samples far off leave the panel. Dotted line "
                "and ▼: the labeled beat.",
                figures=["class_overlays", "ecg_paper", "sample_grid"]),
        Section("Fidelity",
                f"Per class, each method's samples against the held-out real target test windows. The row "
                f"{REFERENCE!r} scores real target validation patients the same way: what a perfect generator of "
                "unseen patients would reach (discriminator AUROC 0.5 is ideal; lower is better for the distances).",
                tables=["fidelity"]),
        Section("Privacy",
                "Distance to the closest target training window (DCR) of synthetic and of held-out real windows; "
                "memorized share: synthetic windows closer to a training window than all but the given percentile "
                "of held-out real windows are (≈ percentile/100 for a generator that does not copy).",
                tables=["privacy"]),
    ]
    return sections


