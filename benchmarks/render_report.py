"""Render report.html in headless Chromium, check that every figure loaded, and screenshot it.

    pip install playwright            # the Python driver only; the browser is the system's
    apt-get install -y chromium       # Debian; or any Chromium/Chrome given with --browser
    python benchmarks/render_report.py runs/quickstart/report/report.html --out benchmarks/results/report

Writes <out>.png (the full page) and <out>.json (figures found, loaded, their sizes; whether
anything is wider than the window, so cut off in the screenshot, and which table boxes scroll),
and exits non-zero when a figure failed to decode, the page has none, or the page is wider
than --width.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from harness import RESULTS, write_result

FIGURE_STATE = """() => Array.from(document.images).map(img => ({
    alt: img.alt, loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth, height: img.naturalHeight,
    shown_width: img.clientWidth}))"""
LAYOUT = """() => ({page_width: document.documentElement.scrollWidth, window_width: window.innerWidth,
    scrolling_tables: Array.from(document.querySelectorAll('.table-box')).filter(b => b.scrollWidth > b.clientWidth)
        .map(b => b.previousElementSibling ? b.previousElementSibling.textContent : '')})"""
# Chromium without its background traffic: the page is self-contained and nothing may be fetched.
QUIET = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def render(page_file: Path, out: Path, browser: str, width: int) -> dict:
    """Open `page_file` offline, return what each <img> did, and save a full-page screenshot to `out`.png."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=browser, args=QUIET)
        page = chromium.new_page(viewport={"width": width, "height": 900})
        page.route("http*://**", lambda route: route.abort())  # a self-contained page needs nothing from the network
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        figures = page.evaluate(FIGURE_STATE)
        layout = page.evaluate(LAYOUT)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out.with_suffix(".png")), full_page=True)
        title = page.title()
        chromium.close()
    return {"page": str(page_file), "title": title, "width": width, "figures": figures,
            "all_loaded": bool(figures) and all(f["loaded"] for f in figures),
            "fits_width": layout["page_width"] <= layout["window_width"], **layout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report.html written by `ecg-tgdp evaluate`")
    parser.add_argument("--out", type=Path, default=RESULTS / "report",
                        help="path stem of the screenshot (.png) and the result (.json)")
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("google-chrome") or "",
                        help="Chromium or Chrome executable (default: found on PATH)")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    if not args.report.is_file():
        sys.exit(f"{args.report}: no such report; run `ecg-tgdp evaluate CONFIG` first")
    if not args.browser:
        sys.exit("no Chromium found on PATH; install it (Debian: apt-get install -y chromium) or pass --browser")
    result = render(args.report, args.out, args.browser, args.width)
    write_result(args.out.with_suffix(".json"), result)
    loaded = sum(f["loaded"] for f in result["figures"])
    print(f"{args.report}: {loaded}/{len(result['figures'])} figures loaded, page {result['page_width']} px wide "
          f"in a {result['window_width']} px window, tables scrolling in their box: "
          f"{result['scrolling_tables'] or 'none'} → {args.out.with_suffix('.png')}")
    if not (result["all_loaded"] and result["fits_width"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
