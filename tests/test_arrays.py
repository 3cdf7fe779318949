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


def test_nan_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    windows = _signals(5, 1, 100, 100.0)[:, 0]
    windows[1, 10] = np.nan
    windows[3, 20:40] = np.nan  # blank sample cells read as NaN
    path = _write_csv(tmp_path / "nan.csv", windows, ["N", "V", "N", "S", "V"], ["a", "a", "b", "b", "c"])
    a, b, c = read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=(0.5, 40.0))
    assert a.sample_index.tolist() == [0] and a.dropped == {"nan_or_flat": 1}
    assert b.sample_index.tolist() == [2] and b.dropped == {"nan_or_flat": 1}
    assert c.labels.tolist() == ["V"] and not c.dropped

    all_nan = _write_csv(tmp_path / "all_nan.csv", np.full((2, 100), np.nan), ["N", "V"], None)
    with pytest.raises(RecordError, match="all_nan.csv"):
        read_array_windows(all_nan, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)


def test_an_npz_row_labeled_empty_is_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "unlabeled.npz"
    np.savez(path, windows=_signals(3, 1, 100, 100.0), labels=np.array(["N", "", "V"]), patients=np.array(["a"] * 3))
    (part,) = read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)
    assert part.sample_index.tolist() == [0, 2] and part.dropped == {"no_label": 1}


@pytest.mark.parametrize("column", ["label", "patient"])
def test_blank_label_and_patient_cells_in_a_csv_are_errors_naming_their_lines(tmp_path: Path, column: str) -> None:
    labels, patients = ["N", "V", "N", "S", "V"], ["a", "a", "b", "b", "c"]
    {"label": labels, "patient": patients}[column][1] = "  "
    {"label": labels, "patient": patients}[column][3] = ""
    path = _write_csv(tmp_path / "blank.csv", _signals(5, 1, 100, 100.0)[:, 0], labels, patients)
    text = path.read_text().splitlines()
    path.write_text("# ecg-tgdp fs_hz=100\n" + "\n".join(text[:3] + [""] + text[3:]) + "\n")  # described; a blank line
    # line 1 the description, 2 the header, rows 0-1 on lines 3-4, a blank line 5, rows 2-4 on lines 6-8
    with pytest.raises(RecordError, match=rf"^{path}: column '{column}' is blank on lines 4, 7$"):
        read_array_windows(path, fs_in_hz=None, fs_hz=100, window_s=1.0, band_hz=None)


def test_a_blank_synthetic_cell_reads_as_false_with_a_warning(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "flags.csv", _signals(4, 1, 100, 100.0)[:, 0], ["N", "V", "N", "S"], ["a"] * 4)
    table = pd.read_csv(path, dtype=str)
    table.insert(2, "synthetic", ["1", "", "True", None])
    table.to_csv(path, index=False)
    (part,) = read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)
    assert part.columns["synthetic"].tolist() == [True, False, True, False]
    (warning,) = part.warnings
    assert warning == f"{path}: 2 rows have a blank 'synthetic' cell; read as false (real windows)"


def test_a_synthetic_column_of_other_words_is_an_error_naming_them(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "words.csv", _signals(3, 1, 100, 100.0)[:, 0], ["N", "V", "N"], ["a"] * 3)
    table = pd.read_csv(path, dtype=str)
    table.insert(2, "synthetic", ["yes", "no", "false"])
    table.to_csv(path, index=False)
    message = rf"^{path}: column 'synthetic' holds 'no', 'yes'; expected true/false or 1/0$"
    with pytest.raises(RecordError, match=message):
        read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)


@pytest.mark.parametrize(("content", "message"), [
    ("label,patient,s0,s1\n", "a header and no rows; expected one window per row"),
    ("label,patient,s0,s1\n\n\n", "a header and no rows; expected one window per row"),
    ("", "the file is empty"),
])
def test_a_csv_without_rows_says_so(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(RecordError, match=rf"^{path}: {message}"):
        read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=0.02, band_hz=None)


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


GOOD = {"windows": np.sin(np.arange(200) / 5)[None, None].repeat(2, axis=0), "labels": np.array(["N", "V"])}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"fs_hz": np.array([100.0, 100.0])}, r"fs_hz is float64 of shape \(2,\); expected one number \(a scalar\)"),
        ({"fs_hz": np.array("100 Hz")}, r"fs_hz is <U6 of shape \(\); expected one number"),
        ({"fs_hz": np.nan}, "fs_hz is nan; expected a finite number"),
        ({"fs_hz": np.inf}, "fs_hz is inf; expected a finite number"),
        ({"anchor_s": np.nan}, "anchor_s is nan; expected a finite number"),
        ({"band_hz": np.array([0.5, np.inf])}, "band_hz is inf; expected a finite number"),
        ({"leads": np.array(["I", "II", "V1"])}, r"leads names 3 leads \(I, II, V1\) but its windows \[N, leads, T\] = "
                                                 r"\(2, 1, 200\) have 1"),
        ({"windows": GOOD["windows"].transpose(0, 2, 1)},
         r"windows have shape \(2, 200, 1\), fewer samples than leads; expected \[N, leads, T\] \(channel-first: "),
        ({"synthetic": np.array([0, 2])}, "synthetic holds 2; expected true/false or 1/0"),
        ({"synthetic": np.array([True])}, r"synthetic have shape \(1,\); expected \[2\]"),
    ],
)
def test_npz_metadata_that_cannot_be_right_is_one_line_naming_the_file(tmp_path: Path, arrays, message) -> None:
    path = tmp_path / "meta.npz"
    np.savez(path, **{**GOOD, **arrays})
    with pytest.raises(RecordError, match=rf"^{path}: {message}") as raised:
        read_array_windows(path, fs_in_hz=None if "fs_hz" in arrays else 100, fs_hz=100, window_s=1.0, band_hz=None)
    assert "\n" not in str(raised.value)


def test_blank_patients_in_an_npz_are_an_error_naming_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "blank.npz"
    np.savez(path, windows=_signals(4, 1, 100, 100.0), labels=np.array(list("NVNS")),
             patients=np.array(["a", "", "b", " "]))
    with pytest.raises(RecordError, match=rf"^{path}: patients is blank for 2 windows \(rows 1, 3\)"):
        read_array_windows(path, fs_in_hz=100, fs_hz=100, window_s=1.0, band_hz=None)
