"""Start-up time of `ecg-tgdp --help` and `ecg-tgdp sample --help`, against `python -c pass` in the same run.

    python benchmarks/cli_startup.py [--repeats 7] [--out benchmarks/results/cli_startup.json]

Each command runs as a fresh process `--repeats` times (after one unmeasured warm-up run); the
median wall time is reported, and its ratio to the bare interpreter's. `python -c "import torch"`
is timed too: what every command paid before the handlers imported their stages themselves.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import RESULTS, write_result


def median_seconds(command: list[str], repeats: int) -> float:
    """Median wall time of `repeats` runs of `command` (output discarded), after one warm-up run."""
    times = []
    for index in range(repeats + 1):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if index:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--executable", default=shutil.which("ecg-tgdp", path=str(Path(sys.executable).parent))
                        or shutil.which("ecg-tgdp"), help="the ecg-tgdp console script (default: beside python)")
    parser.add_argument("--out", type=Path, default=RESULTS / "cli_startup.json")
    args = parser.parse_args()
    if not args.executable:
        sys.exit("no ecg-tgdp console script found; install the project (pip install -e .) or pass --executable")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ecg-tgdp --help": [args.executable, "--help"],
        "ecg-tgdp sample --help": [args.executable, "sample", "--help"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    seconds = {name: median_seconds(command, args.repeats) for name, command in commands.items()}
    reference = seconds["python -c pass"]
    report = {
        "benchmark": "cli_startup",
        "median_s": {name: round(value, 4) for name, value in seconds.items()},
        "ratio_to_python_pass": {name: round(value / reference, 1) for name, value in seconds.items()},
        "repeats": args.repeats,
        "note": "wall time of a fresh process per run, median after one warm-up run; stdout and stderr discarded",
    }
    print(write_result(args.out, report).read_text(), end="")


if __name__ == "__main__":
    main()
