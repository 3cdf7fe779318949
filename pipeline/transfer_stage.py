"""The `transfer` stage: adapt the source model to the target cohort with TGDP or a baseline.

Under torchrun the diffusion training of finetune, finetune_partial and target_only is data-parallel; rank 0 alone
fits TGDP and writes source_only's and domain_guidance's files while the other ranks wait.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch

from ecg_tgdp.data.atomic import write_json
from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.models.checkpoint import load_checkpoint, save_checkpoint
from ecg_tgdp.models.density_ratio import DomainTraining
from ecg_tgdp.models.generate import save_model_file
from ecg_tgdp.models.model_card import ModelCard
from ecg_tgdp.models.tgdp import GuidanceTraining
from ecg_tgdp.models.tgdp_transfer import TGDPSettings, fit_tgdp
from ecg_tgdp.models.training import train_diffusion
from ecg_tgdp.models.transfer import PARTIAL_FINETUNE_MODULES, freeze_except, trainable_copy
from ecg_tgdp.pipeline.config import Config, ConfigError
from ecg_tgdp.pipeline.diffusion_stages import prepare_out_dir, resolve_device, seeded_unet
from ecg_tgdp.pipeline.distributed import on_main_rank
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files


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
    fingerprint = method_fingerprint(config, run, method)
    stage = f"transfer.{method}"
    if not force and on_main_rank(run.is_current, stage, fingerprint, [model_file]):
        on_main_rank(_refresh_transfer_scale, model_file, transfer_scale_of(config, method))
        print(f"transfer {method}: up to date ({model_file})")
        return model_file
    on_main_rank(prepare_out_dir, out_dir, fingerprint, force)
    source = load_checkpoint(source_file)
    target = read_cohort(target_dir)
    device = resolve_device(config.device)
    card = ModelCard.from_dict(source["card"], str(source_file)).updated(
        method=method, target=target.info["database"], transfer_scale=transfer_scale_of(config, method))
    if method == "source_only":
        on_main_rank(save_checkpoint, model_file, {"ema": source["ema"], "card": card.to_dict()})
    elif method in ("finetune", "finetune_partial", "target_only"):
        data = _target_tensors(target, config.transfer.max_val_windows, config.seed)
        _train_on_target(config, method, source, card, data, out_dir, device)
        on_main_rank(save_model_file, out_dir, model_file)
    elif method == "domain_guidance":
        finetuned = load_checkpoint(_transfer(config, run, "finetune", force=False))
        guided = {"ema": finetuned["ema"], "reference_ema": source["ema"], "card": card.to_dict()}
        on_main_rank(save_checkpoint, model_file, guided)
    else:
        data = _target_tensors(target, config.transfer.max_val_windows, config.seed)
        on_main_rank(_fit_tgdp_on_run, config, run, source, card, data, model_file, device)
    on_main_rank(run.record_stage, stage, fingerprint=fingerprint, started=started, outputs=[model_file])
    print(f"transfer {method}: → {model_file} ({time.time() - started:.0f} s)")
    return model_file


def method_fingerprint(config: Config, run: RunDir, method: str) -> str:
    """The cache key of one method: exactly the settings and inputs it uses (STYLE 14). The guidance weight w is
    applied at sampling, so it is in no method's key; domain guidance is keyed by the fine-tuned model it reuses."""
    if method == "domain_guidance":
        return method_fingerprint(config, run, "finetune")
    transfer = config.transfer.model_dump(mode="json")
    settings = {"source_only": {}, "finetune": transfer["finetune"], "finetune_partial": transfer["finetune"],
                "target_only": transfer["target_only"],
                "tgdp": {k: v for k, v in transfer["tgdp"].items() if k != "transfer_scale"}}[method]
    uses_data = method != "source_only"
    key = {"method": method, "settings": settings, "device": config.device,
           **({"seed": config.seed, "max_val_windows": config.transfer.max_val_windows} if uses_data else {})}
    inputs = [run.path / "models" / "source" / "model.pt"]
    inputs += [run.path / "cohorts" / "target" / "cohort.json"] if uses_data else []
    inputs += [run.path / "cohorts" / "source" / "cohort.json"] if method == "tgdp" else []
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return digest + fingerprint_files(inputs)


def transfer_scale_of(config: Config, method: str) -> float | None:
    """The guidance weight w a method samples with (TGDP, domain guidance); None for the others."""
    return {"tgdp": config.transfer.tgdp.transfer_scale,
            "domain_guidance": config.transfer.domain_guidance_scale}.get(method)


def _refresh_transfer_scale(model_file: Path, transfer_scale: float | None) -> None:
    """Keep the model card's w equal to the config's when only w changed (nothing to retrain)."""
    payload = load_checkpoint(model_file)
    if payload["card"].get("transfer_scale") != transfer_scale:
        payload["card"]["transfer_scale"] = transfer_scale
        save_checkpoint(model_file, payload)


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


def _train_on_target(config: Config, method: str, source: dict, card: ModelCard, data: dict, out_dir: Path,
                     device) -> None:
    """target_only: the source architecture from scratch; finetune(_partial): from the source EMA weights."""
    if method == "target_only":
        net = seeded_unet(card.unet_config(), card.noise_schedule(), config.seed)
        settings = replace(config.transfer.target_only, seed=config.seed)
    else:
        net = trainable_copy(source["ema"]["weights"], card)
        if method == "finetune_partial":
            freeze_except(net, PARTIAL_FINETUNE_MODULES)
        settings = replace(config.transfer.finetune, seed=config.seed)
    train_diffusion(net, card.noise_schedule(), *data["train"], settings, out_dir, val_x=data["val"][0],
                    val_y=data["val"][1], device=device, card=card.to_dict())


def _fit_tgdp_on_run(config: Config, run: RunDir, source: dict, card: ModelCard, data: dict, model_file: Path,
                     device) -> None:
    """TGDP on the run's source cohort (rank 0 alone under torchrun: it fits small classifiers)."""
    source_cohort = read_cohort(run.path / "cohorts" / "source")
    source_val = source_cohort.split("val").subsample(config.transfer.max_val_windows, config.seed)
    _fit_tgdp(config, source, card, source_cohort.split("train"), source_val, data, model_file, device)


def _fit_tgdp(config: Config, source: dict, card: ModelCard, source_train, source_val, data: dict, model_file: Path,
              device) -> None:
    """TGDP on the source train split vs the target train split; held-out source and target val windows for early
    stopping, calibration and the ratio diagnostics."""
    source_pool, source_held_out = (
        (torch.from_numpy(part.normalized()), torch.tensor(part.meta["label_index"].to_numpy()))
        for part in (source_train, source_val))
    frozen = trainable_copy(source["ema"]["weights"], card).to(device).eval().requires_grad_(False)
    fit = fit_tgdp(
        frozen, card.noise_schedule(), source_pool, data["train"], _tgdp_settings(config),
        source_val=source_held_out if len(source_val.meta) else None, target_val=data["val"],
        num_classes=len(card.classes), device=device,
    )
    pd.DataFrame(fit.log).to_csv(model_file.parent / "log.csv", index=False)
    write_json(model_file.parent / "diagnostics.json", fit.diagnostics)
    save_checkpoint(model_file, {
        "ema": source["ema"],
        "guidance": {"estimator": fit.estimator, "config": asdict(fit.network.config),
                     "weights": fit.network.state_dict(), "t_min": fit.t_min, "fade_steps": fit.fade_steps},
        "card": card.to_dict(), "ratio_diagnostics": _plain(fit.diagnostics),
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

