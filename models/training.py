"""Diffusion training loop: ε-prediction loss, AdamW, EMA, resumable checkpoints, DDP under torchrun.

Every random draw (batch indices, t, ε, label dropout, dropout inside the model) comes from
generators checkpointed per rank, so a run killed after step k and resumed ends with the same
weights and log rows as one that never stopped. The learning rate is a function of the step.

    out_dir/checkpoint.pt  model (raw weights), ema (EMA.state_dict(); sample from its "weights"),
                           optimizer, rng (one dict per rank), train_config, card (the caller's
                           model card, verbatim), step, seconds, best_score, bad_validations, stopped_early
    out_dir/best.pt        ema, step, score, selected_on, train_config, card at the best validation
    out_dir/log.csv        step, loss, lr, grad_norm, val_loss, seconds and a monitor's columns; loss and
                           grad_norm are means over the steps since the previous row, seconds the training
                           time so far

Which validation is best: the lowest held-out ε-MSE, or, given a `Monitor`, the lowest value of the
monitor's score on samples of the EMA weights. A diffusion model's held-out loss is a poor guide to
its samples (on unseen patients it mostly measures patient shift): the first 4 s source model stopped
at its loss minimum after less than one pass over its data and made spiky windows.
"""
from __future__ import annotations

import csv
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ecg_tgdp.models.checkpoint import CheckpointError, check_plain, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ecg_tgdp.models.ema import EMA
from ecg_tgdp.models.settings import TrainConfig

LOG_COLUMNS = ("step", "loss", "lr", "grad_norm", "val_loss", "seconds")


class Monitor(Protocol):
    """Judges the EMA weights at each validation (on rank 0), e.g. by the quality of their samples."""

    columns: tuple[str, ...]  # the log columns its result fills
    score: str  # the column that chooses best.pt and drives early stopping: lower is better

    def __call__(self, model: nn.Module) -> dict[str, float]: ...
# these change logging, validation or stopping but no update, so a resumed run may change them
_MAY_CHANGE_ON_RESUME = frozenset({"steps", "log_every", "val_every", "checkpoint_every", "early_stopping_patience"})
_BATCHES, _NOISE, _MODEL, _VALIDATION = range(4)  # independent random streams, see _seed


@dataclass
class TrainResult:
    """How a `train_diffusion` call ended; `seconds` is this call's wall time."""

    steps_done: int
    best_score: float | None  # of what chose best.pt: the validation loss, or the monitor's score
    selected_on: str
    stopped_early: bool
    checkpoint: Path
    seconds: float


@dataclass
class _Progress:
    """The loop's counters, saved as top-level checkpoint keys."""

    step: int = 0
    seconds: float = 0.0              # training time up to the checkpoint, summed over resumes
    best_score: float | None = None   # the best validation's val_loss, or monitor score
    bad_validations: int = 0          # validations since the best one
    stopped_early: bool = False
    loss_sum: float = 0.0             # since the last log row, so a resumed run's next row averages the same steps
    grad_norm_sum: float = 0.0
    steps_since_row: int = 0


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of config.lr for update `step` (0-based): linear warm-up, then cosine decay to
    min_lr_ratio at config.steps (SGDR without restarts, Loshchilov & Hutter 2017 eq. 5)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def diffusion_loss(model: nn.Module, schedule, x0: Tensor, y: Tensor, t: Tensor, eps: Tensor,
                   min_snr_gamma: float = 0.0, target: str = "epsilon", rhythm: Tensor | None = None) -> Tensor:
    """The denoising loss over x0, eps [B, leads, T], t, y [B], in float32 also when the model ran under autocast.

    target "epsilon": Ho et al. 2020 eq. 14, mean ‖ε − ε_θ(x_t, t, y)‖², which weighs the x_0 error by SNR_t, so the
    noisiest timesteps, where a window's layout (where its beats go) is decided, count for almost nothing. "v": mean
    ‖v − v_θ(x_t, t, y)‖² with v = α_t ε − σ_t x_0 (Salimans & Ho 2022 §4), the network's own output: the x_0 error
    weighed by SNR_t + 1, at least 1 everywhere. With γ > 0 each window's term is reweighted to weigh the x_0
    error by min(SNR_t, γ), the Min-SNR-γ weighting (Hang et al. 2023, eq. 9), so the nearly clean timesteps,
    which a network learns first, stop dominating the gradient. `rhythm` [B, T]: the windows' R-peak markers, for a
    rhythm-channel network (`models.rhythm`).
    """
    conditions = {} if rhythm is None else {"rhythm": rhythm}
    x_t = schedule.add_noise(x0, eps, t)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    snr = (alpha / sigma) ** 2
    if target == "v":
        shape = (-1,) + (1,) * (x0.ndim - 1)
        v = alpha.view(shape) * eps - sigma.view(shape) * x0
        squared, per_x0_error = (model(x_t, t, y, raw=True, **conditions).float() - v) ** 2, snr + 1
    else:
        squared, per_x0_error = (model(x_t, t, y, **conditions).float() - eps) ** 2, snr
    if min_snr_gamma <= 0:
        return squared.mean()
    weight = snr.clamp(max=min_snr_gamma) / per_x0_error
    return (squared.mean(dim=tuple(range(1, squared.ndim))) * weight).mean()


