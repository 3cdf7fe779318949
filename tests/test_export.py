"""Exports of labeled windows read back through the project's own readers."""
from __future__ import annotations

import numpy as np
import pytest

from ecg_tgdp.data.arrays import read_array_windows
from ecg_tgdp.data.export import export_windows
from ecg_tgdp.data.labels import AAMI_SYMBOL_TO_CLASS
from ecg_tgdp.data.wfdb_beats import read_beat_windows
from ecg_tgdp.models.generate import labels_for_mix

FS = 128.0


def _beats(n=12, seed=0):
    """Windows [n, 1, 128] with a QRS-like spike at the centre, labels cycling N S V."""
    rng = np.random.default_rng(seed)
    t = np.arange(128)
    spike = np.exp(-0.5 * ((t - 64) / 2.0) ** 2)
    windows = (spike[None] * rng.uniform(0.5, 1.5, (n, 1)))[:, None] + 0.01 * rng.standard_normal((n, 1, 128))
    return windows.astype(np.float32), np.array(["N", "S", "V"] * (n // 3))


def test_wfdb_export_is_read_back_by_the_beat_reader(tmp_path):
    windows, labels = _beats()
    folder = export_windows(tmp_path, windows, labels, fs_hz=FS, leads=["MLII"], fmt="wfdb")
    back = read_beat_windows(folder / "synthetic", ["MLII"], fs_hz=FS, window_s=1.0, band_hz=(0.5, 40.0),
                             symbol_to_class=AAMI_SYMBOL_TO_CLASS, classes=["N", "S", "V"])
    assert list(back.labels) == list(labels)  # every window, the first and last included, fits the record
    correlation = [np.corrcoef(a[0], b[0])[0, 1] for a, b in zip(back.windows, windows)]
    assert min(correlation) > 0.95


@pytest.mark.parametrize("fmt", ["npz", "csv"])
def test_array_exports_are_read_back(tmp_path, fmt):
    windows, labels = _beats()
    path = export_windows(tmp_path, windows, labels, fs_hz=FS, leads=["MLII"], fmt=fmt,
                          patients=["p1"] * 6 + ["p2"] * 6)
    parts = read_array_windows(path, fs_in_hz=FS, fs_hz=FS, window_s=1.0, band_hz=None)
    assert [part.patient for part in parts] == ["p1", "p2"]
    back = np.concatenate([part.windows for part in parts])
    assert np.allclose(back, windows, atol=1e-4)
    assert list(np.concatenate([part.labels for part in parts])) == list(labels)


@pytest.mark.parametrize(("fmt", "atol"), [("npz", 0.0), ("csv", 6e-6), ("wfdb", 5e-4)])
def test_preprocessed_exports_read_back_as_written_with_their_synthetic_flags(tmp_path, fmt, atol):
    windows, labels = _beats()
    flags = np.arange(12) >= 9
    path = export_windows(tmp_path, windows, labels, fs_hz=FS, leads=["MLII"], fmt=fmt, band_hz=(0.5, 40.0),
                          anchor_s=0.5, patients=["p1"] * 9 + ["synthetic_tgdp"] * 3, synthetic=flags)
    if fmt == "wfdb":  # one record per patient, read as beat windows: not band-passed a second time
        parts = [read_beat_windows(path / name, ["MLII"], fs_hz=FS, window_s=1.0, band_hz=(0.5, 40.0), anchor_s=0.5,
                                   symbol_to_class=AAMI_SYMBOL_TO_CLASS, classes=["N", "S", "V"])
                 for name in ("p1", "synthetic_tgdp")]
    else:  # the file's rate, band and anchor are read from it
        parts = read_array_windows(path, fs_in_hz=None, fs_hz=FS, window_s=1.0, band_hz=(0.5, 40.0), anchor_s=0.5)
    back = np.concatenate([part.windows for part in parts])
    np.testing.assert_allclose(back, windows, rtol=0, atol=atol)  # wfdb: 1 µV steps; csv: 5 decimals
    assert np.concatenate([part.columns["synthetic"] for part in parts]).tolist() == flags.tolist()


def test_record_labeled_wfdb_export_writes_a_labels_csv(tmp_path):
    windows = np.random.default_rng(0).standard_normal((3, 2, 100)).astype(np.float32)
    folder = export_windows(tmp_path, windows, ["MI", "NORM", "MI"], fs_hz=100.0, leads=["I", "II"], fmt="wfdb")
    table = (folder / "labels.csv").read_text().splitlines()
    assert table[0] == "record,label,patient" and len(table) == 4
    assert (folder / "w000002.hea").is_file()


def test_csv_export_refuses_several_leads(tmp_path):
    with pytest.raises(ValueError, match="one lead per window, got 2"):
        export_windows(tmp_path, np.zeros((2, 2, 10)), ["N", "N"], fs_hz=FS, leads=["I", "II"], fmt="csv")


def test_class_mix_is_split_by_largest_remainder():
    labels = labels_for_mix(50, {"N": 0.5, "S": 0.25, "V": 0.25}, ["N", "S", "V"])
    assert np.bincount(labels).tolist() == [25, 13, 12]
    assert np.bincount(labels_for_mix(7, {"V": 1.0}, ["N", "S", "V"]), minlength=3).tolist() == [0, 0, 7]
    with pytest.raises(ValueError, match="does not know"):
        labels_for_mix(5, {"X": 1.0}, ["N"])
