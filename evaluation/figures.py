"""Figures for the evaluation report: real vs synthetic beats, sample grids, metric bars, sweeps.

Every function returns a matplotlib Figure (Agg backend, nothing shown); `evaluation.report`
embeds them in report.html. Windows are `[N, leads, T]` in mV; only lead 0 is drawn. Each
method keeps one colour in every figure (`method_colors`); real windows are black. Trace
panels take their y-limits from the real windows of their class (`real_limits`), so a method
whose samples are far off shows as leaving the panel instead of flattening the real beats.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

REAL_COLOR = "black"
REAL_ARM_COLORS = ("0.35", "0.55", "0.75")  # arms without synthetic windows, in the bars and the budget sweep
METHOD_PALETTE = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink",
                  "tab:olive", "tab:cyan")
ANCHOR_STYLE = {"color": "0.4", "lw": 0.8, "ls": ":"}


def method_colors(methods: list[str]) -> dict[str, str]:
    """One palette colour per method, in the order given (the same map is passed to every figure)."""
    return {method: METHOD_PALETTE[k % len(METHOD_PALETTE)] for k, method in enumerate(methods)}


def arm_method(arm: str) -> str | None:
    """The method whose samples a utility arm uses (`target_real+synthetic:tgdp` → `tgdp`), None for real-only arms."""
    return arm.rpartition(":")[2] if ":" in arm else None


def real_limits(windows: np.ndarray, low: float = 2.0, high: float = 98.0, pad: float = 0.1) -> tuple[float, float] | None:
    """y-limits from real windows: the `low` percentile of their lead-0 minima to the `high` percentile of their
    maxima (peaks are a few samples of each window, so percentiles of all samples would cut them), widened by `pad`
    of the span."""
    if len(windows) == 0:
        return None
    lead = np.asarray(windows)[:, 0]
    bottom, top = np.percentile(lead.min(axis=1), low), np.percentile(lead.max(axis=1), high)
    margin = pad * max(float(top - bottom), 1e-3)
    return float(bottom - margin), float(top + margin)


def class_overlays(real: dict[str, np.ndarray], synthetic: dict[str, dict[str, np.ndarray]], fs_hz: float,
                   colors: dict[str, str], anchor_s: float | None = None) -> Figure:
    """Mean ± 1 s.d. of lead 0 per class: one row per method, the real windows drawn in every panel."""
    classes = list(real)
    rows = list(synthetic) or ["real only"]
    fig, axes = plt.subplots(len(rows), len(classes), figsize=(3.5 * len(classes), 2.2 * len(rows) + 0.4),
                             sharex=True, squeeze=False)
    for row, method in enumerate(rows):
        for col, name in enumerate(classes):
            ax = axes[row, col]
            if method in synthetic:
                windows = synthetic[method].get(name, np.empty((0,) + real[name].shape[1:]))
                _mean_band(ax, windows, fs_hz, colors.get(method, METHOD_PALETTE[0]), f"{method} (n={len(windows)})")
            _mean_band(ax, real[name], fs_hz, REAL_COLOR, f"real (n={len(real[name])})", zorder=3)
            _trace_panel(ax, f"{name} · {method}", real_limits(real[name]), anchor_s)
            ax.legend(fontsize=7, loc="upper right")
    return _finish(fig, axes)


def _mean_band(ax, windows: np.ndarray, fs_hz: float, color: str, label: str, zorder: int = 2) -> None:
    if len(windows) == 0:
        return
    lead = windows[:, 0]
    t = np.arange(lead.shape[-1]) / fs_hz
    mean, spread = lead.mean(0), lead.std(0)
    ax.plot(t, mean, color=color, lw=1.3, label=label, zorder=zorder)
    ax.fill_between(t, mean - spread, mean + spread, color=color, alpha=0.18, lw=0, zorder=zorder)


def sample_grid(sets: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], fs_hz: float,
                colors: dict[str, str], anchor_s: float | None = None, per_class: int = 4) -> Figure:
    """The first `per_class` windows of each class (columns) from each set (rows), lead 0; the first set is real."""
    fig, axes = plt.subplots(len(sets), len(classes), figsize=(3.5 * len(classes), 1.8 * len(sets) + 0.4),
                             sharex=True, squeeze=False)
    real_windows, real_labels = next(iter(sets.values()))
    limits = {cls: real_limits(real_windows[np.asarray(real_labels) == cls]) for cls in classes}
    for row, (name, (windows, labels)) in enumerate(sets.items()):
        color = REAL_COLOR if row == 0 else colors.get(name, METHOD_PALETTE[0])
        labels = np.asarray(labels)
        for col, cls in enumerate(classes):
            ax = axes[row, col]
            chosen = windows[labels == cls][:per_class, 0]
            t = np.arange(windows.shape[-1]) / fs_hz
            for k, trace in enumerate(chosen):
                ax.plot(t, trace, color=color, lw=0.7, alpha=1.0 - 0.15 * k)
            _trace_panel(ax, f"{cls} · {name}", limits[cls], anchor_s)
    return _finish(fig, axes)


def _trace_panel(ax, title: str, limits: tuple[float, float] | None, anchor_s: float | None) -> None:
    """Title, the real windows' y-limits, and the anchor beat's time as a dotted line."""
    ax.set_title(title, fontsize=9)
    if limits is not None:
        ax.set_ylim(*limits)
    if anchor_s is not None:
        ax.axvline(anchor_s, **ANCHOR_STYLE)


def _finish(fig: Figure, axes: np.ndarray) -> Figure:
    """Units on the outer axes of a rows × classes grid of traces."""
    for ax in axes[:, 0]:
        ax.set_ylabel("mV")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    return fig


def metric_bars(table: pd.DataFrame, metric: str, label: str, colors: dict[str, str]) -> Figure:
    """One horizontal bar per row of `table` (index = arm): `metric` with its `<metric>_low/_high` interval.

    Bars of arms with a method's samples take the method's colour (lighter when synthetic only); real-only
    arms are grey. The axis is [0, 1], the range of the metric; intervals are cut at its edges.
    """
    values = table[metric].to_numpy(float)
    low = np.clip(table[f"{metric}_low"].to_numpy(float), 0, 1)
    high = np.clip(table[f"{metric}_high"].to_numpy(float), 0, 1)
    fig, ax = plt.subplots(figsize=(8.0, 0.32 * len(table) + 1.2))
    positions = np.arange(len(table))[::-1]
    real_arms = [arm for arm in table.index if arm_method(str(arm)) is None]
    for position, arm, value, lo, hi in zip(positions, table.index, values, low, high):
        method = arm_method(str(arm))
        if method is None:
            color, alpha = REAL_ARM_COLORS[real_arms.index(arm) % len(REAL_ARM_COLORS)], 1.0
        else:
            color, alpha = colors.get(method, METHOD_PALETTE[0]), 0.45 if str(arm).startswith("synthetic_only") else 1.0
        error = np.nan_to_num([[value - lo], [hi - value]]).clip(min=0)
        ax.barh(position, value, color=color, alpha=alpha, height=0.7)
        ax.errorbar(value, position, xerr=error, color="black", capsize=3, lw=1)
    ax.set_yticks(positions, [str(name) for name in table.index], fontsize=8)
    ax.set_xlabel(label)
    ax.set_xlim(0, 1)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def transfer_scale_sweep(rows: list[dict], colors: dict[str, str]) -> Figure:
    """Macro-F1 [interval] against the transfer guidance weight w, one line per method."""
    return _sweep(pd.DataFrame(rows), "method", "transfer_scale", "transfer scale w (TGDP / domain guidance weight)",
                  colors, log_x=False)


def budget_sweep(rows: list[dict], colors: dict[str, str]) -> Figure:
    """Macro-F1 [interval] against the labeled target budget (windows), one line per method or real-data arm."""
    return _sweep(pd.DataFrame(rows), "method_or_arm", "budget", "labeled target windows (budget)", colors,
                  log_x=True)


def _sweep(table: pd.DataFrame, series: str, x: str, xlabel: str, colors: dict[str, str], log_x: bool) -> Figure:
    fig, ax = plt.subplots(figsize=(5.4, 4.0))

    def method_of(name: str) -> str | None:
        return name if name in colors else arm_method(name)

    others = [name for name in dict.fromkeys(table[series]) if method_of(name) not in colors]  # real-data arms
    for name, part in table.groupby(series, sort=False):
        part = part.sort_values(x)
        if method_of(name) in colors:
            color, style = colors[method_of(name)], "-"
        else:
            color, style = REAL_ARM_COLORS[others.index(name) % len(REAL_ARM_COLORS)], "--"
        xs = part[x].to_numpy(float)
        ax.plot(xs, part["macro_f1"], style, marker="o", color=color, label=name, lw=1.4, ms=4)
        ax.fill_between(xs, part["macro_f1_low"].to_numpy(float), part["macro_f1_high"].to_numpy(float),
                        color=color, alpha=0.15, lw=0)
    if log_x:
        ax.set_xscale("log")
        ticks = sorted(set(table[x].astype(int)))
        ax.set_xticks(ticks, [f"{tick:,}" for tick in ticks])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("macro-F1 (95% interval)")
    ax.set_ylim(0, 1)
    ax.grid(color="0.9")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig
