"""Typed run configuration: TOML in, validated models out, unknown keys rejected by name."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecg_tgdp.data.simulation_spec import CohortShift, SimulationSpec
from ecg_tgdp.models.settings import ClassifierTraining, DomainTraining, GuidanceTraining, TGDPSettings, TrainConfig, UNetConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(Exception):
    """A config that cannot be used; the message names the file and the key."""


DATA_ROOT_ENV = "ECG_TGDP_DATA_ROOT"


def user_data_root() -> Path:
    """The per-user folder for PhysioNet databases: $XDG_DATA_HOME (else ~/.local/share)/ecg-tgdp/physionet."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "ecg-tgdp" / "physionet"


def default_data_root() -> Path:
    """`data_root` of a config that sets none: $ECG_TGDP_DATA_ROOT, else `user_data_root()`."""
    from_env = os.environ.get(DATA_ROOT_ENV)
    return Path(from_env).expanduser() if from_env else user_data_root()


def data_root_choices() -> str:
    """The three ways to say where the databases are, for the message when a folder is missing."""
    return (f"give the folder holding the databases with --data-root DIR (or `data_root` in the config), or "
            f"in the environment variable {DATA_ROOT_ENV}, or download them into {user_data_root()} with "
            "`ecg-tgdp fetch`")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Shortest window: a QRS complex (about 0.1 s) with its slopes on either side; shorter windows hold no beat.
MIN_WINDOW_S = 0.25
MIN_WINDOW_SAMPLES = 16


class WindowConfig(_Strict):
    """Window geometry and conditioning shared by every cohort of a run (transfer needs one shape)."""

    fs_hz: float = Field(128.0, gt=0, description="common sampling rate all cohorts are resampled to")
    window_s: float = Field(4.0, gt=0, description="window length; beat windows hold the neighbouring beats (4 s: "
                            "chosen by the DS1→DS2 ablation in the README)")
    anchor_s: float | None = Field(None, ge=0, description="where the annotated beat sits in a beat window, seconds "
                                   "from its start; default the centre (record crops have no anchor)")
    band_hz: tuple[float, float] = Field((0.5, 40.0), description="zero-phase band-pass edges")
    amplitude_normalization: Literal["none", "median_r"] = Field(
        "none", description="beat records: 'median_r' rescales each record so its median R amplitude is 1 mV")
    classes: list[str] = Field(["N", "S", "V"], min_length=1, description="class names in label-index order")

    @model_validator(mode="after")
    def _anchor_inside(self) -> WindowConfig:
        if self.anchor_s is not None and self.anchor_s > self.window_s:
            raise ValueError(f"anchor_s={self.anchor_s} lies outside the {self.window_s} s window")
        return self

    @model_validator(mode="after")
    def _long_enough(self) -> WindowConfig:
        samples = round(self.window_s * self.fs_hz)
        if self.window_s < MIN_WINDOW_S or samples < MIN_WINDOW_SAMPLES:
            raise ValueError(f"window_s={self.window_s} gives {samples} samples at {self.fs_hz:g} Hz; a window needs at "
                             f"least {MIN_WINDOW_S} s and {MIN_WINDOW_SAMPLES} samples to hold a beat")
        return self

    def beat_anchor_s(self) -> float:
        """The anchor of beat windows: `anchor_s`, or the window's centre."""
        return self.window_s / 2 if self.anchor_s is None else self.anchor_s


_SIMULATION = {spec.name: spec.default for spec in dataclass_fields(SimulationSpec)}


class SimulationConfig(_Strict):
    """A simulated hospital written as WFDB records (data.simulation_spec.SimulationSpec, whose defaults these are)."""

    n_patients: int = Field(gt=0)
    duration_s: float = Field(gt=0)
    fs_hz: float = Field(gt=0)
    lead_names: list[str] = list(_SIMULATION["lead_names"])
    ectopic_rates: dict[str, float] = dict(_SIMULATION["ectopic_rates"])
    heart_rate_bpm: tuple[float, float] = _SIMULATION["heart_rate_bpm"]
    shift: CohortShift = CohortShift()
    record_prefix: str = _SIMULATION["record_prefix"]

    def spec(self) -> SimulationSpec:
        """The library's description of this hospital."""
        return SimulationSpec(n_patients=self.n_patients, duration_s=self.duration_s, fs_hz=self.fs_hz,
                              lead_names=tuple(self.lead_names), ectopic_rates=tuple(self.ectopic_rates.items()),
                              heart_rate_bpm=self.heart_rate_bpm, shift=self.shift, record_prefix=self.record_prefix)


