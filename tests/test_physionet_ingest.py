"""Ingest of the real PhysioNet databases in ../shared/physionet (skipped where absent)."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb

from ecg_tgdp.data.labels import AAMI_SYMBOL_TO_CLASS
from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.data.wfdb_beats import read_beat_windows
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.rundir import RunDir
from ecg_tgdp.pipeline.stages import ingest_stage
from tests.conftest import PHYSIONET, REPO, physionet_db

# AAMI classes of mitdb without the paced records 102, 104, 107, 217 (../shared/physionet/README.md).
MITDB_REFERENCE = {"N": 90125, "S": 2781, "V": 7009, "F": 803, "Q": 15}


@pytest.fixture(scope="module")
def mitdb_run(tmp_path_factory):
    physionet_db("mitdb")
    physionet_db("svdb")
    config = load_config(
        REPO / "configs/mitdb_to_svdb.toml",
        [f"data_root={PHYSIONET.as_posix()!r}", "windows.classes=['N','S','V','F','Q']", "workers=2"],
    )
    run = RunDir.open(config, tmp_path_factory.mktemp("run"))
    ingest_stage(config, run)
    return run


def test_mitdb_matches_the_reference_aami_counts(mitdb_run):
    source = read_cohort(mitdb_run.path / "cohorts/source")
    info = source.info
    assert info["records_used"] == 44 and not info["records_skipped"]
    lost = info["windows_dropped"].get("edge", 0) + info["windows_dropped"].get("nan_or_flat", 0)
    # the manifest reports the beats lost to record edges (a 4 s window reaches 2 s past its beat) and flat lines
    assert lost < 300
    for label, reference in MITDB_REFERENCE.items():
        count = info["counts"]["by_class"][label]
        assert count <= reference
        if reference >= 200:
            assert count / reference > 0.995, label
    assert sum(info["counts"]["by_class"].values()) + lost == sum(MITDB_REFERENCE.values())
    assert set(source.meta["record"]) & {"102", "104", "107", "217"} == set()
    manifest = mitdb_run.manifest()["stages"]["ingest"]
    assert manifest["cohorts"]["source"]["windows_dropped"]["edge"] > 0


def test_splits_are_by_patient_and_records_201_202_stay_together(mitdb_run):
    meta = read_cohort(mitdb_run.path / "cohorts/source").meta
    assert meta.groupby("patient")["split"].nunique().max() == 1
    assert meta.loc[meta.record == "202", "patient"].iloc[0] == "201"
    assert set(meta["split"]) == {"train", "val", "test"}


def test_target_svdb_is_read_from_ecg1_at_128_hz_with_source_normalization(mitdb_run):
    source = read_cohort(mitdb_run.path / "cohorts/source")
    target = read_cohort(mitdb_run.path / "cohorts/target")
    assert target.info["leads"] == ["ECG1"] and target.windows.shape[1:] == (1, 512)
    assert target.info["normalization"] == source.info["normalization"]
    assert target.info["normalization"]["fit_on"] == "source/train"
    assert target.meta.loc[target.meta.split == "train", "patient"].nunique() == 5


def test_record_114_is_read_from_its_mlii_channel():
    folder = physionet_db("mitdb")
    windows = read_beat_windows(
        folder / "114", ["MLII"], fs_hz=360.0, window_s=1.0, band_hz=(0.5, 40.0),
        symbol_to_class=AAMI_SYMBOL_TO_CLASS, classes=["N"],
    )
    raw = wfdb.rdrecord(str(folder / "114")).p_signal  # channel 0 is V5, channel 1 is MLII
    beat = int(windows.sample_index[10])
    segment = raw[beat - 180 : beat + 180]
    correlation = [np.corrcoef(windows.windows[10, 0], segment[:, ch])[0, 1] for ch in (0, 1)]
    assert correlation[1] > 0.9 and correlation[1] > correlation[0]


def test_ptbxl_device_recipe_reads_12_leads_with_superclasses(tmp_path):
    physionet_db("ptbxl")
    config = load_config(REPO / "configs/ptbxl_device_shift.toml", [f"data_root={PHYSIONET.as_posix()!r}", "workers=2"])
    run = RunDir.open(config, tmp_path)
    ingest_stage(config, run)
    source = read_cohort(run.path / "cohorts/source")
    target = read_cohort(run.path / "cohorts/target")
    assert source.windows.shape[1:] == (12, 1000) and target.windows.shape[1:] == (12, 1000)
    assert set(source.meta["device"].str.strip().str[:5]) == {"CS-12"}
    assert set(target.meta["device"].str[:4]) == {"AT-6"}
    assert set(source.meta["label"]) <= {"NORM", "MI", "STTC", "CD", "HYP"}
    assert source.meta["record"].str.fullmatch(r"[1-9][0-9]*").all(), "records are named by ecg_id, as the filters are"
    folds = source.meta.groupby("split")["strat_fold"].agg(lambda f: set(f))
    assert folds["test"] == {10} and folds["val"] == {9}


def test_the_lead_shift_recipe_reads_ds1_in_mlii_and_ds2_in_v1_with_disjoint_patients(tmp_path):
    physionet_db("mitdb")
    config = load_config(REPO / "configs/mitdb_ds1_to_ds2_v1.toml", [f"data_root={PHYSIONET.as_posix()!r}", "workers=2"])
    run = RunDir.open(config, tmp_path)
    ingest_stage(config, run)
    source, target = read_cohort(run.path / "cohorts/source"), read_cohort(run.path / "cohorts/target")
    assert source.info["leads"] == ["MLII"] and target.info["leads"] == ["V1"]
    assert source.info["records_used"] == 22 and target.info["records_used"] == 17
    assert set(source.meta["patient"]) & set(target.meta["patient"]) == set()
    assert set(target.meta["record"]) & {"100", "103", "117", "123", "202"} == set()
    assert target.meta.loc[target.meta.split == "train", "patient"].nunique() == 5
    assert set(target.meta["label"]) == {"N", "S", "V"}
