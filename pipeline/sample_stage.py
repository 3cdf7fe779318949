"""The `sample` stage: the same synthetic budget from every transfer method, written as cohorts.

samples/<method>/ holds `evaluation.samples_per_class` windows of each class in mV, in the
cohort layout (README: Stages and artifacts), so the evaluation reads real and synthetic windows alike.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ecg_tgdp.data.export import write_synthetic_cohort
from ecg_tgdp.data.store import cohort_files
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.pipeline.config import Config, ConfigError
from ecg_tgdp.pipeline.runtime import resolve_device
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files

GUIDED_METHODS = ("tgdp", "domain_guidance")  # the methods with a guidance weight w to sweep


def sample_stage(config: Config, run: RunDir, force: bool = False) -> dict[str, Path]:
    """Sample every method of `transfer.methods`, and the guided ones again at each w of
    `evaluation.transfer_scales`; return name → samples folder (names as `sweep_sample_name` gives them)."""
    folders = {method: _sample_method(config, run, method, force) for method in config.transfer.methods}
    for method, scale in sweep_points(config):
        folders[sweep_sample_name(method, scale)] = _sample_method(config, run, method, force, scale)
    return folders


def sweep_points(config: Config) -> list[tuple[str, float]]:
    """(method, w) of the transfer-scale sweep: every guided method of the run at every extra w."""
    return [(method, scale) for method in config.transfer.methods if method in GUIDED_METHODS
            for scale in config.evaluation.transfer_scales]


def sweep_sample_name(method: str, transfer_scale: float) -> str:
    """The samples folder of a method drawn at another w than the run's: samples/<method>_w<w>/."""
    return f"{method}_w{transfer_scale:g}"


def _sample_method(config: Config, run: RunDir, method: str, force: bool, transfer_scale: float | None = None) -> Path:
    started = time.time()
    model_file = run.path / "models" / method / "model.pt"
    if not model_file.is_file():
        raise ConfigError(f"{model_file}: no {method} model yet; run `ecg-tgdp transfer` first")
    name = method if transfer_scale is None else sweep_sample_name(method, transfer_scale)
    out = run.path / "samples" / name
    settings = config.evaluation
    transfer_scale = config.transfer.settings().transfer_scale(method) if transfer_scale is None else transfer_scale
    key = json.dumps({"seed": config.seed, "transfer_scale": transfer_scale, **settings.sampling()}, sort_keys=True)
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16] + fingerprint_files(
        [model_file, run.path / "cohorts" / "target" / "cohort.json"])  # the target's lead names label the samples
    stage = f"sample.{name}"
    if not force and run.is_current(stage, fingerprint, cohort_files(out)):
        print(f"sample {name}: up to date ({out})")
        return out
    run.begin_stage(stage)
    model = DiffusionModel.load(model_file, resolve_device(config.device))
    labels = np.repeat(np.arange(len(model.classes)), settings.samples_per_class)
    windows = model.sample_mv(labels, sampler=settings.sampler, steps=settings.sampling_steps, seed=config.seed,
                              transfer_scale=transfer_scale, progress=True)
    description = model.card.window_description()
    description["leads"] = _target_leads(run, list(model.card.leads))
    description["sampler"] = {"method": settings.sampler, "steps": settings.sampling_steps, "seed": config.seed,
                              "transfer_method": method, "transfer_scale": transfer_scale,
                              "model_leads": list(model.card.leads),
                              "seconds": round(time.time() - started, 2)}
    write_synthetic_cohort(out, windows, labels, classes=model.classes, description=description,
                           method=method)
    run.record_stage(stage, fingerprint=fingerprint, started=started, outputs=cohort_files(out))
    print(f"sample {name}: {len(labels)} windows in {time.time() - started:.0f} s → {out}")
    return out


def _target_leads(run: RunDir, model_leads: list[str]) -> list[str]:
    """The samples stand in for target windows, so they carry the target's lead names (mitdb MLII → svdb ECG1)."""
    target_leads = json.loads((run.path / "cohorts" / "target" / "cohort.json").read_text())["leads"]
    if len(target_leads) != len(model_leads):
        raise ConfigError(f"{run.path}: the model generates {len(model_leads)} leads {model_leads}, "
                          f"the target cohort has {len(target_leads)} {target_leads}")
    return list(target_leads)
