"""What the package ships besides code: the recipes in configs/, found by name, and the pretrained source model."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ecg_tgdp.pipeline.config import ConfigError

SHIPPED_MODEL_NAME = "mitdb_nsv_4s_v3"
SHIPPED_SOURCE_MODEL = Path(str(resources.files("ecg_tgdp.models") / "pretrained" / SHIPPED_MODEL_NAME / "model.pt"))


def shipped_models() -> list[str]:
    """Names of the shipped pretrained models (models/pretrained/<name>/model.pt)."""
    folder = resources.files("ecg_tgdp.models") / "pretrained"
    return sorted(entry.name for entry in folder.iterdir() if (entry / "model.pt").is_file())


def pretrained_path(name_or_path: Path | str) -> Path:
    """A checkpoint path as given when it exists, else the shipped model of that name (`mitdb_nsv_4s_v3`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in shipped_models():
        return Path(str(resources.files("ecg_tgdp.models") / "pretrained" / str(name_or_path) / "model.pt"))
    raise ConfigError(f"source model {name_or_path}: neither a checkpoint file nor a shipped model "
                      f"({', '.join(shipped_models())})")


def recipe_names() -> list[str]:
    """Names of the shipped recipes (configs/<name>.toml)."""
    return sorted(entry.name.removesuffix(".toml") for entry in resources.files("ecg_tgdp.configs").iterdir()
                  if entry.name.endswith(".toml"))


def recipe_path(name_or_path: str) -> Path:
    """The shipped recipe `name_or_path` (`quickstart`), or the path as given when it names a file or looks like one."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or len(path.parts) > 1 or path.is_file():
        return path
    if name_or_path not in recipe_names():
        raise ConfigError(f"{name_or_path!r} is neither a shipped recipe ({', '.join(recipe_names())}) nor a file; "
                          "give a recipe name or the path of a TOML config")
    return Path(str(resources.files("ecg_tgdp.configs") / f"{name_or_path}.toml"))
