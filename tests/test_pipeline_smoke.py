"""End to end on a tiny quickstart: `ecg-tgdp run` through every stage; caching; bad records; errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.models.model_card import x0_clip_for
from ecg_tgdp.pipeline import stages
from ecg_tgdp.pipeline.cli import main
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.rundir import RunDir
from tests.conftest import REPO

TINY = [
    "source.simulation.n_patients=5",
    "source.simulation.duration_s=40",
    "target.simulation.n_patients=5",
    "target.simulation.duration_s=40",
    "target.split.train_patients=2",
    "target.simulation.lead_names=['ECG1']",  # another lead name than the source's, as in mitdb (MLII) → svdb (ECG1)
    "target.leads=['ECG1']",
    "workers=1",
    "source_model.model.base_channels=8",
    "source_model.model.channel_mults=[1, 2]",
    "source_model.model.attention=false",  # attention over 256-512 positions: most of a tiny run's time
    "source_model.model.attention_levels=0",
    "source_model.schedule.num_steps=50",
    "source_model.training.steps=6",
    "source_model.training.batch_size=16",
    "source_model.training.warmup_steps=1",
    "source_model.training.val_every=3",
    "source_model.training.checkpoint_every=3",
    "source_model.training.log_every=3",
    "transfer.methods=['source_only', 'finetune', 'finetune_partial', 'domain_guidance', 'target_only', 'tgdp']",
    "transfer.max_val_windows=50",
    "transfer.tgdp.width=8",
    "transfer.tgdp.depth=2",
    "transfer.tgdp.time_domain.steps=3",
    "transfer.tgdp.time_domain.batch_size=16",
    "transfer.tgdp.time_domain.val_every=2",
    "transfer.tgdp.domain.steps=3",
    "transfer.tgdp.domain.batch_size=16",
    "transfer.tgdp.domain.val_every=2",
    "transfer.tgdp.guidance.steps=4",
    "transfer.tgdp.guidance.batch_size=8",
    "transfer.tgdp.guidance.val_every=2",
    "transfer.finetune.steps=4",
    "transfer.finetune.batch_size=16",
    "transfer.finetune.val_every=2",
    "transfer.target_only.steps=4",
    "transfer.target_only.batch_size=16",
    "transfer.target_only.val_every=2",
    "transfer.target_only.checkpoint_every=2",
    "transfer.target_only.warmup_steps=1",
    "evaluation.samples_per_class=12",
    "evaluation.sampling_steps=4",
    "evaluation.seeds=[0, 1]",
    "evaluation.classifier_training.epochs=2",
    "evaluation.classifier_training.steps_per_epoch=3",
    "evaluation.classifier_training.batch_size=16",
    "evaluation.bootstrap=10",
    "evaluation.transfer_scales=[2.0]",
    "evaluation.budgets=[20]",
    "evaluation.max_val_windows=50",
]


def run_cli(*args: str) -> int:
    return main([*args])


def _run_args(run_dir) -> list[str]:
    args = ["run", str(REPO / "configs/quickstart.toml"), "--run-dir", str(run_dir)]
    for override in TINY:
        args += ["--set", override]
    return args


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run of every stage, shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    assert run_cli(*_run_args(run_dir)) == 0
    return run_dir, _run_args(run_dir)


@pytest.fixture
def own_run(tiny_run, tmp_path):
    """A copy of the tiny run for tests that change it."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    return run_dir, _run_args(run_dir)


