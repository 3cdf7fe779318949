"""What the benchmarks share: where the databases are, which recipe, and result files stamped with their machine.

Benchmarks run from the repository root (`python benchmarks/NAME.py`), where this folder is sys.path[0].
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from ecg_tgdp.data.atomic import write_json
from ecg_tgdp.pipeline.config import data_root_choices, default_data_root
from ecg_tgdp.pipeline.shipped import recipe_path

RESULTS = Path(__file__).resolve().parent / "results"


def add_data_root(parser: argparse.ArgumentParser) -> None:
    """The --data-root option, resolved as the CLI resolves it when not given."""
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding the PhysioNet databases (default: $ECG_TGDP_DATA_ROOT, else the user "
                             "folder ecg-tgdp fetch downloads to)")


def data_root(given: Path | None, *databases: str) -> Path:
    """`given`, else ecg-tgdp's own default; SystemExit naming the ways to set it when a database is missing."""
    root = given or default_data_root()
    missing = [name for name in databases if not (root / name).is_dir()]
    if missing:
        raise SystemExit(f"{root}: no {', '.join(missing)} folder there; {data_root_choices()}")
    return root


def recipe(name_or_path: str) -> Path:
    """A shipped recipe by name (`mitdb_to_svdb`) or a TOML path."""
    return recipe_path(name_or_path)


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    stamp = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
             "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
             "machine": platform.machine(), "device": "cpu"}
    if torch.cuda.is_available():
        stamp["device"] = torch.cuda.get_device_name(0)
    return stamp


def write_result(path: Path, payload: dict) -> Path:
    """`payload` as JSON at `path` (atomically), with the machine stamp under "machine"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**payload, "machine": machine()})
    return path
