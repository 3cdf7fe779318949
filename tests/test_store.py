"""The window store: atomic writes, checked reads."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ecg_tgdp.data.store import StoreError, read_cohort, write_cohort


def _cohort(n=6):
    windows = np.random.default_rng(0).standard_normal((n, 2, 50)).astype(np.float32)
    meta = pd.DataFrame(
        {"record": "r", "patient": "p", "label": ["N", "V"] * (n // 2), "label_index": [0, 1] * (n // 2),
         "split": ["train"] * (n - 2) + ["test"] * 2, "sample_index": np.arange(n)}
    )
    info = {"fs_hz": 100.0, "window_s": 0.5, "leads": ["I", "II"], "classes": ["N", "V"],
            "normalization": {"mean": [0.0, 1.0], "std": [1.0, 2.0]}, "counts": {"total": n}}
    return windows, meta, info


def test_round_trip_memory_maps_and_normalizes(tmp_path):
    windows, meta, info = _cohort()
    write_cohort(tmp_path / "c", windows, meta, info)
    cohort = read_cohort(tmp_path / "c")
    assert isinstance(cohort.windows, np.memmap)
    assert np.array_equal(cohort.windows, windows)
    assert cohort.meta.equals(meta)
    assert np.allclose(cohort.normalized()[:, 1], (windows[:, 1] - 1.0) / 2.0)
    assert len(cohort.split("test").windows) == 2
    assert not list(tmp_path.glob(".c*")), "no staging folder left behind"


def test_rewrite_replaces_the_old_cohort(tmp_path):
    windows, meta, info = _cohort()
    write_cohort(tmp_path / "c", windows, meta, info)
    smaller = _cohort(4)
    write_cohort(tmp_path / "c", *smaller)
    assert len(read_cohort(tmp_path / "c").windows) == 4


def test_folder_without_cohort_json_is_not_a_cohort(tmp_path):
    windows, meta, info = _cohort()
    write_cohort(tmp_path / "c", windows, meta, info)
    (tmp_path / "c" / "cohort.json").unlink()
    with pytest.raises(StoreError, match=r"cohort\.json: not found"):
        read_cohort(tmp_path / "c")


def test_inconsistent_counts_are_caught(tmp_path):
    windows, meta, info = _cohort()
    write_cohort(tmp_path / "c", windows, meta, info)
    info_file = tmp_path / "c" / "cohort.json"
    info["counts"]["total"] = 7
    info_file.write_text(json.dumps(info))
    with pytest.raises(StoreError, match="do not match cohort.json"):
        read_cohort(tmp_path / "c")


def test_windows_and_meta_must_agree_on_write(tmp_path):
    windows, meta, info = _cohort()
    with pytest.raises(ValueError, match="6 windows but 5 meta rows"):
        write_cohort(tmp_path / "c", windows, meta.iloc[:5], info)


def test_subsample_is_seeded_ordered_and_keeps_windows_with_their_rows(tmp_path):
    windows, meta, info = _cohort(20)
    write_cohort(tmp_path / "c", windows, meta, info)
    cohort = read_cohort(tmp_path / "c")
    subset = cohort.subsample(7, seed=3)
    assert len(subset.meta) == len(subset.windows) == 7
    rows = subset.meta["sample_index"].to_numpy()
    assert np.all(np.diff(rows) > 0), "rows stay in their order, without repeats"
    assert np.array_equal(subset.windows, windows[rows])
    assert np.array_equal(cohort.subsample(7, seed=3).meta["sample_index"], rows)
    assert not np.array_equal(cohort.subsample(7, seed=4).meta["sample_index"], rows)
    assert cohort.subsample(20, seed=3) is cohort
