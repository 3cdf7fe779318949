"""The report writer: strict JSON, CSV tables, embedded figures, escaped text, all-or-nothing folders."""
from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from evaluation import figures
from evaluation.report import Section, json_ready, write_report

FS_HZ = 64.0


def _windows(n: int, offset: float) -> np.ndarray:
    t = np.arange(64) / FS_HZ
    rng = np.random.default_rng(0)
    return (np.exp(-((t - 0.5) ** 2) / 0.002) + offset + 0.05 * rng.standard_normal((n, 1, 64))).astype(np.float32)


def _inputs():
    real = {"N": _windows(20, 0.0), "V": _windows(10, 0.2)}
    synthetic = {"tgdp": {"N": _windows(15, 0.1), "V": _windows(8, 0.3)}}
    utility = pd.DataFrame({"arm": ["target only", "target + <tgdp>"], "macro_f1": [0.5, float("nan")],
                            "macro_f1_low": [0.4, float("nan")], "macro_f1_high": [0.6, float("nan")]})
    labels = np.array(["N"] * 20 + ["V"] * 10)
    grid = {"real": (np.concatenate([real["N"], real["V"]]), labels)}
    figs = {"overlays": figures.class_overlays(real, synthetic, FS_HZ),
            "grid": figures.sample_grid(grid, ["N", "V"], FS_HZ),
            "bars": figures.metric_bars(utility.set_index("arm"), "macro_f1")}
    sections = [Section("Utility <b>", "a & b", tables=["utility"], figures=["bars"]),
                Section("Beats", "overlays", figures=["overlays", "grid"])]
    metrics = {"f1": np.float32(0.5), "missing": float("nan"), "counts": {"n": np.int64(3)}, "arr": np.array([1.0, np.inf])}
    return metrics, {"utility": utility}, figs, sections


def test_report_folder_holds_strict_json_csv_pngs_and_a_self_contained_html(tmp_path):
    metrics, tables, figs, sections = _inputs()
    page = write_report(tmp_path / "report", title="t <x>", metrics=metrics, tables=tables, figures=figs,
                        sections=sections)
    folder = page.parent
    assert json.loads((folder / "metrics.json").read_text()) == {"f1": 0.5, "missing": None, "counts": {"n": 3},
                                                                 "arr": [1.0, None]}
    assert pd.read_csv(folder / "utility.csv")["arm"].tolist() == ["target only", "target + <tgdp>"]
    assert sorted(p.name for p in (folder / "figures").iterdir()) == ["bars.png", "grid.png", "overlays.png"]
    text = page.read_text()
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(embedded) == 3
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in embedded)
    assert "<b>" not in text and "Utility &lt;b&gt;" in text and "target + &lt;tgdp&gt;" in text
    assert "src='http" not in text and "<script" not in text  # nothing fetched when the page opens


def test_a_section_naming_a_missing_figure_is_refused_before_anything_is_written(tmp_path):
    metrics, tables, figs, sections = _inputs()
    del figs["grid"]
    with pytest.raises(ValueError, match="'grid'"):
        write_report(tmp_path / "report", title="t", metrics=metrics, tables=tables, figures=figs, sections=sections)
    assert not (tmp_path / "report").exists()


def test_a_failed_rewrite_leaves_the_previous_report_in_place(tmp_path):
    metrics, tables, figs, sections = _inputs()
    page = write_report(tmp_path / "report", title="first", metrics=metrics, tables=tables, figures=figs,
                        sections=sections)
    tables = {"utility": tables["utility"]}
    with pytest.raises(TypeError):
        write_report(tmp_path / "report", title="second", metrics={"bad": object()}, tables=tables, figures={},
                     sections=[])
    assert "first" in page.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_json_ready_turns_non_finite_numbers_into_null():
    assert json_ready({1: [np.float64("nan"), np.float32(2.0), (np.int32(4),)]}) == {"1": [None, 2.0, [4]]}


@pytest.mark.skipif(shutil.which("chromium") is None or importlib.util.find_spec("playwright") is None,
                    reason="needs Chromium and the playwright package (see benchmarks/render_report.py)")
def test_report_renders_in_headless_chromium_with_every_figure_loaded(tmp_path):
    from benchmarks.render_report import render

    metrics, tables, figs, sections = _inputs()
    page = write_report(tmp_path / "report", title="t", metrics=metrics, tables=tables, figures=figs, sections=sections)
    result = render(page, tmp_path / "shot", shutil.which("chromium"), width=1000)
    assert result["all_loaded"] and sorted(f["alt"] for f in result["figures"]) == ["bars", "grid", "overlays"]
    assert (tmp_path / "shot.png").stat().st_size > 10_000
