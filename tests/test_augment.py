"""`ecg-tgdp augment`: a user's small WFDB or array dataset plus transferred synthetic windows, read back by ingest."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from data import simulate
from data.store import read_cohort
from models.checkpoint import save_checkpoint
from models.unet import UNet1D, UNetConfig
from pipeline.cli import main

FS_HZ = 128.0
TINY_TRANSFER = [
    "transfer.finetune.steps=3", "transfer.finetune.batch_size=8", "transfer.finetune.val_every=2",
    "transfer.tgdp.width=8", "transfer.tgdp.depth=2", "transfer.tgdp.classifier_steps=3",
    "transfer.tgdp.classifier_batch_size=8", "transfer.tgdp.guidance_steps=3", "transfer.tgdp.guidance_batch_size=8",
    "transfer.tgdp.val_every=2",
]


@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    """An untrained tiny N/S/V source checkpoint at 128 Hz: augment only needs its contract, not its quality."""
    torch.manual_seed(0)
    config = UNetConfig(leads=1, num_classes=3, base_channels=8, channel_mults=(1, 2), res_blocks=1)
    extra = {"unet": {**asdict(config), "channel_mults": list(config.channel_mults)},
             "schedule": {"kind": "cosine", "num_steps": 50}, "classes": ["N", "S", "V"], "leads": ["MLII"],
             "fs_hz": FS_HZ, "window_s": 1.0, "normalization": {"mean": [0.0], "std": [0.3], "fit_on": "test"}}
    path = tmp_path_factory.mktemp("source") / "model.pt"
    save_checkpoint(path, {"ema": {"weights": UNet1D(config).state_dict()}, "extra": extra, "step": 0})
    return path


def _records(folder, fs_hz=FS_HZ, n_patients=3, lead="MLII"):
    spec = simulate.SimulationSpec(n_patients=n_patients, duration_s=60, fs_hz=fs_hz, lead_names=(lead,),
                                   ectopic_rates=(("S", 0.15), ("V", 0.15), ("F", 0.02)))
    simulate.simulate_database(folder, spec, seed=3)
    return folder


def _augment(tmp_path, source_model, target, *extra: str) -> int:
    args = ["augment", "--target", str(target), "--out", str(tmp_path / "out"), "--source-model", str(source_model),
            "--n-per-class", "6", "--source-per-class", "8", "--steps", "4", "--min-per-class", "5", *extra]
    for override in TINY_TRANSFER:
        args += ["--set", override]
    return main(args)


def test_augmented_wfdb_folder_is_read_back_by_ingest(tmp_path, source_model):
    target = _records(tmp_path / "mine", lead="ECG1")  # another lead name than the model's MLII, as in svdb
    assert _augment(tmp_path, source_model, target, "--method", "finetune", "--format", "wfdb", "--leads", "ECG1") == 0
    summary = json.loads((tmp_path / "out" / "augment.json").read_text())
    assert summary["synthetic"] == {"N": 6, "S": 6, "V": 6} and summary["real_dropped"].get("class_not_selected", 0) > 0
    config = tmp_path / "readback.toml"
    config.write_text(
        f'name = "readback"\ndata_root = "{tmp_path}"\n[windows]\nfs_hz = {FS_HZ}\nwindow_s = 1.0\nclasses = ["N", "S", "V"]\n'
        f'[source]\nformat = "wfdb"\ndatabase = "mine"\nleads = ["ECG1"]\n'
        f'[target]\nformat = "wfdb"\ndatabase = "{tmp_path / "out" / "augmented"}"\nleads = ["ECG1"]\nsplit = {{ fractions = [0.5, 0.25, 0.25] }}\n'
    )
    assert main(["ingest", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    meta = read_cohort(tmp_path / "run" / "cohorts" / "target").meta
    synthetic = meta[meta["patient"] == "synthetic_finetune"]
    assert synthetic["label"].value_counts().to_dict() == {"N": 6, "S": 6, "V": 6}
    real = meta[meta["patient"] != "synthetic_finetune"]["label"].value_counts().to_dict()
    assert real == summary["real"]


def test_augmented_npz_flags_synthetic_windows_after_a_tgdp_transfer(tmp_path, source_model):
    target = _records(tmp_path / "mine", n_patients=2)  # too few patients for a patient-level split
    assert _augment(tmp_path, source_model, target, "--format", "npz") == 0
    with np.load(tmp_path / "out" / "augmented.npz") as npz:
        flags, labels, patients, windows = npz["synthetic"], npz["labels"], npz["patients"], npz["windows"]
    assert flags.sum() == 18 and (patients[flags] == "synthetic_tgdp").all() and not flags[:-18].any()
    assert sorted(labels[flags]) == ["N"] * 6 + ["S"] * 6 + ["V"] * 6
    assert windows.shape[1:] == (1, 128) and np.isfinite(windows).all()
    work = json.loads((tmp_path / ".out.work" / "manifest.json").read_text())
    assert "transfer.tgdp" in work["stages"]


def _npz(path, labels, fs_hz=FS_HZ):
    rng = np.random.default_rng(0)
    np.savez(path, windows=rng.normal(0, 0.3, (len(labels), 1, 128)), labels=np.asarray(labels),
             patients=np.asarray([f"p{i % 3}" for i in range(len(labels))]), fs_hz=fs_hz)
    return path


@pytest.mark.parametrize(
    ("labels", "fs_hz", "message"),
    [
        (["N"] * 30 + ["S"] * 30 + ["V"] * 3, FS_HZ, "too few windows of class V 3"),
        (["N"] * 30 + ["S"] * 30 + ["X"] * 30, FS_HZ, "labels ['X'] are not among"),
        (["N"] * 30 + ["S"] * 30 + ["V"] * 30, 250.0, "recorded at 250 Hz, the source model at 128 Hz; pass --resample"),
    ],
)
def test_bad_target_data_gets_one_line_naming_the_file(tmp_path, source_model, capsys, labels, fs_hz, message):
    target = _npz(tmp_path / "mine.npz", labels, fs_hz)
    assert _augment(tmp_path, source_model, target) == 1
    error = capsys.readouterr().err.strip()
    assert message in error and "mine.npz" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_wfdb_records_at_another_rate_need_resample(tmp_path, source_model, capsys):
    target = _records(tmp_path / "mine", fs_hz=360.0, n_patients=1)
    assert _augment(tmp_path, source_model, target) == 1
    assert "recorded at 360 Hz" in capsys.readouterr().err
