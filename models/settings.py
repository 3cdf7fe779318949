"""The library's settings dataclasses, importable without torch or numpy.

Each is what a library function takes (`UNetConfig` the network, `TrainConfig` the diffusion training loop,
`ClassifierTraining` the downstream classifier, `DomainTraining` TGDP's classifiers, `GuidanceTraining` its
guidance network, `TGDPSettings` a whole TGDP fit), and the run config (`pipeline.config`) uses them as its
schema, so every default is written once, here. `__pydantic_config__` makes a config section of one of
them reject unknown keys (pydantic reads it; nothing else does).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

ESTIMATORS = ("time_classifier", "regression")  # TGDP's estimators of log h (models.tgdp_transfer)
NEAR_PERFECT_AUROC = 0.99  # above this the held-out domains barely overlap: the ratio is unreliable there
PREDICTIONS = ("epsilon", "v")  # the U-Net's output parameterizations (models.unet)
SAMPLER_NAMES = ("dpmpp_sde", "dpmpp", "ddim", "ddpm")  # models.samplers
TRANSFER_METHODS = ("source_only", "target_only", "finetune", "finetune_partial", "domain_guidance", "tgdp")
SCHEDULES = ("cosine", "linear")  # models.schedule.NoiseSchedule.from_name
DEFAULT_SAMPLER, DEFAULT_STEPS = "dpmpp_sde", 25  # every sampling entry point's defaults (README: The source diffusion model)
_STRICT: dict = {"extra": "forbid", "allow_inf_nan": False}  # pydantic's reading of a config table typed by one of these


def _require(settings, rules: dict[str, bool]) -> None:
    """Raise one ValueError naming every rule (message → whether it holds) that `settings` breaks; every float
    field must also be finite (NaN compares false with everything, so a range rule alone would let it through)."""
    infinite = [spec.name for spec in fields(settings) if isinstance(getattr(settings, spec.name), float)
                and not math.isfinite(getattr(settings, spec.name))]
    broken = [f"{', '.join(infinite)} must be finite"] if infinite else []
    broken += [rule for rule, holds in rules.items() if not holds]
    if broken:
        raise ValueError(f"invalid {type(settings).__name__}: " + "; ".join(broken))


@dataclass(frozen=True)
class UNetConfig:
    """Network shape; saved inside checkpoints so that sampling needs only the checkpoint. The run config's
    [source_model.model] table (leads, num_classes and anchor come from the source cohort there)."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    leads: int = 1  # input and output channels
    num_classes: int = 3  # embedding has num_classes + 1 rows; row num_classes is the null class (CFG)
    base_channels: int = 32  # width at full resolution; time/class embedding width is 4x this
    channel_mults: tuple[int, ...] = (1, 2, 2)  # width multiplier per resolution; len - 1 halvings
    res_blocks: int = 1  # residual blocks per resolution
    attention: bool = False  # one self-attention block at the lowest resolution
    attention_levels: int = 0  # also self-attention after the residual blocks of this many lowest resolutions
    rotary: bool = False  # rotary position embeddings in every attention block (relative offsets: RR intervals)
    dropout: float = 0.0  # inside residual blocks
    groups: int = 8  # GroupNorm groups; must divide every width
    position_channel: bool = True  # append linspace(-1, 1) over the window as an input channel
    anchor: float | None = None  # beat windows: where the labeled beat sits, as a fraction of the window; adds a
    #                              Gaussian marker channel there (width `anchor_width`, a fraction of the window too)
    anchor_width: float = 0.02
    rhythm_channel: bool = False  # an input channel marking every R peak of the window (models.rhythm): the rhythm
    #                               is given at training and sampling, only the waveform is generated
    prediction: str = "epsilon"  # what the network's raw output is: "epsilon" (Ho et al. 2020) or "v" = α ε − σ x_0
    #                              (Salimans & Ho 2022); UNet1D returns ε either way (module models.unet)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))  # a TOML/JSON list round-trips
        widths = [self.base_channels * m for m in self.channel_mults]
        _require(self, {
            f"widths {widths} must be non-empty and divisible by groups={self.groups}":
                bool(widths) and self.groups >= 1 and not any(w % self.groups for w in widths),
            "leads, num_classes, base_channels and res_blocks must be >= 1":
                min(self.leads, self.num_classes, self.base_channels, self.res_blocks, *self.channel_mults) >= 1,
            "dropout must be in [0, 1)": 0 <= self.dropout < 1,
            "attention_levels must lie in [0, len(channel_mults)]": 0 <= self.attention_levels <= len(self.channel_mults),
            "anchor must lie in [0, 1] and anchor_width be > 0":
                self.anchor is None or (0 <= self.anchor <= 1 and self.anchor_width > 0),
            f"prediction must be one of {PREDICTIONS}": self.prediction in PREDICTIONS,
        })