class SplitConfig(_Strict):
    """Patient-level split: fractions of patients, a fixed number of train patients, or PTB-XL folds."""

    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    train_patients: int | None = Field(None, gt=0, description="small-budget targets: exactly this many train patients")
    train_budget: int | None = Field(
        None, gt=0, description="keep this many labeled train windows (class-proportional); the rest become 'train_unused'"
    )
    folds: dict[Literal["train", "val", "test"], list[int]] | None = Field(
        None, description="split by the `strat_fold` column instead (PTB-XL)"
    )


class CohortConfig(_Strict):
    """Where one cohort's records are and how to read them."""

    format: Literal["wfdb", "ptbxl", "arrays", "simulated"]
    database: str = Field(description="folder under data_root (or an absolute path); for arrays a .npz/.csv file")
    leads: list[str] = Field(["MLII"], min_length=1, description="leads by name, never by index")
    records: list[str] | None = Field(None, description="records to use (default: the RECORDS file or all headers)")
    exclude_records: list[str] = []
    patients: dict[str, str] = Field({}, description="record → patient where one patient has several records")
    label_map: Literal["aami"] | dict[str, str] = "aami"
    annotator: str = "atr"
    labels_csv: str | None = Field(None, description="record-level labels for a WFDB folder (columns record, label[, patient])")
    filters: dict[str, list[str]] = Field({}, description="PTB-XL: keep rows whose metadata column starts with a value (text) or equals it (numbers)")
    rate_hz: Literal[100, 500] = Field(100, description="PTB-XL: read records100 or records500")
    fs_in_hz: float | None = Field(None, gt=0, description="arrays: sampling rate of the file's samples")
    split: SplitConfig = SplitConfig()
    simulation: SimulationConfig | None = None

    @field_validator("leads")
    @classmethod
    def _leads_once(cls, leads: list[str]) -> list[str]:
        lower = [lead.lower() for lead in leads]
        twice = sorted({lead for lead in leads if lower.count(lead.lower()) > 1})
        if twice:
            raise ValueError(f"lead {', '.join(twice)} named more than once (lead names ignore case)")
        return leads

    @model_validator(mode="after")
    def _simulated_needs_spec(self) -> CohortConfig:
        if self.format == "simulated" and self.simulation is None:
            raise ValueError("format 'simulated' needs a [<cohort>.simulation] table")
        return self


_UNET = {spec.name: spec.default for spec in dataclass_fields(UNetConfig)}


class DiffusionModelConfig(_Strict):
    """The 1D U-Net denoiser's shape (models.unet.UNetConfig, whose defaults these are; leads, classes and the
    anchor come from the cohort) and its noise schedule."""

    base_channels: int = Field(_UNET["base_channels"], gt=0)
    channel_mults: list[int] = Field(list(_UNET["channel_mults"]), min_length=1)
    res_blocks: int = Field(_UNET["res_blocks"], gt=0)
    attention: bool = _UNET["attention"]
    dropout: float = Field(_UNET["dropout"], ge=0, lt=1)
    groups: int = Field(_UNET["groups"], gt=0)
    position_channel: bool = _UNET["position_channel"]
    prediction: Literal["epsilon", "v"] = Field(_UNET["prediction"], description="what the network outputs: ε, or "
                                                "v = α ε − σ x_0, which keeps x̂_0 bounded at high noise")
    anchor_channel: bool = Field(True, description="beat windows: mark the labeled beat with an input channel (the "
                                 "network then knows which of the window's beats the class is about)")
    schedule: Literal["cosine", "linear"] = "cosine"
    num_steps: int = Field(1000, gt=1, description="training diffusion steps T")


class SourceModelConfig(_Strict):
    """The source diffusion model: a shipped pretrained checkpoint, or one trained here (`training` is
    models.training.TrainConfig; its seed is the run's)."""

    pretrained: Path | None = Field(None, description="checkpoint to use instead of training: a shipped model's name "
                                    "(models/pretrained/<name>) or a path; '' trains anew")
    model: DiffusionModelConfig = DiffusionModelConfig()
    training: TrainConfig = TrainConfig()
    selection: Literal["samples", "val_loss"] = Field(
        "samples", description="which validation's EMA weights are kept: 'samples' (those whose samples a "
        "discriminator tells least well from training windows; README: the source model) or 'val_loss'")
    selection_windows_per_class: int = Field(64, gt=9, description="'samples': windows per class drawn at each "
                                             "validation")

    @field_validator("pretrained", mode="before")
    @classmethod
    def _empty_means_none(cls, value):
        return None if value == "" else value


