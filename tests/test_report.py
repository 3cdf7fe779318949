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

from ecg_tgdp.evaluation import figures
from ecg_tgdp.evaluation.report import Section, json_ready, write_report

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
    colors = figures.method_colors(["tgdp"])
    figs = {"overlays": figures.class_overlays(real, synthetic, FS_HZ, colors, anchor_s=0.5),
            "grid": figures.sample_grid(grid, ["N", "V"], FS_HZ, colors, anchor_s=0.5),
            "bars": figures.metric_bars(utility.set_index("arm"), "macro_f1", "macro-F1", colors)}
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
    from render_report import render

    metrics, tables, figs, sections = _inputs()
    page = write_report(tmp_path / "report", title="t", metrics=metrics, tables=tables, figures=figs, sections=sections)
    result = render(page, tmp_path / "shot", shutil.which("chromium"), width=1000)
    assert result["all_loaded"] and sorted(f["alt"] for f in result["figures"]) == ["bars", "grid", "overlays"]
    assert result["fits_width"] and result["scrolling_tables"] == []  # nothing cut off at 1000 px
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def _utility_table() -> pd.DataFrame:
    """A utility.csv as `UtilityResult.table` writes it: two arms, one summary metric and one class."""
    row = lambda mean, low, high: {"macro_f1": mean, "macro_f1_seed_low": low, "macro_f1_seed_high": high,
                                   "macro_f1_boot_low": low + 0.05, "macro_f1_boot_high": high - 0.05,
                                   "sensitivity_S": 0.25, "sensitivity_S_seed_low": 0.1,
                                   "sensitivity_S_seed_high": 0.4, "sensitivity_S_boot_low": 0.2,
                                   "sensitivity_S_boot_high": 0.3}
    return pd.DataFrame([{"arm": "target_real", **row(0.5, 0.4, 0.6)},
                         {"arm": "target_real+synthetic:tgdp", **row(0.7444, 0.70213, float("nan"))}])


def test_the_utility_table_reads_as_interval_cells_under_readable_names():
    from ecg_tgdp.evaluation.report_tables import utility_view

    view = utility_view(_utility_table())
    assert list(view.columns) == ["macro-F1 [95% seeds]", "macro-F1 [95% patients]", "S sens."]
    assert list(view.index) == ["target_real", "target_real + synthetic: tgdp"] and view.index.name == "arm"
    assert view.iloc[0].tolist() == ["0.500 [0.400, 0.600]", "[0.450, 0.550]", "0.250"]
    assert view.iloc[1, 0] == "0.744 [0.702, –]"


def test_counts_are_whole_numbers_and_scores_keep_their_decimals():
    from ecg_tgdp.evaluation.report_tables import plain_view

    table = pd.DataFrame({"method": ["a", "b"], "n_real": [44.0, 3.0], "coverage": [1.0, 0.0],
                          "frechet": [17333.01, 5.864]})
    view = plain_view(table, ["method"])
    assert view.to_dict("list") == {"n real": ["44", "3"], "coverage": ["1.000", "0.000"],
                                    "Fréchet": ["17,333", "5.864"]}


def test_wide_tables_are_split_into_column_groups_that_repeat_the_keys():
    from ecg_tgdp.evaluation.report_tables import column_groups

    view = pd.DataFrame({f"metric {k}": ["0.123 [0.100, 0.150]"] * 3 for k in range(8)},
                        index=pd.Index(["target_real + synthetic: finetune_partial", "b", "c"], name="arm"))
    parts = column_groups(view, max_chars=120)
    assert len(parts) > 1 and [c for part in parts for c in part.columns] == list(view.columns)
    for part in parts:
        assert part.index.name == "arm" and 44 + 24 * len(part.columns) <= 120


def test_report_html_shows_the_views_and_keeps_raw_columns_in_the_csv(tmp_path):
    from ecg_tgdp.evaluation.report_tables import utility_view

    table = _utility_table()
    page = write_report(tmp_path / "report", "t", {}, {"utility": table}, {},
                        [Section("Utility", "", tables=["utility"])], views={"utility": utility_view(table)})
    text = page.read_text()
    assert "macro-F1 [95% seeds]" in text and "0.500 [0.400, 0.600]" in text and "macro_f1_seed_low" not in text
    assert "<div class='table-box'>" in text
    assert "macro_f1_seed_low" in (page.parent / "utility.csv").read_text()


def test_every_figure_gives_a_method_one_colour():
    import matplotlib.colors as mcolors

    colors = figures.method_colors(["finetune", "tgdp"])
    assert colors["finetune"] != colors["tgdp"]
    real = {"N": _windows(20, 0.0)}
    overlays = figures.class_overlays(real, {"finetune": {"N": _windows(5, 0.1)}, "tgdp": {"N": _windows(5, 0.2)}},
                                      FS_HZ, colors)
    lines = {line.get_label().split(" ")[0]: line.get_color() for ax in overlays.axes for line in ax.get_lines()}
    bars = figures.metric_bars(_utility_table().set_index("arm").rename(columns=lambda c: c.replace("_seed", "")),
                               "macro_f1", "macro-F1", colors)
    tgdp_bar = [p for p in bars.axes[0].patches][1]  # rows: target_real, then target_real+synthetic:tgdp
    assert mcolors.same_color(lines["tgdp"], colors["tgdp"]) and mcolors.same_color(lines["real"], "black")
    assert mcolors.same_color(tgdp_bar.get_facecolor()[:3], colors["tgdp"])


