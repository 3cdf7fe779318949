"""Config models: every shipped recipe loads; unknown keys and bad values are named."""
from __future__ import annotations

from pathlib import Path

import pytest

from ecg_tgdp.pipeline.config import ConfigError, EvaluationConfig, config_from_dict, default_data_root, dump_config, load_config
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


def test_config_sampler_names_are_the_samplers_models_provide():
    # config.py spells the names out so that loading a config does not import torch
    from typing import get_args

    from ecg_tgdp.models.samplers import SAMPLERS
    from ecg_tgdp.pipeline.config import EvaluationConfig

    assert set(get_args(EvaluationConfig.model_fields["sampler"].annotation)) == set(SAMPLERS)


def test_config_sections_are_the_library_settings_and_share_their_defaults():
    """One source of truth per setting (STYLE 13): sections that are library dataclasses take their defaults from
    them; the flat views (U-Net shape, TGDP, simulation) read theirs from the library."""
    from dataclasses import fields

    from ecg_tgdp.data.simulation_spec import SimulationSpec
    from ecg_tgdp.models.settings import ClassifierTraining, DomainTraining, GuidanceTraining, TrainConfig, UNetConfig
    from ecg_tgdp.pipeline.config import DiffusionModelConfig, SimulationConfig, SourceModelConfig, TGDPConfig

    assert SourceModelConfig().training == TrainConfig()
    assert EvaluationConfig().classifier_training == ClassifierTraining()
    unet = {spec.name: spec.default for spec in fields(UNetConfig)}
    for name, value in DiffusionModelConfig().model_dump().items():
        if name in unet:
            assert value == (list(unet[name]) if isinstance(unet[name], tuple) else unet[name]), name
    tgdp = TGDPConfig()
    assert (tgdp.classifier_steps, tgdp.classifier_patience) == (DomainTraining.steps, DomainTraining.patience)
    assert (tgdp.guidance_steps, tgdp.patience, tgdp.eta_cycle) == (
        GuidanceTraining.steps, GuidanceTraining.patience, GuidanceTraining.eta_cycle)
    sim = SimulationConfig(n_patients=2, duration_s=10, fs_hz=100)
    assert sim.spec() == SimulationSpec(n_patients=2, duration_s=10, fs_hz=100)


def test_a_library_section_rejects_unknown_keys_and_a_seed_of_its_own():
    raw = {"name": "x", "source": {"format": "wfdb", "database": "a"}, "target": {"format": "wfdb", "database": "b"}}
    with pytest.raises(ConfigError, match="unknown key 'source_model.training.stepz'"):
        config_from_dict({**raw, "source_model": {"training": {"stepz": 3}}}, [], "test.toml")
    with pytest.raises(ConfigError, match="source_model.training.seed: set the run's top-level `seed`"):
        config_from_dict({**raw, "source_model": {"training": {"seed": 3}}}, [], "test.toml")
    with pytest.raises(ConfigError, match="steps, batch_size"):
        config_from_dict({**raw, "transfer": {"finetune": {"steps": 0}}}, [], "test.toml")
