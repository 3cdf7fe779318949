"""Config models: every shipped recipe loads; unknown keys and bad values are named."""
from __future__ import annotations

from pathlib import Path

import pytest

from ecg_tgdp.pipeline.config import ConfigError, config_from_dict, default_data_root, dump_config, load_config
from ecg_tgdp.pipeline.shipped import recipe_names, recipe_path
from tests.conftest import REPO

RECIPES = sorted((REPO / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_config_loads_by_name_and_by_path_and_round_trips(path, tmp_path):
    config = load_config(path)
    assert config.name == path.stem
    assert recipe_path(path.stem).resolve() == path.resolve() and load_config(recipe_path(path.stem)) == config
    assert load_config(recipe_path(str(path))) == config
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(dump_config(config))
    assert load_config(resolved) == config


def test_every_recipe_in_configs_is_shipped_by_name():
    assert recipe_names() == [p.stem for p in RECIPES]
    assert set(recipe_names()) >= {"quickstart", "mitdb_to_svdb", "ptbxl_device_shift"}


def test_a_path_is_taken_as_a_path_even_when_missing(tmp_path):
    assert recipe_path("my/quickstart") == Path("my/quickstart")
    assert recipe_path("elsewhere.toml") == Path("elsewhere.toml")
    with pytest.raises(ConfigError, match="'nosuch' is neither a shipped recipe"):
        recipe_path("nosuch")


def test_data_root_comes_from_the_config_else_the_environment_else_the_user_folder(tmp_path, monkeypatch):
    recipe = REPO / "configs/mitdb_to_svdb.toml"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ECG_TGDP_DATA_ROOT", raising=False)
    assert load_config(recipe).data_root == tmp_path / "xdg" / "ecg-tgdp" / "physionet" == default_data_root()
    monkeypatch.setenv("ECG_TGDP_DATA_ROOT", str(tmp_path / "env"))
    assert load_config(recipe).data_root == tmp_path / "env"
    assert load_config(recipe, [f"data_root='{tmp_path / 'set'}'"]).data_root == tmp_path / "set"


def test_misspelled_key_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text((REPO / "configs/quickstart.toml").read_text().replace("leads = [", "lead = [", 1))
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key 'source\.lead'"):
        load_config(path)


def test_overrides_set_nested_values_and_are_validated():
    config = load_config(REPO / "configs/quickstart.toml", ["windows.fs_hz=250", "target.split.train_patients=4", "name=tiny"])
    assert (config.windows.fs_hz, config.target.split.train_patients, config.name) == (250.0, 4, "tiny")
    with pytest.raises(ConfigError, match="unknown key 'windows.fs'"):
        load_config(REPO / "configs/quickstart.toml", ["windows.fs=250"])
    with pytest.raises(ConfigError, match=r"windows\.fs_hz: Input should be greater than 0"):
        load_config(REPO / "configs/quickstart.toml", ["windows.fs_hz=-1"])


def test_missing_file_and_broken_toml(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_config(broken)


def test_sampler_names_are_written_once_and_are_the_samplers_models_provide():
    from ecg_tgdp.models import samplers
    from ecg_tgdp.models.settings import DEFAULT_SAMPLER, SAMPLER_NAMES

    assert tuple(samplers._SAMPLERS) == samplers.SAMPLERS == SAMPLER_NAMES and DEFAULT_SAMPLER in SAMPLER_NAMES
    with pytest.raises(ConfigError, match="sampler must be one of"):
        load_config(REPO / "configs/quickstart.toml", ["evaluation.sampler='euler'"])


def _library_fields(model, prefix: str = ""):
    """(dotted key, default) of every field of every library dataclass a config section is typed by."""
    import dataclasses

    from pydantic import BaseModel

    if isinstance(model, type) and issubclass(model, BaseModel):
        for name, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and (dataclasses.is_dataclass(kind) or issubclass(kind, BaseModel)):
                yield from _library_fields(kind, f"{prefix}{name}.")
        return
    for spec in dataclasses.fields(model):
        kind = spec.type if isinstance(spec.type, type) else None
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        if dataclasses.is_dataclass(default):
            yield from _library_fields(type(default), f"{prefix}{spec.name}.")
        else:
            yield f"{prefix}{spec.name}", default, kind


def test_every_library_setting_is_settable_from_a_config():
    """The config is the library's settings (one source of truth, STYLE 13): every field of every dataclass a
    section is typed by can be set by its dotted key, and reads back as set."""
    import tomli_w

    from ecg_tgdp.pipeline.config import Config

    decided_by_the_cohort = {"source_model.model.leads", "source_model.model.num_classes", "source_model.model.anchor"}
    keys = list(_library_fields(Config))
    assert len(keys) > 90 and {"transfer.tgdp.guidance.grad_clip", "transfer.tgdp.time_domain.min_lr_ratio",
                               "transfer.tgdp.bands", "source_model.training.min_snr_gamma",
                               "source_model.model.prediction", "evaluation.classifier_training.noise"} <= {
        key for key, _, _ in keys}
    for key, default, _ in keys:
        if key in decided_by_the_cohort or default is None:
            continue
        value = list(default) if isinstance(default, tuple) else default
        text = tomli_w.dumps({"v": value}).partition("=")[2].strip()
        config = load_config(REPO / "configs/quickstart.toml", [f"{key}={text}"])
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        assert (list(node) if isinstance(node, tuple) else node) == value, key
    with pytest.raises(ConfigError, match="leads come from the source cohort"):
        load_config(REPO / "configs/quickstart.toml", ["source_model.model.leads=2"])


def test_renamed_keys_fail_with_a_line_naming_the_new_key():
    from ecg_tgdp.pipeline.config import RENAMED_KEYS

    for old, new in RENAMED_KEYS.items():
        with pytest.raises(ConfigError, match=f"{old} is now {new.split()[0]}"):
            load_config(REPO / "configs/quickstart.toml", [f"{old}=1"])


@pytest.mark.parametrize("override", ["transfer.tgdp.transfer_scale=nan", "evaluation.transfer_scales=[inf]",
                                      "source_model.training.lr=nan", "windows.fs_hz=inf",
                                      "transfer.tgdp.time_domain.lr=-inf", "evaluation.memorization_percentile=nan"])
def test_nan_and_infinity_are_refused_where_they_enter(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[-1]):
        load_config(REPO / "configs/quickstart.toml", [override])


def test_a_library_section_rejects_unknown_keys_and_a_seed_of_its_own():
    raw = {"name": "x", "source": {"format": "wfdb", "database": "a"}, "target": {"format": "wfdb", "database": "b"}}
    with pytest.raises(ConfigError, match="unknown key 'source_model.training.stepz'"):
        config_from_dict({**raw, "source_model": {"training": {"stepz": 3}}}, [], "test.toml")
    with pytest.raises(ConfigError, match="source_model.training.seed: set the run's top-level `seed`"):
        config_from_dict({**raw, "source_model": {"training": {"seed": 3}}}, [], "test.toml")
    with pytest.raises(ConfigError, match="steps, batch_size"):
        config_from_dict({**raw, "transfer": {"finetune": {"steps": 0}}}, [], "test.toml")


def test_a_class_named_twice_is_a_config_error():
    with pytest.raises(ConfigError, match="class N named more than once"):
        load_config(REPO / "configs/quickstart.toml", ["windows.classes=['N','N','V']"])


def test_source_and_target_with_different_lead_counts_are_refused_at_load():
    with pytest.raises(ConfigError, match="source.leads names 1 leads .* target.leads 4"):
        load_config(REPO / "configs/quickstart.toml", ["target.leads=['I','II','V1','V2']"])
