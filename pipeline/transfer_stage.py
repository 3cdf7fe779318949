"""The `transfer` stage: adapt the source model to the target cohort with TGDP or a baseline.

Under torchrun the diffusion training of finetune, finetune_partial and target_only is data-parallel; rank 0 alone
fits TGDP and writes source_only's and domain_guidance's files while the other ranks wait.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch

from data.atomic import write_json
from data.store import read_cohort
from models.checkpoint import load_checkpoint, save_checkpoint
from models.density_ratio import DomainTraining
from models.generate import save_model_file
from models.schedule import NoiseSchedule
from models.tgdp import GuidanceTraining
from models.tgdp_transfer import TGDPSettings, fit_tgdp
from models.training import TrainConfig, train_diffusion
from models.transfer import PARTIAL_FINETUNE_MODULES, freeze_except, trainable_copy
from models.unet import UNetConfig
from pipeline.config import Config, ConfigError
from pipeline.diffusion_stages import prepare_out_dir, resolve_device, seeded_unet
from pipeline.distributed import on_main_rank
from pipeline.rundir import RunDir, fingerprint_files


def transfer_stage(config: Config, run: RunDir, methods: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Run each transfer method; return method → model.pt. Finished methods with unchanged inputs are skipped."""
    return {method: _transfer(config, run, method, force) for method in methods or config.transfer.methods}


def _transfer(config: Config, run: RunDir, method: str, force: bool) -> Path:
    started = time.time()
    source_file = run.path / "models" / "source" / "model.pt"
    if not source_file.is_file():
        raise ConfigError(f"{source_file}: no source model yet; run `ecg-tgdp train-source` first")
    target_dir = run.path / "cohorts" / "target"
    out_dir = run.path / "models" / method
    model_file = out_dir / "model.pt"
    fingerprint = config.section_hash("seed", "device", "transfer", "windows") + fingerprint_files(
        [source_file, target_dir / "cohort.json"])
    stage = f"transfer.{method}"
    if not force and on_main_rank(run.is_current, stage, fingerprint, [model_file]):
        print(f"transfer {method}: up to date ({model_file})")
        return model_file
    on_main_rank(prepare_out_dir, out_dir, fingerprint, force)
    source = load_checkpoint(source_file)
    target = read_cohort(target_dir)
    data = _target_tensors(target, config.transfer.max_val_windows, config.seed)
    device = resolve_device(config.device)
    extra = {**source["extra"], "method": method, "target": target.info["database"]}
    if method == "source_only":
        on_main_rank(save_checkpoint, model_file, {**source, "extra": extra})
    elif method in ("finetune", "finetune_partial", "target_only"):
        _train_on_target(config, method, source, data, out_dir, device, extra)
        on_main_rank(save_model_file, out_dir, model_file, method=method)
    elif method == "domain_guidance":
        finetuned = load_checkpoint(_transfer(config, run, "finetune", force=False))
        guided = {"ema": finetuned["ema"], "reference_ema": source["ema"],
                  "extra": {**extra, "transfer_scale": config.transfer.domain_guidance_scale}}
        on_main_rank(save_checkpoint, model_file, guided)
    else:
        on_main_rank(_fit_tgdp_on_run, config, run, source, data, model_file, device, extra)
    on_main_rank(run.record_stage, stage, fingerprint=fingerprint, started=started, outputs=[model_file])
    print(f"transfer {method}: → {model_file} ({time.time() - started:.0f} s)")
    return model_file


