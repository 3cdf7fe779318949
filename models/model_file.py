"""The model file: a trained or transferred diffusion model on disk, with one writer (`save`) and one reader (`load`).

    model.pt  card            ModelCard.to_dict(): network, schedule, classes, leads, rate, window, normalization,
                              the transfer method that made it
              ema             {"weights": the U-Net's EMA state dict}
              reference_ema   domain guidance: {"weights": the source U-Net ε_src it extrapolates from}
              guidance        TGDP: {"estimator", "config" (NetConfig), "weights", "t_min", "fade_steps",
                              "calibration" (per band of t: c''s temperature and whether it guides)}: log h
              ratio_diagnostics  TGDP: held-out diagnostics of the fit (README: TGDP, exactly, "Estimating h")
              step, train_config  the training step and settings the weights come from, when trained here

The guidance weight w is not stored: it is part of what sampling is asked for (a method's default is
`models.settings.DEFAULT_TRANSFER_SCALE`), so changing w never rewrites a file a stage has hashed. The training
loop's own checkpoints (`checkpoint.pt`, `best.pt`) are read too, by their EMA weights and card.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ecg_tgdp.models.checkpoint import CheckpointError, check_plain, load_checkpoint, save_checkpoint
from ecg_tgdp.models.model_card import ModelCard, ModelCardError

GUIDANCE_KEYS = ("estimator", "config", "weights", "t_min", "fade_steps")
OPTIONAL_GUIDANCE_KEYS = ("calibration",)  # None, or absent in files written before it


@dataclass
class ModelFile:
    """What one model.pt holds (module docstring), typed."""

    card: ModelCard
    weights: dict[str, Tensor]  # the U-Net's EMA weights
    reference_weights: dict[str, Tensor] | None = None  # domain guidance: the source U-Net
    guidance: dict | None = None  # TGDP: GUIDANCE_KEYS and OPTIONAL_GUIDANCE_KEYS
    ratio_diagnostics: dict | None = None  # TGDP
    step: int | None = None
    train_config: dict | None = None

    def __post_init__(self) -> None:
        if self.guidance is not None and not (set(GUIDANCE_KEYS) <= set(self.guidance)
                                              <= set(GUIDANCE_KEYS + OPTIONAL_GUIDANCE_KEYS)):
            raise ValueError(f"model file: a guidance entry holds {GUIDANCE_KEYS} and optionally "
                             f"{OPTIONAL_GUIDANCE_KEYS}, got {sorted(self.guidance)}")

    def save(self, path: Path | str) -> Path:
        """Write the file atomically (checked to hold plain data only before anything is written)."""
        payload = {"card": self.card.to_dict(), "ema": {"weights": self.weights}}
        optional = {"reference_ema": None if self.reference_weights is None else {"weights": self.reference_weights},
                    "guidance": self.guidance, "ratio_diagnostics": self.ratio_diagnostics, "step": self.step,
                    "train_config": self.train_config}
        payload |= {key: value for key, value in optional.items() if value is not None}
        check_plain(payload, where=str(path))
        save_checkpoint(Path(path), payload)
        return Path(path)

    @classmethod
    def load(cls, path: Path | str) -> ModelFile:
        """Read a model file, or a training checkpoint's EMA weights and card; CheckpointError names what is wrong."""
        payload = load_checkpoint(Path(path))
        missing = [key for key in ("ema", "card") if key not in payload]
        if missing:
            raise CheckpointError(f"{path}: not a diffusion model file of this version (missing {missing})")
        try:
            card = ModelCard.from_dict(payload["card"], str(path))
        except (ModelCardError, TypeError) as error:
            raise CheckpointError(str(error)) from None
        reference = payload.get("reference_ema")
        try:
            return cls(card, payload["ema"]["weights"], None if reference is None else reference["weights"],
                       payload.get("guidance"), payload.get("ratio_diagnostics"), payload.get("step"),
                       payload.get("train_config"))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: a damaged model file ({type(error).__name__}: {error})") from None

    @classmethod
    def from_training(cls, training_dir: Path) -> ModelFile:
        """The model a training folder ends with: best.pt (the best validation), else checkpoint.pt."""
        best = training_dir / "best.pt"
        return cls.load(best if best.is_file() else training_dir / "checkpoint.pt")
