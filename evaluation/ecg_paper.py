"""Example windows on standard ECG paper: 25 mm/s, 10 mm/mV, the pink 1 mm / 5 mm grid.

The figure is laid out in millimetres, so one small box is 1 mm = 0.04 s × 0.1 mV and one large
box 5 mm = 0.2 s × 0.5 mV wherever it is shown; at the report's 100 dpi 1 mm is 3.9 px. One strip
per class (columns) and set (rows: the real windows, then each method), each the first window
of its class (not selected), with ▼ over the labeled beat at `anchor_s`.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ecg_tgdp.evaluation.figures import METHOD_PALETTE, REAL_COLOR, real_limits

MM_PER_S = 25.0
MM_PER_MV = 10.0
MINOR_MM, MAJOR_MM = 1.0, 5.0
PAPER, GRID_MINOR, GRID_MAJOR = "#fff5f5", "#f5c4c4", "#e08a8a"
MIN_SPAN_MV = 2.0  # the shortest strip: 20 mm, two large boxes either side of a flat baseline
MAX_WIDTH_MM = 330.0  # wider rows wrap; three 4 s strips (100 mm each) fit
MARGIN_MM, GAP_MM, TITLE_MM, HEADER_MM = 3.0, 4.0, 6.0, 8.0


def ecg_strips(real: dict[str, np.ndarray], synthetic: dict[str, dict[str, np.ndarray]], fs_hz: float,
               colors: dict[str, str], anchor_s: float | None = None, per_set: int = 1) -> Figure:
    """Lead 0 of the first `per_set` real and synthetic windows of each class on ECG paper (real in black)."""
    classes = list(real)
    sets = {"real": real, **synthetic}
    real_names = {"real"} if per_set == 1 else {f"real #{i + 1}" for i in range(per_set)}
    if per_set > 1:
        colors = {f"{name} #{i + 1}": colors.get(name, METHOD_PALETTE[0]) for name in synthetic for i in range(per_set)}
        sets = {f"{name} #{i + 1}": {cls: windows[i:] for cls, windows in by_class.items()}
                for name, by_class in sets.items() for i in range(per_set)}
    window_s = next(w.shape[-1] for w in real.values() if len(w)) / fs_hz
    width_mm = window_s * MM_PER_S
    columns = max(1, min(len(classes), int((MAX_WIDTH_MM - 2 * MARGIN_MM + GAP_MM) // (width_mm + GAP_MM))))
    limits = {cls: _strip_limits(real[cls]) for cls in classes}
    height_mm = max((top - bottom) * MM_PER_MV for bottom, top in limits.values())
    limits = {cls: (bottom, bottom + height_mm / MM_PER_MV) for cls, (bottom, top) in limits.items()}
    rows_per_set = math.ceil(len(classes) / columns)
    fig_w = 2 * MARGIN_MM + columns * width_mm + (columns - 1) * GAP_MM
    fig_h = HEADER_MM + MARGIN_MM + len(sets) * rows_per_set * (TITLE_MM + height_mm)
    fig = plt.figure(figsize=(fig_w / 25.4, fig_h / 25.4))
    shown = "first window" if per_set == 1 else f"first {per_set} windows"
    fig.text(MARGIN_MM / fig_w, 1 - 5.0 / fig_h, "25 mm/s · 10 mm/mV · small box 1 mm = 0.04 s × 0.1 mV · "
             f"▼ the labeled beat · {shown} of each class, not selected", fontsize=8, va="baseline")
    for k, (name, by_class) in enumerate(sets.items()):
        color = REAL_COLOR if name in real_names else colors.get(name, METHOD_PALETTE[0])
        for c, cls in enumerate(classes):
            row, col = k * rows_per_set + c // columns, c % columns
            left = MARGIN_MM + col * (width_mm + GAP_MM)
            top = HEADER_MM + row * (TITLE_MM + height_mm) + TITLE_MM
            ax = fig.add_axes((left / fig_w, 1 - (top + height_mm) / fig_h, width_mm / fig_w, height_mm / fig_h))
            windows = by_class.get(cls, np.empty((0, 1, 0)))
            _strip(ax, windows[0, 0] if len(windows) else None, fs_hz, width_mm, limits[cls], color,
                   f"{cls} · {name}", anchor_s)
    return fig


def _strip_limits(windows: np.ndarray) -> tuple[float, float]:
    """The real windows' robust range in mV, widened to whole large boxes (0.5 mV) and at least MIN_SPAN_MV."""
    bottom, top = real_limits(windows) or (-MIN_SPAN_MV / 2, MIN_SPAN_MV / 2)
    missing = max(0.0, MIN_SPAN_MV - (top - bottom))
    bottom, top = bottom - missing / 2, top + missing / 2
    box = MAJOR_MM / MM_PER_MV
    return math.floor(bottom / box) * box, math.ceil(top / box) * box


def _strip(ax, trace: np.ndarray | None, fs_hz: float, width_mm: float, limits_mv: tuple[float, float], color: str,
           title: str, anchor_s: float | None) -> None:
    bottom, top = (value * MM_PER_MV for value in limits_mv)
    ax.set_facecolor(PAPER)
    for step, shade, lw in ((MINOR_MM, GRID_MINOR, 0.35), (MAJOR_MM, GRID_MAJOR, 0.7)):
        ax.vlines(np.arange(0, width_mm + 1e-6, step), bottom, top, colors=shade, lw=lw, zorder=1)
        ax.hlines(np.arange(bottom, top + 1e-6, step), 0, width_mm, colors=shade, lw=lw, zorder=1)
    if trace is None:
        ax.text(width_mm / 2, (bottom + top) / 2, "no windows of this class", ha="center", va="center", fontsize=8)
    else:
        y_mm = np.asarray(trace, dtype=float) * MM_PER_MV
        ax.plot(np.arange(len(y_mm)) / fs_hz * MM_PER_S, y_mm, color=color, lw=0.9, zorder=3)
        if np.mean((y_mm < bottom) | (y_mm > top)) > 0.005:
            title += " (clipped at the strip's edges)"
    ax.text(0, top + 1.2, title, fontsize=8, va="bottom", ha="left", clip_on=False)
    if anchor_s is not None:
        ax.text(anchor_s * MM_PER_S, top - 0.2, "▼", fontsize=7, ha="center", va="top", zorder=4)
    ax.set_xlim(0, width_mm)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(GRID_MAJOR)
