"""Tests for models.training, models.ema and models.checkpoint: loss, exact resume, NaN guard, files, sampling, LR."""
from __future__ import annotations

import csv
import itertools
import math
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ecg_tgdp.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ecg_tgdp.models.ema import EMA
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.training import LOG_COLUMNS, TrainConfig, WindowSampler, lr_factor, train_diffusion

SCHEDULE = NoiseSchedule.cosine(100)
# small, fast, and every random stream in use: label dropout, balanced batches, validation
# rows at 3 5 6 9 10 12 and checkpoints at 4 8: a checkpoint falls between rows, mid-way through a log mean
QUICK = TrainConfig(steps=12, batch_size=8, lr=1e-3, warmup_steps=3, log_every=3, val_every=5, checkpoint_every=4,
                    label_dropout=0.2, class_balanced=True, ema_decay=0.9)


class Killed(Exception):
    """Stands in for SIGKILL in the middle of a step."""


class TinyDenoiser(nn.Module):
    """ε_θ(x, t, y): convs with time and label embeddings; dropout draws from the global RNG like a U-Net's.

    `kill_at` / `nan_from` (training forward calls, 1-based) simulate a killed run and a diverging one.
    """

    def __init__(self, leads: int = 1, num_classes: int = 2, width: int = 16, dropout: float = 0.1):
        super().__init__()
        self.null_class = num_classes
        self.time = nn.Linear(1, width)
        self.label = nn.Embedding(num_classes + 1, width)
        self.inp = nn.Conv1d(leads, width, 5, padding=2)
        self.mid = nn.Conv1d(width, width, 5, padding=2)
        self.out = nn.Conv1d(width, leads, 5, padding=2)
        self.drop = nn.Dropout(dropout)
        self.calls, self.kill_at, self.nan_from = 0, None, None

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.kill_at:
                raise Killed(f"killed in step {self.calls}")
        embedding = self.time(t.float()[:, None] / SCHEDULE.num_steps) + self.label(y)
        h = F.silu(self.inp(x) + embedding[:, :, None])
        out = self.out(self.drop(F.silu(self.mid(h))))
        if self.training and self.nan_from is not None and self.calls >= self.nan_from:
            out = out * math.nan
        return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, which on a busy 2-core machine cost 5-20x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed: int = 0, **kwargs) -> TinyDenoiser:
    torch.manual_seed(seed)
    return TinyDenoiser(**kwargs)


def sine_windows(n: int = 64, length: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n windows [n, 1, length]: class 0 a 2-cycle sine, class 1 a 4-cycle sine, random phase, small noise."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    phase = 2 * math.pi * torch.rand(n, 1, generator=generator)
    grid = torch.linspace(0, 1, length)
    x = torch.sin(2 * math.pi * (2 + 2 * y[:, None]) * grid + phase) + 0.1 * torch.randn(n, length, generator=generator)
    return x[:, None, :].float(), y


def train(model, config, out_dir, val=True, **kwargs):
    x, y = sine_windows()
    valid = {"val_x": x[:16], "val_y": y[:16]} if val else {}
    return train_diffusion(model, SCHEDULE, x, y, config, out_dir, progress=False, **valid, **kwargs)


def log_rows(out_dir: Path) -> list[dict]:
    """log.csv rows without the wall-clock column, which no two runs share."""
    with (out_dir / "log.csv").open(newline="") as file:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(file)]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_loss_goes_down_and_global_rng_is_left_alone(tmp_path):
    config = TrainConfig(steps=200, batch_size=16, lr=3e-3, warmup_steps=10, log_every=20, val_every=100,
                         checkpoint_every=100, ema_decay=0.99)
    model = tiny_model()
    rng_before = torch.get_rng_state()
    result = train(model, config, tmp_path)
    assert torch.equal(torch.get_rng_state(), rng_before)
    rows = log_rows(tmp_path)
    assert list(rows[0]) == [c for c in LOG_COLUMNS if c != "seconds"]
    assert [int(r["step"]) for r in rows] == list(range(20, 201, 20))
    first, last = float(rows[0]["loss"]), (float(rows[-1]["loss"]) + float(rows[-2]["loss"])) / 2
    assert last < 0.6 * first
    assert [r["step"] for r in rows if r["val_loss"]] == ["100", "200"]
    assert result.steps_done == 200 and result.best_score == float(rows[-1]["val_loss"]) < float(rows[4]["val_loss"])


