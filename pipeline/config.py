"""Typed run configuration: TOML in, validated models out, unknown keys rejected by name."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecg_tgdp.data.simulation_spec import CohortShift, SimulationSpec
from ecg_tgdp.evaluation.settings import EvaluationSettings
from ecg_tgdp.models.settings import (
    TRANSFER_METHODS,
    DomainGuidanceSettings,
    ScheduleSettings,
    TGDPSettings,
    TrainConfig,
    TransferSettings,
    UNetConfig,
)

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
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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

    @field_validator("classes")
    @classmethod
    def _classes_once(cls, classes: list[str]) -> list[str]:
        twice = sorted({name for name in classes if classes.count(name) > 1})
        if twice:
            raise ValueError(f"class {', '.join(twice)} named more than once; each class is one label index")
        return classes

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


class SourceModelConfig(_Strict):
    """The source diffusion model: a shipped pretrained checkpoint, or one trained here. Its tables are the library's
    settings: `model` models.settings.UNetConfig (leads, num_classes and anchor come from the source cohort),
    `schedule` ScheduleSettings, `training` TrainConfig (its seed is the run's)."""

    pretrained: Path | None = Field(None, description="checkpoint to use instead of training: a shipped model's name "
                                    "(models/pretrained/<name>) or a path; '' trains anew")
    model: UNetConfig = Field(default_factory=UNetConfig)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    training: TrainConfig = Field(default_factory=TrainConfig)
    anchor_channel: bool = Field(True, description="beat windows: mark the labeled beat with an input channel (the "
                                 "network then knows which of the window's beats the class is about)")
    selection: Literal["samples", "val_loss"] = Field(
        "samples", description="which validation's EMA weights are kept: 'samples' (those whose samples a "
        "discriminator tells least well from training windows; README: The source diffusion model) or 'val_loss'")
    selection_windows_per_class: int = Field(64, gt=9, description="'samples': windows per class drawn at each "
                                             "validation")

    @field_validator("pretrained", mode="before")
    @classmethod
    def _empty_means_none(cls, value):
        return None if value == "" else value

    @field_validator("model", mode="before")
    @classmethod
    def _cohort_decides(cls, value):
        given = sorted(set(value) & set(COHORT_NETWORK_KEYS)) if isinstance(value, dict) else []
        if given:
            raise ValueError(f"{', '.join(given)} come from the source cohort (its leads, classes and anchor); "
                             "leave them out")
        return value

    def unet(self, leads: int, num_classes: int, anchor: float | None) -> UNetConfig:
        """The network for a cohort of `leads` leads and `num_classes` classes, its labeled beat at `anchor` (a
        fraction of the window; None for record crops)."""
        return replace(self.model, leads=leads, num_classes=num_classes,
                       anchor=anchor if self.anchor_channel else None)


COHORT_NETWORK_KEYS = ("leads", "num_classes", "anchor")  # UNetConfig fields the source cohort decides


class TransferConfig(_Strict):
    """The `transfer` stage: which methods to run and their settings, each table typed by the library's dataclass
    (models.settings.TransferSettings: finetune and target_only are TrainConfig, tgdp TGDPSettings with its
    time_domain, domain and guidance tables, domain_guidance DomainGuidanceSettings)."""

    methods: list[Literal[TRANSFER_METHODS]] = ["tgdp", "finetune", "target_only"]
    finetune: TrainConfig = Field(default_factory=lambda: TransferSettings().finetune, description="finetune and "
                                  "finetune_partial")
    target_only: TrainConfig = Field(default_factory=lambda: TransferSettings().target_only)
    tgdp: TGDPSettings = Field(default_factory=TGDPSettings)
    domain_guidance: DomainGuidanceSettings = Field(default_factory=DomainGuidanceSettings)
    max_val_windows: int = Field(4000, gt=0, description="target val windows for early stopping: a seeded random "
                                 "subset when there are more (a validation pass over 60k svdb beats took 40 s)")

    def settings(self) -> TransferSettings:
        """What `models.transfer.fit_transfer` takes."""
        return TransferSettings(self.finetune, self.target_only, self.tgdp, self.domain_guidance)


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
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)

    def cohorts(self) -> dict[str, CohortConfig]:
        return {"source": self.source, "target": self.target}

    @model_validator(mode="after")
    def _one_lead_count(self) -> Config:
        """One network serves both cohorts (its channels are the leads), so they must read as many leads."""
        if len(self.source.leads) != len(self.target.leads):
            raise ValueError(f"source.leads names {len(self.source.leads)} leads {self.source.leads}, target.leads "
                             f"{len(self.target.leads)} {self.target.leads}: one model generates both cohorts' "
                             "windows, so give both as many leads (by name, in the same order of meaning)")
        return self

    @model_validator(mode="after")
    def _one_seed(self) -> Config:
        """The run's `seed` seeds every stage: a seed inside a library section would be silently replaced."""
        sections = {"source_model.training": self.source_model.training, "transfer.finetune": self.transfer.finetune,
                    "transfer.target_only": self.transfer.target_only,
                    "transfer.tgdp.time_domain": self.transfer.tgdp.time_domain,
                    "transfer.tgdp.domain": self.transfer.tgdp.domain,
                    "transfer.tgdp.guidance": self.transfer.tgdp.guidance,
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


# keys of earlier config versions → what replaced them (a config naming one fails with a line saying so)
RENAMED_KEYS = {
    "source_model.model.schedule": "source_model.schedule.kind",
    "source_model.model.num_steps": "source_model.schedule.num_steps",
    "source_model.model.anchor_channel": "source_model.anchor_channel",
    "transfer.domain_guidance_scale": "transfer.domain_guidance.transfer_scale",
    **{f"transfer.tgdp.classifier_{key}": f"transfer.tgdp.time_domain.{key} (and transfer.tgdp.domain.{key} for "
       "the regression estimator's clean-window classifier)" for key in ("steps", "batch_size", "lr", "val_every",
                                                                          "patience")},
    **{f"transfer.tgdp.guidance_{key}": f"transfer.tgdp.guidance.{key}" for key in ("steps", "batch_size", "lr")},
    **{f"transfer.tgdp.{key}": f"transfer.tgdp.guidance.{key}" for key in ("eta_cycle", "eta_consistency", "r_min",
                                                                            "r_max", "val_every", "patience")},
}


def config_from_dict(raw: dict, overrides: list[str] | tuple[str, ...], origin: str) -> Config:
    """Apply `section.key=value` overrides to a raw config dict and validate it; errors name `origin`."""
    for override in overrides:
        apply_override(raw, override)
    renamed = [f"{old} is now {new}" for old, new in RENAMED_KEYS.items() if _has_key(raw, old)]
    if renamed:
        raise ConfigError(f"{origin}: renamed keys: {'; '.join(renamed)}")
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


def _has_key(raw: dict, dotted: str) -> bool:
    *parents, leaf = dotted.split(".")
    for part in parents:
        raw = raw.get(part)
        if not isinstance(raw, dict):
            return False
    return leaf in raw


def dump_config(config: Config) -> str:
    """The resolved config as TOML, exactly what ran."""
    import tomli_w

    cohort_decides = {"source_model": {"model": set(COHORT_NETWORK_KEYS)}}
    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True, exclude=cohort_decides))


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
