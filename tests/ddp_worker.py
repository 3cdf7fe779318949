"""Run by tests/test_ddp.py under torchrun: DDP training of the tiny test denoiser on CPU (gloo).

Usage: ddp_worker.py OUT_DIR WEIGHTS_DIR. Trains 4 steps, then calls again with steps=6, which
resumes from the step-4 checkpoint. Each rank starts from its own random weights (DDP must
broadcast rank 0's; the second call must load the checkpoint) and saves its final raw weights
to WEIGHTS_DIR/rank<r>.pt.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
from test_training import sine_windows, tiny_model  # tests/ is sys.path[0] for a script run from it

from ecg_tgdp.models.schedule import NoiseSchedule
from ecg_tgdp.models.training import TrainConfig, cleanup_distributed, init_distributed, train_diffusion

CONFIG = TrainConfig(steps=6, batch_size=8, lr=1e-3, warmup_steps=2, log_every=1, val_every=2, checkpoint_every=3,
                     label_dropout=0.2, ema_decay=0.9)


def main(out_dir: Path, weights_dir: Path) -> None:
    rank, world = init_distributed()
    assert world == 2, f"expected 2 ranks, got {world}"
    try:
        x, y = sine_windows()
        for config, seed in ((replace(CONFIG, steps=4), rank), (CONFIG, 10 + rank)):
            model = tiny_model(seed=seed)
            train_diffusion(model, NoiseSchedule.cosine(100), x, y, config, out_dir, val_x=x[:16], val_y=y[:16],
                            progress=False)
        assert model.calls == 2, f"rank {rank}: the second call ran {model.calls} steps, not the 2 after step 4"
        weights_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights_dir / f"rank{rank}.pt")
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
