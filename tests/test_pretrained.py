"""The shipped pretrained MIT-BIH source model loads from its file alone and samples labeled windows."""
from __future__ import annotations

import numpy as np
import pytest

from ecg_tgdp.data.rhythm import detect_r_peaks
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.pipeline.config import load_config
from ecg_tgdp.pipeline.shipped import SHIPPED_SOURCE_MODEL, pretrained_path
from tests.conftest import REPO

PRETRAINED = REPO / "models/pretrained/mitdb_nsv_4s_v3"


def test_recipe_names_the_shipped_model_and_it_is_found_by_name():
    config = load_config(REPO / "configs/mitdb_to_svdb.toml")
    assert str(config.source_model.pretrained) == PRETRAINED.name
    assert pretrained_path(PRETRAINED.name) == PRETRAINED / "model.pt" == SHIPPED_SOURCE_MODEL
    assert (PRETRAINED / "model.pt").is_file() and (PRETRAINED / "MODEL_CARD.md").is_file()


def test_the_lead_shift_recipe_adopts_the_ds1_model_shipped_for_it():
    config = load_config(REPO / "configs/mitdb_ds1_to_ds2_v1.toml")
    path = pretrained_path(config.source_model.pretrained)
    assert path == REPO / "models/pretrained/mitdb_ds1_nsv_4s_v3/model.pt" and (path.parent / "MODEL_CARD.md").is_file()
    model = DiffusionModel.load(path)
    card = model.card
    assert list(card.classes) == ["N", "S", "V"]
    assert model.net.config.rhythm_channel == config.source_model.model.rhythm_channel
    assert card.leads == ("MLII",) and card.fs_hz == config.windows.fs_hz and card.window_s == config.windows.window_s


def test_pretrained_model_samples_beat_windows_of_every_class_on_the_rhythm_it_is_given():
    model = DiffusionModel.load(PRETRAINED / "model.pt")
    card = model.card
    assert model.classes == ["N", "S", "V"] and card.leads == ("MLII",) and card.fs_hz == 128.0
    assert card.window_s == 4.0 and card.anchor_s == 2.0 and card.unet["anchor"] == 0.5
    assert 7 < card.clip_x0 < 15  # 1.5 × the 99.9th percentile of |x| of its normalized training windows
    assert model.net.config.rhythm_channel and {len(card.rhythm_bank[name]) for name in model.classes} == {2000}
    labels = np.repeat([0, 1, 2], 8)
    beats = card.rhythms().draw(labels, model.classes, seed=0)
    windows = model.sample_mv(labels, steps=25, seed=0, beats=beats)
    assert windows.shape == (24, 1, 512) and np.isfinite(windows).all()
    assert 0.05 < windows.std() < 1.5  # of ECG size in mV (a sampler started at t = T-1 gave std ~200 mV)
    # a QRS complex at the anchor, and every beat of the rhythm drawn where the rhythm put it
    peaks = [detect_r_peaks(window[0], 128.0) for window in windows]
    assert np.mean([np.abs(p - 256).min() <= 13 if len(p) else False for p in peaks]) >= 0.8
    found = [np.abs(p[:, None] - b[None]).min(axis=0) <= 6 for p, b in zip(peaks, beats) if len(p)]
    assert np.mean(np.concatenate(found)) >= 0.8  # within 50 ms


@pytest.mark.parametrize("missing", ["ema", "card"])
def test_a_file_without_weights_or_description_is_refused(tmp_path, missing):
    import torch

    from ecg_tgdp.models.checkpoint import CheckpointError

    payload = torch.load(PRETRAINED / "model.pt", weights_only=True)
    del payload[missing]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="not a diffusion model file"):
        DiffusionModel.load(tmp_path / "broken.pt")
