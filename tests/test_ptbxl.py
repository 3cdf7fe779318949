"""PTB-XL reader: index, superclasses, device filters and crops, on a synthetic folder and the shared subset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecg_tgdp.data.preprocess import bandpass
from ecg_tgdp.data.ptbxl import PTBXL_SUPERCLASSES, FilterError, ptbxl_index, ptbxl_label, read_ptbxl_windows
from ecg_tgdp.data.records import NoWindowsError, RecordError
from ecg_tgdp.pipeline.cli import main
from tests.conftest import physionet_db

LEADS_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
HEADER_LEADS = [lead.upper() for lead in LEADS_12]  # PTB-XL headers spell AVR, AVL, AVF
BAND_HZ = (0.5, 40.0)

# ecg_id, patient_id, device, scp_codes, strat_fold
SYNTHETIC_ROWS = [
    (1, 101.0, "CS-12   E", "{'NORM': 100.0, 'SR': 0.0}", 3),
    (2, 102.0, "AT-6 C 5.5", "{'IMI': 35.0, 'SR': 0.0}", 1),
    (3, 102.0, "AT-6 C", "{'IMI': 15.0, 'NST_': 100.0}", 10),
    (4, 103.0, "CS-12", "{'AFLT': 100.0}", 5),
]


def _write_synthetic_ptbxl(root: Path) -> Path:
    """Four 10 s, 100 Hz, 12-lead records and the two PTB-XL tables; record 4 has lead II flat for 2.5-5 s."""
    rng = np.random.default_rng(0)
    t = np.arange(1000) / 100.0
    folder = root / "records100" / "00000"
    folder.mkdir(parents=True)
    for ecg_id, *_ in SYNTHETIC_ROWS:
        signal = 0.5 * np.sin(2 * np.pi * 1.2 * t)[:, None] + 0.05 * rng.standard_normal((1000, 12))
        if ecg_id == 4:
            signal[250:500, 1] = 0.0
        wfdb.wrsamp(
            f"{ecg_id:05d}_lr", fs=100, units=["mV"] * 12, sig_name=HEADER_LEADS,
            p_signal=signal, fmt=["16"] * 12, write_dir=str(folder),
        )
    pd.DataFrame(
        {
            "ecg_id": [row[0] for row in SYNTHETIC_ROWS],
            "patient_id": [row[1] for row in SYNTHETIC_ROWS],
            "device": [row[2] for row in SYNTHETIC_ROWS],
            "scp_codes": [row[3] for row in SYNTHETIC_ROWS],
            "strat_fold": [row[4] for row in SYNTHETIC_ROWS],
            "filename_lr": [f"records100/00000/{row[0]:05d}_lr" for row in SYNTHETIC_ROWS],
            "filename_hr": [f"records500/00000/{row[0]:05d}_hr" for row in SYNTHETIC_ROWS],
        }
    ).to_csv(root / "ptbxl_database.csv", index=False)
    pd.DataFrame(
        {"diagnostic": [1.0, 1.0, 1.0, None, None], "diagnostic_class": ["NORM", "MI", "STTC", None, None]},
        index=["NORM", "IMI", "NST_", "SR", "AFLT"],
    ).to_csv(root / "scp_statements.csv")
    return root


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    return _write_synthetic_ptbxl(tmp_path / "ptbxl")


@pytest.fixture
def shared() -> Path:
    return physionet_db("ptbxl")


def test_synthetic_index(synthetic: Path) -> None:
    index = ptbxl_index(synthetic, filters={"device": ["AT-6"]})
    assert list(index.columns) == ["record", "patient", "path", "strat_fold", "superclasses", "device"]
    assert index["record"].tolist() == ["2", "3"]
    assert index["patient"].tolist() == ["102", "102"]
    assert index["path"].iloc[0] == synthetic / "records100/00000/00002_lr"
    assert index["strat_fold"].tolist() == [1, 10]
    assert index["superclasses"].tolist() == [("MI",), ("MI", "STTC")]

    everything = ptbxl_index(synthetic)
    assert everything["superclasses"].tolist() == [("NORM",), ("MI",), ("MI", "STTC"), ()]
    assert ptbxl_index(synthetic, filters={"device": ["CS-12"]})["record"].tolist() == ["1", "4"]
    assert ptbxl_index(synthetic, rate_hz=500)["path"].iloc[0] == synthetic / "records500/00000/00001_hr"


def test_min_likelihood_drops_uncertain_codes(synthetic: Path) -> None:
    index = ptbxl_index(synthetic, min_likelihood=50.0)
    assert index["superclasses"].tolist() == [("NORM",), (), ("STTC",), ()]


def test_numeric_filters_match_exactly_so_fold_1_is_not_fold_10(synthetic: Path) -> None:
    assert ptbxl_index(synthetic, filters={"strat_fold": ["1"]})["record"].tolist() == ["2"]
    assert ptbxl_index(synthetic, filters={"strat_fold": [10, 5]})["record"].tolist() == ["3", "4"]
    with pytest.raises(ValueError, match="filters.strat_fold"):
        ptbxl_index(synthetic, filters={"strat_fold": ["one"]})


def test_index_errors_name_file_and_column(synthetic: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ptbxl_database\.csv.*'site'"):
        ptbxl_index(synthetic, filters={"site": ["0"]})
    with pytest.raises(FileNotFoundError, match="ptbxl_database.csv"):
        ptbxl_index(tmp_path / "empty")
    with pytest.raises(ValueError, match="250 Hz"):
        ptbxl_index(synthetic, rate_hz=250)


def test_single_label_policy() -> None:
    classes = list(PTBXL_SUPERCLASSES)
    assert ptbxl_label(("NORM",), classes) == "NORM"
    assert ptbxl_label((), classes) is None
    assert ptbxl_label(("MI", "STTC"), classes) is None
    assert ptbxl_label(("MI", "STTC"), ["NORM", "MI"]) == "MI"  # STTC is not a selected class


def test_synthetic_crops(synthetic: Path) -> None:
    path = synthetic / "records100/00000/00001_lr"
    whole = read_ptbxl_windows(
        path, LEADS_12, label="NORM", patient="101", fs_hz=250, window_s=10, band_hz=BAND_HZ,
        columns={"strat_fold": 3, "device": "CS-12   E"},
    )
    assert whole.windows.shape == (1, 12, 2500) and whole.windows.dtype == np.float32
    assert whole.labels.tolist() == ["NORM"] and whole.sample_index.tolist() == [0]
    assert whole.patient == "101" and whole.columns["device"].tolist() == ["CS-12   E"]

    crops = read_ptbxl_windows(
        path, ["II"], label="NORM", patient="101", fs_hz=100, window_s=2.5, band_hz=BAND_HZ,
        columns={"strat_fold": 3},
    )
    assert crops.windows.shape == (4, 1, 250)
    assert crops.sample_index.tolist() == [0, 250, 500, 750]
    assert crops.columns["strat_fold"].tolist() == [3, 3, 3, 3]


def test_flat_crop_is_dropped_and_counted(synthetic: Path) -> None:
    crops = read_ptbxl_windows(
        synthetic / "records100/00000/00004_lr", ["I", "II"], label="CD", patient="103",
        fs_hz=100, window_s=2.5, band_hz=BAND_HZ,
    )
    assert crops.sample_index.tolist() == [0, 500, 750]
    assert crops.dropped == {"nan_or_flat": 1}


def test_crop_errors(synthetic: Path) -> None:
    path = synthetic / "records100/00000/00001_lr"
    kwargs = {"label": "NORM", "patient": "101", "fs_hz": 100, "band_hz": BAND_HZ}
    with pytest.raises(RecordError, match="V7"):
        read_ptbxl_windows(path, ["II", "V7"], window_s=10, **kwargs)
    with pytest.raises(RecordError, match="12 s window"):
        read_ptbxl_windows(path, ["II"], window_s=12, **kwargs)


def test_shared_index(shared: Path) -> None:
    index = ptbxl_index(shared).set_index("record")
    assert len(index) == 500
    assert index.loc["1", "superclasses"] == ("NORM",)  # {'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}
    assert index.loc["8", "superclasses"] == ("MI",)  # {'IMI': 35.0, 'ABQRS': 0.0, 'SR': 0.0}
    assert index.loc["17", "superclasses"] == ()  # {'AFLT': 100.0, ...}: rhythm only
    assert index.loc["39", "superclasses"] == ("MI", "STTC")  # IMI, LNGQT, NST_, DIG
    assert index.loc["1", "patient"] == "15709" and index.loc["1", "strat_fold"] == 3
    assert len(ptbxl_index(shared, filters={"device": ["AT-6"]})) == 228
    assert len(ptbxl_index(shared, filters={"device": ["CS-12"]})) == 272


def test_shared_record_matches_wfdb(shared: Path) -> None:
    path = shared / "records100/00000/00001_lr"
    kwargs = {"label": "NORM", "patient": "15709", "fs_hz": 100, "band_hz": BAND_HZ}
    assert read_ptbxl_windows(path, LEADS_12, window_s=10, **kwargs).windows.shape == (1, 12, 1000)

    two = read_ptbxl_windows(path, ["II", "V1"], window_s=10, **kwargs)
    raw = wfdb.rdrecord(str(path), channel_names=["II", "V1"])
    expected = bandpass(raw.p_signal.T[[raw.sig_name.index("II"), raw.sig_name.index("V1")]], 100, BAND_HZ)
    np.testing.assert_allclose(two.windows[0], expected, atol=1e-5)

    lower = read_ptbxl_windows(path, ["aVR", "i"], window_s=10, **kwargs)
    upper = read_ptbxl_windows(path, ["AVR", "I"], window_s=10, **kwargs)
    np.testing.assert_array_equal(lower.windows, upper.windows)
    assert read_ptbxl_windows(path, ["II"], window_s=2.5, **kwargs).windows.shape == (4, 1, 250)


def test_a_filter_key_that_is_not_a_column_names_the_file_and_columns(synthetic: Path) -> None:
    with pytest.raises(FilterError, match=rf"^{synthetic / 'ptbxl_database.csv'}: filters.site: no column 'site' "
                                          r"\(columns: ecg_id, patient_id, device, scp_codes, strat_fold, filename_lr"):
        ptbxl_index(synthetic, filters={"site": ["0"]})


@pytest.mark.parametrize(("filters", "message"), [
    ({"device": ["AT6"]}, r"filters.device: 'AT6' matches no record \(values of 'device' include 'CS-12   E', "
                          r"'AT-6 C 5.5', 'AT-6 C', 'CS-12'\)"),
    ({"device": ["AT-6", "CS12", "X"]}, r"filters.device: 'CS12', 'X' match no record"),
    ({"strat_fold": [11]}, r"filters.strat_fold: '11' matches no record \(values of 'strat_fold' include '3', '1', "),
    ({"device": []}, "filters.device: no value given"),
])
def test_a_filter_value_that_matches_no_record_names_key_value_and_values(synthetic: Path, filters, message) -> None:
    with pytest.raises(FilterError, match=rf"^{synthetic / 'ptbxl_database.csv'}: {message}"):
        ptbxl_index(synthetic, filters=filters)


@pytest.mark.parametrize(("filters", "message"), [
    ('{ site = ["0"] }', "filters.site: no column 'site'"),
    ('{ device = ["AT6"] }', "filters.device: 'AT6' matches no record (values of 'device' include 'CS-12   E'"),
])
def test_ingest_stops_with_one_line_on_a_bad_filter(synthetic: Path, tmp_path: Path, capsys, filters, message) -> None:
    config = tmp_path / "ptbxl.toml"
    cohort = 'format = "ptbxl"\ndatabase = "ptbxl"\nleads = ["II"]\n'
    config.write_text(f'name = "p"\ndata_root = "{tmp_path}"\nworkers = 1\n[windows]\nfs_hz = 100\nwindow_s = 2.5\n'
                      f'classes = ["NORM", "MI"]\n[source]\n{cohort}filters = {filters}\n[target]\n{cohort}')
    assert main(["ingest", str(config), "--run-dir", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith(f"ecg-tgdp: error: {synthetic / 'ptbxl_database.csv'}: ")
    assert message in error


def test_a_record_whose_every_crop_is_flat_is_a_no_windows_error(synthetic: Path) -> None:
    path = synthetic / "records100/00000/00004_lr"  # lead II is flat for 2.5-5 s: the one 10 s crop touches it
    message = r"00004_lr: no crop remains: all 1 touch NaN or flat-line samples$"
    with pytest.raises(NoWindowsError, match=message) as raised:
        read_ptbxl_windows(path, ["II"], label="CD", patient="103", fs_hz=100, window_s=10, band_hz=BAND_HZ)
    assert raised.value.dropped == {"nan_or_flat": 1}