def test_trace_panels_span_the_real_beats_not_a_far_off_method():
    rng = np.random.default_rng(1)
    real = {"N": _windows(30, 0.0)}  # a 1 mV spike over 0.05 mV noise
    wild = {"bad": {"N": (5.0 * rng.standard_normal((10, 1, 64))).astype(np.float32)}}
    fig = figures.class_overlays(real, wild, FS_HZ, figures.method_colors(["bad"]))
    bottom, top = fig.axes[0].get_ylim()
    assert -0.4 < bottom < 0.0 and 1.0 < top < 1.4  # the real peak shows; ±5 mV noise does not set the scale


def test_ecg_paper_is_drawn_at_25_mm_per_s_and_10_mm_per_mv():
    from ecg_tgdp.evaluation.ecg_paper import ecg_strips

    real = {"N": _windows(4, 0.0), "V": _windows(4, 0.2)}  # 1 s windows at 64 Hz → 25 mm strips
    fig = ecg_strips(real, {"tgdp": {"N": _windows(2, 0.1)}}, FS_HZ, figures.method_colors(["tgdp"]), anchor_s=0.5)
    assert len(fig.axes) == 4  # (real, tgdp) × (N, V); tgdp has no V windows and says so
    for ax in fig.axes:
        box = ax.get_position()
        width_mm, height_mm = box.width * fig.get_figwidth() * 25.4, box.height * fig.get_figheight() * 25.4
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        assert (x0, x1) == (0, 25.0) and np.isclose(width_mm, 25.0) and np.isclose(height_mm, y1 - y0)
        assert y0 % 5 == 0 and y1 % 5 == 0 and y1 - y0 >= 20  # whole 5 mm boxes, at least 2 mV
        marks = [t for t in ax.texts if t.get_text() == "▼"]
        assert len(marks) == 1 and marks[0].get_position()[0] == 12.5  # the labeled beat at 0.5 s
    assert "no windows of this class" in [t.get_text() for t in fig.axes[3].texts]


SWEEPS = {
    "transfer_scale": [{"method": m, "transfer_scale": w, "macro_f1": f, "macro_f1_low": f - 0.1,
                        "macro_f1_high": f + 0.1}
                       for m, base in (("tgdp", 0.5), ("domain_guidance", 0.4))
                       for w, f in ((2.0, base + 0.05), (0.0, base), (1.0, base + 0.1))],
    "budget": [{"method_or_arm": m, "budget": b, "macro_f1": f, "macro_f1_low": f - 0.1, "macro_f1_high": f + 0.1}
               for m, f in (("tgdp", 0.5), ("target_real", 0.4)) for b in (1000, 50, 200)],
}


def test_sweep_figures_draw_one_line_per_method_in_its_colour_and_the_report_shows_them(tmp_path):
    import matplotlib.colors as mcolors

    from ecg_tgdp.evaluation.protocol import report_sections, sweep_figures

    colors = figures.method_colors(["tgdp", "domain_guidance"])
    drawn = sweep_figures(SWEEPS, colors)
    assert set(drawn) == {"sweep_transfer_scale", "sweep_budget"}
    lines = {line.get_label(): line for line in drawn["sweep_transfer_scale"].axes[0].get_lines()}
    assert set(lines) == {"tgdp", "domain_guidance"}
    assert lines["tgdp"].get_xdata().tolist() == [0.0, 1.0, 2.0]
    assert lines["tgdp"].get_ydata().tolist() == [0.5, 0.6, 0.55]
    assert mcolors.same_color(lines["domain_guidance"].get_color(), colors["domain_guidance"])
    budget = drawn["sweep_budget"].axes[0]
    assert budget.get_xscale() == "log" and [t.get_text() for t in budget.get_xticklabels()] == ["50", "200", "1,000"]
    styles = {line.get_label(): line.get_linestyle() for line in budget.get_lines()}
    assert styles == {"tgdp": "-", "target_real": "--"}
    sections = report_sections(SWEEPS)
    page = write_report(tmp_path / "report", "t", {"sweeps": SWEEPS}, {"utility": _utility_table(),
                        "fidelity": pd.DataFrame({"method": ["a"]}), "privacy": pd.DataFrame({"method": ["a"]})},
                        {**drawn, **{name: figures.metric_bars(_utility_table().set_index("arm").rename(
                            columns=lambda c: c.replace("_seed", "")), "macro_f1", "F1", colors)
                            for name in ("utility_macro_f1", "class_overlays", "ecg_paper", "sample_grid")}},
                        sections)
    text = page.read_text()
    assert "Utility against transfer scale and target budget" in text
    assert "alt='sweep_transfer_scale'" in text and "alt='sweep_budget'" in text
    assert "Utility against" not in "".join(s.heading for s in report_sections(None))
    assert sweep_figures({"transfer_scale": []}, colors) == {}
