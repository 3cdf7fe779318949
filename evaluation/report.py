"""The evaluation report: metrics.json, one CSV per table, PNG figures and a self-contained report.html.

The folder is written through `data.atomic.staged_directory`, so a report is either complete
or absent. report.html embeds every figure as a base64 PNG and every table as HTML, so it
can be mailed or opened offline; all text is HTML-escaped.
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

from data.atomic import staged_directory


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
                 figures: dict[str, Figure], sections: list[Section]) -> Path:
    """Write the report folder atomically and return the path of its report.html.

    Every table and figure named by a section must be given; figures are closed after saving.
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
        (staging / "report.html").write_text(_html(title, sections, tables, images), encoding="utf-8")
    return folder / "report.html"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; }
img { max-width: 100%; margin: 0.5em 0; }
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
            parts.append(f"<h3>{html.escape(name)}</h3>")
            parts.append(tables[name].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–",
                                              border=0, escape=True))
    parts.append("</body></html>\n")
    return "\n".join(parts)
