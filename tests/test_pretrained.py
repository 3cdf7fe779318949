"""The shipped pretrained MIT-BIH source model loads from its file alone and samples labeled windows."""
from __future__ import annotations

import numpy as np
import pytest

from models.generate import DiffusionModel, generate
from pipeline.config import load_config
from tests.conftest import REPO

PRETRAINED = REPO / "models/pretrained/mitdb_nsv_128hz"


def test_recipe_points_at_the_shipped_model():
    config = load_config(REPO / "configs/mitdb_to_svdb.toml")
    assert config.source_model.pretrained == PRETRAINED.relative_to(REPO) / "model.pt"
    assert (PRETRAINED / "model.pt").is_file() and (PRETRAINED / "MODEL_CARD.md").is_file()


def test_pretrained_model_samples_finite_windows_of_every_class():
    model = DiffusionModel.load(PRETRAINED / "model.pt")
    assert model.classes == ["N", "S", "V"] and model.extra["leads"] == ["MLII"] and model.extra["fs_hz"] == 128.0
    labels = np.repeat([0, 1, 2], 8)
    windows = model.to_mv(generate(model.denoiser(), model.schedule, labels, (1, 128), steps=25, seed=0))
    assert windows.shape == (24, 1, 128) and np.isfinite(windows).all()
    # of ECG size in mV (a sampler started at t = T-1 gave std ~200 mV), with the beat at the centre
    assert 0.05 < windows.std() < 1.5
    centre, edges = np.abs(windows[:, 0, 54:74]).max(axis=1), np.abs(windows[:, 0, 20:40]).max(axis=1)
    assert np.median(centre) > 1.5 * np.median(edges)
    # the largest deflection within 80 ms of the centre (a model without the position channel placed it anywhere)
    peaks = np.abs(windows[:, 0] - np.median(windows[:, 0], axis=1, keepdims=True)).argmax(axis=1)
    assert (np.abs(peaks - 64) <= 10).mean() >= 0.8


@pytest.mark.parametrize("missing", ["ema", "extra"])
def test_a_file_without_weights_or_description_is_refused(tmp_path, missing):
    import torch

    from models.checkpoint import CheckpointError

    payload = torch.load(PRETRAINED / "model.pt", weights_only=True)
    del payload[missing]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="not a diffusion checkpoint"):
        DiffusionModel.load(tmp_path / "broken.pt")
