"""The `transfer` stage: adapt the source model to the target cohort with TGDP or a baseline (`models.transfer`).

Each method reads models/source/model.pt and the cohorts, calls `fit_transfer` and writes models/<method>/model.pt
(TGDP also its fit's log.csv and diagnostics.json). Under torchrun every rank trains finetune, finetune_partial and
target_only (data-parallel); rank 0 alone does the other methods and writes every file.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from ecg_tgdp.data.atomic import write_json
from ecg_tgdp.data.store import Cohort, read_cohort
from ecg_tgdp.models.model_file import ModelFile
from ecg_tgdp.models.transfer import TRAINED_METHODS, TransferResult, WindowSplits, fit_transfer
from ecg_tgdp.pipeline.config import Config, ConfigError
from ecg_tgdp.pipeline.distributed import on_main_rank
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files
from ecg_tgdp.pipeline.runtime import prepare_out_dir, resolve_device, window_rhythm


def transfer_stage(config: Config, run: RunDir, methods: list[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Run each transfer method; return method → model.pt. Finished methods with unchanged inputs are skipped."""
    return {method: _transfer(config, run, method, force) for method in methods or config.transfer.methods}


def _transfer(config: Config, run: RunDir, method: str, force: bool) -> Path:
    started = time.time()
    source_file = run.path / "models" / "source" / "model.pt"
    if not source_file.is_file():
        raise ConfigError(f"{source_file}: no source model yet; run `ecg-tgdp train-source` first")
    out_dir = run.path / "models" / method
    model_file = out_dir / "model.pt"
    fingerprint = method_fingerprint(config, run, method)
    stage = f"transfer.{method}"
    if not force and on_main_rank(run.is_current, stage, fingerprint, transfer_outputs(out_dir, method)):
        print(f"transfer {method}: up to date ({model_file})")
        return model_file
    on_main_rank(prepare_out_dir, out_dir, fingerprint, force)
    target, max_val = read_cohort(run.path / "cohorts" / "target"), config.transfer.max_val_windows
    finetuned = ModelFile.load(_transfer(config, run, "finetune", False)) if method == "domain_guidance" else None
    source = ModelFile.load(source_file)
    source_windows = (cohort_splits(read_cohort(run.path / "cohorts" / "source"), max_val, config.seed)
                      if method == "tgdp" else None)
    target_windows = cohort_splits(target, max_val, config.seed, rhythm_of(source))
    fit = partial(fit_transfer, method, source, target_windows,
                  config.transfer.settings(), seed=config.seed, out_dir=out_dir, target_name=target.info["database"],
                  source_windows=source_windows, finetuned=finetuned, device=resolve_device(config.device))
    result = fit() if method in TRAINED_METHODS else on_main_rank(fit)
    on_main_rank(write_transfer, out_dir, result)
    on_main_rank(run.record_stage, stage, fingerprint=fingerprint, started=started,
                 outputs=transfer_outputs(out_dir, method))
    print(f"transfer {method}: → {model_file} ({time.time() - started:.0f} s)")
    if result.diagnostics is not None:
        print(f"transfer {method}: {ratio_summary_line(result.diagnostics)}")
        warning = separability_warning(result.diagnostics)
        if warning:
            print(f"warning: {warning}")
    return model_file


def transfer_outputs(out_dir: Path, method: str) -> list[Path]:
    """The files a method's stage writes (and re-verifies before saying "up to date")."""
    return [out_dir / "model.pt", *((out_dir / "log.csv", out_dir / "diagnostics.json") if method == "tgdp" else ())]


def write_transfer(out_dir: Path, result: TransferResult) -> None:
    """model.pt, and for TGDP its fit's log.csv and diagnostics.json."""
    if result.diagnostics is not None:
        pd.DataFrame(result.log).to_csv(out_dir / "log.csv", index=False)
        write_json(out_dir / "diagnostics.json", result.diagnostics)
    result.model.save(out_dir / "model.pt")


def method_fingerprint(config: Config, run: RunDir, method: str) -> str:
    """The cache key of one method: exactly the settings and inputs it uses (STYLE 14). The guidance weight w is
    applied at sampling, so it is in no method's key; domain guidance is keyed by the fine-tuned model it reuses."""
    if method == "domain_guidance":
        return method_fingerprint(config, run, "finetune")
    transfer = config.transfer.settings()
    settings = {"source_only": {}, "finetune": transfer.finetune, "finetune_partial": transfer.finetune,
                "target_only": transfer.target_only, "tgdp": transfer.tgdp.fit_settings()}[method]
    uses_data = method != "source_only"
    key = {"method": method, "settings": settings, "device": config.device,
           **({"seed": config.seed, "max_val_windows": config.transfer.max_val_windows} if uses_data else {})}
    inputs = [run.path / "models" / "source" / "model.pt"]
    inputs += [run.path / "cohorts" / "target"] if uses_data else []
    inputs += [run.path / "cohorts" / "source"] if method == "tgdp" else []
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=asdict).encode()).hexdigest()[:16]
    return digest + fingerprint_files(inputs)


def rhythm_of(model: ModelFile) -> float | None:
    """The marker width (`UNetConfig.anchor_width`) of a rhythm-channel model's R-peak markers: the target windows
    it is fine-tuned on or denoises (TGDP's consistency) need them; None for any other model."""
    unet = model.card.unet_config()
    return unet.anchor_width if unet.rhythm_channel else None


def cohort_splits(cohort: Cohort, max_val_windows: int, seed: int,
                  rhythm_width: float | None = None) -> WindowSplits:
    """Normalized windows and labels of a cohort's train split and (at most `max_val_windows` of) its val split;
    with `rhythm_width` (`rhythm_of`), also their R-peak markers (a rhythm-channel model trains on them)."""
    tensors, rhythm = {}, {}
    for split in ("train", "val"):
        part = cohort.split(split)
        if split == "train" and not len(part.meta):
            raise ConfigError(f"{cohort.info.get('name', 'cohort')} cohort has no train windows; check its split")
        if split == "val":
            part = part.subsample(max_val_windows, seed)
        tensors[split] = (torch.from_numpy(cohort.normalized(part.windows)),
                          torch.tensor(part.meta["label_index"].to_numpy()))
        if rhythm_width is not None and len(part.meta):
            rhythm[f"{split}_rhythm"] = window_rhythm(part.windows, cohort.info, rhythm_width)[1]
    return WindowSplits(tensors["train"], tensors["val"] if len(tensors["val"][1]) else None, **rhythm)


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
