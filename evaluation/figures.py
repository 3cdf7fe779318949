"""Figures for the evaluation report: real vs synthetic beats, sample grids, metric bars.

Every function returns a matplotlib Figure (Agg backend, nothing shown); `evaluation.report`
embeds them in report.html. Windows are `[N, leads, T]` in mV; only lead 0 is drawn.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

REAL_COLOR = "tab:blue"
SYNTHETIC_COLORS = ("tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def class_overlays(real: dict[str, np.ndarray], synthetic: dict[str, dict[str, np.ndarray]], fs_hz: float) -> Figure:
    """Mean ± 1 s.d. of lead 0 per class: one row per method, the real windows drawn in every panel."""
    classes = list(real)
    rows = list(synthetic) or ["real only"]
    fig, axes = plt.subplots(len(rows), len(classes), figsize=(3.6 * len(classes), 2.4 * len(rows)),
                             sharex=True, sharey="col", squeeze=False)
    for row, method in enumerate(rows):
        color = SYNTHETIC_COLORS[row % len(SYNTHETIC_COLORS)]
        for col, name in enumerate(classes):
            ax = axes[row, col]
            _mean_band(ax, real[name], fs_hz, REAL_COLOR, f"real (n={len(real[name])})")
            if method in synthetic:
                windows = synthetic[method].get(name, np.empty((0,) + real[name].shape[1:]))
                _mean_band(ax, windows, fs_hz, color, f"{method} (n={len(windows)})")
            ax.set_title(f"{name} · {method}", fontsize=9)
            ax.legend(fontsize=7, loc="upper right")
    return _finish(fig, axes)


def _mean_band(ax, windows: np.ndarray, fs_hz: float, color: str, label: str) -> None:
    if len(windows) == 0:
        return
    lead = windows[:, 0]
    t = np.arange(lead.shape[-1]) / fs_hz
    mean, spread = lead.mean(0), lead.std(0)
    ax.plot(t, mean, color=color, lw=1.4, label=label)
    ax.fill_between(t, mean - spread, mean + spread, color=color, alpha=0.2, lw=0)


def sample_grid(sets: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], fs_hz: float,
                per_class: int = 4) -> Figure:
    """The first `per_class` windows of each class (columns) from each set (rows), lead 0."""
    fig, axes = plt.subplots(len(sets), len(classes), figsize=(3.6 * len(classes), 1.9 * len(sets)),
                             sharex=True, sharey="col", squeeze=False)
    for row, (name, (windows, labels)) in enumerate(sets.items()):
        color = REAL_COLOR if row == 0 else SYNTHETIC_COLORS[(row - 1) % len(SYNTHETIC_COLORS)]
        labels = np.asarray(labels)
        for col, cls in enumerate(classes):
            ax = axes[row, col]
            chosen = windows[labels == cls][:per_class, 0]
            t = np.arange(windows.shape[-1]) / fs_hz
            for k, trace in enumerate(chosen):
                ax.plot(t, trace, color=color, lw=0.8, alpha=1.0 - 0.15 * k)
            ax.set_title(f"{cls} · {name}", fontsize=9)
    return _finish(fig, axes)


def _finish(fig: Figure, axes: np.ndarray) -> Figure:
    """Units on the outer axes of a rows × classes grid of traces."""
    for ax in axes[:, 0]:
        ax.set_ylabel("mV")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    return fig


def metric_bars(table: pd.DataFrame, metric: str) -> Figure:
    """One horizontal bar per row of `table` (index = arm): `metric` with its `<metric>_low/_high` interval."""
    values = table[metric].to_numpy(float)
    low = values - table[f"{metric}_low"].to_numpy(float)
    high = table[f"{metric}_high"].to_numpy(float) - values
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(table) + 1.2))
    positions = np.arange(len(table))[::-1]
    ax.barh(positions, values, xerr=np.nan_to_num(np.vstack([low, high])), color="tab:gray", capsize=3)
    ax.set_yticks(positions, [str(name) for name in table.index], fontsize=8)
    ax.set_xlabel(f"{metric} (95% interval)")
    ax.set_xlim(0, max(1.0, float(np.nanmax(values + np.nan_to_num(high))) * 1.05))
    fig.tight_layout()
    return fig

