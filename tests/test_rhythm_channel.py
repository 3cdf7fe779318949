"""The rhythm channel: R-peak markers in, beats where they mark; the bank of real rhythms a model samples with."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from ecg_tgdp.data.rhythm import window_beats
from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.models.model_card import ModelCard, ModelCardError
from ecg_tgdp.models.model_file import ModelFile
from ecg_tgdp.models.rhythm import RhythmBank, beat_markers, with_rhythm
from ecg_tgdp.models.samplers import classifier_free_guidance
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.training import train_diffusion
from ecg_tgdp.models.settings import TrainConfig
from ecg_tgdp.models.unet import UNet1D, UNetConfig

SCHEDULE = NoiseSchedule.cosine(50)
RHYTHM_UNET = UNetConfig(base_channels=8, channel_mults=(1, 2), anchor=0.5, rhythm_channel=True, prediction="v")


def _card(**changes) -> ModelCard:
    unet = {**asdict(RHYTHM_UNET), "channel_mults": list(RHYTHM_UNET.channel_mults)}
    bank = {"N": [[20, 64, 108]], "S": [[30, 64, 90]], "V": [[64]]}
    card = ModelCard(classes=["N", "S", "V"], leads=["MLII"], fs_hz=32.0, window_s=4.0, anchor_s=2.0,
                     normalization={"mean": [0.0], "std": [1.0], "fit_on": "source/train"}, unet=unet,
                     schedule=SCHEDULE.card(), rhythm_bank=bank)
    return card.updated(**changes)


def test_markers_are_one_at_every_beat_and_zero_without_beats():
    markers = beat_markers([np.array([10, 40]), np.array([], dtype=int), np.array([12, 14])], 64, width=2.0)
    assert markers.shape == (3, 64) and markers.dtype == torch.float32
    assert markers[0, 10] == 1 and markers[0, 40] == 1 and markers[0, 25] < 1e-6
    assert torch.all(markers[1] == 0)
    assert markers[2].max() == 1  # overlapping bumps: their maximum, not their sum


def test_the_bank_keeps_at_most_per_class_rhythms_and_draws_from_the_labels_class():
    beats = [np.array([i, 64]) for i in range(10)]
    labels = np.array([0] * 7 + [1] * 3)
    bank = RhythmBank.from_windows(beats, labels, ["N", "S"], per_class=4, seed=0)
    assert len(bank.rhythms["N"]) == 4 and len(bank.rhythms["S"]) == 3
    assert all(rhythm[0] < 7 for rhythm in bank.rhythms["N"]) and all(r[0] >= 7 for r in bank.rhythms["S"])
    drawn = bank.draw(np.array([1, 1, 0]), ["N", "S"], seed=5)
    assert [list(d) for d in drawn] == [list(d) for d in bank.draw(np.array([1, 1, 0]), ["N", "S"], seed=5)]
    assert drawn[0][0] >= 7 and drawn[2][0] < 7
    with pytest.raises(ValueError, match=r"no rhythm of class \['V'\]"):
        RhythmBank({"N": [[1]], "V": []})


def test_the_rhythm_channel_lets_the_network_put_a_beat_where_it_is_told():
    """Blank input, target: a bump at each marked beat (random positions): learnable only from the markers."""
    torch.manual_seed(0)
    model = UNet1D(RHYTHM_UNET, SCHEDULE)
    generator = torch.Generator().manual_seed(0)
    x, t, y = torch.zeros(8, 1, 128), torch.full((8,), 25), torch.zeros(8, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        beats = [torch.randint(128, (3,), generator=generator).numpy() for _ in range(8)]
        markers = beat_markers(beats, 128, width=2.0)
        loss = (model(x, t, y, raw=True, rhythm=markers) - markers[:, None]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (loss / markers.pow(2).mean()).item() < 0.2  # 1 = nothing learned


def test_a_rhythm_network_needs_markers_and_another_takes_none():
    x, t, y = torch.zeros(2, 1, 64), torch.tensor([1, 2]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="has a rhythm channel"):
        UNet1D(RHYTHM_UNET, SCHEDULE)(x, t, y)
    with pytest.raises(ValueError, match="has no rhythm channel"):
        UNet1D(UNetConfig(base_channels=8, channel_mults=(1, 2)))(x, t, y, rhythm=torch.zeros(2, 64))
    config = TrainConfig(steps=1, batch_size=2)
    with pytest.raises(ValueError, match="train_rhythm: a rhythm-channel network needs"):
        train_diffusion(UNet1D(RHYTHM_UNET, SCHEDULE), SCHEDULE, x, y, config, "unused", progress=False)
    with pytest.raises(ValueError, match=r"train_rhythm must be \[N, T\]"):
        train_diffusion(UNet1D(RHYTHM_UNET, SCHEDULE), SCHEDULE, x, y, config, "unused", progress=False,
                        train_rhythm=torch.zeros(2, 32))


def test_classifier_free_guidance_repeats_the_markers_for_its_unconditional_half():
    net = UNet1D(RHYTHM_UNET, SCHEDULE)
    markers = beat_markers([np.array([5]), np.array([30])], 64, width=2.0)
    eps = classifier_free_guidance(with_rhythm(net, markers), net.null_class, 2.0)
    assert eps(torch.randn(2, 1, 64), torch.tensor([3, 4]), torch.tensor([0, 2])).shape == (2, 1, 64)


def test_a_rhythm_model_file_keeps_its_bank_and_samples_the_rhythms_it_is_given_or_draws(tmp_path):
    card = _card()
    path = ModelFile(card, UNet1D(card.unet_config(), SCHEDULE).state_dict()).save(tmp_path / "model.pt")
    model = DiffusionModel.load(path)
    assert model.card.rhythms() == RhythmBank(card.rhythm_bank)
    labels = np.array([0, 1, 2, 0])
    drawn = model.rhythm_markers(labels, seed=0)
    assert drawn.shape == (4, 128) and torch.all(drawn[2].argmax() == 64)  # the one V rhythm: a beat at 64
    given = model.rhythm_markers(labels, seed=0, beats=[np.array([3])] * 4)
    assert torch.all(given.argmax(dim=1) == 3)
    windows = model.sample_mv(labels, steps=3, seed=1)
    assert windows.shape == (4, 1, 128) and np.array_equal(windows, model.sample_mv(labels, steps=3, seed=1))
    with pytest.raises(ValueError, match="2 rhythms for 4 windows"):
        model.rhythm_markers(labels, seed=0, beats=[np.array([3])] * 2)


def test_the_card_of_a_rhythm_network_needs_a_bank_and_only_it_has_one():
    with pytest.raises(ModelCardError, match="rhythm_bank"):
        _card(rhythm_bank=None)
    plain = UNetConfig(base_channels=8, channel_mults=(1, 2))
    with pytest.raises(ModelCardError, match="rhythm_bank"):
        _card(unet={**asdict(plain), "channel_mults": [1, 2]})


def test_window_beats_always_hold_the_anchor_beat():
    flat = np.zeros((1, 1, 512))
    assert [list(b) for b in window_beats(flat, 128.0, anchor=256)] == [[256]]
    assert [list(b) for b in window_beats(flat, 128.0, anchor=None)] == [[]]
