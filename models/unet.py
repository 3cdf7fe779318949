"""A class-conditional 1D U-Net ε-predictor for ECG windows [B, leads, T], sized for CPU by default.

Architecture after Ho et al. 2020 (DDPM, App. B) and Dhariwal & Nichol 2021 (guided-diffusion):
sinusoidal time embedding → MLP, plus a class embedding whose extra row is the null class
of classifier-free guidance (Ho & Salimans 2022); residual blocks with scale-shift
conditioning; stride-2 conv downsampling, nearest + conv upsampling, skip connections.

Beat windows hold the annotated beat at a fixed anchor, so where a sample lies in the window
matters. A convolutional U-Net is translation-equivariant and sees the window's edges only
through its receptive field (and attention without position codes sees none), so without
help it places the QRS anywhere near the centre. A fixed position channel, linspace(−1, 1)
over the window, is concatenated to the input to tell it where it is; in a 4 s context
window that ramp changes too little per sample to pin one beat among five (a model with it
alone put a QRS at the anchor in 30% of its samples), so an anchor channel, a Gaussian marker
at the labeled beat, tells it which beat the class label is about.
With `rhythm_channel` a third channel marks every R peak of the window, given with each
window (`models.rhythm`): where the other beats go is then no longer the network's to invent.

The network always returns ε, whatever its raw output means (`UNetConfig.prediction`). With "v"
(Salimans & Ho 2022 §4, v = α_t ε − σ_t x_0) the raw output F is turned into ε = α_t F + σ_t x_t, so
x̂_0 = α_t x_t − σ_t F never divides by α_t: at the start of sampling (α ≈ 0.006) an ε-predictor's error
reaches x̂_0 multiplied by σ/α ≈ 160, which is where the first 4 s models' spikes came from. Samplers,
guidance and the training loss see an ε-predictor either way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.settings import UNetConfig

_HEAD_DIM = 32  # attention channels per head


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of timesteps t [B] → [B, dim] (Vaswani et al. 2017 §3.5, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block with scale-shift conditioning on the (time + class) embedding (Dhariwal & Nichol 2021 §3)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv1d(out_ch, out_ch, 3, padding=1))  # block starts as the identity
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x [B, in_ch, L], emb [B, emb_dim] → [B, out_ch, L]."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def rotary(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (Su et al. 2021, RoFormer eq. 34) of queries or keys x [B, heads, L, D], D even:
    channel pairs (2i, 2i+1) at position p rotated by p · base^(−2i/D), so q·k depends on the offset of two
    positions, which is what placing a neighbouring beat one RR interval away needs."""
    length, dim = x.shape[-2], x.shape[-1]
    freqs = base ** (-torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim)  # [D/2]
    angles = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * freqs[None]  # [L, D/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class SelfAttention(nn.Module):
    """Multi-head self-attention over positions with a residual connection (Vaswani et al. 2017; DDPM App. B),
    optionally with rotary position embeddings of queries and keys (`rotary`)."""

    def __init__(self, channels: int, groups: int, use_rotary: bool = False) -> None:
        super().__init__()
        self.use_rotary = use_rotary
        self.heads = channels // _HEAD_DIM if channels % _HEAD_DIM == 0 else 1
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, L] → [B, C, L]."""
        b, c, length = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, 3 * self.heads, c // self.heads, length).transpose(2, 3).chunk(3, 1)
        if self.use_rotary:
            q, k = rotary(q), rotary(k)
        h = F.scaled_dot_product_attention(q, k, v)  # [B, heads, L, C/heads]
        return x + self.proj(h.transpose(2, 3).reshape(b, c, length))


class UNet1D(nn.Module):
    """1D U-Net ε_θ(x_t, t, y) (Ho et al. 2020 eq. 14), with a null class for CFG; v-parameterized inside when
    config.prediction is "v", which needs the noise schedule that α_t and σ_t come from."""

    def __init__(self, config: UNetConfig, schedule: NoiseSchedule | None = None) -> None:
        super().__init__()
        self.config = config
        if config.prediction == "v":
            if schedule is None:
                raise ValueError("UNet1D: prediction 'v' needs the noise schedule (α_t and σ_t turn v into ε)")
            abar = schedule.alphas_cumprod
            # not in the state dict: the checkpoint's model card rebuilds the schedule
            self.register_buffer("alpha_table", abar.sqrt().float(), persistent=False)
            self.register_buffer("sigma_table", (1 - abar).sqrt().float(), persistent=False)
        c, g, p = config.base_channels, config.groups, config.dropout
        emb_dim = 4 * c
        widths = [c * m for m in config.channel_mults]
        self.time_mlp = nn.Sequential(nn.Linear(c, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(config.num_classes + 1, emb_dim)
        extra_channels = int(config.position_channel) + int(config.anchor is not None) + int(config.rhythm_channel)
        self.stem = nn.Conv1d(config.leads + extra_channels, c, 3, padding=1)

        # self-attention after the residual blocks of the `attention_levels` lowest resolutions (no weights elsewhere,
        # so a model without them keeps the state dict it always had)
        attended = range(len(widths) - config.attention_levels, len(widths))

        def attention(level: int, width: int) -> nn.Module:
            return SelfAttention(width, g, config.rotary) if level in attended else nn.Identity()

        self.down, self.downsample, self.down_attention = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        ch = c
        for level, width in enumerate(widths):
            self.down.append(nn.ModuleList(
                ResBlock(ch if i == 0 else width, width, emb_dim, g, p) for i in range(config.res_blocks)))
            self.down_attention.append(attention(level, width))
            ch = width
            halve = level < len(widths) - 1
            self.downsample.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1) if halve else nn.Identity())

        self.mid1 = ResBlock(ch, ch, emb_dim, g, p)
        self.mid_attn = SelfAttention(ch, g, config.rotary) if config.attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb_dim, g, p)

        self.up, self.upsample, self.up_attention = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            # the first block of a level takes the concatenated skip from the same level
            self.up.append(nn.ModuleList(
                ResBlock(ch + width if i == 0 else width, width, emb_dim, g, p) for i in range(config.res_blocks)))
            self.up_attention.append(attention(level, width))
            ch = width
            double = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv1d(ch, ch, 3, padding=1))
            self.upsample.append(double if level > 0 else nn.Identity())

        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), _zero(nn.Conv1d(ch, config.leads, 3, padding=1)))

    @property
    def null_class(self) -> int:
        """The label that means "no class" (classifier-free guidance's unconditional model)."""
        return self.config.num_classes

    def forward(self, x: Tensor, t: Tensor, y: Tensor, raw: bool = False, rhythm: Tensor | None = None) -> Tensor:
        """x_t [B, leads, L] (any L), t [B] integer timesteps (float ones for ε-prediction only), y [B] long in
        [0, num_classes] → ε [B, leads, L]; with `raw`, the network's own output (v for a v-predictor), which a
        v-MSE loss regresses. A rhythm-channel network needs `rhythm` [B, L], its windows' R-peak markers
        (`models.rhythm.beat_markers`); any other takes none."""
        x_t, length = x, x.shape[-1]
        if (rhythm is None) == self.config.rhythm_channel:
            raise ValueError("this U-Net has a rhythm channel: pass rhythm [B, L] (models.rhythm.beat_markers)"
                             if self.config.rhythm_channel else "this U-Net has no rhythm channel; pass no rhythm")
        position = torch.linspace(-1.0, 1.0, length, device=x.device, dtype=x.dtype)
        if self.config.position_channel:
            x = torch.cat([x, position.expand(len(x), 1, length)], dim=1)
        if self.config.anchor is not None:
            distance = ((position + 1) / 2 - self.config.anchor) / self.config.anchor_width
            x = torch.cat([x, torch.exp(-0.5 * distance ** 2).expand(len(x), 1, length)], dim=1)
        if rhythm is not None:
            x = torch.cat([x, rhythm.to(x.dtype)[:, None, :]], dim=1)
        multiple = 2 ** (len(self.config.channel_mults) - 1)
        h = F.pad(x, (0, -length % multiple))  # zero-pad on the right so every halving is exact
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels)) + self.class_emb(y)

        h = self.stem(h)
        skips = []
        for blocks, attend, downsample in zip(self.down, self.down_attention, self.downsample):
            for block in blocks:
                h = block(h, emb)
            h = attend(h)
            skips.append(h)
            h = downsample(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for blocks, attend, upsample in zip(self.up, self.up_attention, self.upsample):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            h = upsample(attend(h))
        out = self.out(h)[..., :length]
        if raw or self.config.prediction == "epsilon":
            return out
        if t.is_floating_point():
            raise TypeError(f"a v-prediction U-Net takes integer timesteps, got dtype {t.dtype}")
        # ε = α_t v + σ_t x_t (from x_t = α_t x_0 + σ_t ε and v = α_t ε − σ_t x_0)
        alpha, sigma = self.alpha_table[t.long()][:, None, None], self.sigma_table[t.long()][:, None, None]
        return alpha.to(out.dtype) * out + sigma.to(out.dtype) * x_t