def _target_tensors(target, max_val_windows: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Normalized target windows and labels of the train split and of (at most `max_val_windows` of) the val split."""
    tensors = {}
    for split in ("train", "val"):
        part = target.split(split)
        if not len(part.meta):
            raise ConfigError(f"target cohort has no {split} windows; check target.split")
        if split == "val":
            part = part.subsample(max_val_windows, seed)
        tensors[split] = (torch.from_numpy(target.normalized(part.windows)),
                          torch.tensor(part.meta["label_index"].to_numpy()))
    return tensors


def _train_on_target(config: Config, method: str, source: dict, data: dict, out_dir: Path, device, extra: dict) -> None:
    """target_only: the source architecture from scratch; finetune(_partial): from the source EMA weights."""
    if method == "target_only":
        net = seeded_unet(UNetConfig(**source["extra"]["unet"]), config.seed)
        settings = TrainConfig(**config.transfer.target_only.model_dump(), seed=config.seed)
    else:
        net = trainable_copy(source["ema"]["weights"], source["extra"]["unet"])
        if method == "finetune_partial":
            freeze_except(net, PARTIAL_FINETUNE_MODULES)
        tune = config.transfer.finetune
        settings = TrainConfig(
            steps=tune.steps, batch_size=tune.batch_size, lr=tune.lr, warmup_steps=tune.warmup_steps,
            val_every=tune.val_every, log_every=min(50, tune.val_every), checkpoint_every=tune.val_every,
            early_stopping_patience=tune.early_stopping_patience, ema_decay=tune.ema_decay, class_balanced=True,
            seed=config.seed,
        )
    train_diffusion(net, _schedule(source), *data["train"], settings, out_dir, val_x=data["val"][0],
                    val_y=data["val"][1], device=device, extra=extra)


def _fit_tgdp_on_run(config: Config, run: RunDir, source: dict, data: dict, model_file: Path, device,
                     extra: dict) -> None:
    """TGDP on the run's source cohort (rank 0 alone under torchrun: it fits small classifiers)."""
    source_cohort = read_cohort(run.path / "cohorts" / "source")
    source_val = source_cohort.split("val").subsample(config.transfer.max_val_windows, config.seed)
    _fit_tgdp(config, source, source_cohort.split("train"), source_val, data, model_file, device, extra)


def _fit_tgdp(config: Config, source: dict, source_train, source_val, data: dict, model_file: Path, device,
              extra: dict) -> None:
    """TGDP on the source train split vs the target train split; held-out source and target val windows for early
    stopping, calibration and the ratio diagnostics."""
    settings = config.transfer.tgdp
    source_pool, source_held_out = (
        (torch.from_numpy(part.normalized()), torch.tensor(part.meta["label_index"].to_numpy()))
        for part in (source_train, source_val))
    frozen = trainable_copy(source["ema"]["weights"], source["extra"]["unet"]).to(device).eval().requires_grad_(False)
    fit = fit_tgdp(
        frozen, _schedule(source), source_pool, data["train"], _tgdp_settings(config),
        source_val=source_held_out if len(source_val.meta) else None, target_val=data["val"],
        num_classes=len(source["extra"]["classes"]), device=device,
    )
    pd.DataFrame(fit.log).to_csv(model_file.parent / "log.csv", index=False)
    write_json(model_file.parent / "diagnostics.json", fit.diagnostics)
    save_checkpoint(model_file, {
        "ema": source["ema"],
        "guidance": {"estimator": fit.estimator, "config": asdict(fit.network.config),
                     "weights": fit.network.state_dict(), "t_min": fit.t_min, "fade_steps": fit.fade_steps},
        "extra": {**extra, "transfer_scale": settings.transfer_scale, "ratio_diagnostics": _plain(fit.diagnostics)},
    })
    print(f"transfer tgdp: {ratio_summary_line(fit.diagnostics)}")
    warning = separability_warning(fit.diagnostics)
    if warning:
        print(f"warning: {warning}")


def ratio_summary_line(diagnostics: dict) -> str:
    """The transfer summary line: ESS, clip share, clean-window AUROC, t_min."""
    clean = diagnostics["clean"]
    return (f"ESS {diagnostics['ess']:.0f} of {diagnostics['n_source_weights']} held-out source windows "
            f"({diagnostics['ess_share']:.1%}), ratios outside [1e-3, 1e3] {diagnostics['clip_share']:.1%}; "
            f"clean-window AUROC {clean['auroc']:.3f}, log-loss {clean['log_loss']:.3f}; guidance from "
            f"t_min = {diagnostics['t_min']}")


def separability_warning(diagnostics: dict) -> str | None:
    """One line when the held-out domains are nearly separable at small t (guidance then starts above t_min)."""
    if diagnostics["t_min"] <= 0:
        return None
    return (f"the domains are nearly separable (held-out AUROC ≥ {diagnostics['near_perfect_auroc']}) below "
            f"t = {diagnostics['t_min']}: guidance is reliable only above t = {diagnostics['t_min']}")


def _plain(value):
    """JSON-like data with numpy scalars turned into Python numbers (checkpoints hold plain data only)."""
    return json.loads(json.dumps(value, default=float))


def _tgdp_settings(config: Config) -> TGDPSettings:
    t = config.transfer.tgdp
    domain = DomainTraining(steps=t.classifier_steps, batch_size=t.classifier_batch_size, lr=t.classifier_lr,
                            val_every=t.classifier_val_every, patience=t.classifier_patience, seed=config.seed)
    guidance = GuidanceTraining(
        steps=t.guidance_steps, batch_size=t.guidance_batch_size, lr=t.guidance_lr, eta_cycle=t.eta_cycle,
        eta_consistency=t.eta_consistency, r_min=t.r_min, r_max=t.r_max, val_every=t.val_every, patience=t.patience,
        seed=config.seed,
    )
    return TGDPSettings(estimator=t.estimator, width=t.width, depth=t.depth, domain=domain,
                        time_domain=replace(domain, seed=config.seed + 1), refine_steps=t.refine_steps,
                        guidance=guidance, ratio_normalization=t.ratio_normalization, fade=t.fade,
                        near_perfect_auroc=t.near_perfect_auroc)


def _schedule(source: dict) -> NoiseSchedule:
    return NoiseSchedule.from_name(source["extra"]["schedule"]["kind"], source["extra"]["schedule"]["num_steps"])