def test_run_writes_both_cohorts_with_the_documented_layout(tiny_run):
    run_dir, _ = tiny_run
    source = read_cohort(run_dir / "cohorts/source")
    target = read_cohort(run_dir / "cohorts/target")
    assert source.windows.shape[1:] == (1, 512) and target.windows.shape[1:] == (1, 512)  # 4 s at 128 Hz
    assert source.info["anchor_s"] == target.info["anchor_s"] == 2.0
    assert set(source.meta["label"]) == {"N", "S", "V"}  # F beats are simulated but not in the class list
    assert source.info["windows_dropped"]["class_not_selected"] > 0
    assert target.meta.loc[target.meta.split == "train", "patient"].nunique() == 2
    assert (run_dir / "config.toml").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {"simulate.source", "simulate.target", "ingest", "train-source", "transfer.finetune"} <= set(manifest["stages"])
    log = (run_dir / "models/source/log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and len(log) == 3
    card = DiffusionModel.load(run_dir / "models/source/model.pt").card  # samplers clip x̂_0 at the card's level
    assert card.clip_x0 == pytest.approx(x0_clip_for(source.normalized(source.split("train").windows)), rel=1e-5)


def test_run_samples_every_method_and_writes_the_report(tiny_run):
    run_dir, _ = tiny_run
    methods = ["source_only", "finetune", "finetune_partial", "domain_guidance", "target_only", "tgdp"]
    for method in methods:
        samples = read_cohort(run_dir / "samples" / method)
        assert samples.meta["label"].value_counts().to_dict() == {"N": 12, "S": 12, "V": 12}
    report = run_dir / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    arms = set(metrics["utility"]["table"])
    assert {"target_real", "source_real", "source_real+target_real"} <= arms
    assert {f"target_real+synthetic:{m}" for m in methods} | {f"synthetic_only:{m}" for m in methods} <= arms
    assert {row["method"] for row in metrics["privacy"]} == {"real:target_val", *methods}
    assert {(row["method"], row["class"]) for row in metrics["fidelity"]} >= {("tgdp", c) for c in ("N", "S", "V", "all")}
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "Downstream utility" in html  # 4 figures + 2 sweeps
    sweeps = metrics["sweeps"]
    assert {(row["method"], row["transfer_scale"]) for row in sweeps["transfer_scale"]} == {
        (m, w) for m in ("domain_guidance", "tgdp") for w in (0.0, 2.0, 1.0 if m == "tgdp" else 1.5)}
    assert {row["budget"] for row in sweeps["budget"]} == {20, metrics["counts"]["target_train"]}
    assert {row["method_or_arm"] for row in sweeps["budget"]} == {"target_real", *methods}
    assert "alt='ecg_paper'" in html and "macro-F1 [95% seeds]" in html and "macro_f1_seed_low" not in html
    assert {"utility.csv", "fidelity.csv", "privacy.csv"} <= {p.name for p in report.iterdir()}


def test_sample_from_the_run_checkpoint_gives_a_cohort_in_mv(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "samples"
    checkpoint = run_dir / "models/source/model.pt"
    assert run_cli("sample", "--checkpoint", str(checkpoint), "--n", "9", "--class-mix", "N=1,V=2", "--steps", "5",
                   "--out", str(out)) == 0
    samples = read_cohort(out)
    assert samples.windows.shape == (9, 1, 512)
    assert samples.meta["label"].value_counts().to_dict() == {"V": 6, "N": 3}
    assert samples.meta["synthetic"].all() and np.isfinite(samples.windows).all()


@pytest.mark.parametrize("arguments, message", [
    (["--steps", "51"], "sample: steps must be in [1, "),  # more than the tiny model's 50-step schedule allows
    (["--class-mix", "N=1,X=1"], "--class-mix: class mix names ['X'], which the model does not know"),
])
def test_sampler_arguments_the_checkpoint_cannot_serve_are_one_line_errors(tiny_run, tmp_path, capsys, arguments,
                                                                            message):
    checkpoint = tiny_run[0] / "models/source/model.pt"
    assert run_cli("sample", "--checkpoint", str(checkpoint), "--n", "3", "--out", str(tmp_path / "out"),
                   *arguments) == 1
    err = capsys.readouterr().err
    error = err.splitlines()[-1]  # after the sampler's progress bar, when it had started
    assert error.startswith("ecg-tgdp: error: ") and message in error and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_no_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_text("not a checkpoint")
    assert run_cli("sample", "--checkpoint", str(bad), "--n", "3", "--out", str(tmp_path / "out")) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ecg-tgdp: error: {bad}: not a readable checkpoint") and error.count("\n") == 1


@pytest.mark.parametrize("method", ["source_only", "finetune", "finetune_partial", "domain_guidance", "target_only", "tgdp"])
def test_every_transfer_method_samples_through_the_cohort_loader(tiny_run, tmp_path, method):
    run_dir, _ = tiny_run
    out = tmp_path / method
    assert run_cli("sample", "--checkpoint", str(run_dir / f"models/{method}/model.pt"), "--n", "4", "--steps", "3",
                   "--out", str(out)) == 0
    samples = read_cohort(out)
    assert samples.windows.shape == (4, 1, 512) and set(samples.meta["record"]) == {method}


def test_tgdp_logs_its_classifier_and_stores_guidance_with_ratio_diagnostics(tiny_run):
    import pandas as pd
    import torch

    run_dir, _ = tiny_run
    log = pd.read_csv(run_dir / "models/tgdp/log.csv")
    assert {"phase", "step", "train_loss", "val_log_loss"} <= set(log.columns) and set(log["phase"]) == {"time_classifier"}
    payload = torch.load(run_dir / "models/tgdp/model.pt", weights_only=True)
    assert payload["card"]["method"] == "tgdp" and payload["guidance"]["estimator"] == "time_classifier"
    diagnostics = json.loads((run_dir / "models/tgdp/diagnostics.json").read_text())
    assert diagnostics == payload["ratio_diagnostics"]
    assert 0.0 <= diagnostics["clip_share"] <= 1.0 and 0 < diagnostics["ess"] <= diagnostics["n_source_weights"]
    assert {"log_loss", "auroc", "ece"} <= set(diagnostics["clean"]) and diagnostics["bands"]
    assert payload["guidance"]["t_min"] == diagnostics["t_min"] >= 0


def test_the_papers_regression_estimator_runs_with_both_regularizers(own_run):
    run_dir, args = own_run
    assert run_cli("transfer", *args[1:], "--method", "tgdp", "--set", "transfer.tgdp.estimator=regression") == 0
    log = pd.read_csv(run_dir / "models/tgdp/log.csv")
    guidance = log[log["phase"] == "guidance"]
    assert {"guidance", "cycle", "consistency", "total", "val_consistency", "grad_share_cycle"} <= set(log.columns)
    assert (guidance["cycle"] > 0).all() and (guidance["consistency"] > 0).all()
    regression = json.loads((run_dir / "models/tgdp/diagnostics.json").read_text())["regression"]
    assert regression["temperature"] > 0 and 0.0 <= regression["ratio_clipped_share"] <= 1.0


def test_partial_finetune_changes_only_its_layers(tiny_run):
    import torch

    run_dir, _ = tiny_run
    source = torch.load(run_dir / "models/source/model.pt", weights_only=True)["ema"]["weights"]
    partial = torch.load(run_dir / "models/finetune_partial/model.pt", weights_only=True)["ema"]["weights"]
    changed = {name.split(".")[0] for name in source if not torch.equal(source[name], partial[name])}
    assert changed and changed <= {"stem", "out", "class_emb"}


def test_pretrained_source_model_is_adopted_when_it_fits(tiny_run, tmp_path, capsys):
    run_dir, args = tiny_run
    checkpoint = run_dir / "models/source/model.pt"
    second = [*args[:3], str(tmp_path / "second"), *args[4:], "--set", f"source_model.pretrained='{checkpoint}'"]
    assert run_cli(*second) == 0
    assert "using the pretrained model" in capsys.readouterr().out
    mismatch = second + ["--set", "windows.classes=['N','V']"]
    assert run_cli(*mismatch) == 1
    assert "has classes=['N', 'S', 'V'], the source cohort ['N', 'V']" in capsys.readouterr().err


def test_second_run_is_cached_and_force_redoes_it(own_run, capsys):
    _run_dir, args = own_run
    capsys.readouterr()
    assert run_cli(*args) == 0
    out = capsys.readouterr().out
    assert "ingest: up to date" in out and "simulate source: up to date" in out
    assert "sample tgdp: up to date" in out and "evaluate: up to date" in out
    assert run_cli(*args, "--force") == 0
    assert "ingest source:" in capsys.readouterr().out


def test_changing_only_the_guidance_weight_retrains_nothing(own_run, capsys):
    """w is asked for at sampling and never written into a model file, so a transfer run three times with only w
    changed is up to date each time and leaves every file as it was (it once rewrote model.pt, which made the
    next run refit from scratch)."""
    run_dir, args = own_run
    methods = ["source_only", "finetune", "finetune_partial", "domain_guidance", "target_only", "tgdp"]
    before = {method: (run_dir / "models" / method / "model.pt").read_bytes() for method in methods}
    transfer = ["transfer", *args[1:]]
    for _ in range(3):
        capsys.readouterr()
        assert run_cli(*transfer, "--set", "transfer.tgdp.transfer_scale=2.5") == 0
        out = capsys.readouterr().out
        assert all(f"transfer {method}: up to date" in out for method in methods), out
        assert all((run_dir / "models" / method / "model.pt").read_bytes() == before[method] for method in methods)
    assert run_cli(*args, "--set", "transfer.tgdp.transfer_scale=2.5") == 0
    out = capsys.readouterr().out
    assert "sample finetune: up to date" in out and "sample tgdp: up to date" not in out  # only TGDP resampled
    assert read_cohort(run_dir / "samples/tgdp").info["sampler"]["transfer_scale"] == 2.5


def test_a_bad_record_among_good_ones_is_skipped_counted_and_listed(own_run, capsys):
    run_dir, args = own_run
    bad = run_dir / "simulated/hospital_b/b001.dat"
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated download
    capsys.readouterr()
    # the ingest stage alone: the `ingest` and `run` commands first re-verify the simulated records, which simulate
    # owns, and would write b001 again
    config = load_config(run_dir / "config.toml")
    stages.ingest_stage(config, RunDir.open(config, run_dir))  # the input fingerprint changed, so ingest runs again
    out = capsys.readouterr().out
    assert "skipped b001:" in out and "shorter than" in out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "b001" in manifest["stages"]["ingest"]["cohorts"]["target"]["records_skipped"]
    assert "b001" not in set(read_cohort(run_dir / "cohorts/target").meta["record"])


def test_a_cohort_with_nothing_usable_fails_with_one_line(tmp_path, capsys):
    args = ["ingest", str(REPO / "configs/quickstart.toml"), "--run-dir", str(tmp_path)]
    for override in TINY + ["target.leads=['V1']"]:
        args += ["--set", override]
    assert run_cli(*args) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("ecg-tgdp: error: target cohort") and "no usable windows" in error
    assert "\n" not in error


def test_impossible_split_is_a_config_error(tmp_path, capsys):
    args = ["ingest", str(REPO / "configs/quickstart.toml"), "--run-dir", str(tmp_path)]
    for override in TINY + ["target.split.train_patients=4"]:
        args += ["--set", override]
    assert run_cli(*args) == 1
    assert "target.split: train_patients=4 leaves no patients" in capsys.readouterr().err


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert run_cli("ingest", str(tmp_path / "missing.toml")) == 1
    assert capsys.readouterr().err.strip() == f"ecg-tgdp: error: {tmp_path / 'missing.toml'}: config file not found"
    config = REPO / "configs/mitdb_to_svdb.toml"
    assert run_cli("ingest", str(config), "--run-dir", str(tmp_path), "--set", f"data_root='{tmp_path}/nowhere'") == 1
    error = capsys.readouterr().err.strip()
    assert "source.database" in error and "nowhere/mitdb not found" in error and "\n" not in error


def test_simulated_cohort_has_the_configured_shift(tiny_run):
    run_dir, _ = tiny_run
    source = read_cohort(run_dir / "cohorts/source")
    target = read_cohort(run_dir / "cohorts/target")
    normal = lambda c: np.asarray(c.windows)[c.meta.label.to_numpy() == "N", 0]
    # hospital B's gain is 0.8 of hospital A's: its normal beats have a smaller peak-to-peak range
    assert np.ptp(normal(target), axis=1).mean() < np.ptp(normal(source), axis=1).mean()


def _zeroed(path):
    path.write_bytes(bytes(len(path.read_bytes())))


def _edited(path):
    path.write_text(path.read_text() + " ")


DAMAGE = {  # stage command → (file damaged, how, the line that says the stage ran again)
    "simulate": ("simulated/hospital_b/b000.dat", _zeroed, "simulate target: "),
    "ingest windows": ("cohorts/source/windows.npy", _zeroed, "ingest source: "),
    "ingest meta": ("cohorts/target/meta.parquet", lambda p: p.unlink(), "ingest target: "),
    "ingest description": ("cohorts/target/cohort.json", _edited, "ingest target: "),
    "train-source": ("models/source/model.pt", _zeroed, "train-source: "),
    "transfer model": ("models/tgdp/model.pt", lambda p: p.unlink(), "transfer tgdp: →"),
    "transfer diagnostics": ("models/tgdp/diagnostics.json", _edited, "transfer tgdp: →"),
    "sample": ("samples/finetune/windows.npy", _zeroed, "sample finetune: 36 windows"),
    "evaluate": ("report/utility.csv", lambda p: p.unlink(), "evaluate: report →"),
}


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_output_is_redone_with_a_line_saying_why(own_run, capsys, case):
    """Every stage re-verifies what it wrote before saying "up to date" (a zeroed windows.npy or a deleted
    meta.parquet was once taken for a finished ingest)."""
    run_dir, args = own_run
    name, damage, redone = DAMAGE[case]
    damage(run_dir / name)
    capsys.readouterr()
    assert run_cli(*args) == 0
    out = capsys.readouterr().out
    assert "redoing it" in out and redone in out, out


def test_a_labels_csv_outside_the_database_folder_is_an_input_of_ingest(tmp_path, capsys):
    from tests.conftest import spiky_ecg, write_record

    fs = 128.0
    for k in range(6):
        write_record(tmp_path / "db", f"r{k}", spiky_ecg(fs, 30, [int(fs * (i + 0.5)) for i in range(30)], seed=k),
                     fs, [64], ["N"])
    labels = tmp_path / "elsewhere" / "labels.csv"
    labels.parent.mkdir()
    labels.write_text("record,label,patient\n" + "".join(f"r{k},{'NSV'[k % 3]},p{k}\n" for k in range(6)))
    config = tmp_path / "c.toml"
    config.write_text(f'name = "csv"\ndata_root = "{tmp_path}"\nworkers = 1\n[windows]\nwindow_s = 2.0\n'
                      f'[source]\nformat = "wfdb"\ndatabase = "db"\nlabels_csv = "{labels}"\n'
                      f'[target]\nformat = "wfdb"\ndatabase = "db"\nlabels_csv = "{labels}"\n')
    assert run_cli("ingest", str(config), "--run-dir", str(tmp_path / "run")) == 0
    assert run_cli("ingest", str(config), "--run-dir", str(tmp_path / "run")) == 0
    assert "ingest: up to date" in capsys.readouterr().out
    labels.write_text(labels.read_text().replace("r0,N", "r0,V"))
    assert run_cli("ingest", str(config), "--run-dir", str(tmp_path / "run")) == 0
    assert "ingest: up to date" not in capsys.readouterr().out
    meta = read_cohort(tmp_path / "run" / "cohorts" / "source").meta
    assert set(meta.loc[meta["record"] == "r0", "label"]) == {"V"}


def test_refitting_tgdp_with_the_same_config_repeats_it_exactly(own_run):
    """Seeded data order, noise and initial weights: a forced refit gives the same diagnostics and weights (a
    refit once moved the held-out clean-window AUROC from 0.863 to 0.964)."""
    import torch

    run_dir, args = own_run
    before = torch.load(run_dir / "models/tgdp/model.pt", weights_only=True)
    assert run_cli("transfer", *args[1:], "--method", "tgdp", "--force") == 0
    after = torch.load(run_dir / "models/tgdp/model.pt", weights_only=True)
    assert after["ratio_diagnostics"] == before["ratio_diagnostics"]
    for name, tensor in before["guidance"]["weights"].items():
        assert torch.equal(tensor, after["guidance"]["weights"][name]), name


def test_the_source_model_is_given_its_windows_rhythm_and_carries_a_bank_of_them(tiny_run):
    """The quickstart's network has the rhythm channel (as the shipped model): a bank of its training windows'
    R peaks per class, every rhythm holding the labeled beat, carried on by the transferred models."""
    run_dir, _ = tiny_run
    source = DiffusionModel.load(run_dir / "models" / "source" / "model.pt")
    assert source.net.config.rhythm_channel and set(source.card.rhythm_bank) == {"N", "S", "V"}
    anchor = round(source.card.anchor_s * source.card.fs_hz)
    for rhythms in source.card.rhythm_bank.values():
        assert all(any(abs(peak - anchor) <= 0.1 * source.card.fs_hz for peak in rhythm) for rhythm in rhythms)
    for method in ("tgdp", "finetune", "target_only", "domain_guidance"):
        assert DiffusionModel.load(run_dir / "models" / method / "model.pt").card.rhythm_bank == source.card.rhythm_bank


def test_the_consistency_refinement_denoises_target_windows_given_their_rhythm(own_run):
    run_dir, args = own_run
    assert run_cli("transfer", *args[1:], "--method", "tgdp", "--set", "transfer.tgdp.refine_steps=2") == 0
    log = pd.read_csv(run_dir / "models/tgdp/log.csv")
    assert (log.loc[log["phase"] == "refine", "consistency"] > 0).all()


def test_a_source_model_without_the_rhythm_channel_runs_every_stage(tmp_path):
    """The network of the 2025 and v2 models (no rhythm channel) still trains, transfers, samples and evaluates."""
    run_dir = tmp_path / "run"
    args = ["run", str(REPO / "configs/quickstart.toml"), "--run-dir", str(run_dir)]
    for override in TINY + ["source_model.model.rhythm_channel=false", "transfer.methods=['finetune', 'tgdp']",
                            "evaluation.transfer_scales=[]", "evaluation.budgets=[]"]:
        args += ["--set", override]
    assert run_cli(*args) == 0
    source = DiffusionModel.load(run_dir / "models" / "source" / "model.pt")
    assert not source.net.config.rhythm_channel and source.card.rhythm_bank is None
    assert (run_dir / "report" / "metrics.json").is_file()
