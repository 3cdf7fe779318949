"""Tables as report.html shows them: readable column names, `mean [low, high]` cells, narrow column groups.

The CSV files keep the raw columns (`macro_f1_seed_low`, ...); a view is a DataFrame of display
strings whose index holds the key columns (arm; method and class), and `column_groups` splits it
into parts that each fit an A4 page or a laptop screen, repeating the keys in every part.
"""
from __future__ import annotations

import math
import numbers

import pandas as pd

SUMMARY = {"macro_f1": "macro-F1", "balanced_accuracy": "balanced accuracy", "macro_auroc": "macro AUROC"}
PER_CLASS = {"sensitivity": "sens.", "ppv": "PPV"}
NAMES = {
    "arm": "arm", "method": "method", "class": "class", "n_real": "n real", "n_fake": "n synthetic", "mmd": "MMD",
    "frechet": "Fréchet", "psd_l1": "PSD L1", "wasserstein_r_amplitude_mv": "W₁ R amplitude (mV)",
    "wasserstein_qrs_ms": "W₁ QRS width (ms)", "wasserstein_rr_prev_ms": "W₁ RR before (ms)",
    "wasserstein_qt_ms": "W₁ QT (ms)", "wasserstein_log_rr_ratio": "W₁ log RR ratio",
    "discriminator_auroc": "discriminator AUROC", "dcr_synthetic_median": "DCR synthetic (median)",
    "dcr_heldout_median": "DCR held-out real (median)", "dcr_threshold": "DCR threshold",
    "memorized_share": "memorized share",
}
MISSING = "–"
MAX_CHARS = 120  # characters of cell text per table part: about 800 px at the report's 12 px font, an A4 width


def readable(name: str) -> str:
    """The display name of a raw column: from NAMES, else with spaces for underscores."""
    return NAMES.get(name, SUMMARY.get(name, name.replace("_", " ")))


def format_number(value, whole: bool = False) -> str:
    """A table cell: '–' for missing; with `whole` (a column of counts) an integer with thousands separators,
    else 3 decimals below 10, fewer above (17,333 rather than 1.733e+04)."""
    if not isinstance(value, numbers.Real):
        return MISSING if value is None else str(value)
    value = float(value)
    if not math.isfinite(value):
        return MISSING
    size = abs(value)
    if whole or size >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if size < 10 else f"{value:.2f}" if size < 100 else f"{value:.1f}"


def _counts(column: pd.Series) -> bool:
    """True for a column of counts: every value whole and some above 1 (a column of 0 and 1 scores is not)."""
    values = pd.to_numeric(column, errors="coerce").dropna()
    return bool(len(values)) and bool((values == values.round()).all()) and bool((values.abs() > 1).any())


def interval_cell(mean, low, high) -> str:
    """'0.744 [0.702, 0.786]'; the mean alone when the interval is missing, the interval alone without a mean."""
    if format_number(low) == MISSING and format_number(high) == MISSING:
        return format_number(mean)
    interval = f"[{format_number(low)}, {format_number(high)}]"
    return interval if mean is None else f"{format_number(mean)} {interval}"


def arm_name(arm: str) -> str:
    """`target_real+synthetic:tgdp` → `target_real + synthetic: tgdp` (breakable where a reader pauses)."""
    return arm.replace("+", " + ").replace(":", ": ")


def utility_view(table: pd.DataFrame) -> pd.DataFrame:
    """Arms × summary metrics as `mean [seed interval]`, macro-F1 also with its patient-bootstrap interval (of the
    seed-averaged classifier, so not centred on the seed mean: shown alone), then per-class sensitivity and PPV."""
    rows = table.set_index("arm")
    view = pd.DataFrame(index=pd.Index([arm_name(str(arm)) for arm in rows.index], name="arm"))
    for metric, label in SUMMARY.items():
        if metric not in rows:
            continue
        view[f"{label} [95% seeds]"] = _intervals(rows, metric, "seed")
        if metric == "macro_f1":
            view[f"{label} [95% patients]"] = _intervals(rows, metric, "boot", with_mean=False)
    for column in rows.columns:
        kind, _, cls = column.partition("_")
        if kind in PER_CLASS and "_" not in cls:
            view[f"{cls} {PER_CLASS[kind]}"] = [format_number(v) for v in rows[column]]
    return view


def _intervals(rows: pd.DataFrame, metric: str, kind: str, with_mean: bool = True) -> list[str]:
    means = rows[metric] if with_mean else [None] * len(rows)
    return [interval_cell(mean, low, high) for mean, low, high in
            zip(means, rows[f"{metric}_{kind}_low"], rows[f"{metric}_{kind}_high"])]


def plain_view(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Any table with readable names and formatted numbers; `keys` become the index."""
    rows = table.set_index(keys)
    view = pd.DataFrame({column: [format_number(v, _counts(rows[column])) for v in rows[column]]
                         for column in rows.columns}, index=rows.index)
    view.index = view.index.set_names([readable(key) for key in keys])
    return view.rename(columns=readable)


def column_groups(view: pd.DataFrame, max_chars: int = MAX_CHARS) -> list[pd.DataFrame]:
    """`view` split into consecutive column groups whose text width (keys included) stays within `max_chars`."""
    keys = sum(_width(name, view.index.get_level_values(name)) for name in view.index.names)
    groups, current, used = [], [], keys
    for column in view.columns:
        width = _width(column, view[column])
        if current and used + width > max_chars:
            groups.append(current)
            current, used = [], keys
        current.append(column)
        used += width
    groups.append(current)
    return [view[group] for group in groups]


def _width(header, cells) -> int:
    """Characters a column needs: its longest cell (cells do not wrap) or header word (headers do), plus padding."""
    longest_word = max((len(word) for word in str(header).split()), default=0)
    return max([longest_word, *(len(str(cell)) for cell in cells)]) + 2
