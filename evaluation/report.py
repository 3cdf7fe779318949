"""The evaluation report: metrics.json, one CSV per table, PNG figures and a self-contained report.html.

The folder is written through `data.atomic.staged_directory`, so a report is either complete
or absent. report.html embeds every figure as a base64 PNG and every table as HTML, so it
can be mailed or opened offline; all text is HTML-escaped. Tables show as their views
(`evaluation.report_tables`: readable names, interval cells) split into column groups that fit
an A4 page or a laptop screen; the CSV files keep the raw columns.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ecg_tgdp.data.atomic import staged_directory
from ecg_tgdp.evaluation.report_tables import column_groups, plain_view


@dataclass
class Section:
    """A heading, a paragraph, and the names of the tables and figures shown under it."""

    heading: str
    text: str
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def json_ready(value):
    """`value` with NaN/inf → None and numpy scalars → Python, so that `json.dumps(allow_nan=False)` accepts it."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    return value


def write_report(folder: Path, title: str, metrics: dict, tables: dict[str, pd.DataFrame],
                 figures: dict[str, Figure], sections: list[Section],
                 views: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write the report folder atomically and return the path of its report.html.

    Every table and figure named by a section must be given; figures are closed after saving.
    `views` holds how a table reads in report.html (display strings, index = key columns); a table
    without one shows as `plain_view` of its CSV columns, keyed by its first column.
    """
    for section in sections:
        missing = [name for name in section.tables if name not in tables]
        missing += [name for name in section.figures if name not in figures]
        if missing:
            raise ValueError(f"report section {section.heading!r} names {missing}, which were not given")
    folder = Path(folder)
    with staged_directory(folder) as staging:
        (staging / "metrics.json").write_text(json.dumps(json_ready(metrics), indent=2, allow_nan=False) + "\n")
        for name, table in tables.items():
            table.to_csv(staging / f"{name}.csv", index=False)
        (staging / "figures").mkdir()
        images = {}
        for name, figure in figures.items():
            path = staging / "figures" / f"{name}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            images[name] = base64.b64encode(path.read_bytes()).decode("ascii")
        views = views or {}
        shown = {name: views[name] if name in views else plain_view(table, [table.columns[0]])
                 for name, table in tables.items()}
        (staging / "report.html").write_text(_html(title, sections, shown, images), encoding="utf-8")
    return folder / "report.html"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1120px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.4; }
p { max-width: 60em; }
.table-box { overflow-x: auto; max-width: 100%; margin: 0.4em 0 1.2em; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
td { white-space: nowrap; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; vertical-align: bottom; max-width: 10em; }
.key { text-align: left; }
h3 { font-size: 1em; margin: 1.2em 0 0.2em; }
h3 small { font-weight: normal; color: #666; }
img { max-width: 100%; height: auto; display: inline-block; vertical-align: top; margin: 0.6em 0.6em 0.6em 0; }
@media print { body { max-width: none; margin: 0; } img, table { break-inside: avoid; } }
"""


def _html(title: str, sections: list[Section], tables: dict[str, pd.DataFrame], images: dict[str, str]) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             (f"<p>Written {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}. Tables are also in the CSV files "
             "beside this page; every number is in metrics.json.</p>")]
    for section in sections:
        parts += [f"<h2>{html.escape(section.heading)}</h2>", f"<p>{html.escape(section.text)}</p>"]
        for name in section.figures:
            parts.append(f"<img alt='{html.escape(name, quote=True)}' src='data:image/png;base64,{images[name]}'>")
        for name in section.tables:
            groups = column_groups(tables[name])
            for k, group in enumerate(groups, start=1):
                part = f" (part {k} of {len(groups)})" if len(groups) > 1 else ""
                parts.append(f"<h3>{html.escape(name)}{part} <small>{html.escape(name)}.csv</small></h3>")
                parts.append(_table_html(group))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _table_html(view: pd.DataFrame) -> str:
    """One column group in its own scrolling box: the index (key columns, left-aligned) then the cells."""
    flat = view.reset_index()
    keys = view.index.nlevels
    head = "".join(f"<th{' class=key' if k < keys else ''}>{html.escape(str(c))}</th>" for k, c in enumerate(flat))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=key' if k < keys else ''}>{html.escape(str(cell))}</td>"
                         for k, cell in enumerate(row)) + "</tr>"
        for row in flat.itertuples(index=False))
    return f"<div class='table-box'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