@dataclass(frozen=True)
class ScheduleSettings:
    """The noise schedule a denoiser is trained with (`NoiseSchedule.from_name`); [source_model.schedule]."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    kind: str = "cosine"  # one of SCHEDULES
    num_steps: int = 1000  # training diffusion steps T

    def __post_init__(self) -> None:
        _require(self, {f"kind must be one of {SCHEDULES}": self.kind in SCHEDULES,
                        "num_steps must be > 1": self.num_steps > 1})


@dataclass
class TrainConfig:
    """How a denoiser is trained; saved as a dict in every checkpoint so a run can be resumed and audited.

    Also the schema of the run config's training sections (`pipeline.config`), which reject unknown keys."""

    __pydantic_config__: ClassVar[dict] = _STRICT  # read by pydantic when a config section is this dataclass

    steps: int = 20000                # optimizer updates in all; raising it resumes a finished run (new cosine length)
    batch_size: int = 64              # windows per rank and step
    lr: float = 2e-4                  # peak AdamW learning rate
    warmup_steps: int = 500           # linear warm-up, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0         # decoupled (AdamW); only on weights with ≥ 2 dims, as in nanoGPT
    ema_decay: float = 0.999          # the EMA weights are validated, kept in best.pt and sampled from
    grad_clip: float = 1.0            # max global gradient norm; 0 disables (the norm is still logged)
    label_dropout: float = 0.1        # classifier-free: replace y with the null class with this probability
    loss_target: str = "epsilon"      # what the loss regresses: "epsilon" (ε-MSE) or "v" (v-MSE; a v-prediction network)
    min_snr_gamma: float = 0.0        # Min-SNR-γ: the x_0 error weighed by min(SNR_t, γ) (Hang et al. 2023); 0: off
    class_balanced: bool = True       # sample batches with equal class probability (rare S/V beats)
    log_every: int = 50
    val_every: int = 500              # validation loss (EMA weights, fixed seeded t and noise: comparable across evaluations)
    checkpoint_every: int = 1000      # a killed run repeats at most this many steps
    early_stopping_patience: int = 0  # in validations; 0 disables
    bf16: bool = False                # forward pass under bfloat16 autocast (GPU speed); weights, AdamW and loss stay float32
    seed: int = 0                     # seeds every random stream: same seed, same machine, same weights

    def __post_init__(self) -> None:
        rules = {
            "steps, batch_size, log_every, val_every, checkpoint_every must be >= 1":
                min(self.steps, self.batch_size, self.log_every, self.val_every, self.checkpoint_every) >= 1,
            "lr, warmup_steps, weight_decay, grad_clip, early_stopping_patience, min_snr_gamma, seed must be >= 0":
                min(self.lr, self.warmup_steps, self.weight_decay, self.grad_clip, self.early_stopping_patience,
                    self.min_snr_gamma, self.seed) >= 0,
            "label_dropout must be in [0, 1)": 0 <= self.label_dropout < 1,
            "loss_target must be 'epsilon' or 'v'": self.loss_target in ("epsilon", "v"),
            "min_lr_ratio must be in [0, 1]": 0 <= self.min_lr_ratio <= 1,
            "ema_decay must be in [0, 1)": 0 <= self.ema_decay < 1,
        }
        _require(self, rules)