def test_killed_run_resumes_to_the_uninterrupted_one(tmp_path):
    train(tiny_model(), QUICK, tmp_path / "whole")
    victim = tiny_model()
    victim.kill_at = 11  # dies in step 11: checkpoint at 8, log rows 9 and 10 from the dying run
    with pytest.raises(Killed):
        train(victim, QUICK, tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 8
    assert int(log_rows(tmp_path / "killed")[-1]["step"]) == 10

    resumed = tiny_model(seed=1)  # other initial weights: everything must come from the checkpoint
    result = train(resumed, QUICK, tmp_path / "killed")
    assert result.steps_done == 12
    whole, again = (load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("whole", "killed"))
    assert_same_tensors(whole["model"], again["model"])
    assert_same_tensors(whole["model"], resumed.state_dict())
    assert_same_tensors(whole["ema"]["weights"], again["ema"]["weights"])
    assert whole["best_score"] == again["best_score"]
    assert log_rows(tmp_path / "whole") == log_rows(tmp_path / "killed")
    best = [load_checkpoint(tmp_path / run / "best.pt") for run in ("whole", "killed")]
    assert best[0]["step"] == best[1]["step"] and best[0]["score"] == best[1]["score"]
    assert_same_tensors(best[0]["ema"]["weights"], best[1]["ema"]["weights"])


def test_extending_a_finished_run_equals_one_long_run(tmp_path):
    # a flat LR after warm-up: with cosine decay the schedule itself depends on `steps`
    flat = replace(QUICK, min_lr_ratio=1.0, checkpoint_every=3)
    train(tiny_model(), flat, tmp_path / "whole")
    train(tiny_model(), replace(flat, steps=8), tmp_path / "extended")
    model = tiny_model(seed=1)
    train(model, flat, tmp_path / "extended")
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert_same_tensors(whole["model"], model.state_dict())
    assert log_rows(tmp_path / "whole") == log_rows(tmp_path / "extended")

    # a finished run returns at once and leaves its files alone
    before = (tmp_path / "extended" / "checkpoint.pt").stat().st_mtime_ns
    result = train(tiny_model(seed=2), flat, tmp_path / "extended")
    assert result.steps_done == 12 and (tmp_path / "extended" / "checkpoint.pt").stat().st_mtime_ns == before


def test_resume_refuses_other_optimization_settings(tmp_path):
    train(tiny_model(), replace(QUICK, steps=4), tmp_path)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_model(), replace(QUICK, lr=5e-4), tmp_path)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    model = tiny_model()
    model.nan_from = 7
    with pytest.raises(FloatingPointError, match="step 7.*holds step 4"):
        train(model, replace(QUICK, steps=10, checkpoint_every=4), tmp_path, val=False)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 4
    assert all(torch.isfinite(value).all() for value in saved["model"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "log.csv"]  # no temporary left


def test_checkpoints_load_weights_only_and_carry_the_card(tmp_path):
    card = {"model_config": {"leads": 1, "widths": [16, 32]}, "classes": ["N", "V"], "mean": torch.zeros(1)}
    train(tiny_model(), replace(QUICK, steps=6), tmp_path, card=card)
    for name in ("checkpoint.pt", "best.pt"):
        saved = torch.load(tmp_path / name, weights_only=True)
        assert saved["card"]["classes"] == ["N", "V"] and saved["card"]["model_config"] == card["model_config"]
        assert TrainConfig(**saved["train_config"]) == replace(QUICK, steps=6)
        tiny_model(seed=3).load_state_dict(saved["ema"]["weights"])
    assert len(load_checkpoint(tmp_path / "checkpoint.pt")["rng"]) == 1

    with pytest.raises(TypeError, match=r"card\.folder is a PosixPath"):
        train(tiny_model(), QUICK, tmp_path / "bad", card={"folder": tmp_path})


def test_checkpoint_files_fail_loudly(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "good.pt", {"weights": torch.ones(3), "step": 1})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for name in ("cut.pt", "junk.pt"):
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)


def test_ema_warms_up_then_averages():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # n = 0: decay min(0.9, 1/10) = 0.1, so the average jumps most of the way
    assert ema.module.weight.item() == pytest.approx(0.9)
    ema.update(model)  # n = 1: decay 2/11
    assert ema.module.weight.item() == pytest.approx(2 / 11 * 0.9 + 9 / 11)
    assert ema.current_decay() == pytest.approx(3 / 12)
    for _ in range(100):
        ema.update(model)
    assert ema.current_decay() == 0.9 and ema.module.weight.item() == pytest.approx(1.0)
    target, restored = nn.Linear(1, 1, bias=False), EMA(nn.Linear(1, 1, bias=False))
    ema.copy_to(target)
    restored.load_state_dict(ema.state_dict())
    assert target.weight.item() == restored.module.weight.item() == ema.module.weight.item()
    assert restored.num_updates == 102


