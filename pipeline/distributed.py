"""torchrun through the CLI: join the process group, let rank 0 alone do what is not data-parallel.

Diffusion training is data-parallel: every rank calls `train_diffusion`, which runs DDP and lets rank 0
write. Everything else a stage does (deciding whether it is up to date, clearing its folder, simulate,
ingest, TGDP's fit, sampling, evaluation, the manifest) runs on rank 0 through `on_main_rank` while the
other ranks wait for its result. Outside torchrun these functions call straight through and import
nothing, so a single-process run is what it was and `simulate` stays free of torch.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

# How long the other ranks wait for what rank 0 does alone (evaluating a large cohort on CPU takes hours); a
# rank 0 that dies does not leave them waiting, torchrun stops every worker when one fails.
RANK_ZERO_WAIT = timedelta(hours=24)

_waiting_group = None  # the gloo group the other ranks wait in for rank 0, while a process group is joined
Result = TypeVar("Result")


class RankZeroFailed(Exception):
    """Raised on the other ranks when what rank 0 did alone failed; rank 0 reports the error itself."""


def under_torchrun() -> bool:
    """True in a process torchrun started (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main_rank() -> bool:
    """True on rank 0 of torchrun's processes, and in a process torchrun did not start."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join torchrun's process group for the block (NCCL on cuda:LOCAL_RANK, else gloo); stdout on rank 0 alone."""
    global _waiting_group
    import torch.distributed as dist

    from ecg_tgdp.models.training import cleanup_distributed, init_distributed

    rank, _ = init_distributed()
    try:
        _waiting_group = dist.new_group(backend="gloo", timeout=RANK_ZERO_WAIT)
        with contextlib.ExitStack() as stack:
            if rank != 0:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            yield
    finally:
        _waiting_group = None
        cleanup_distributed()


def on_main_rank(fn: Callable[..., Result], *args, **kwargs) -> Result:
    """fn(*args, **kwargs) on rank 0 alone; every rank returns its result once it is done (pickled to the others).
    Outside a process group: fn(*args, **kwargs)."""
    if _waiting_group is None:
        return fn(*args, **kwargs)
    import torch.distributed as dist

    if dist.get_rank() == 0:
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            _share([None, f"{type(error).__name__}: {error}"])
            raise
        _share([result, None])
        return result
    result, failure = _share([None, None])
    if failure is not None:
        raise RankZeroFailed(f"rank 0 failed: {failure}")
    return result


def _share(message: list) -> list:
    """Rank 0's [result, failure] on every rank."""
    import torch.distributed as dist

    dist.broadcast_object_list(message, src=0, group=_waiting_group)
    return message


def rank_device(device: torch.device) -> torch.device:
    """The device this rank computes on: under a process group a CUDA device is this rank's own GPU,
    cuda:LOCAL_RANK (init_distributed made it the current one), so a config that names one GPU is an error."""
    if _waiting_group is None or device.type != "cuda":
        return device
    import torch
    import torch.distributed as dist

    from ecg_tgdp.pipeline.config import ConfigError

    if device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if dist.get_world_size() > 1:
        raise ConfigError(f"device {str(device)!r} under torchrun: every rank uses its own GPU, cuda:LOCAL_RANK; "
                          "set device = 'auto' or 'cuda'")
    return device