_DOMAIN = {spec.name: spec.default for spec in dataclass_fields(DomainTraining)}
_GUIDANCE = {spec.name: spec.default for spec in dataclass_fields(GuidanceTraining)}
_TGDP = {spec.name: spec.default for spec in dataclass_fields(TGDPSettings)}


class TGDPConfig(_Strict):
    """TGDP (DESIGN §6): the time-dependent domain classifier c'(x_t, y, t), and for the regression estimator the
    clean-window classifier and the guidance network h_ψ."""

    estimator: Literal["time_classifier", "regression"] = Field(
        _TGDP["estimator"], description="log h = logit c' (time_classifier), or h_ψ regressed on the clean-window "
        "ratio with the cycle and consistency regularizers (regression, the paper's); README: TGDP that transfers")
    width: int = Field(_TGDP["width"], gt=0, description="channels of the classifiers and the guidance network "
                       "(multiple of 8)")
    depth: int = Field(_TGDP["depth"], gt=0)
    classifier_steps: int = Field(_DOMAIN["steps"], gt=0, description="at most, for c and c' each")
    classifier_batch_size: int = Field(_DOMAIN["batch_size"], gt=0)
    classifier_lr: float = Field(_DOMAIN["lr"], gt=0)
    classifier_val_every: int = Field(_DOMAIN["val_every"], gt=0, description="steps between held-out log-losses "
                                      "of the classifiers")
    classifier_patience: int = Field(_DOMAIN["patience"], ge=0, description="held-out log-losses without "
                                     "improvement before a classifier stops; 0 disables early stopping")
    refine_steps: int = Field(_TGDP["refine_steps"], ge=0, description="time_classifier: steps of BCE + η₂ · "
                              "consistency after the fit")
    fade: bool = Field(_TGDP["fade"], description="no guidance below the t where held-out c' separates the domains "
                       "(AUROC ≥ near_perfect_auroc)")
    near_perfect_auroc: float = Field(_TGDP["near_perfect_auroc"], gt=0.5, le=1)
    guidance_steps: int = Field(_GUIDANCE["steps"], gt=0, description="regression: at most, for h_ψ")
    guidance_batch_size: int = Field(_GUIDANCE["batch_size"], gt=0)
    guidance_lr: float = Field(_GUIDANCE["lr"], gt=0)
    eta_cycle: float = Field(_GUIDANCE["eta_cycle"], ge=0, description="η₁, weight of the cycle regularizer; 0 "
                             "switches it off")
    eta_consistency: float = Field(_GUIDANCE["eta_consistency"], ge=0, description="η₂, weight of the consistency "
                                   "regularizer; 0 switches it off")
    ratio_normalization: Literal["clip", "self_normalize"] = _TGDP["ratio_normalization"]
    r_min: float = Field(_GUIDANCE["r_min"], gt=0)
    r_max: float = Field(_GUIDANCE["r_max"], gt=0)
    val_every: int = Field(_GUIDANCE["val_every"], gt=0)
    patience: int = Field(_GUIDANCE["patience"], ge=0, description="validations without improvement of the "
                          "held-out consistency loss")
    transfer_scale: float = Field(1.0, description="w in ε_θ − w f(t) σ_t ∇ log h (1 in theory); applied at "
                                  "sampling, so changing it trains nothing")


TRANSFER_METHODS = ("source_only", "target_only", "finetune", "finetune_partial", "domain_guidance", "tgdp")


class TransferConfig(_Strict):
    """The `transfer` stage: which methods to run and their settings."""

    methods: list[Literal[TRANSFER_METHODS]] = ["tgdp", "finetune", "target_only"]
    finetune: TrainConfig = Field(TrainConfig(steps=2000, lr=5e-5, warmup_steps=50, ema_decay=0.995, val_every=100,
                                              checkpoint_every=100, early_stopping_patience=5),
                                  description="finetune and finetune_partial: from the source EMA weights at a low "
                                  "learning rate, early stopped on the target val loss; a short run needs a fast EMA")
    target_only: TrainConfig = TrainConfig(steps=3000, warmup_steps=200, val_every=250, checkpoint_every=500,
                                           early_stopping_patience=6)
    domain_guidance_scale: float = Field(1.5, description="w in ε_src + w (ε_ft − ε_src)")
    tgdp: TGDPConfig = TGDPConfig()
    max_val_windows: int = Field(4000, gt=0, description="target val windows for early stopping: a seeded random "
                                 "subset when there are more (a validation pass over 60k svdb beats took 40 s)")


