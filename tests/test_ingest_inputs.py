"""`ecg-tgdp ingest` on folders real users have: same names in subfolders, a record in the wrong units among good
ones, a labels CSV with repeated, unknown or blank rows, EDF files, bad window and lead settings, interrupted reruns,
Ctrl-C, records without a beat or with every beat annotated twice, and settings that name no record."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from ecg_tgdp.data.ingest import read_records
from ecg_tgdp.data.records import RecordWindows
from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.pipeline import stages
from ecg_tgdp.pipeline.cli import main
from tests.conftest import REPO, spiky_ecg, write_record

FS = 250.0
BEATS = [int(FS * (k + 0.5)) for k in range(20)]
SYMBOLS = ["N"] * 14 + ["V", "A"] * 3


def _db(folder, names, scale=None):
    """Spiky 20 s records, one beat a second (N, V and A beats); `scale` multiplies one record's samples."""
    for k, name in enumerate(names):
        signal = spiky_ecg(FS, 20, BEATS, seed=k) * (scale or {}).get(name, 1.0)
        write_record(folder / os.path.dirname(name), os.path.basename(name), signal, FS, BEATS, SYMBOLS)
    return folder


def _config(tmp_path, target: str = "", source: str = "", windows: str = "") -> str:
    path = tmp_path / "inputs.toml"
    path.write_text(
        f'name = "inputs"\ndata_root = "{tmp_path}"\nworkers = 1\n[windows]\nfs_hz = 125\nwindow_s = 0.8\n{windows}\n'
        f'[source]\nformat = "wfdb"\ndatabase = "src"\n{source}\n'
        f'[target]\nformat = "wfdb"\ndatabase = "tgt"\n{target}\n'
    )
    return str(path)


def _ingest(config, run_dir, *overrides) -> int:
    args = ["ingest", config, "--run-dir", str(run_dir)]
    for override in overrides:
        args += ["--set", override]
    return main(args)


@pytest.fixture
def source_db(tmp_path):
    return _db(tmp_path / "src", ["s1", "s2", "s3"])


@pytest.mark.parametrize("listed", [True, False])
def test_records_with_one_name_in_two_subfolders_stay_two_records(tmp_path, source_db, listed):
    target = _db(tmp_path / "tgt", ["site1/100", "site2/100", "site2/101"])
    if listed:
        (target / "RECORDS").write_text("site1/100\nsite2/100\nsite2/101\n")
    assert _ingest(_config(tmp_path), tmp_path / "run") == 0
    meta = read_cohort(tmp_path / "run" / "cohorts" / "target").meta
    assert meta.groupby("record").size().to_dict() == {"site1/100": 20, "site2/100": 20, "site2/101": 20}
    assert meta["patient"].nunique() == 3


def test_a_record_in_the_wrong_units_is_skipped_and_the_others_read(tmp_path, source_db, capsys):
    _db(tmp_path / "tgt", ["t1", "t2", "t3", "t4"], scale={"t2": 100.0})  # 100 mV beats: a gain off by 100
    assert _ingest(_config(tmp_path), tmp_path / "run") == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("skipped t2:")]
    assert "t2" in line and "outside the physiological" in line and "check its units" in line
    target = read_cohort(tmp_path / "run" / "cohorts" / "target")
    assert sorted(set(target.meta["record"])) == ["t1", "t3", "t4"] and "t2" in target.info["records_skipped"]
    assert target.info["beats_on_r_peaks"] == 1.0


