"""`ecg-tgdp augment`: a user's small WFDB or array dataset plus transferred synthetic windows, read back by ingest
as written, cached by content, balanced toward the majority class, with implausible samples screened out."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from ecg_tgdp.data import simulate
from ecg_tgdp.data.balance import top_up_counts
from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.models.checkpoint import save_checkpoint
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.models.model_card import ModelCard
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.unet import UNet1D, UNetConfig
from ecg_tgdp.pipeline.cli import main

FS_HZ = 128.0
TINY_TRANSFER = [
    "transfer.finetune.steps=3", "transfer.finetune.batch_size=8", "transfer.finetune.val_every=2",
    "transfer.tgdp.width=8", "transfer.tgdp.depth=2", "transfer.tgdp.time_domain.steps=3",
    "transfer.tgdp.time_domain.batch_size=8", "transfer.tgdp.guidance.steps=3", "transfer.tgdp.guidance.batch_size=8",
    "transfer.tgdp.guidance.val_every=2",
]


@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    """An untrained tiny N/S/V source checkpoint at 128 Hz: augment only needs its contract, not its quality."""
    torch.manual_seed(0)
    config = UNetConfig(leads=1, num_classes=3, base_channels=8, channel_mults=(1, 2), res_blocks=1)
    card = ModelCard(classes=["N", "S", "V"], leads=["MLII"], fs_hz=FS_HZ, window_s=1.0, anchor_s=0.5,
                     normalization={"mean": [0.0], "std": [0.3], "fit_on": "test"},
                     unet={**asdict(config), "channel_mults": list(config.channel_mults)},
                     schedule=NoiseSchedule.cosine(50).card())
    path = tmp_path_factory.mktemp("source") / "model.pt"
    save_checkpoint(path, {"ema": {"weights": UNet1D(config).state_dict()}, "card": card.to_dict(), "step": 0})
    return path


def _records(folder, fs_hz=FS_HZ, n_patients=3, lead="MLII", seed=3):
    spec = simulate.SimulationSpec(n_patients=n_patients, duration_s=60, fs_hz=fs_hz, lead_names=(lead,),
                                   ectopic_rates=(("S", 0.15), ("V", 0.15), ("F", 0.02)))
    simulate.simulate_database(folder, spec, seed=seed)
    return folder


def _augment(tmp_path, source_model, target, *extra: str) -> int:
    args = ["augment", "--target", str(target), "--out", str(tmp_path / "out"), "--source-model", str(source_model),
            "--source-per-class", "8", "--steps", "4", "--min-per-class", "5", *extra]
    if "--n-per-class" not in extra and "--max-per-class" not in extra:
        args += ["--n-per-class", "6"]
    for override in TINY_TRANSFER:
        args += ["--set", override]
    return main(args)


def _summary(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "augment.json").read_text())


@pytest.fixture
def plausible_sampler(monkeypatch, tmp_path):
    """Sampling replaced by real-looking windows (real target windows of the class, rescaled by 0.95-1.05) of which
    every third is 40 times too large, so that screening has something to keep and something to remove; records
    the implausible count per class of each call. (The source samples, drawn before the target is read, are noise.)"""
    target = tmp_path / ".out.work" / "cohorts" / "target"
    implausible = []

    def sample_mv(self, labels, *, seed=0, **_):
        rng = np.random.default_rng(seed)
        labels = np.asarray(labels)
        if not (target / "cohort.json").is_file():
            return rng.normal(0, 0.3, (len(labels), 1, round(FS_HZ))).astype(np.float32)
        real = read_cohort(target, mmap=False)
        rows = [rng.choice(np.flatnonzero(real.meta["label_index"].to_numpy() == label)) for label in labels]
        windows = real.windows[rows] * rng.uniform(0.95, 1.05, (len(labels), 1, 1)).astype(np.float32)
        windows[::3] *= 40.0
        implausible.append(np.bincount(labels[::3], minlength=3))
        return windows

    monkeypatch.setattr(DiffusionModel, "sample_mv", sample_mv)
    return implausible


def test_augmented_wfdb_folder_is_read_back_by_ingest(tmp_path, source_model):
    target = _records(tmp_path / "mine", lead="ECG1")  # another lead name than the model's MLII, as in svdb
    assert _augment(tmp_path, source_model, target, "--method", "finetune", "--format", "wfdb", "--leads", "ECG1") == 0
    summary = _summary(tmp_path)
    assert summary["planned"] == {"N": 6, "S": 6, "V": 6} and summary["real_dropped"].get("class_not_selected", 0) > 0
    assert all(summary["synthetic"][c] + summary["screened_out"][c] == 6 for c in "NSV")
    config = tmp_path / "readback.toml"
    config.write_text(
        f'name = "readback"\ndata_root = "{tmp_path}"\n[windows]\nfs_hz = {FS_HZ}\nwindow_s = 1.0\nclasses = ["N", "S", "V"]\n'
        f'[source]\nformat = "wfdb"\ndatabase = "mine"\nleads = ["ECG1"]\n'
        f'[target]\nformat = "wfdb"\ndatabase = "{tmp_path / "out" / "augmented"}"\nleads = ["ECG1"]\nsplit = {{ fractions = [0.5, 0.25, 0.25] }}\n'
    )
    assert main(["ingest", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    meta = read_cohort(tmp_path / "run" / "cohorts" / "target").meta
    assert meta.loc[meta["synthetic"], "label"].value_counts().to_dict() == {k: v for k, v in summary["synthetic"].items() if v}
    assert meta.loc[~meta["synthetic"], "label"].value_counts().to_dict() == summary["real"]


def test_augmented_npz_flags_synthetic_windows_after_a_tgdp_transfer(tmp_path, source_model):
    target = _records(tmp_path / "mine", n_patients=2)  # too few patients for a patient-level split
    assert _augment(tmp_path, source_model, target, "--format", "npz") == 0
    n_synthetic = sum(_summary(tmp_path)["synthetic"].values())
    with np.load(tmp_path / "out" / "augmented.npz") as npz:
        flags, patients, windows = npz["synthetic"], npz["patients"], npz["windows"]
        assert npz["band_hz"].tolist() == [0.5, 40.0] and float(npz["anchor_s"]) == 0.5
    assert flags.sum() == n_synthetic and (patients[flags] == "synthetic_tgdp").all()
    assert not flags[: len(flags) - n_synthetic].any()
    assert windows.shape[1:] == (1, 128) and np.isfinite(windows).all()
    work = json.loads((tmp_path / ".out.work" / "manifest.json").read_text())
    assert "augment.transfer.tgdp" in work["stages"]
    # a share of the source model's samples is held out, so TGDP's diagnostics are held out, as in the stage
    diagnostics = json.loads((tmp_path / ".out.work" / "models" / "tgdp" / "diagnostics.json").read_text())
    assert diagnostics["held_out"] is True


def _readback_config(tmp_path, target) -> str:
    path = tmp_path / "readback.toml"
    path.write_text(
        f'name = "readback"\ndata_root = "{tmp_path}"\nworkers = 1\n'
        f'[windows]\nfs_hz = {FS_HZ}\nwindow_s = 1.0\nclasses = ["N", "S", "V"]\n'
        f'[source]\nformat = "wfdb"\ndatabase = "mine"\n'
        f'[target]\nformat = "arrays"\ndatabase = "{target}"\nsplit = {{ fractions = [0.5, 0.25, 0.25] }}\n'
    )
    return str(path)


def test_augment_output_reads_back_exactly_and_synthetic_windows_only_train(tmp_path, source_model, plausible_sampler):
    target = _records(tmp_path / "mine", n_patients=4)
    assert _augment(tmp_path, source_model, target, "--format", "npz") == 0
    summary = _summary(tmp_path)
    too_large = plausible_sampler[-1]  # the last sampling call is the synthetic output (the first, the source)
    assert summary["screened_out"] == dict(zip("NSV", too_large.tolist())) and too_large.sum() > 0
    assert summary["synthetic"] == {c: 6 - n for c, n in zip("NSV", too_large.tolist())}

    assert main(["ingest", _readback_config(tmp_path, tmp_path / "out" / "augmented.npz"),
                 "--run-dir", str(tmp_path / "run")]) == 0
    cohort = read_cohort(tmp_path / "run" / "cohorts" / "target")
    with np.load(tmp_path / "out" / "augmented.npz") as npz:
        written, flags = npz["windows"], npz["synthetic"]
    rows = cohort.meta["sample_index"].to_numpy()  # the window's row in the NPZ
    assert len(rows) == len(written)
    np.testing.assert_array_equal(np.asarray(cohort.windows), written[rows])  # not filtered again: exact
    assert (cohort.meta["synthetic"].to_numpy() == flags[rows]).all() and flags.sum() == sum(summary["synthetic"].values())
    assert set(cohort.meta.loc[cohort.meta["synthetic"], "split"]) == {"train"}
    assert set(cohort.meta.loc[~cohort.meta["synthetic"], "split"]) == {"train", "val", "test"}
    assert cohort.info["anchor_s"] == 0.5 and cohort.info["synthetic_windows"] == flags.sum()


def test_second_identical_augment_reuses_the_transfer_and_the_samples(tmp_path, source_model, capsys):
    target = _records(tmp_path / "mine")
    assert _augment(tmp_path, source_model, target) == 0
    first = _summary(tmp_path)
    for path in target.iterdir():  # touched, not changed: a new modification time alone keeps the cache
        os.utime(path, (time.time() + 60, time.time() + 60))
    capsys.readouterr()
    assert _augment(tmp_path, source_model, target) == 0
    out = capsys.readouterr().out
    second = _summary(tmp_path)
    assert "transfer tgdp: up to date" in out and "synthetic windows up to date" in out
    assert second["synthetic"] == first["synthetic"]

    _records(target, seed=4)  # new content: the transfer runs again
    assert _augment(tmp_path, source_model, target) == 0
    assert "transfer tgdp: up to date" not in capsys.readouterr().out


def test_default_balance_tops_rare_classes_up_to_the_majority(tmp_path, source_model):
    target = _records(tmp_path / "mine")
    assert _augment(tmp_path, source_model, target, "--max-per-class", "40") == 0
    summary = _summary(tmp_path)
    real = summary["real"]
    assert summary["balance"] == {"mode": "top_up", "target_share": 1.0, "max_per_class": 40}
    assert summary["planned"] == {c: min(max(real.values()) - n, 40) for c, n in real.items()}
    assert summary["planned"][max(real, key=real.get)] == 0


def test_top_up_counts_for_a_small_and_a_large_dataset():
    assert top_up_counts({"N": 150, "S": 25, "V": 25}) == {"N": 0, "S": 125, "V": 125}
    assert top_up_counts({"N": 55_000, "S": 2_000, "V": 3_000}) == {"N": 0, "S": 5_000, "V": 5_000}
    assert top_up_counts({"N": 55_000, "S": 2_000, "V": 3_000}, target_share=0.2, max_per_class=None) == {
        "N": 0, "S": 9_000, "V": 8_000}
    with pytest.raises(ValueError, match="positive"):
        top_up_counts({"N": 1}, target_share=0)


def test_a_malformed_header_in_the_target_is_skipped_with_one_line(tmp_path, source_model, capsys):
    target = _records(tmp_path / "mine", n_patients=4)
    (target / "sim003.hea").write_text("sim003 one 128 7680\n")  # wfdb raises HeaderSyntaxError
    assert _augment(tmp_path, source_model, target) == 0
    captured = capsys.readouterr()
    assert "skipped sim003:" in captured.out and "sim003.hea" in captured.out and "Traceback" not in captured.err
    assert _summary(tmp_path)["real_split"]


def test_record_labels_outside_the_model_classes_are_named(tmp_path, source_model, capsys):
    target = _records(tmp_path / "mine")
    pd.DataFrame({"record": ["sim000", "sim001", "sim002"], "label": ["AFIB", "AFIB", "MI"]}).to_csv(
        target / "labels.csv", index=False)
    assert _augment(tmp_path, source_model, target, "--labels-csv", "labels.csv") == 1
    error = capsys.readouterr().err.strip()
    assert "'AFIB' (2 records: sim000, sim001)" in error and "'MI'" in error and len(error.splitlines()) == 1


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
        (["N"] * 30 + ["S"] * 30 + ["V"] * 30, -128.0, "sampling rate -128 Hz is not positive"),
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


def test_augment_and_the_transfer_stage_give_the_same_model_for_the_same_windows(tmp_path, source_model):
    """One seam: augment fits its transfer with `fit_transfer`, as the transfer stage does, so a run directory
    holding augment's own cohorts (the source model's samples, with their held-out share, and the user's windows)
    transfers to the same model file."""
    import shutil

    from ecg_tgdp.models.checkpoint import load_checkpoint
    from ecg_tgdp.pipeline.config import load_config
    from ecg_tgdp.pipeline.rundir import RunDir
    from ecg_tgdp.pipeline.transfer_stage import transfer_stage

    target = _records(tmp_path / "mine", n_patients=4)
    assert _augment(tmp_path, source_model, target) == 0
    work = tmp_path / ".out.work"
    config = load_config(work / "config.toml")
    run = tmp_path / "stage"
    shutil.copytree(work / "cohorts", run / "cohorts")
    (run / "models" / "source").mkdir(parents=True)
    shutil.copyfile(source_model, run / "models" / "source" / "model.pt")
    transfer_stage(config, RunDir(run), ["tgdp"])
    augmented, staged = (load_checkpoint(folder / "models" / "tgdp" / "model.pt") for folder in (work, run))
    assert augmented["card"] == staged["card"] and augmented["ratio_diagnostics"] == staged["ratio_diagnostics"]
    assert augmented["guidance"]["t_min"] == staged["guidance"]["t_min"]
    for name, tensor in augmented["guidance"]["weights"].items():
        assert torch.equal(tensor, staged["guidance"]["weights"][name]), name
