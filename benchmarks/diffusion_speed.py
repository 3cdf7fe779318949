"""Diffusion speed: training windows/s and sampled windows/s of the shipped U-Net, against a plain DDPM loop.

    python benchmarks/diffusion_speed.py [--checkpoint models/pretrained/mitdb_nsv_4s_v3/model.pt] [--device cpu] \
        [--out benchmarks/results/diffusion_speed.json]

The network and window of the checkpoint (the shipped MIT-BIH model by default: single-lead 4 s
windows at 128 Hz, 1 × 512, 3 classes, its anchor channel and its rhythm channel, given one rhythm of its bank
for every window). Training: forward, backward and
AdamW step at batch 64. Sampling: DPM-Solver++(2M) at 25 and 50 steps and its SDE form
(the default sampler) at 25 steps, and the reference
measured in the same run: the same network driven by a plain 1000-step ancestral DDPM loop
(Ho et al. 2020, Alg. 2) on a smaller batch (`--reference-batch`). FLOPs per window come from
torch.utils.flop_counter.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness import RESULTS, write_result

from ecg_tgdp.models.generate import DiffusionModel
from ecg_tgdp.models.model_card import ModelCard
from ecg_tgdp.models.rhythm import with_rhythm
from ecg_tgdp.models.samplers import sample
from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.unet import UNet1D
from ecg_tgdp.pipeline.shipped import SHIPPED_MODEL_NAME, SHIPPED_SOURCE_MODEL


class GivenRhythm(nn.Module):
    """A rhythm-channel U-Net with one rhythm bound for every window (`models.rhythm.with_rhythm`), so the loops below
    call it as any other network; what is timed is the network, the marker channel included."""

    def __init__(self, net: UNet1D, markers: torch.Tensor) -> None:
        super().__init__()
        self.net, self.config = net, net.config
        self.register_buffer("markers", markers)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, raw: bool = False) -> torch.Tensor:
        return with_rhythm(self.net, self.markers)(x, t, y, raw=raw)


def network_of(card: ModelCard) -> nn.Module:
    """A seeded-random network of the card's shape; a rhythm-channel one given the bank's first rhythm of class 0."""
    net = card.new_network()
    if card.rhythm_bank is None:
        return net
    markers = DiffusionModel(net, card.noise_schedule(), card).rhythm_markers(
        [0], seed=0, beats=[card.rhythm_bank[card.classes[0]][0]])
    return GivenRhythm(net, markers)


def forward_flops(net: nn.Module, shape: tuple[int, int]) -> int:
    """FLOPs of one forward pass for one window."""
    x, t, y = torch.zeros(1, *shape), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        net(x, t, y)
    return counter.get_total_flops()


def training_rate(net: nn.Module, schedule: NoiseSchedule, shape: tuple[int, int], device: torch.device, batch: int,
                  steps: int) -> float:
    """Training windows per second (ε-prediction loss, AdamW), after two warm-up steps."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-4)
    x0 = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, net.config.num_classes, (batch,), device=device)
    for step in range(steps + 2):
        if step == 2:
            _sync(device)
            started = time.perf_counter()
        t = torch.randint(0, schedule.num_steps, (batch,), device=device)
        eps = torch.randn_like(x0)
        loss = torch.nn.functional.mse_loss(net(schedule.add_noise(x0, eps, t), t, y), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - started)


@torch.no_grad()
def plain_ddpm(net: nn.Module, schedule: NoiseSchedule, shape: tuple[int, int], y: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
    """The reference: x_{t-1} = (x_t − β_t/σ_t ε)/√(1−β_t) + √β_t z over every one of the T steps."""
    abar = schedule.alphas_cumprod.to(torch.float32)
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    x = torch.randn(len(y), *shape, generator=generator).to(y.device)
    for t in range(schedule.num_steps - 1, -1, -1):
        eps = net(x, torch.full_like(y, t), y)
        x = (x - betas[t] / (1 - abar[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
        if t > 0:
            x = x + betas[t].sqrt() * torch.randn(x.shape, generator=generator).to(x.device)
    return x


def sampling_rate(run, batch: int, num_classes: int, device: torch.device) -> float:
    y = torch.randint(0, num_classes, (batch,), device=device)
    _sync(device)
    started = time.perf_counter()
    run(y)
    _sync(device)
    return batch / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_SOURCE_MODEL)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--sample-batch", type=int, default=128)
    parser.add_argument("--reference-batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "diffusion_speed.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    card = DiffusionModel.load(args.checkpoint).card  # the network's shape and schedule (weights: seeded random)
    shape = (len(card.leads), round(card.window_s * card.fs_hz))
    net = network_of(card)
    schedule = card.noise_schedule()
    flops = forward_flops(net, shape)
    net.to(device)

    train = training_rate(net, schedule, shape, device, args.train_batch, args.train_steps)
    net.eval()
    generator = torch.Generator().manual_seed(0)
    rates = {
        (method, steps): sampling_rate(
            lambda y, m=method, s=steps: sample(net, schedule, (len(y), *shape), y, sampler=m, steps=s,
                                                generator=generator, device=device),
            args.sample_batch, len(card.classes), device)
        for method, steps in (("dpmpp", 25), ("dpmpp", 50), ("dpmpp_sde", 25))
    }
    reference = sampling_rate(lambda y: plain_ddpm(net, schedule, shape, y, generator), args.reference_batch,
                              len(card.classes), device)
    report = {
        "benchmark": "diffusion_speed",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "checkpoint": SHIPPED_MODEL_NAME if args.checkpoint == SHIPPED_SOURCE_MODEL else str(args.checkpoint),
        "window": {"leads": shape[0], "samples": shape[1], "fs_hz": card.fs_hz},
        "parameters": sum(p.numel() for p in net.parameters()),
        "forward_flops_per_window": flops,
        "train_flops_per_window_approx": 3 * flops,
        "train_batch": args.train_batch,
        "train_windows_per_s": round(train, 1),
        "sample_batch": args.sample_batch,
        "reference_batch": args.reference_batch,
        **{f"sample_windows_per_s_{m}_{s}": round(rate, 1) for (m, s), rate in rates.items()},
        "reference_windows_per_s_ddpm_1000": round(reference, 3),
        **{f"speedup_{m}_{s}_vs_ddpm_1000": round(rate / reference, 1) for (m, s), rate in rates.items()},
    }
    print(write_result(args.out, report).read_text(), end="")


if __name__ == "__main__":
    main()