def test_labels_csv_rows_that_repeat_conflict_or_are_unknown_are_reported_by_name(tmp_path, capsys):
    _db(tmp_path / "src", ["s1", "s2", "s3"])
    _db(tmp_path / "tgt", ["t1", "t2", "t3", "t4", "t5", "t6"])
    pd.DataFrame({"record": ["s1", "s2", "s3"], "label": ["NORM", "MI", "NORM"]}).to_csv(tmp_path / "src" / "l.csv",
                                                                                       index=False)
    pd.DataFrame({"record": ["t1", "t2", "t3", "t3", "t4", "t4", "t5", "t6"],
                  "label": ["NORM", "MI", "NORM", "NORM", "NORM", "MI", "AFIB", "NORM"]}).to_csv(
        tmp_path / "tgt" / "l.csv", index=False)
    config = _config(tmp_path, 'labels_csv = "l.csv"', 'labels_csv = "l.csv"', 'classes = ["NORM", "MI"]')
    assert _ingest(config, tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "more than one label are left out: t4" in out
    assert "more than once (same label), read once: t3" in out
    assert "'AFIB' (1 records: t5)" in out
    meta = read_cohort(tmp_path / "run" / "cohorts" / "target").meta
    assert meta.groupby("record")["label"].first().to_dict() == {"t1": "NORM", "t2": "MI", "t3": "NORM", "t6": "NORM"}
    assert meta.groupby("record").size().nunique() == 1  # t3 read once, not twice


def test_a_folder_of_edf_files_says_there_is_no_header(tmp_path, source_db, capsys):
    (tmp_path / "tgt").mkdir()
    for name in ("a.edf", "b.edf"):
        (tmp_path / "tgt" / name).write_bytes(b"0       ")
    assert _ingest(_config(tmp_path), tmp_path / "run") == 1
    error = capsys.readouterr().err.strip()
    assert "tgt: no WFDB header (.hea) found (it holds 2 .edf files; convert EDF to WFDB" in error
    assert len(error.splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("windows.window_s=0.001", "window_s=0.001 gives 0 samples at 125 Hz; a window needs at least 0.25 s"),
        ("target.leads=['MLII', 'mlii']", "lead MLII, mlii named more than once"),
    ],
)
def test_window_and_lead_settings_that_cannot_work_are_config_errors(tmp_path, source_db, capsys, override, message):
    _db(tmp_path / "tgt", ["t1", "t2", "t3"])
    assert _ingest(_config(tmp_path), tmp_path / "run", override) == 1
    error = capsys.readouterr().err.strip()
    assert message in error and "inputs.toml" in error and len(error.splitlines()) == 1


def test_an_interrupted_rerun_with_other_settings_is_never_up_to_date(tmp_path, source_db, monkeypatch, capsys):
    _db(tmp_path / "tgt", ["t1", "t2", "t3"])
    config, run = _config(tmp_path), tmp_path / "run"
    assert _ingest(config, run) == 0
    original = np.asarray(read_cohort(run / "cohorts" / "source").windows).copy()

    write_cohort = stages.write_cohort
    def interrupted(directory, *args):  # the source cohort is written, then Ctrl-C before the target's
        if directory.name == "target":
            raise KeyboardInterrupt
        write_cohort(directory, *args)
    monkeypatch.setattr(stages, "write_cohort", interrupted)
    assert _ingest(config, run, "windows.window_s=0.6") == 130
    assert read_cohort(run / "cohorts" / "source").windows.shape[-1] == 75  # the interrupted run's windows

    monkeypatch.setattr(stages, "write_cohort", write_cohort)
    capsys.readouterr()
    assert _ingest(config, run) == 0
    assert "ingest: up to date" not in capsys.readouterr().out
    np.testing.assert_array_equal(read_cohort(run / "cohorts" / "source").windows, original)
    assert _ingest(config, run) == 0 and "ingest: up to date" in capsys.readouterr().out


def test_ctrl_c_while_starting_up_ends_without_a_traceback():
    # Ctrl-C arrives while torch is being imported (seconds on a cold start); raised there deterministically
    script = ("import builtins, sys\nreal = builtins.__import__\n"
              "def importing(name, *args, **kwargs):\n"
              "    if name == 'torch':\n        raise KeyboardInterrupt\n"
              "    return real(name, *args, **kwargs)\n"
              "builtins.__import__ = importing\nfrom pipeline.cli import main\n"
              "sys.exit(main(['train-source', 'quickstart']))\n")  # the command imports torch lazily
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 130 and done.stderr.strip() == "ecg-tgdp: interrupted"