def test_class_balanced_sampling_evens_out_rare_classes():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    generator = torch.Generator().manual_seed(0)
    index = WindowSampler(labels, balanced=True).draw(6000, generator)
    balanced = labels[index]
    assert torch.allclose(torch.bincount(balanced) / 6000.0, torch.full((3,), 1 / 3), atol=0.03)
    assert set(index[balanced == 2].tolist()) == set(range(990, 1000))  # every rare window is drawn
    plain = labels[WindowSampler(labels, balanced=False).draw(6000, generator)]
    assert (plain == 0).float().mean() == pytest.approx(0.9, abs=0.03)


def test_lr_warms_up_linearly_then_decays_by_cosine(tmp_path):
    config = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(step, config) for step in range(100)]
    assert factors[:10] == pytest.approx([(k + 1) / 10 for k in range(10)])
    assert factors[10] == 1.0 and all(a > b for a, b in itertools.pairwise(factors[10:]))
    assert lr_factor(55, config) == pytest.approx(0.55)  # cosine midpoint: (1 + 0.1) / 2
    assert lr_factor(100, config) == pytest.approx(0.1)
    train(tiny_model(), replace(QUICK, steps=8, log_every=1), tmp_path, val=False)
    logged = [float(row["lr"]) for row in log_rows(tmp_path)]
    assert logged == [QUICK.lr * lr_factor(step, replace(QUICK, steps=8)) for step in range(8)]


def test_early_stopping_stops_after_patience_validations(tmp_path):
    # lr = 0: the weights never move, so no validation after the first improves on it
    config = replace(QUICK, steps=100, lr=0.0, val_every=2, early_stopping_patience=2)
    result = train(tiny_model(), config, tmp_path)
    assert result.stopped_early and result.steps_done == 6
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2
    again = train(tiny_model(), config, tmp_path)
    assert again.stopped_early and again.steps_done == 6


def test_real_unet_resumes_exactly(tmp_path):
    from ecg_tgdp.models.unet import UNet1D, UNetConfig

    net = UNetConfig(leads=1, num_classes=2, base_channels=8, channel_mults=(1, 2), groups=4, dropout=0.1)
    flat = replace(QUICK, steps=6, min_lr_ratio=1.0, checkpoint_every=2)
    make = lambda seed: (torch.manual_seed(seed), UNet1D(net))[1]
    whole = make(0)
    train(whole, flat, tmp_path / "whole", card={"unet": asdict(net)})
    train(make(0), replace(flat, steps=4), tmp_path / "parts", card={"unet": asdict(net)})
    resumed = make(1)
    train(resumed, flat, tmp_path / "parts", card={"unet": asdict(net)})
    assert_same_tensors(whole.state_dict(), resumed.state_dict())
    assert log_rows(tmp_path / "whole") == log_rows(tmp_path / "parts")
    saved = load_checkpoint(tmp_path / "parts" / "best.pt")
    UNet1D(UNetConfig(**saved["card"]["unet"])).load_state_dict(saved["ema"]["weights"])


def test_bf16_autocast_trains_float32_weights_on_cpu_too(tmp_path):
    from ecg_tgdp.models.unet import UNet1D, UNetConfig

    net = UNetConfig(leads=1, num_classes=2, base_channels=8, channel_mults=(1, 2), groups=4)
    torch.manual_seed(0)
    initial = UNet1D(net).state_dict()
    weights = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = UNet1D(net)
        train(model, replace(QUICK, steps=3, bf16=bf16), tmp_path / str(bf16))
        weights[bf16] = model.state_dict()
    assert all(value.dtype == torch.float32 for value in weights[True].values())
    mean_change = lambda a, b: torch.cat([(a[k] - b[k]).abs().flatten() for k in a]).mean().item()
    # autocast was on: the bfloat16 forward pass (8 significant bits) moves the weights off the float32 run's,
    # on average by about 1% of what the three updates moved them
    assert 0 < mean_change(weights[True], weights[False]) < 0.05 * mean_change(weights[False], initial)
    assert load_checkpoint(tmp_path / "True" / "checkpoint.pt")["train_config"]["bf16"] is True


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default(tmp_path):
    train(tiny_model(), replace(QUICK, steps=4), tmp_path)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    del saved["train_config"]["bf16"]  # written before bf16 was a setting
    save_checkpoint(tmp_path / "checkpoint.pt", saved)
    assert train(tiny_model(), replace(QUICK, steps=6), tmp_path).steps_done == 6


