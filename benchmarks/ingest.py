"""Ingest throughput on all 48 mitdb records, against bare `wfdb.rdrecord` + `rdann` in the same run.

    python benchmarks/ingest.py [--data-root DIR] [--workers 2] [--out benchmarks/results/ingest.json]

The database (mitdb/) is read from --data-root, else $ECG_TGDP_DATA_ROOT, else the folder `ecg-tgdp fetch`
downloads to; the development checkout uses `--data-root ../shared/physionet` (or sets ECG_TGDP_DATA_ROOT
to it).

Writes records/s and beats/s of the full beat-window ingest (band-pass, 360 → 128 Hz
resampling, windowing, labels) and of the bare reads, and their ratio.
"""
from __future__ import annotations

import argparse
import os
import time
from functools import partial
from pathlib import Path

import wfdb

from harness import RESULTS, add_data_root, data_root, write_result

from ecg_tgdp.data.ingest import list_wfdb_records, read_records
from ecg_tgdp.data.labels import AAMI_SYMBOL_TO_CLASS
from ecg_tgdp.data.wfdb_beats import read_beat_windows


def bare_read(path: Path) -> int:
    """What any reader must do at least: the MLII signal and the annotations."""
    wfdb.rdrecord(str(path), channel_names=["MLII"])
    return len(wfdb.rdann(str(path), "atr").sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_root(parser)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest.json")
    args = parser.parse_args()

    paths = list_wfdb_records(data_root(args.data_root, "mitdb") / "mitdb")
    tasks = [
        (path.name, partial(read_beat_windows, path, ["MLII"], fs_hz=128.0, window_s=1.0, band_hz=(0.5, 40.0),
                            symbol_to_class=AAMI_SYMBOL_TO_CLASS, classes=["N", "S", "V", "F", "Q"]))
        for path in paths
    ]
    bare, full, serial = [], [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        annotations = sum(bare_read(path) for path in paths)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = read_records(tasks, workers=args.workers, desc="ingest mitdb")
        full.append(time.perf_counter() - started)
        started = time.perf_counter()
        read_records(tasks, workers=1, desc="ingest mitdb, 1 worker")
        serial.append(time.perf_counter() - started)
    beats = sum(len(part.labels) for part in result.parts)
    bare_s, full_s, serial_s = min(bare), min(full), min(serial)
    report = {
        "benchmark": "ingest_mitdb",
        "records": len(paths),
        "beats": beats,
        "annotations": annotations,
        "workers": args.workers,
        "ingest_s": round(full_s, 3),
        "ingest_records_per_s": round(len(paths) / full_s, 2),
        "ingest_beats_per_s": round(beats / full_s, 1),
        "bare_read_s": round(bare_s, 3),
        "bare_read_records_per_s": round(len(paths) / bare_s, 2),
        "ratio_ingest_to_bare_read": round(full_s / bare_s, 3),
        "ingest_1_worker_s": round(serial_s, 3),
        "ratio_ingest_1_worker_to_bare_read": round(serial_s / bare_s, 3),
        "records_skipped": result.skipped,
        "repeats": args.repeats,
        "note": "bare read is serial rdrecord(MLII) + rdann; ingest_s uses `workers` processes, ingest_1_worker_s one; best of repeats",
    }
    print(write_result(args.out, report).read_text(), end="")


if __name__ == "__main__":
    main()