def _summary(out: str, name: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith(f"ingest {name}:")]
    return line


def test_a_record_with_only_non_beat_annotations_is_skipped_with_its_reason(tmp_path, source_db, capsys):
    target = _db(tmp_path / "tgt", ["t1", "t2", "t3"])
    write_record(target, "t4", spiky_ecg(FS, 20, BEATS), FS, BEATS, ["+"] * 19 + ["~"])  # rhythm and noise marks only
    assert _ingest(_config(tmp_path), tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert (f"skipped t4: {target / 't4'}.atr: no beat annotations of the chosen classes N, S, V "
            "(it holds only non-beat annotations: '+'×19, '~'×1)") in out.splitlines()
    assert "from 3 records" in _summary(out, "target") and "skipped records: 1;" in _summary(out, "target")
    info = read_cohort(tmp_path / "run" / "cohorts" / "target").info
    assert info["records_used"] == 3 and list(info["records_skipped"]) == ["t4"]


def test_beats_annotated_twice_are_read_once_and_counted_in_the_summary(tmp_path, source_db, capsys):
    target = _db(tmp_path / "tgt", ["t1", "t2", "t3"])
    write_record(target, "t1", spiky_ecg(FS, 20, BEATS), FS, sorted(BEATS * 2), [s for s in SYMBOLS for _ in (0, 1)])
    assert _ingest(_config(tmp_path), tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "dropped windows: duplicate_annotation 20" in _summary(out, "target")
    assert f"warning: {target / 't1'}.atr: 20 beat annotations repeat an earlier one at the same sample" in out
    meta = read_cohort(tmp_path / "run" / "cohorts" / "target").meta
    assert meta.groupby("record").size().to_dict() == {"t1": 20, "t2": 20, "t3": 20}
    assert (meta["rr_prev_s"].dropna() > 0.9).all()


@pytest.mark.parametrize(("setting", "warning"), [
    ('exclude_records = ["t2.hea"]', "exclude_records t2.hea match no record of the cohort, they leave nothing out "
                                     "(records are named like t1, t2, t3; record names have no extension)"),
    ('patients = { t9 = "p1", t1 = "p1" }', "patients t9 match no record of the cohort, their patient is not used"),
])
def test_cohort_entries_that_match_no_record_are_named_in_a_warning(tmp_path, source_db, capsys, setting, warning):
    target = _db(tmp_path / "tgt", ["t1", "t2", "t3"])
    assert _ingest(_config(tmp_path, setting), tmp_path / "run") == 0
    assert f"warning: {target}: {warning}" in capsys.readouterr().out
    assert read_cohort(tmp_path / "run" / "cohorts" / "target").meta["record"].nunique() == 3  # nothing left out


def _labels_db(tmp_path, rows: str, target_setting: str = ""):
    """Source and target folders of 6 records each with labels CSVs; the target's CSV text is `rows`."""
    _db(tmp_path / "src", ["s1", "s2", "s3"])
    _db(tmp_path / "tgt", ["t1", "t2", "t3", "t4", "t5", "t6"])
    pd.DataFrame({"record": ["s1", "s2", "s3"], "label": ["NORM", "MI", "NORM"]}).to_csv(tmp_path / "src" / "l.csv",
                                                                                       index=False)
    (tmp_path / "tgt" / "l.csv").write_text(rows)
    return _config(tmp_path, f'labels_csv = "l.csv"\n{target_setting}', 'labels_csv = "l.csv"',
                   'classes = ["NORM", "MI"]')


@pytest.mark.parametrize(("rows", "message"), [
    ("record,label,patient\nt1,NORM,p1\nt2,MI,\nt3,NORM,p2\n\nt4,MI, \n", "column 'patient' is blank on lines 3, 6"),
    ("record,label\nt1,NORM\nt2,\n", "column 'label' is blank on line 3"),
    ("record,label\n,NORM\nt2,MI\n", "column 'record' is blank on line 2"),
    ("record,label,patient\n", "a header and no rows; expected one row per record"),
    ("", "the file is empty"),
])
def test_blank_cells_and_missing_rows_of_a_labels_csv_are_one_line_errors(tmp_path, capsys, rows, message):
    assert _ingest(_labels_db(tmp_path, rows), tmp_path / "run") == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"ecg-tgdp: error: {tmp_path / 'tgt' / 'l.csv'}: {message}")
    assert len(error.splitlines()) == 1


def test_a_labels_csv_with_a_blank_patient_column_makes_each_record_its_patient(tmp_path, capsys):
    rows = "record,label,patient\n" + "".join(f"t{k},{'NORM' if k % 2 else 'MI'},\n" for k in range(1, 7))
    assert _ingest(_labels_db(tmp_path, rows), tmp_path / "run") == 0
    out = capsys.readouterr().out
    csv = tmp_path / "tgt" / "l.csv"
    assert f"warning: {csv}: the patient column is blank, so each record is its own patient" in out
    meta = read_cohort(tmp_path / "run" / "cohorts" / "target").meta
    assert sorted(meta["patient"].unique()) == [f"t{k}" for k in range(1, 7)]  # not one patient "nan"


def test_labels_csv_entries_that_match_no_record_are_named_and_patients_applied(tmp_path, capsys):
    rows = "record,label\n" + "".join(f"t{k},{'NORM' if k % 2 else 'MI'}\n" for k in range(1, 7))
    config = _labels_db(tmp_path, rows, 'exclude_records = ["t7"]\npatients = { t1 = "p", t2 = "p", t8 = "q" }')
    assert _ingest(config, tmp_path / "run") == 0
    out = capsys.readouterr().out
    csv = tmp_path / "tgt" / "l.csv"
    assert f"warning: {csv}: exclude_records t7 match no record of the cohort" in out
    assert f"warning: {csv}: patients t8 match no record of the cohort" in out
    meta = read_cohort(tmp_path / "run" / "cohorts" / "target").meta
    assert set(meta.loc[meta["record"].isin(["t1", "t2"]), "patient"]) == {"p"}


def test_an_arrays_patient_without_a_usable_window_is_skipped_by_name(tmp_path, source_db, capsys):
    rng = np.random.default_rng(0)
    windows = np.sin(2 * np.pi * 1.3 * np.arange(100) / 125)[None, None] + 0.05 * rng.standard_normal((10, 1, 100))
    windows[8:, 0, 5] = np.nan  # patient d: both windows touch NaN
    path = tmp_path / "mine.npz"
    np.savez(path, windows=windows, labels=np.array(list("NVSNVSNVNS")), patients=np.array(list("aaabbbccdd")),
             fs_hz=125.0)
    overrides = ("target.format='arrays'", f"target.database='{path}'", "target.exclude_records=['e']")
    assert _ingest(_config(tmp_path), tmp_path / "run", *overrides) == 0
    out = capsys.readouterr().out
    assert f"skipped d: {path} (patient d): no usable window (nan_or_flat 2)" in out.splitlines()
    assert f"warning: {path}: exclude_records e match no record of the cohort" in out
    assert "from 3 records" in _summary(out, "target") and "dropped windows: nan_or_flat 2" in _summary(out, "target")


def test_a_reader_that_returns_no_window_has_its_record_skipped_and_its_counts_kept():
    empty = RecordWindows(record="r2", patient="r2", windows=np.zeros((0, 1, 10)), labels=np.array([], dtype=str),
                          sample_index=np.array([], dtype=np.int64), dropped=Counter(edge=2),
                          warnings=["r2: a warning"])
    full = RecordWindows(record="r1", patient="r1", windows=np.zeros((1, 1, 10)), labels=np.array(["N"]),
                         sample_index=np.array([5]), dropped=Counter(edge=1))
    result = read_records([("r1", lambda: full), ("r2", lambda: empty)], workers=1, desc="test")
    assert [part.record for part in result.parts] == ["r1"]
    assert result.skipped == {"r2": "r2: no window remains (edge 2)"}
    assert result.dropped == {"edge": 3} and result.warnings == ["r2: a warning"]