@dataclass
class ClassifierTraining:
    """How the classifier is trained: class-balanced batches, early stopping on validation macro-F1; also the
    schema of the config's `evaluation.classifier_training` (unknown keys rejected)."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better validation macro-F1
    steps_per_epoch: int | None = 100  # None: one pass over the training windows
    gain_jitter: float = 0.25  # signal channels scaled by a factor drawn from [1/(1 + j), 1 + j] per window ...
    noise: float = 0.02  # ... plus Gaussian noise of this std: patients differ in gain and noise, not in class
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self, {
            "epochs, batch_size, patience, steps_per_epoch must be >= 1":
                min(self.epochs, self.batch_size, self.patience, self.steps_per_epoch or 1) >= 1,
            "lr must be > 0": self.lr > 0,
            "weight_decay, gain_jitter, noise, seed must be >= 0":
                min(self.weight_decay, self.gain_jitter, self.noise, self.seed) >= 0,
        })


@dataclass
class DomainTraining:
    """How a domain classifier is trained (binary cross-entropy, AdamW), and early stopped when held-out
    windows are given."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    steps: int = 1500  # at most; early stopping on held-out log-loss usually ends sooner
    batch_size: int = 256
    lr: float = 1e-3  # peak AdamW learning rate, cosine-decayed to lr · min_lr_ratio at `steps`
    min_lr_ratio: float = 0.1  # a decayed rate averages out the batch noise that a constant one leaves in log r
    weight_decay: float = 1e-4  # decoupled (AdamW)
    balanced: bool = True  # half source, half target per batch: no n_s/n_t factor, and a small target is seen often
    val_every: int = 100  # steps between held-out log-losses (with held-out windows)
    patience: int = 5  # validations without a lower held-out log-loss before stopping; 0 disables early stopping
    seed: int = 0  # batches, timesteps and noise all come from one generator seeded with this

    def __post_init__(self) -> None:
        _require(self, {
            "steps, batch_size and val_every must be >= 1": min(self.steps, self.batch_size, self.val_every) >= 1,
            "lr must be > 0": self.lr > 0,
            "weight_decay, patience, seed must be >= 0": min(self.weight_decay, self.patience, self.seed) >= 0,
            "min_lr_ratio must be in [0, 1]": 0 <= self.min_lr_ratio <= 1,
        })


@dataclass
class GuidanceTraining:
    """How h_ψ is trained (AdamW on the loss above); η = 0 switches a regularizer off (not computed, logged as 0)."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    steps: int = 1500
    batch_size: int = 128  # source windows per step, and target windows per step when a regularizer is on
    lr: float = 1e-3  # peak AdamW learning rate, cosine-decayed to lr · min_lr_ratio at `steps`
    min_lr_ratio: float = 0.1  # a decayed rate averages out the batch noise of regressing on heavy-tailed r
    weight_decay: float = 0.0  # decoupled (AdamW)
    grad_clip: float = 0.0  # max global gradient norm; 0 disables: clipping shrinks exactly the batches that
    #                         carry the large ratios, which biases h low where the target lies (AdamW is scale-free)
    eta_cycle: float = 1.0  # η₁, weight of the cycle regularizer; needs target windows and c'(x_t, y, t); 0: off
    eta_consistency: float = 1.0  # η₂, weight of the consistency regularizer; needs target windows; 0: off
    r_min: float = 1e-3  # c'/(1 − c') is clipped to [r_min, r_max] in the cycle term, as r is on the source set
    r_max: float = 1e3
    val_every: int = 100  # steps between held-out consistency losses (when validation windows are given)
    patience: int = 5  # validations without improvement before stopping; 0 disables early stopping
    scale_every: int = 50  # steps between measurements of each term's gradient norm (module docstring)
    scale_decay: float = 0.9  # running mean of those norms, which each term is divided by
    seed: int = 0  # batches, t and ε come from one generator seeded with this; validation from one seeded seed + 1

    def __post_init__(self) -> None:
        rules = {
            "steps, batch_size, val_every and scale_every must be >= 1":
                min(self.steps, self.batch_size, self.val_every, self.scale_every) >= 1,
            "lr must be > 0": self.lr > 0,
            "weight_decay, grad_clip, eta_cycle, eta_consistency, patience, seed must be >= 0":
                min(self.weight_decay, self.grad_clip, self.eta_cycle, self.eta_consistency, self.patience,
                    self.seed) >= 0,
            "need 0 < r_min < r_max": 0 < self.r_min < self.r_max,
            "min_lr_ratio must be in [0, 1]": 0 <= self.min_lr_ratio <= 1,
            "scale_decay must be in [0, 1)": 0 <= self.scale_decay < 1,
        }
        _require(self, rules)


@dataclass
class TGDPSettings:
    """Every knob of one TGDP fit, and the guidance weight w it samples with by default; η₁ = guidance.eta_cycle,
    η₂ = guidance.eta_consistency (regression). The run config's [transfer.tgdp] table and its sub-tables."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    transfer_scale: float = 1.0  # w in ε_θ − w f(t) σ_t ∇ log h (1 in theory); applied at sampling, not part of the fit
    estimator: str = "time_classifier"  # one of ESTIMATORS
    network: str = "conv"  # "conv" for windows [N, leads, T]; "mlp" for points [N, ...], flattened
    width: int = 64  # channels (conv) or hidden units (mlp) of the classifiers and the guidance network
    depth: int = 3
    label_aware: bool = True  # the conditional TGDP: c, c' and h_ψ see the label y (ratios per class); False: the
    #                           marginal ratio q(x)/p(x) guides every class alike (the ablation's row)
    time_domain: DomainTraining = field(default_factory=DomainTraining)  # c'(x_t, y, t): both estimators
    refine_steps: int = 0  # time_classifier: steps of BCE + η₂ · consistency on target windows after the BCE fit
    domain: DomainTraining = field(default_factory=DomainTraining)  # c(x_0, y): regression only
    guidance: GuidanceTraining = field(default_factory=GuidanceTraining)  # h_ψ: regression only
    ratio_normalization: str = "clip"  # regression: "clip" to [r_min, r_max], or "self_normalize" (clip, then mean 1)
    fade: bool = True  # switch guidance off below the t where held-out c' is near-perfect
    calibrate: bool = True  # time_classifier: c''s temperature per band of t on held-out windows, and no guidance in
    #                         bands whose calibrated held-out log-loss is not below a constant guess (models.calibration)
    near_perfect_auroc: float = NEAR_PERFECT_AUROC
    bands: int = 10  # bands of t for the held-out diagnostics

    def __post_init__(self) -> None:
        _require(self, {
            f"estimator must be one of {ESTIMATORS}": self.estimator in ESTIMATORS,
            "network must be 'conv' or 'mlp'": self.network in ("conv", "mlp"),
            "ratio_normalization must be 'clip' or 'self_normalize'":
                self.ratio_normalization in ("clip", "self_normalize"),
            "width and depth must be >= 1, width a multiple of 8 for 'conv'":
                min(self.width, self.depth) >= 1 and (self.network != "conv" or self.width % 8 == 0),
            "refine_steps >= 0, bands >= 1": self.refine_steps >= 0 and self.bands >= 1,
            "near_perfect_auroc must be in (0.5, 1]": 0.5 < self.near_perfect_auroc <= 1,
            "transfer_scale must be >= 0": self.transfer_scale >= 0,
        })

    def fit_settings(self) -> dict:
        """Everything but w: what a fit depends on (its cache key). label_aware, added after fits were cached, is
        left out at its default, so those fits stay current."""
        return {key: value for key, value in asdict(self).items()
                if key != "transfer_scale" and not (key == "label_aware" and value)}