class EvaluationConfig(_Strict):
    """The `sample` and `evaluate` stages (DESIGN §7)."""

    samples_per_class: int = Field(500, gt=0, description="synthetic windows per class, the same for every method")
    sampler: Literal["dpmpp_sde", "dpmpp", "ddim", "ddpm"] = "dpmpp_sde"
    sampling_steps: int = Field(25, gt=0)
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="downstream classifier seeds per arm")
    classifier_training: ClassifierTraining = Field(ClassifierTraining(), description="the downstream classifier's "
                                                    "training (models.classifier.ClassifierTraining); seeds above")
    max_val_windows: int = Field(4000, gt=0, description="target val windows for the classifiers' early stopping: a "
                                 "seeded random subset when there are more (as transfer.max_val_windows)")
    classifier: str = Field("ecg-tgdp", description="downstream classifier of the utility arms: 'ecg-tgdp' (the "
                            "project's) or 'package.module:callable' returning a scikit-learn estimator or a torch "
                            "nn.Module (see evaluation/downstream.py)")
    transfer_scales: list[float] = Field([], description="sweep: guidance weights w at which TGDP and domain "
                                         "guidance are sampled again and scored (utility vs w; trains nothing)")
    budgets: list[int] = Field([], description="sweep: labeled target train windows (class-proportional subsets) "
                               "the downstream classifier is trained with, real alone and with each method's "
                               "samples (utility vs target size; the generators stay those of the full budget)")
    bootstrap: int = Field(200, gt=0, description="resamples of the test patients")
    memorization_percentile: float = Field(5.0, gt=0, lt=100)

    def sampling(self) -> dict:
        """The settings that decide the synthetic windows (the sample stage's cache key)."""
        return self.model_dump(include={"samples_per_class", "sampler", "sampling_steps"})


class Config(_Strict):
    """One run: the cohorts and every stage's settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    data_root: Path = Field(default_factory=default_data_root, description="folder holding PhysioNet databases "
                            "(relative to the working directory); unset: $ECG_TGDP_DATA_ROOT, else the user folder")
    workers: int = Field(0, ge=0, description="worker processes for ingest; 0 means one per CPU core")
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    windows: WindowConfig = WindowConfig()
    source: CohortConfig
    target: CohortConfig
    source_model: SourceModelConfig = SourceModelConfig()
    transfer: TransferConfig = TransferConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    def cohorts(self) -> dict[str, CohortConfig]:
        return {"source": self.source, "target": self.target}

    @model_validator(mode="after")
    def _one_seed(self) -> Config:
        """The run's `seed` seeds every stage: a seed inside a library section would be silently replaced."""
        sections = {"source_model.training": self.source_model.training, "transfer.finetune": self.transfer.finetune,
                    "transfer.target_only": self.transfer.target_only,
                    "evaluation.classifier_training": self.evaluation.classifier_training}
        seeded = [name for name, section in sections.items() if section.seed != 0]
        if seeded:
            raise ValueError(f"{', '.join(f'{name}.seed' for name in seeded)}: set the run's top-level `seed` "
                             "instead (it seeds every stage; evaluation.seeds seeds the classifiers)")
        return self

    def section_hash(self, *keys: str) -> str:
        """Stable hash of some top-level config entries, for stage caching."""
        payload = self.model_dump(mode="json", include=set(keys))
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a TOML config, apply `section.key=value` overrides, and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return config_from_dict(raw, overrides, str(path))


def config_from_dict(raw: dict, overrides: list[str] | tuple[str, ...], origin: str) -> Config:
    """Apply `section.key=value` overrides to a raw config dict and validate it; errors name `origin`."""
    for override in overrides:
        apply_override(raw, override)
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {_describe(error)}") from None


def apply_override(raw: dict, override: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as TOML, else taken as a string."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override!r}: {part!r} is not a table")
    node[leaf] = value


def dump_config(config: Config) -> str:
    """The resolved config as TOML, exactly what ran."""
    import tomli_w

    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True))


def _describe(error: ValidationError) -> str:
    """One line per problem, naming the dotted key."""
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            problems.append(f"unknown key {key!r}")
        elif item["type"] == "missing":
            problems.append(f"missing key {key!r}")
        else:
            problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(problems)
