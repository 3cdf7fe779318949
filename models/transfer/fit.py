"""`fit_transfer`: the one function every caller uses to move a source model to a target (the transfer stage, augment).

Each method starts from the source model file and the target's windows and ends with a model file:

- source_only: the source model, relabelled (what the transfer adds is measured against it);
- finetune / finetune_partial / target_only: diffusion training on the target windows (`models.training`, resumable
  in `out_dir`, data-parallel under torchrun), from the source EMA weights or, for target_only, from scratch;
- domain_guidance: the fine-tuned model with the source network kept as its reference (`baselines.domain_guidance`);
- tgdp: the frozen source network and log h fitted against source windows (`models.tgdp_transfer.fit_tgdp`), whose
  held-out source and target windows give the ratio diagnostics and the fade of the guidance.

Every random draw comes from `seed` (the settings' own seeds are replaced), so a caller with the same windows,
settings and seed gets the same model whoever it is.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from ecg_tgdp.models.model_file import ModelFile
from ecg_tgdp.models.seeding import seeded
from ecg_tgdp.models.settings import TRANSFER_METHODS, TGDPSettings, TrainConfig, TransferSettings
from ecg_tgdp.models.tgdp_transfer import fit_tgdp
from ecg_tgdp.models.training import train_diffusion
from ecg_tgdp.models.transfer.baselines import PARTIAL_FINETUNE_MODULES, freeze_except, trainable_copy

TRAINED_METHODS = ("finetune", "finetune_partial", "target_only")  # diffusion training: every torchrun rank takes part


@dataclass
class WindowSplits:
    """Normalized windows [N, leads, T] and class indices [N] of a cohort's train split and of its held-out split,
    and for a rhythm-channel source model their R-peak markers [N, T] (`models.rhythm`)."""

    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor] | None = None
    train_rhythm: Tensor | None = None
    val_rhythm: Tensor | None = None

    def __post_init__(self) -> None:
        for name, part in (("train", self.train), ("val", self.val)):
            if part is not None and (part[0].ndim != 3 or part[1].shape != (len(part[0]),)):
                raise ValueError(f"{name} windows must be [N, leads, T] with labels [N], got "
                                 f"{tuple(part[0].shape)} and {tuple(part[1].shape)}")
        if len(self.train[0]) == 0:
            raise ValueError("no train windows to transfer with")


@dataclass
class TransferResult:
    """The transferred model file and, for TGDP, its fit's log rows and held-out ratio diagnostics."""

    model: ModelFile
    log: list[dict] = field(default_factory=list)
    diagnostics: dict | None = None


def fit_transfer(method: str, source: ModelFile, target: WindowSplits, settings: TransferSettings, *, seed: int,
                 out_dir: Path, source_windows: WindowSplits | None = None, target_name: str = "",
                 finetuned: ModelFile | None = None, device: torch.device | str = "cpu") -> TransferResult:
    """Transfer `source` to the `target` windows with `method` (module docstring). `out_dir` holds a trained method's
    resumable training files; TGDP needs `source_windows` (with held-out ones for its diagnostics and fade);
    domain guidance reuses `finetuned` (the finetune method's model), fitting it into out_dir/finetune when None."""
    if method not in TRANSFER_METHODS:
        raise ValueError(f"unknown transfer method {method!r}; expected one of {TRANSFER_METHODS}")
    card = source.card.updated(method=method, target=target_name or None)
    if method == "source_only":
        return TransferResult(ModelFile(card, source.weights))
    if method in TRAINED_METHODS:
        return TransferResult(_train_on_target(method, source, target, settings, seed, out_dir, card, device))
    if method == "domain_guidance":
        if finetuned is None:
            finetuned = fit_transfer("finetune", source, target, settings, seed=seed, out_dir=out_dir / "finetune",
                                     target_name=target_name, device=device).model
        return TransferResult(ModelFile(card, finetuned.weights, reference_weights=source.weights))
    if source_windows is None:
        raise ValueError("tgdp needs source windows: the domain classifier learns source against target")
    return _fit_tgdp(source, target, source_windows, seeded_tgdp(settings.tgdp, seed), card, device)


def seeded_tgdp(settings: TGDPSettings, seed: int) -> TGDPSettings:
    """TGDP's settings with every random stream from `seed` (c' from seed + 1, so it differs from c)."""
    return replace(settings, time_domain=replace(settings.time_domain, seed=seed + 1),
                   domain=replace(settings.domain, seed=seed), guidance=replace(settings.guidance, seed=seed))


def _train_on_target(method: str, source: ModelFile, target: WindowSplits, settings: TransferSettings, seed: int,
                     out_dir: Path, card, device) -> ModelFile:
    """target_only: the source architecture from scratch; finetune(_partial): from the source EMA weights."""
    training: TrainConfig = settings.target_only if method == "target_only" else settings.finetune
    if method == "target_only":
        net = seeded(card.new_network, seed)
    else:
        net = trainable_copy(source.weights, card)
        if method == "finetune_partial":
            freeze_except(net, PARTIAL_FINETUNE_MODULES)
    val = {} if target.val is None else \
        {"val_x": target.val[0], "val_y": target.val[1], "val_rhythm": target.val_rhythm}
    train_diffusion(net, card.noise_schedule(), *target.train, replace(training, seed=seed), Path(out_dir),
                    device=device, card=card.to_dict(), train_rhythm=target.train_rhythm, **val)
    # every rank may read it: rank 0 wrote best.pt before the final checkpoint's barrier
    return replace(ModelFile.from_training(Path(out_dir)), card=card)


def _fit_tgdp(source: ModelFile, target: WindowSplits, source_windows: WindowSplits, settings: TGDPSettings, card,
              device) -> TransferResult:
    frozen = trainable_copy(source.weights, card).to(device).eval().requires_grad_(False)
    fit = fit_tgdp(frozen, card.noise_schedule(), source_windows.train, target.train, settings,
                   source_val=source_windows.val, target_val=target.val, num_classes=len(card.classes), device=device,
                   target_rhythm=target.train_rhythm, target_val_rhythm=target.val_rhythm)
    guidance = {"estimator": fit.estimator, "config": asdict(fit.network.config), "weights": fit.network.state_dict(),
                "t_min": fit.t_min, "fade_steps": fit.fade_steps,
                "calibration": None if fit.calibration is None else fit.calibration.to_dict()}
    diagnostics = _plain(fit.diagnostics)
    return TransferResult(ModelFile(card, source.weights, guidance=guidance, ratio_diagnostics=diagnostics), fit.log,
                          diagnostics)


def _plain(value):
    """JSON-like data with numpy scalars turned into Python numbers (model files hold plain data only)."""
    return json.loads(json.dumps(value, default=float))
