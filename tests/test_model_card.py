"""The model card: a checkpoint rebuilds exactly what was trained, and a card that does not fit is refused by name."""
from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from ecg_tgdp.models.checkpoint import CheckpointError, save_checkpoint
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.models.model_card import ModelCard, ModelCardError
from ecg_tgdp.models.model_file import ModelFile
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.unet import UNet1D, UNetConfig


def _card(schedule: NoiseSchedule, **changes) -> ModelCard:
    unet = UNetConfig(leads=1, num_classes=3, base_channels=8, channel_mults=(1, 2), anchor=0.5)
    card = ModelCard(classes=["N", "S", "V"], leads=["MLII"], fs_hz=128.0, window_s=1.0, anchor_s=0.5,
                     normalization={"mean": [0.0], "std": [0.3], "fit_on": "source/train"},
                     unet={**asdict(unet), "channel_mults": list(unet.channel_mults)}, schedule=schedule.card())
    return card.updated(**changes)


def test_a_non_default_schedule_and_the_card_survive_a_reload(tmp_path):
    schedule = NoiseSchedule.linear(200, beta_start=2e-4, beta_end=0.03)
    card = _card(schedule, method="tgdp", target="svdb")
    path = ModelFile(card, UNet1D(card.unet_config()).state_dict(), step=7).save(tmp_path / "model.pt")
    assert ModelFile.load(path).step == 7 and ModelFile.load(path).card == card
    model = DiffusionModel.load(path)
    assert model.card == card and model.card.built_by["torch"] == torch.__version__
    torch.testing.assert_close(model.schedule.alphas_cumprod, schedule.alphas_cumprod, rtol=0, atol=0)
    assert model.schedule.card() == {"kind": "linear", "num_steps": 200, "beta_start": 2e-4, "beta_end": 0.03}
    assert model.window_shape == (1, 128) and model.net.config.anchor == 0.5


def test_an_unknown_or_missing_card_key_is_named(tmp_path):
    card = _card(NoiseSchedule.cosine(50)).to_dict()
    with pytest.raises(ModelCardError, match=r"unknown keys \['guidance_scale'\]"):
        ModelCard.from_dict({**card, "guidance_scale": 2.0})
    del card["fs_hz"]
    with pytest.raises(ModelCardError, match=r"lacks \['fs_hz'\]"):
        ModelCard.from_dict(card)
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"ema": {}, "extra": {"classes": ["N"]}})
    with pytest.raises(CheckpointError, match=r"missing \['card'\]"):
        DiffusionModel.load(path)


def test_normalization_must_cover_every_lead():
    with pytest.raises(ModelCardError, match="1 means for 2 leads"):
        _card(NoiseSchedule.cosine(50)).updated(leads=["I", "II"])


def test_an_older_card_with_a_stored_guidance_weight_still_loads(tmp_path):
    """w is asked for at sampling now; a card written when it was stored loads, the stored value ignored."""
    card = _card(NoiseSchedule.cosine(50), method="tgdp")
    assert ModelCard.from_dict({**card.to_dict(), "transfer_scale": 2.0}) == card


def test_a_model_file_with_a_damaged_guidance_entry_is_refused_by_name(tmp_path):
    card = _card(NoiseSchedule.cosine(50))
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"ema": {"weights": {}}, "card": card.to_dict(), "guidance": {"estimator": "x"}})
    with pytest.raises(CheckpointError, match="model.pt: a damaged model file"):
        ModelFile.load(path)
