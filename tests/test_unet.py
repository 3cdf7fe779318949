"""Tests for models.unet: shapes for any length and lead count, zero output at init, conditioning, determinism."""
from __future__ import annotations

import pytest
import torch

from ecg_tgdp.models.unet import UNet1D, UNetConfig

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2, 2))


def _inputs(batch: int, leads: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, leads, length, generator=g)
    return x, torch.randint(0, 1000, (batch,), generator=g), torch.randint(0, 3, (batch,), generator=g)


@pytest.mark.parametrize("leads", [1, 2, 12])
@pytest.mark.parametrize("length", [100, 128, 257, 1000])
def test_output_shape_equals_input_shape_and_is_zero_at_init(leads, length):
    model = UNet1D(UNetConfig(leads=leads, base_channels=16, channel_mults=(1, 2, 2, 2)))
    x, t, y = _inputs(2, leads, length)
    eps = model(x, t, y)
    assert eps.shape == x.shape
    assert torch.equal(eps, torch.zeros_like(eps))  # zero-initialised output conv


def test_class_label_and_null_class_change_the_output_after_training_steps():
    torch.manual_seed(0)
    model = UNet1D(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, t, y = _inputs(8, 1, 64)
    for _ in range(3):
        loss = (model(x, t, y) - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        outputs = [model(x[:1], t[:1], torch.tensor([label])) for label in (0, 1, model.null_class)]
    assert model.null_class == TINY.num_classes == 3
    assert all(torch.isfinite(out).all() for out in outputs)
    assert (outputs[0] - outputs[1]).abs().max() > 1e-4
    assert (outputs[0] - outputs[2]).abs().max() > 1e-4


def test_attention_variant_runs_forward_and_backward():
    model = UNet1D(UNetConfig(base_channels=32, channel_mults=(1, 2), attention=True, dropout=0.1))
    x, t, y = _inputs(3, 1, 50)
    out = model(x, t.float(), y)  # float timesteps are accepted
    out.sum().backward()
    assert out.shape == x.shape
    assert model.mid_attn.heads == 2  # 64 channels, 32 per head
    assert model.out[-1].weight.grad is not None


def test_default_parameter_count_is_small():
    model = UNet1D(UNetConfig())
    count = sum(p.numel() for p in model.parameters())
    assert 1e5 < count < 1e6  # 386,433 for the default 1-lead, 3-class network


def test_construction_and_forward_are_deterministic_for_a_seed():
    def build() -> UNet1D:
        torch.manual_seed(7)
        model = UNet1D(TINY)
        with torch.no_grad():  # move off the zero init so the outputs say something
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        return model

    a, b = build(), build()
    x, t, y = _inputs(4, 1, 96)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert torch.equal(a(x, t, y), b(x, t, y))


@pytest.mark.parametrize("position_channel", [True, False])
def test_position_channel_lets_the_network_find_the_window_centre(position_channel):
    """A bump at the centre of a blank window: learnable only when the network knows where the centre is."""
    torch.manual_seed(0)
    model = UNet1D(UNetConfig(base_channels=16, channel_mults=(1, 2), position_channel=position_channel))
    x, t, y = torch.zeros(4, 1, 128), torch.full((4,), 500), torch.zeros(4, dtype=torch.long)
    target = torch.exp(-((torch.arange(128.0) - 64) ** 2) / 8.0).expand(4, 1, 128)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = (model(x, t, y) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    share_left = (loss / target.pow(2).mean()).item()  # 1 = nothing learned
    assert share_left < 0.05 if position_channel else share_left > 0.5


def test_config_rejects_widths_not_divisible_by_groups():
    with pytest.raises(ValueError, match="divisible by groups=8"):
        UNetConfig(base_channels=12)


def test_v_prediction_returns_epsilon_so_that_x0_is_alpha_x_minus_sigma_v():
    """ε = α_t v + σ_t x_t: with the output conv at zero (v = 0) ε = σ_t x_t and x̂_0 = α_t x_t, finite even where
    α_t ≈ 0 (an ε-predictor's x̂_0 = (x_t − σ ε̂)/α there multiplies its error by σ/α)."""
    from ecg_tgdp.models.schedule import NoiseSchedule

    schedule = NoiseSchedule.cosine(1000)
    model = UNet1D(UNetConfig(base_channels=16, channel_mults=(1, 2), prediction="v"), schedule)
    x, _, y = _inputs(3, 1, 64)
    t = torch.tensor([0, 500, 999])
    eps = model(x, t, y)
    sigma, alpha = schedule.sigma(t)[:, None, None], schedule.alpha(t)[:, None, None]
    torch.testing.assert_close(eps, sigma * x)
    torch.testing.assert_close((x - sigma * eps) / alpha, alpha * x, rtol=1e-4, atol=1e-4)
    epsilon_model = UNet1D(UNetConfig(base_channels=16, channel_mults=(1, 2)))
    assert model.state_dict().keys() == epsilon_model.state_dict().keys()  # the α/σ tables are not weights


def test_v_prediction_needs_the_schedule_and_integer_timesteps():
    from ecg_tgdp.models.schedule import NoiseSchedule

    with pytest.raises(ValueError, match="needs the noise schedule"):
        UNet1D(UNetConfig(prediction="v"))
    with pytest.raises(ValueError, match="prediction must be one of"):
        UNetConfig(prediction="x0")
    model = UNet1D(UNetConfig(base_channels=16, channel_mults=(1, 2), prediction="v"), NoiseSchedule.cosine(100))
    x, _, y = _inputs(2, 1, 32)
    with pytest.raises(TypeError, match="integer timesteps"):
        model(x, torch.tensor([1.5, 2.5]), y)


def test_rotary_attention_sees_relative_offsets_and_extra_attention_keeps_old_state_dicts():
    """RoPE: the score of query i and key j depends on i − j only; attention at more levels adds weights only
    where asked, so a checkpoint of the old shape still loads into the old configuration."""
    from ecg_tgdp.models.unet import rotary

    q, k = torch.randn(1, 1, 1, 32).expand(1, 1, 20, 32), torch.randn(1, 1, 1, 32).expand(1, 1, 20, 32)
    scores = rotary(q) @ rotary(k).transpose(-1, -2)
    torch.testing.assert_close(scores[0, 0, 3, 1], scores[0, 0, 10, 8])
    torch.testing.assert_close(scores[0, 0, 0, 0], scores[0, 0, 7, 7])
    plain = UNet1D(UNetConfig(base_channels=16, channel_mults=(1, 2), attention=True))
    rotated = UNet1D(UNetConfig(base_channels=16, channel_mults=(1, 2), attention=True, rotary=True))
    assert plain.state_dict().keys() == rotated.state_dict().keys()
    deeper = UNet1D(UNetConfig(base_channels=16, channel_mults=(1, 2), attention=True, attention_levels=1))
    assert {key.split(".")[0] for key in set(deeper.state_dict()) - set(plain.state_dict())} == {"down_attention",
                                                                                               "up_attention"}
    x, t, y = _inputs(2, 1, 64)
    assert deeper(x, t, y).shape == x.shape
