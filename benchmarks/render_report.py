"""Render report.html in headless Chromium, check that every figure loaded, and screenshot it.

    pip install playwright            # the Python driver only; the browser is the system's
    apt-get install -y chromium       # Debian; or any Chromium/Chrome given with --browser
    python benchmarks/render_report.py runs/quickstart/report/report.html --out benchmarks/results/report

Writes <out>.png (the full page) and <out>.json (figures found, loaded, their sizes), and
exits non-zero when a figure failed to decode or the page has none.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

FIGURE_STATE = """() => Array.from(document.images).map(img => ({
    alt: img.alt, loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth, height: img.naturalHeight}))"""


def render(page_file: Path, out: Path, browser: str, width: int) -> dict:
    """Open `page_file` offline, return what each <img> did, and save a full-page screenshot to `out`.png."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chromium.new_page(viewport={"width": width, "height": 900})
        page.route("http*://**", lambda route: route.abort())  # a self-contained page needs nothing from the network
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        figures = page.evaluate(FIGURE_STATE)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out.with_suffix(".png")), full_page=True)
        title = page.title()
        chromium.close()
    return {"page": str(page_file), "title": title, "figures": figures,
            "all_loaded": bool(figures) and all(f["loaded"] for f in figures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report.html written by `ecg-tgdp evaluate`")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report"),
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
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    loaded = sum(f["loaded"] for f in result["figures"])
    print(f"{args.report}: {loaded}/{len(result['figures'])} figures loaded → {args.out.with_suffix('.png')}")
    if not result["all_loaded"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
