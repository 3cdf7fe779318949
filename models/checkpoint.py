"""Checkpoint files, written atomically and read with `torch.load(..., weights_only=True)`, and the
RNG states that let a resumed run repeat the draws of the one that saved them.

A payload holds only what the weights-only unpickler accepts: tensors, dicts, lists, tuples,
strings, numbers, booleans and None. Config dataclasses go in as `dataclasses.asdict(...)`,
RNG states as the byte tensors `Generator.get_state()` returns. `save_checkpoint` checks
this before writing, so a bad payload fails when it is saved, not when a resume reads it.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

# exact types: subclasses such as numpy.float64 or a namedtuple pickle as classes weights_only refuses
_SCALARS = (str, int, float, bool, type(None), torch.dtype)
_MAPPINGS = (dict, OrderedDict)


class CheckpointError(Exception):
    """A file that is not a readable weights-only checkpoint; the message names the file."""


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write `payload` with torch.save to a temporary file beside `path`, then rename it onto `path`."""
    path = Path(path)
    check_plain(payload, where=path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one fixed name (rank 0 alone writes): a save killed half-way leaves one stale file, overwritten next time
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())  # the rename must never expose a file whose bytes are still in flight
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`, refusing anything but plain data (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint file there")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: holds a {type(payload).__name__}, expected a dict")
    return payload


def check_plain(value: object, where: str = "payload") -> None:
    """Raise TypeError naming the key path of the first value that weights_only loading would refuse."""
    if type(value) in _MAPPINGS:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; use str or int keys")
            check_plain(item, f"{where}.{key}")
    elif type(value) in (list, tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
    elif type(value) not in _SCALARS and not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{where} is a {type(value).__name__}, which torch.load(weights_only=True) refuses; "
            "store plain data (dataclasses.asdict, str(path), tensor.tolist() or a tensor)"
        )


def rng_state(generators: dict[str, torch.Generator], device: torch.device) -> dict:
    """Byte-tensor states of `generators`, of the global CPU generator and, off CPU, of `device`'s generator."""
    state = {name: generator.get_state() for name, generator in generators.items()}
    state["torch"] = torch.get_rng_state()
    if device.type != "cpu":
        state["device"] = torch.get_device_module(device.type).get_rng_state(device)
    return state


def set_rng_state(state: dict, generators: dict[str, torch.Generator], device: torch.device) -> None:
    """Restore what `rng_state` captured, so the next draws repeat those of the run that saved it."""
    for name, generator in generators.items():
        generator.set_state(state[name])
    torch.set_rng_state(state["torch"])
    if device.type != "cpu":
        torch.get_device_module(device.type).set_rng_state(state["device"], device)