@dataclass
class DomainGuidanceSettings:
    """Domain guidance (Zhong et al. 2025): ε_src + w (ε_ft − ε_src) over the fine-tuned model; its [transfer.
    domain_guidance] table. The fine-tuned model is the `finetune` method's."""

    __pydantic_config__: ClassVar[dict] = _STRICT

    transfer_scale: float = 1.5  # w; applied at sampling

    def __post_init__(self) -> None:
        _require(self, {"transfer_scale must be >= 0": self.transfer_scale >= 0})


def _finetune_training() -> TrainConfig:
    """From the source EMA weights at a low learning rate, early stopped on the target val loss; a short run needs
    a fast EMA."""
    return TrainConfig(steps=2000, lr=5e-5, warmup_steps=50, ema_decay=0.995, val_every=100, checkpoint_every=100,
                       early_stopping_patience=5)


def _target_only_training() -> TrainConfig:
    return TrainConfig(steps=3000, warmup_steps=200, val_every=250, checkpoint_every=500, early_stopping_patience=6)


@dataclass
class TransferSettings:
    """Every transfer method's settings (`models.transfer.fit_transfer`); the run config's [transfer.<method>]
    tables. finetune_partial trains with `finetune`'s settings; source_only has none."""

    finetune: TrainConfig = field(default_factory=_finetune_training)
    target_only: TrainConfig = field(default_factory=_target_only_training)
    tgdp: TGDPSettings = field(default_factory=TGDPSettings)
    domain_guidance: DomainGuidanceSettings = field(default_factory=DomainGuidanceSettings)

    def transfer_scale(self, method: str) -> float | None:
        """The guidance weight w `method` samples with by default (None: a method without one)."""
        return {"tgdp": self.tgdp.transfer_scale, "domain_guidance": self.domain_guidance.transfer_scale}.get(method)