@torch.no_grad()
def validation_loss(model: nn.Module, schedule, x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator,
                    device: torch.device | str = "cpu", rhythm: Tensor | None = None) -> float:
    """Eq. 14 averaged over all windows x [N, leads, T] (R-peak markers `rhythm` [N, T] for a rhythm-channel
    network) in eval mode; t and ε come from `generator`, so one seeded the same way each time makes evaluations
    comparable."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(x), batch_size):
        x0, labels = x[start:start + batch_size], y[start:start + batch_size]
        t = torch.randint(schedule.num_steps, (len(x0),), generator=generator)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x0, labels, t, eps = (v.to(device) for v in (x0, labels, t, eps))
        markers = None if rhythm is None else rhythm[start:start + batch_size].to(device)
        total += diffusion_loss(model, schedule, x0, labels, t, eps, rhythm=markers).double() * len(x0)
    model.train(was_training)
    return total.item() / len(x)


class WindowSampler:
    """Batch indices with replacement: uniform over windows, or (balanced) a class uniformly, then one of its windows."""

    def __init__(self, labels: Tensor, balanced: bool):
        labels = labels.cpu()
        self.size, self.balanced = len(labels), balanced
        self.order = torch.argsort(labels, stable=True)  # windows grouped by class, classes ascending
        self.counts = torch.unique(labels, return_counts=True)[1]
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def draw(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """[batch_size] long indices into the labels the sampler was built on."""
        if not self.balanced:
            return torch.randint(self.size, (batch_size,), generator=generator)
        classes = torch.randint(len(self.counts), (batch_size,), generator=generator)
        offsets = (torch.rand(batch_size, generator=generator, dtype=torch.float64) * self.counts[classes]).long()
        return self.order[self.starts[classes] + offsets]


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); return
    (rank, world_size), or (0, 1) outside torchrun. NCCL on GPU LOCAL_RANK when CUDA is available, else gloo."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train_diffusion(
    model: nn.Module, schedule, train_x: Tensor, train_y: Tensor, config: TrainConfig, out_dir: Path, *,
    val_x: Tensor | None = None, val_y: Tensor | None = None, device: torch.device | str = "cpu",
    card: dict | None = None, progress: bool = True, monitor: Monitor | None = None,
    train_rhythm: Tensor | None = None, val_rhythm: Tensor | None = None,
) -> TrainResult:
    """Train `model` (an ε function, eq. 14) on train_x [N, leads, T] float, train_y [N] long; resume from
    out_dir/checkpoint.pt when it exists (return at once if that run reached `steps` or stopped early).
    Validations (every config.val_every steps) need val_x and val_y, or a `monitor`, or both; best.pt holds
    the best one (module docstring). A rhythm-channel network needs the windows' R-peak markers, train_rhythm
    [N, T] (and val_rhythm with val_x). Under an initialized process group the model runs in DDP and rank 0
    alone writes files."""
    started = time.perf_counter()
    _check_windows(train_x, train_y, "train")
    if (val_x is None) != (val_y is None):
        raise ValueError("pass both val_x and val_y, or neither")
    if val_x is not None:
        _check_windows(val_x, val_y, "val")
    check_plain(card or {}, where="card")  # fail now, not at the first checkpoint
    _check_rhythm(model, (("train", train_x, train_rhythm), ("val", val_x, val_rhythm)))
    prediction = getattr(getattr(model, "config", None), "prediction", "epsilon")
    if config.loss_target == "v" and prediction != "v":
        raise ValueError(f"loss_target 'v' regresses the network's own output, which must be v; this network "
                         f"predicts {prediction!r}")
    device = _resolve(device)
    # dropout inside the model draws from the global generators: fork them, give them back untouched
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device.index], device_type=device.type):
        run = _Run(model, schedule, config, Path(out_dir), device, card or {}, (train_x, train_y, val_x, val_y),
                   (train_rhythm, val_rhythm), monitor)
        if run.checkpoint_path.exists():
            run.resume()
        run.loop(progress)
    p = run.progress
    return TrainResult(p.step, p.best_score, run.selected_on, p.stopped_early, run.checkpoint_path,
                       time.perf_counter() - started)


class _Run:
    """The state of one training call; its methods are the steps of the loop."""

    def __init__(self, model: nn.Module, schedule, config: TrainConfig, out_dir: Path, device: torch.device,
                 card: dict, data: tuple, rhythm: tuple, monitor: Monitor | None):
        self.schedule, self.config, self.out_dir, self.device, self.card = schedule, config, out_dir, device, card
        self.train_x, self.train_y, self.val_x, self.val_y = data
        self.train_rhythm, self.val_rhythm = rhythm
        self.monitor = monitor
        self.selected_on = "val_loss" if monitor is None else monitor.score
        self.columns = LOG_COLUMNS + (() if monitor is None else tuple(monitor.columns))
        self.sampler = WindowSampler(self.train_y, config.class_balanced)
        self.checkpoint_path, self.log_path = out_dir / "checkpoint.pt", out_dir / "log.csv"
        self.started, self.progress, self.saved_step = time.perf_counter(), _Progress(), None
        distributed = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        self.model = model.to(device).train()
        # DDP broadcasts rank 0's weights here, so the EMA below starts from weights all ranks share
        self.net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
            if distributed else model
        self.ema = EMA(model, config.ema_decay)
        self.optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
        self.null_class = _null_class(model) if config.label_dropout > 0 else None
        self.generators = {name: torch.Generator().manual_seed(_seed(config.seed, self.rank, stream))
                           for name, stream in (("batches", _BATCHES), ("noise", _NOISE))}
        _seed_global(_seed(config.seed, self.rank, _MODEL), device)

    def loop(self, show_progress: bool) -> None:
        """Train until config.steps or early stopping; a finished run does nothing."""
        config, p = self.config, self.progress
        if self.rank == 0:
            _truncate_log(self.log_path, p.step, self.columns)
        bar = tqdm(total=config.steps, initial=min(p.step, config.steps), desc="train", unit="step",
                   disable=not show_progress or self.rank != 0)
        while p.step < config.steps and not p.stopped_early:
            lr = config.lr * lr_factor(p.step, config)
            loss, grad_norm = self.train_step(self.sampler.draw(config.batch_size, self.generators["batches"]), lr)
            p.step, p.steps_since_row = p.step + 1, p.steps_since_row + 1
            p.loss_sum, p.grad_norm_sum = p.loss_sum + loss, p.grad_norm_sum + grad_norm
            validates = (self.val_x is not None or self.monitor is not None) and p.step % config.val_every == 0
            validation = self.validate() if validates else {}
            if p.step % config.log_every == 0 or validates:
                bar.set_postfix(loss=f"{p.loss_sum / p.steps_since_row:.4f}", refresh=False)
                self.write_row(lr, validation)
            if p.step % config.checkpoint_every == 0 or p.step == config.steps or p.stopped_early:
                self.save()
            bar.update()
        bar.close()

    def train_step(self, index: Tensor, lr: float) -> tuple[float, float]:
        """One AdamW update (Loshchilov & Hutter 2019) on windows `index`; (loss, grad norm) averaged over ranks."""
        noise = self.generators["noise"]
        x0, y = self.train_x[index.to(self.train_x.device)], self.train_y[index.to(self.train_y.device)]
        t = torch.randint(self.schedule.num_steps, (len(x0),), generator=noise)
        eps = torch.randn(x0.shape, generator=noise, dtype=x0.dtype)
        if self.null_class is not None:
            dropped = torch.rand(len(y), generator=noise) < self.config.label_dropout
            y = torch.where(dropped.to(y.device), self.null_class, y)
        x0, y, t, eps = (v.to(self.device, non_blocking=True) for v in (x0, y, t, eps))
        markers = None if self.train_rhythm is None else \
            self.train_rhythm[index.to(self.train_rhythm.device)].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
            loss = diffusion_loss(self.net, self.schedule, x0, y, t, eps, self.config.min_snr_gamma,
                                  self.config.loss_target, rhythm=markers)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or math.inf)
        stats = torch.stack([loss.detach().float(), grad_norm.float()])
        if self.world > 1:  # all ranks see the same numbers, so all stop together on a NaN
            dist.all_reduce(stats)
            stats /= self.world
        loss_value, grad_norm_value = stats.tolist()
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm_value)):
            kept = "no checkpoint was written" if self.saved_step is None else \
                f"{self.checkpoint_path} still holds step {self.saved_step}"
            raise FloatingPointError(f"non-finite loss {loss_value} or gradient norm {grad_norm_value} at step "
                                     f"{self.progress.step + 1}; stopped before the update, {kept}")
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.ema.update(self.model)
        return loss_value, grad_norm_value

    def validate(self) -> dict[str, float]:
        """The EMA weights' validation loss and monitor columns (rank 0 computes, every rank receives the score);
        updates best.pt and early stopping."""
        p, results = self.progress, {}
        if self.rank == 0:
            if self.val_x is not None:
                generator = torch.Generator().manual_seed(_seed(self.config.seed, 0, _VALIDATION))
                results["val_loss"] = validation_loss(self.ema.module, self.schedule, self.val_x, self.val_y,
                                                      self.config.batch_size, generator, self.device,
                                                      self.val_rhythm)
            if self.monitor is not None:  # its random draws must not move the training streams (exact resume)
                with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device.index],
                                           device_type=self.device.type):
                    results |= self.monitor(self.ema.module)
        score = results.get(self.selected_on, 0.0)
        if self.world > 1:
            shared = torch.tensor([score], dtype=torch.float64, device=self.device)
            dist.broadcast(shared, src=0)
            score = shared.item()
        if not math.isfinite(score):
            raise FloatingPointError(f"validation at step {p.step}: {self.selected_on} is {score}")
        if p.best_score is None or score < p.best_score:
            p.best_score, p.bad_validations = score, 0
            if self.rank == 0:
                save_checkpoint(self.out_dir / "best.pt", {"ema": self.ema.state_dict(), "step": p.step,
                                "score": score, "selected_on": self.selected_on,
                                "train_config": asdict(self.config), "card": self.card})
        else:
            p.bad_validations += 1
            p.stopped_early = 0 < self.config.early_stopping_patience <= p.bad_validations
        return results

    def write_row(self, lr: float, validation: dict[str, float]) -> None:
        p = self.progress
        row = {"step": p.step, "loss": p.loss_sum / p.steps_since_row, "lr": lr,
               "grad_norm": p.grad_norm_sum / p.steps_since_row, "seconds": round(self.seconds(), 3)}
        row |= {column: validation.get(column, "") for column in self.columns if column not in row}
        p.loss_sum, p.grad_norm_sum, p.steps_since_row = 0.0, 0.0, 0
        if self.rank == 0:
            _append_row(self.log_path, row, self.columns)

    def seconds(self) -> float:
        return self.progress.seconds + time.perf_counter() - self.started

    def save(self) -> None:
        """Write checkpoint.pt (rank 0) with every rank's generator states."""
        states = [rng_state(self.generators, self.device)]
        if self.world > 1:
            states = [None] * self.world
            dist.all_gather_object(states, rng_state(self.generators, self.device))
        if self.rank == 0:
            save_checkpoint(self.checkpoint_path, {
                "model": self.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": states, "train_config": asdict(self.config), "card": self.card,
                **asdict(self.progress), "seconds": self.seconds()})
        if self.world > 1:  # no rank returns, and perhaps resumes, before the file is in place
            dist.barrier()
        self.saved_step = self.progress.step

    def resume(self) -> None:
        """Continue from checkpoint.pt: weights, optimizer, counters and this rank's generator states."""
        path, saved = self.checkpoint_path, load_checkpoint(self.checkpoint_path)
        missing = {"model", "ema", "optimizer", "rng", "train_config", *(f.name for f in fields(_Progress))} - set(saved)
        if missing:
            raise CheckpointError(f"{path}: not a train_diffusion checkpoint, it lacks {sorted(missing)}")
        # a setting added since the checkpoint was written had its default then
        before = {**asdict(TrainConfig()), **saved["train_config"]}
        changed = {key: (before[key], value) for key, value in asdict(self.config).items()
                   if key not in _MAY_CHANGE_ON_RESUME and before[key] != value}
        if changed:
            raise ValueError(f"{path} was trained with other settings {{name: (saved, now)}}: {changed}; "
                             "use another out_dir to start over")
        try:
            self.model.load_state_dict(saved["model"])
            self.ema.load_state_dict(saved["ema"])
            self.optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{path}: does not fit this model ({error})") from error
        self.progress = _Progress(**{field.name: saved[field.name] for field in fields(_Progress)})
        self.saved_step, self.started = self.progress.step, time.perf_counter()
        if len(saved["rng"]) == self.world:
            set_rng_state(saved["rng"][self.rank], self.generators, self.device)
            return
        warnings.warn(f"{path} was written by {len(saved['rng'])} ranks, now {self.world}: the random streams "
                      "are reseeded, so the run goes on but does not repeat a run on the old number of ranks")
        for stream, generator in enumerate(self.generators.values()):
            generator.manual_seed(_seed(self.config.seed, self.rank, stream, self.progress.step))


