"""The window store: `windows.npy` + `meta.parquet` + `cohort.json`, written atomically, checked on read.

Layout (README: Stages and artifacts): windows float32 [N, leads, T] in mV, memory-mappable; one meta row
per window (record, patient, label, label_index, split, sample_index, ...); cohort.json
with fs_hz, window_s, leads, label names, normalization statistics and counts. Real and
synthetic windows share this layout. cohort.json is written last, so a folder without
it is never taken for a finished cohort; it holds a content hash of the windows and meta
(`content_sha256`), so a stage keyed on cohort.json sees any change to them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_tgdp.data.atomic import staged_directory, write_json

REQUIRED_META = ("record", "patient", "label", "label_index", "split", "sample_index")
REQUIRED_INFO = ("fs_hz", "window_s", "leads", "classes", "normalization", "counts")


class StoreError(Exception):
    """A cohort folder that is missing, incomplete or inconsistent; the message names the file."""


@dataclass
class Cohort:
    """Windows [N, leads, T] (mV), their metadata rows, and the cohort description."""

    windows: np.ndarray
    meta: pd.DataFrame
    info: dict

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    def split(self, *names: str) -> Cohort:
        """The windows of one split ("train", "val" or "test"), or of several, loaded into memory."""
        return self._rows(np.flatnonzero(self.meta["split"].isin(names).to_numpy()))

    def subsample(self, max_windows: int, seed: int) -> Cohort:
        """At most `max_windows` windows drawn at random without replacement (seeded), kept in their order.

        For early stopping on a large validation split: one pass over 60k svdb beats takes
        seconds per epoch, and a few thousand beats rank epochs as well.
        """
        if len(self.meta) <= max_windows:
            return self
        return self._rows(np.sort(np.random.default_rng(seed).choice(len(self.meta), max_windows, replace=False)))

    def _rows(self, rows: np.ndarray) -> Cohort:
        """The windows and meta rows at positions `rows`, loaded into memory."""
        return Cohort(np.asarray(self.windows[rows]), self.meta.iloc[rows].reset_index(drop=True), self.info)

    def normalized(self, windows: np.ndarray | None = None) -> np.ndarray:
        """Windows scaled with the stored per-lead statistics: (x − mean) / std."""
        mean, std = (np.asarray(self.info["normalization"][key], dtype=np.float32)[:, None] for key in ("mean", "std"))
        return (np.asarray(self.windows if windows is None else windows) - mean) / std


COHORT_FILES = ("windows.npy", "meta.parquet", "cohort.json")


def cohort_files(directory: Path) -> list[Path]:
    """The files a cohort folder consists of: what a stage that wrote one re-verifies before reusing it."""
    return [Path(directory) / name for name in COHORT_FILES]


def write_cohort(directory: Path, windows: np.ndarray, meta: pd.DataFrame, info: dict) -> None:
    """Write a cohort folder atomically: build it beside the target, then swap it in."""
    directory = Path(directory)
    if len(windows) != len(meta):
        raise ValueError(f"{directory}: {len(windows)} windows but {len(meta)} meta rows")
    missing = [column for column in REQUIRED_META if column not in meta.columns]
    if missing:
        raise ValueError(f"{directory}: meta lacks columns {missing}")
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    meta = meta.reset_index(drop=True)
    with staged_directory(directory) as staging:
        np.save(staging / "windows.npy", windows)
        meta.to_parquet(staging / "meta.parquet", index=False)
        write_json(staging / "cohort.json", {**info, "content_sha256": content_digest(windows, meta)})


def content_digest(windows: np.ndarray, meta: pd.DataFrame) -> str:
    """SHA-256 of the windows' float32 bytes and of the meta table's values (0.15 s for 200 MB of windows)."""
    digest = hashlib.sha256(np.ascontiguousarray(windows, dtype=np.float32).data)
    digest.update(",".join(meta.columns).encode())
    digest.update(pd.util.hash_pandas_object(meta, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def read_cohort(directory: Path, mmap: bool = True) -> Cohort:
    """Read and check a cohort folder; windows are memory-mapped unless `mmap` is False."""
    directory = Path(directory)
    info_file = directory / "cohort.json"
    if not info_file.is_file():
        raise StoreError(f"{info_file}: not found (cohort missing or never finished; run `ecg-tgdp ingest`)")
    info = json.loads(info_file.read_text())
    missing = [key for key in REQUIRED_INFO if key not in info]
    if missing:
        raise StoreError(f"{info_file}: missing keys {missing}")
    try:
        windows = np.load(directory / "windows.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        meta = pd.read_parquet(directory / "meta.parquet")
    except (OSError, ValueError) as error:
        raise StoreError(f"{directory}: cannot read windows.npy/meta.parquet ({error})") from None
    expected = (info["counts"]["total"], len(info["leads"]), round(info["window_s"] * info["fs_hz"]))
    if windows.shape != expected or len(meta) != expected[0]:
        raise StoreError(
            f"{directory}: windows {windows.shape} and {len(meta)} meta rows do not match cohort.json {expected}"
        )
    return Cohort(windows, meta, info)
