"""Shared fixtures: the real PhysioNet copy beside the repo, and tiny WFDB records written by wfdb."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

# Tiny models gain nothing from intra-op threads, and on a 2-core machine they oversubscribe
# the cores next to ingest worker processes and other test processes.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
PHYSIONET = REPO.parent / "shared" / "physionet"


def physionet_db(name: str) -> Path:
    """Path to a database in ../shared/physionet, or skip the test where it is absent."""
    folder = PHYSIONET / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")
    return folder


def write_record(
    folder: Path,
    name: str,
    signal: np.ndarray,
    fs_hz: float,
    beats: list[int],
    symbols: list[str],
    leads: tuple[str, ...] = ("MLII",),
) -> Path:
    """Write signal [samples, leads] (mV) and beat annotations as a WFDB record; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name, fs=fs_hz, units=["mV"] * len(leads), sig_name=list(leads), p_signal=signal,
        fmt=["16"] * len(leads), adc_gain=[200.0] * len(leads), baseline=[0] * len(leads), write_dir=str(folder),
    )
    wfdb.wrann(name, "atr", sample=np.asarray(beats), symbol=symbols, write_dir=str(folder))
    return folder / name


def spiky_ecg(fs_hz: float, duration_s: float, beats: list[int], leads: int = 1, seed: int = 0) -> np.ndarray:
    """A crude ECG [samples, leads]: a 1 mV Gaussian spike at each beat over small noise."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * fs_hz)
    t = np.arange(n)
    x = 0.02 * rng.standard_normal((n, leads))
    for beat in beats:
        x += np.exp(-0.5 * ((t - beat) / (0.01 * fs_hz)) ** 2)[:, None]
    return x


@pytest.fixture
def one_thread_and_seeded_init():
    """One CPU thread (tests share the machine with long runs) and seeded weight initialization (the global
    generator), both restored afterwards so no other test sees a difference."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_record(tmp_path):
    """A 20 s, 250 Hz record with a beat each second (N, with one V and one A)."""
    fs = 250.0
    beats = [int(fs * (k + 0.5)) for k in range(20)]
    symbols = ["N"] * 20
    symbols[5], symbols[9] = "V", "A"
    return write_record(tmp_path / "db", "r1", spiky_ecg(fs, 20, beats), fs, beats, symbols), beats, symbols