def _seed(*key: int) -> int:
    """A 64-bit seed for (seed, rank, stream, ...) by SeedSequence hashing, which keeps streams
    independent where seed + rank would let rank 1 of seed 0 replay rank 0 of seed 1."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0])


def _seed_global(seed: int, device: torch.device) -> None:
    """Seed the global generators that dropout inside the model uses (the caller forked them): CPU and `device`."""
    torch.default_generator.manual_seed(seed)
    if device.type != "cpu":
        module = torch.get_device_module(device.type)
        with module.device(device):
            module.manual_seed(seed)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices, kernels and embeddings (≥ 2 dims), not biases or norm gains (as nanoGPT does)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def _null_class(model: nn.Module) -> int:
    if not hasattr(model, "null_class"):
        raise ValueError(f"label_dropout > 0 needs model.null_class; {type(model).__name__} has none")
    return int(model.null_class)


def _resolve(device: torch.device | str) -> torch.device:
    """The device with an index where it has one, as DDP and RNG forking need."""
    device = torch.device(device)
    if device.type != "cpu" and device.index is None:
        device = torch.device(device.type, torch.get_device_module(device.type).current_device())
    return device


def _check_windows(x: Tensor, y: Tensor, name: str) -> None:
    if x.ndim != 3 or y.shape != (len(x),) or len(x) == 0:
        raise ValueError(f"{name}_x must be [N, leads, T] and {name}_y [N] with N > 0; "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if y.is_floating_point():
        raise ValueError(f"{name}_y must hold integer class indices, got {y.dtype}")


def _check_rhythm(model: nn.Module, parts) -> None:
    """R-peak markers [N, T] for every given split of a rhythm-channel network, none for any other."""
    needed = getattr(getattr(model, "config", None), "rhythm_channel", False)
    for name, x, markers in parts:
        if x is None:
            continue
        if needed != (markers is not None):
            raise ValueError(f"{name}_rhythm: a rhythm-channel network needs the windows' R-peak markers"
                             if needed else f"{name}_rhythm given, but this network has no rhythm channel")
        if markers is not None and tuple(markers.shape) != (len(x), x.shape[-1]):
            raise ValueError(f"{name}_rhythm must be [N, T] = {(len(x), x.shape[-1])}, got {tuple(markers.shape)}")


def _truncate_log(path: Path, step: int, columns: tuple[str, ...]) -> None:
    """Keep the complete rows up to `step`: later ones came from a killed run's tail, which is repeated."""
    if not path.exists():
        return
    with path.open(newline="") as file:
        rows = [row for row in csv.DictReader(file)
                if None not in row.values() and row.get("step", "").isdigit() and int(row["step"]) <= step]
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def _append_row(path: Path, row: dict, columns: tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, columns)
        if new:
            writer.writeheader()
        writer.writerow(row)
