"""Stages of the source diffusion model: train (or adopt the pretrained one) and sample."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ecg_tgdp.data.export import export_windows, write_synthetic_cohort
from ecg_tgdp.data.store import read_cohort
from ecg_tgdp.models.generate import DiffusionModel, labels_for_mix
from ecg_tgdp.models.model_file import ModelFile
from ecg_tgdp.models.model_card import ModelCard, x0_clip_for
from ecg_tgdp.models.rhythm import RhythmBank
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.training import train_diffusion
from ecg_tgdp.models.unet import UNetConfig
from ecg_tgdp.pipeline.config import Config, ConfigError
from ecg_tgdp.pipeline.distributed import is_main_rank, on_main_rank
from ecg_tgdp.pipeline.runtime import prepare_out_dir, resolve_device, seeded_unet, window_rhythm
from ecg_tgdp.pipeline.rundir import RunDir, fingerprint_files


def train_source_stage(config: Config, run: RunDir, force: bool = False) -> Path:
    """Train the class-conditional source model on the source train split (data-parallel under torchrun), or adopt
    `pretrained`."""
    started = time.time()
    out_dir = run.path / "models" / "source"
    checkpoint = out_dir / "model.pt"
    fingerprint = config.section_hash("seed", "device", "source_model", "windows") + fingerprint_files(
        [run.path / "cohorts" / "source"])
    if not force and on_main_rank(run.is_current, "train-source", fingerprint, [checkpoint]):
        print(f"train-source: up to date ({checkpoint})")
        return checkpoint
    on_main_rank(prepare_out_dir, out_dir, fingerprint, force)
    cohort = read_cohort(run.path / "cohorts" / "source")
    if config.source_model.pretrained is not None:
        on_main_rank(_adopt_pretrained, config.source_model.pretrained, cohort.info, checkpoint)
        on_main_rank(run.record_stage, "train-source", fingerprint=fingerprint, started=started, outputs=[checkpoint],
                     pretrained=str(config.source_model.pretrained))
        return checkpoint
    settings = config.source_model
    anchor_s = cohort.info.get("anchor_s")
    unet = settings.unet(len(cohort.info["leads"]), len(cohort.classes),
                         None if anchor_s is None else anchor_s / cohort.info["window_s"])
    schedule = NoiseSchedule.from_name(settings.schedule.kind, settings.schedule.num_steps)
    train, val = cohort.split("train"), cohort.split("val")
    tensors = {
        name: (torch.from_numpy(cohort.normalized(part.windows)), torch.tensor(part.meta["label_index"].to_numpy()))
        for name, part in (("train", train), ("val", val))
    }
    rhythm, bank = {}, None
    if unet.rhythm_channel:
        (train_beats, rhythm["train_rhythm"]), (_, rhythm["val_rhythm"]) = (
            window_rhythm(part.windows, cohort.info, unet.anchor_width) for part in (train, val))
        bank = RhythmBank.from_windows(train_beats, tensors["train"][1].numpy(), cohort.classes, seed=config.seed)
    card = card_for_cohort(cohort.info, unet, schedule, x0_clip_for(tensors["train"][0].numpy()), bank)
    device = resolve_device(config.device)
    result = train_diffusion(
        seeded_unet(unet, schedule, config.seed), schedule, *tensors["train"], replace(settings.training, seed=config.seed),
        out_dir, val_x=tensors["val"][0], val_y=tensors["val"][1], device=device, card=card.to_dict(),
        monitor=_sample_monitor(settings, cohort, card, config.seed, device), **rhythm,
    )
    on_main_rank(lambda: ModelFile.from_training(out_dir).save(checkpoint))
    print(f"train-source: {result.steps_done} steps, best {result.selected_on} {result.best_score}, → {checkpoint}")
    on_main_rank(run.record_stage, "train-source", fingerprint=fingerprint, started=started, outputs=[checkpoint],
                 steps=result.steps_done, best_score=result.best_score, selected_on=result.selected_on,
                 stopped_early=result.stopped_early)
    return checkpoint


def _sample_monitor(settings, cohort, card: ModelCard, seed: int, device):
    """The judge of `selection = "samples"` on rank 0 (None otherwise): samples scored against the source cohort's
    training windows and its val patients (the test patients stay out of model selection)."""
    if settings.selection != "samples" or not is_main_rank():
        return None
    if card.anchor_s is None:
        raise ConfigError("source_model.selection = 'samples' needs beat windows; use 'val_loss' for record crops")
    from ecg_tgdp.evaluation.generator_quality import SampleQualityMonitor, reference_from_cohort

    n = settings.selection_windows_per_class
    reference = reference_from_cohort(cohort, 0, held_out=("val",), seed=seed, judge=False, device=device)
    try:
        return SampleQualityMonitor(reference, card, n, seed=seed)
    except ValueError as error:
        raise ConfigError(f"source_model.selection = 'samples': {error}; use 'val_loss'") from None


def card_for_cohort(info: dict, unet: UNetConfig, schedule: NoiseSchedule, clip_x0: float | None,
                    rhythm_bank: RhythmBank | None = None) -> ModelCard:
    """The model card of a source model trained on the cohort `info` (its cohort.json) describes; a rhythm-channel
    network's carries the bank of its training windows' rhythms."""
    return ModelCard(
        classes=info["classes"], leads=info["leads"], fs_hz=info["fs_hz"], window_s=info["window_s"],
        anchor_s=info.get("anchor_s"), normalization=info["normalization"],
        unet={**asdict(unet), "channel_mults": list(unet.channel_mults)}, schedule=schedule.card(),
        amplitude_normalization=info.get("amplitude_normalization", "none"), trained_on=info["database"],
        clip_x0=clip_x0, rhythm_bank=None if rhythm_bank is None else rhythm_bank.to_card(),
    )


def _adopt_pretrained(path: Path, cohort_info: dict, checkpoint: Path) -> None:
    """Use a shipped model (by name or path) when it was trained for the same classes, leads and window geometry."""
    from ecg_tgdp.pipeline.shipped import pretrained_path

    path = pretrained_path(path)
    card = DiffusionModel.load(path).card
    for key in ("classes", "leads", "fs_hz", "window_s", "anchor_s", "amplitude_normalization"):
        have, want = getattr(card, key), cohort_info.get(key, "none" if key == "amplitude_normalization" else None)
        have = list(have) if isinstance(have, tuple) else have
        if have != want:
            raise ConfigError(f"source_model.pretrained: {path} has {key}={have!r}, the source cohort {want!r}")
    shutil.copyfile(path, checkpoint)
    print(f"train-source: using the pretrained model {path}")


def sample_command(
    checkpoint: Path, n: int, out: Path, *, class_mix: dict[str, float] | None, sampler: str, steps: int, seed: int,
    fmt: str, cfg_scale: float, device: str, batch_size: int, transfer_scale: float | None = None,
) -> None:
    """`ecg-tgdp sample`: n labeled windows in mV from a checkpoint, written as a cohort or exported."""
    model = DiffusionModel.load(checkpoint, resolve_device(device))
    classes = model.classes
    try:
        labels = labels_for_mix(n, class_mix or {name: 1.0 for name in classes}, classes)
    except ValueError as error:
        raise ConfigError(f"--class-mix: {error}") from None
    started = time.time()
    windows = model.sample_mv(labels, sampler=sampler, steps=steps, seed=seed, batch_size=batch_size,
                              cfg_scale=cfg_scale, transfer_scale=transfer_scale, progress=True)
    seconds = time.time() - started
    description = model.card.window_description()
    description["sampler"] = {"sampler": sampler, "steps": steps, "seed": seed, "cfg_scale": cfg_scale,
                              "transfer_method": model.method, "transfer_scale": transfer_scale,
                              "checkpoint": str(checkpoint), "seconds": round(seconds, 2)}
    if fmt == "store":
        write_synthetic_cohort(out, windows, labels, classes=classes, description=description, method=model.method)
        where = out
    else:
        where = export_windows(out, windows, [classes[i] for i in labels], fs_hz=model.card.fs_hz,
                               leads=list(model.card.leads), fmt=fmt)
    print(f"sample: {n} windows ({', '.join(f'{c} {(labels == i).sum()}' for i, c in enumerate(classes))}) "
          f"in {seconds:.1f} s → {where}")