def test_min_snr_weighting_scales_each_window_by_min_1_gamma_over_snr():
    """Hang et al. 2023: min(SNR, γ) on the x_0 error is min(1, γ/SNR) on the ε error."""
    from ecg_tgdp.models.training import diffusion_loss

    class Zero(nn.Module):
        def forward(self, x, t, y):
            return torch.zeros_like(x)

    x0, eps = torch.randn(4, 1, 32), torch.randn(4, 1, 32)
    t, y = torch.tensor([1, 30, 60, 99]), torch.zeros(4, dtype=torch.long)
    snr = (SCHEDULE.alpha(t) / SCHEDULE.sigma(t)) ** 2
    per_window = eps.pow(2).mean(dim=(1, 2))
    assert diffusion_loss(Zero(), SCHEDULE, x0, y, t, eps).item() == pytest.approx(eps.pow(2).mean().item())
    expected = (per_window * (5.0 / snr).clamp(max=1)).mean()
    assert diffusion_loss(Zero(), SCHEDULE, x0, y, t, eps, min_snr_gamma=5.0).item() == pytest.approx(expected.item())
    assert (5.0 / snr).clamp(max=1)[0] < 0.1 and (5.0 / snr).clamp(max=1)[-1] == 1  # nearly clean t weighs little


class FakeMonitor:
    """Scores validations 3, 1, 2 (lower is better), drawing from the global RNG like sampling would."""

    columns, score = ("quality", "other"), "quality"

    def __init__(self):
        self.values = iter([3.0, 1.0, 2.0])

    def __call__(self, model):
        torch.rand(5)
        return {"quality": next(self.values), "other": 0.5}


def test_a_monitor_chooses_best_pt_and_its_columns_are_logged(tmp_path):
    config = replace(QUICK, steps=12, val_every=4)
    result = train(tiny_model(), config, tmp_path, monitor=FakeMonitor())
    assert result.selected_on == "quality" and result.best_score == 1.0
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 8 and best["selected_on"] == "quality" and best["score"] == 1.0
    rows = [row for row in log_rows(tmp_path) if row["quality"]]
    assert [(row["step"], row["quality"], row["other"]) for row in rows] == [("4", "3.0", "0.5"), ("8", "1.0", "0.5"),
                                                                               ("12", "2.0", "0.5")]
    assert all(row["val_loss"] for row in rows)  # the validation loss is still logged beside


def test_a_monitor_does_not_move_the_training_streams(tmp_path):
    """Sampling at a validation draws from the global RNG; training must not see it (exact resume)."""
    with_monitor = train(tiny_model(), QUICK, tmp_path / "a", monitor=FakeMonitor())
    without = train(tiny_model(), QUICK, tmp_path / "b")
    assert with_monitor.steps_done == without.steps_done
    saved = [load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("a", "b")]
    assert_same_tensors(saved[0]["model"], saved[1]["model"])


def test_the_v_loss_regresses_the_network_output_on_v_and_refuses_an_epsilon_network(tmp_path):
    """v-MSE weighs the x_0 error by SNR + 1 (Salimans & Ho 2022); it needs the network's own v output."""
    from ecg_tgdp.models.training import diffusion_loss
    from ecg_tgdp.models.unet import UNet1D, UNetConfig

    net = UNet1D(UNetConfig(base_channels=8, channel_mults=(1, 2), prediction="v"), SCHEDULE)
    x0, eps = torch.randn(4, 1, 32), torch.randn(4, 1, 32)
    t, y = torch.tensor([1, 30, 60, 99]), torch.zeros(4, dtype=torch.long)
    v = SCHEDULE.alpha(t)[:, None, None] * eps - SCHEDULE.sigma(t)[:, None, None] * x0
    # a fresh network's output layer is zero, so its v is 0 and the loss is the mean square of v
    assert diffusion_loss(net, SCHEDULE, x0, y, t, eps, target="v").item() == pytest.approx(v.pow(2).mean().item())
    with pytest.raises(ValueError, match="must be v; this network predicts 'epsilon'"):
        train(tiny_model(), replace(QUICK, loss_target="v"), tmp_path)
