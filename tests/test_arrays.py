"""A user's NPZ/CSV windows as a target cohort: round trips, resampling, cropping, patients and bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_tgdp.data.arrays import read_array_windows
from ecg_tgdp.data.records import RecordError


def _signals(n: int, leads: int, samples: int, fs_hz: float, seed: int = 0) -> np.ndarray:
    """Float [n, leads, samples] sines at different frequencies plus noise, in mV."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / fs_hz
    freqs = rng.uniform(1.0, 5.0, size=(n, leads, 1))
    return np.sin(2 * np.pi * freqs * t) + 0.01 * rng.standard_normal((n, leads, samples))


def _write_csv(path: Path, windows: np.ndarray, labels: list[str], patients: list[str] | None) -> Path:
    table = pd.DataFrame(windows, columns=[f"s{i}" for i in range(windows.shape[1])])
    table.insert(0, "label", labels)
    if patients is not None:
        table.insert(1, "patient", patients)
    table.to_csv(path, index=False)
    return path


def test_npz_round_trip(tmp_path: Path) -> None:
    windows = _signals(6, 2, 360, 360.0)
    path = tmp_path / "cohort.npz"
    np.savez(
        path, windows=windows, labels=np.array(list("NNSVNS")), patients=np.array(["p1"] * 3 + ["p2"] * 3),
        fs_hz=360.0, leads=np.array(["II", "V1"]),
    )
    p1, p2 = read_array_windows(path, fs_in_hz=None, fs_hz=360, window_s=1.0, band_hz=None)
    assert (p1.record, p1.patient, p2.patient) == ("p1", "p1", "p2")
    assert p1.windows.dtype == np.float32 and p1.windows.shape == (3, 2, 360)
    np.testing.assert_allclose(p2.windows, windows[3:], atol=1e-6)
    assert p1.labels.tolist() == ["N", "N", "S"] and p2.sample_index.tolist() == [3, 4, 5]
    assert not p1.warnings and not p1.dropped

    (only_v1, _) = read_array_windows(path, fs_in_hz=None, fs_hz=360, window_s=1.0, band_hz=None, leads=["v1"])
    np.testing.assert_allclose(only_v1.windows[:, 0], windows[:3, 1], atol=1e-6)
    with pytest.raises(RecordError, match="V6"):
        read_array_windows(path, fs_in_hz=None, fs_hz=360, window_s=1.0, band_hz=None, leads=["V6"])

    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, windows=windows, labels=np.array(list("NNSVNS")))
    with pytest.raises(RecordError, match="2 unnamed leads"):
        read_array_windows(unnamed, fs_in_hz=360, fs_hz=360, window_s=1.0, band_hz=None, leads=["II"])


def test_csv_round_trip(tmp_path: Path) -> None:
    windows = _signals(4, 1, 100, 100.0)[:, 0]
    path = _write_csv(tmp_path / "cohort.csv", windows, ["N", "V", "N", "V"], ["007", "007", "12", "12"])
    first, second = read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None, leads=["II"])
    assert (first.patient, second.patient) == ("007", "12")  # ids stay text
    assert first.windows.shape == (2, 1, 100)
    np.testing.assert_allclose(second.windows[:, 0], windows[2:], atol=1e-6)
    assert second.labels.tolist() == ["N", "V"]


def test_resampling_sets_the_length(tmp_path: Path) -> None:
    t = np.arange(360) / 360.0
    path = tmp_path / "sine.npz"
    np.savez(path, x=np.sin(2 * np.pi * 3 * t)[None].repeat(2, axis=0), y=np.array(["N", "N"]))
    (cohort,) = read_array_windows(path, fs_in_hz=360, fs_hz=128, window_s=1.0, band_hz=None)
    assert cohort.windows.shape == (2, 1, 128)
    t_new = np.arange(128) / 128.0
    np.testing.assert_allclose(cohort.windows[0, 0, 20:-20], np.sin(2 * np.pi * 3 * t_new)[20:-20], atol=0.02)


def test_band_pass_removes_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "offset.npz"
    np.savez(path, windows=1.0 + _signals(2, 1, 1000, 250.0), labels=np.array(["N", "S"]))
    (cohort,) = read_array_windows(path, fs_in_hz=250, fs_hz=250, window_s=4.0, band_hz=(0.5, 40.0))
    assert abs(float(cohort.windows.mean())) < 0.1


def test_longer_windows_are_centre_cropped(tmp_path: Path) -> None:
    windows = np.arange(3 * 400, dtype=float).reshape(3, 400) / 100.0
    path = tmp_path / "long.npz"
    np.savez(path, windows=windows, labels=np.array(["N", "N", "V"]), patients=np.array(["a", "a", "a"]))
    (cohort,) = read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=2.0, band_hz=None)
    np.testing.assert_allclose(cohort.windows[:, 0], windows[:, 100:300], atol=1e-6)
    with pytest.raises(RecordError, match=r"long\.npz.*400 samples.*500"):
        read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=5.0, band_hz=None)


def test_nan_and_unlabeled_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    windows = _signals(5, 1, 100, 100.0)[:, 0]
    windows[1, 10] = np.nan
    path = _write_csv(tmp_path / "nan.csv", windows, ["N", "V", "N", "", "V"], ["a", "a", "b", "b", "c"])
    a, b, c = read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=(0.5, 40.0))
    assert a.sample_index.tolist() == [0] and a.dropped == {"nan_or_flat": 1}
    assert b.sample_index.tolist() == [2] and b.dropped == {"no_label": 1}
    assert c.labels.tolist() == ["V"] and not c.dropped

    all_nan = _write_csv(tmp_path / "all_nan.csv", np.full((2, 100), np.nan), ["N", "V"], None)
    with pytest.raises(RecordError, match="all_nan.csv"):
        read_array_windows(all_nan, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)


def test_without_patients_the_file_is_one_patient(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "clinic_b.csv", _signals(3, 1, 100, 100.0)[:, 0], ["N", "S", "V"], None)
    (cohort,) = read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)
    assert cohort.patient == "clinic_b" and len(cohort.labels) == 3
    assert len(cohort.warnings) == 1 and "patient column" in cohort.warnings[0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("no_label.csv", "diagnosis,s0,s1\nN,0.1,0.2\n", r"no_label\.csv.*label column 'label'"),
        ("text.csv", "label,s0,s1\nN,0.1,oops\n", r"text\.csv.*'s1'.*non-numeric"),
        ("cohort.txt", "label,s0\nN,0.1\n", r"cohort\.txt.*unknown extension"),
    ],
)
def test_bad_csv(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RecordError, match=message):
        read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=0.02, band_hz=None)


def test_csv_needs_a_rate(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "no_rate.csv", _signals(2, 1, 100, 100.0)[:, 0], ["N", "V"], None)
    with pytest.raises(RecordError, match=r"no_rate\.csv.*fs_in_hz"):
        read_array_windows(path, fs_in_hz=None, fs_hz=100, window_s=1.0, band_hz=None)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"windows": np.zeros((2, 1, 1, 100)), "labels": np.array(["N", "V"])}, r"shape \(2, 1, 1, 100\)"),
        ({"windows": np.zeros((2, 100))}, "'labels' or 'y'"),
        ({"windows": np.zeros((2, 100)), "labels": np.array(["N"])}, "labels have shape"),
        ({"windows": np.zeros((2, 100)), "labels": np.array(["N", None], dtype=object)}, "plain arrays"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(RecordError, match=message):
        read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)
