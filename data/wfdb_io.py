"""Checked WFDB access: headers that parse, signal files as long as their header says, leads by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb
from wfdb.io._signal import BYTES_PER_SAMPLE

from data.records import RecordError


def read_header(record_path: Path) -> wfdb.Record:
    """Read and check a `.hea` header; RecordError names the file if it is missing or malformed."""
    header_file = record_path.with_suffix(".hea")
    if not header_file.is_file():
        raise RecordError(f"{header_file}: header file not found")
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as error:  # noqa: BLE001 (wfdb raises many types for malformed headers)
        raise RecordError(f"{header_file}: header does not parse ({error})") from None
    if not header.fs or header.fs <= 0 or not header.sig_len:
        raise RecordError(f"{header_file}: header gives no sampling rate or signal length")
    _check_signal_files(record_path, header)
    return header


def _check_signal_files(record_path: Path, header: wfdb.Record) -> None:
    """Each signal file must hold at least the bytes its header promises (wfdb fails obscurely otherwise)."""
    needed: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for file_name, fmt, per_frame, offset in zip(
        header.file_name, header.fmt, header.samps_per_frame or [1] * header.n_sig, header.byte_offset or [None] * header.n_sig
    ):
        if fmt not in BYTES_PER_SAMPLE:
            continue  # compressed formats (508, ...) have no fixed size
        needed[file_name] = needed.get(file_name, 0) + BYTES_PER_SAMPLE[fmt] * per_frame * header.sig_len
        offsets[file_name] = offset or 0
    for file_name, n_bytes in needed.items():
        signal_file = record_path.parent / file_name
        if not signal_file.is_file():
            raise RecordError(f"{signal_file}: signal file named in {record_path.name}.hea not found")
        expected = int(np.floor(n_bytes)) + offsets[file_name]
        actual = signal_file.stat().st_size
        if actual < expected:
            raise RecordError(
                f"{signal_file}: {actual} bytes, shorter than the {expected} its header says (truncated download?)"
            )


def read_leads(record_path: Path, leads: list[str], header: wfdb.Record) -> np.ndarray:
    """Read the named leads as float64 [leads, samples] in mV; a missing lead is a RecordError."""
    missing = [lead for lead in leads if lead not in header.sig_name]
    if missing:
        raise RecordError(
            f"{record_path}: lead {', '.join(missing)} absent (record has {', '.join(header.sig_name)})"
        )
    record = wfdb.rdrecord(str(record_path), channel_names=leads)
    units = [unit.lower() for unit in record.units]
    scale = np.array([_to_mv(unit, record_path) for unit in units])[:, None]
    by_name = {name: i for i, name in enumerate(record.sig_name)}
    order = [by_name[lead] for lead in leads]
    return record.p_signal.T[order] * scale


def _to_mv(unit: str, record_path: Path) -> float:
    factors = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}
    if unit not in factors:
        raise RecordError(f"{record_path}: signal unit {unit!r} is not a voltage")
    return factors[unit]


def read_annotations(record_path: Path, extension: str = "atr") -> wfdb.Annotation:
    """Read a record's annotation file; RecordError if it is missing or malformed."""
    annotation_file = record_path.with_suffix(f".{extension}")
    if not annotation_file.is_file():
        raise RecordError(f"{annotation_file}: annotation file not found")
    try:
        return wfdb.rdann(str(record_path), extension)
    except Exception as error:  # noqa: BLE001 (wfdb raises many types for corrupt annotation files)
        raise RecordError(f"{annotation_file}: annotations do not parse ({error})") from None
