"""Checked WFDB access: headers that parse, signal files as long as their header says, leads by name, units
as written, annotations at their own rate."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb
from wfdb.io._signal import BYTES_PER_SAMPLE

from ecg_tgdp.data.records import RecordError

# A header comment that marks windows written by `data.export`: already band-passed (and synthetic, or not).
PREPROCESSED_COMMENT = "ecg-tgdp preprocessed"

# Unit spellings (after NFKC, which maps the micro sign µ to the Greek μ, and lower-casing) → factor to mV.
_UNIT_TO_MV = {
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "uv": 1e-3, "μv": 1e-3, "mcv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "nv": 1e-6, "nanovolt": 1e-6, "nanovolts": 1e-6,
    "v": 1e3, "volt": 1e3, "volts": 1e3,
}
_GAIN_FIELD = re.compile(r"^(?P<gain>[-+\d.eE]+)(?:\([-+\d]+\))?(?:/(?P<units>.+))?$")


@dataclass(frozen=True)
class RecordHeader:
    """What ingest needs from a `.hea` file, checked.

    lead_names: signal names in file order; units: each lead's unit as written in the header (wfdb itself
    reads µV as V); preprocessed_band_hz: the band-pass edges a `PREPROCESSED_COMMENT` says the signal
    already had (None for a recording); synthetic: whether that comment marks the record as generated;
    zero_gain_leads: leads whose header gives ADC gain 0 (uncalibrated; wfdb reads them with gain 200).
    """

    fs: float
    sig_len: int
    lead_names: list[str]
    units: dict[str, str]
    multi_segment: bool
    preprocessed_band_hz: tuple[float, float] | None = None
    synthetic: bool = False
    zero_gain_leads: tuple[str, ...] = ()

    def gain_warnings(self, record_path: Path, leads: list[str]) -> list[str]:
        """A line for each requested lead whose ADC gain is 0: its amplitudes in mV are a guess (wfdb assumes 200
        adu/mV), so the amplitude check and `median_r` normalization may be the only things that notice."""
        names = self.resolve_leads(record_path, leads)
        return [f"{record_path}: lead {name} has ADC gain 0 (uncalibrated) in its header; read with wfdb's default "
                f"200 adu/mV, so its amplitudes may be wrong: the real gain is unknown"
                for name in names if name in self.zero_gain_leads]

    def resolve_leads(self, record_path: Path, leads: list[str]) -> list[str]:
        """The requested leads spelled as in the header (exact match first, else case-insensitive);
        RecordError names the record and the leads it has when one is absent or asked for twice."""
        twice = sorted({lead for lead in leads if [name.lower() for name in leads].count(lead.lower()) > 1})
        if twice:
            raise RecordError(f"{record_path}: lead {', '.join(twice)} asked for more than once")
        by_lower = {name.lower(): name for name in self.lead_names}
        resolved = [lead if lead in self.lead_names else by_lower.get(lead.lower()) for lead in leads]
        missing = [lead for lead, name in zip(leads, resolved) if name is None]
        if missing:
            raise RecordError(
                f"{record_path}: lead {', '.join(missing)} absent (record has {', '.join(self.lead_names)})"
            )
        return resolved


def read_header(record_path: Path) -> RecordHeader:
    """Read and check a `.hea` header (single- or multi-segment); RecordError names the file and the problem."""
    header_file = record_path.with_suffix(".hea")
    if not header_file.is_file():
        raise RecordError(f"{header_file}: header file not found")
    try:
        header = wfdb.rdheader(str(record_path), rd_segments=True)
    except Exception as error:  # noqa: BLE001 (wfdb raises many types for malformed headers)
        raise RecordError(f"{header_file}: header does not parse ({error})") from None
    _check_rate_field(header_file, _header_text(header_file))
    if not header.fs or header.fs <= 0 or not header.sig_len:
        raise RecordError(f"{header_file}: header gives no sampling rate or signal length")
    if isinstance(header, wfdb.MultiRecord):
        segments = [segment for segment in header.segments if segment is not None]
        units: dict[str, str] = {}
        zero_gain: set[str] = set()
        for segment in segments:
            segment_path = record_path.parent / segment.record_name
            _check_signal_files(segment_path, segment)
            units.update(_signal_units(segment_path.with_suffix(".hea"), segment.sig_name))
            zero_gain |= _zero_gain_leads(segment_path.with_suffix(".hea"), segment.sig_name)
        lead_names = list(units)
    else:
        _check_signal_files(record_path, header)
        lead_names = list(header.sig_name or [])
        units = _signal_units(header_file, lead_names)
        zero_gain = _zero_gain_leads(header_file, lead_names)
    band, synthetic = _preprocessed(header.comments or [])
    return RecordHeader(fs=float(header.fs), sig_len=int(header.sig_len), lead_names=lead_names, units=units,
                        multi_segment=isinstance(header, wfdb.MultiRecord), preprocessed_band_hz=band,
                        synthetic=synthetic, zero_gain_leads=tuple(name for name in lead_names if name in zero_gain))


def _header_text(header_file: Path) -> str:
    """The header's text; WFDB headers are ASCII, but units such as µV arrive in UTF-8 or Latin-1."""
    raw = header_file.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _check_rate_field(header_file: Path, text: str) -> None:
    """A non-positive sampling rate is an error (wfdb silently replaces it by its default 250 Hz)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    fields = lines[0].split() if lines else []
    if len(fields) < 3:
        return  # no rate given: WFDB's documented default (250 Hz) applies
    rate = re.split(r"[/(]", fields[2])[0]
    try:
        value = float(rate)
    except ValueError:
        raise RecordError(f"{header_file}: sampling rate {fields[2]!r} is not a number") from None
    if value <= 0:
        raise RecordError(f"{header_file}: sampling rate {fields[2]} Hz is not positive")


def _signal_units(header_file: Path, lead_names: list[str]) -> dict[str, str]:
    """Each lead's unit as written in a single-segment header (field 3, `gain(baseline)/units`; mV when absent)."""
    units = {}
    for name, match in _gain_fields(header_file, lead_names).items():
        units[name] = (match.group("units") if match and match.group("units") else "mV").strip()
    return units


def _zero_gain_leads(header_file: Path, lead_names: list[str]) -> set[str]:
    """Leads whose gain field is written as 0: WFDB's mark of an uncalibrated signal, which wfdb reads as 200 adu/mV
    (a missing gain field is WFDB's documented default 200 and is not reported)."""
    zero = set()
    for name, match in _gain_fields(header_file, lead_names).items():
        try:
            if match and float(match.group("gain")) == 0:
                zero.add(name)
        except ValueError:
            continue  # a gain wfdb parsed but float() does not: not this check's business
    return zero


def _gain_fields(header_file: Path, lead_names: list[str]) -> dict[str, re.Match | None]:
    """Each lead's field 3 (`gain(baseline)/units`) of a single-segment header, parsed, or None when absent."""
    lines = [line for line in _header_text(header_file).splitlines() if line.strip() and not line.startswith("#")]
    fields = {}
    for name, line in zip(lead_names, lines[1:]):
        words = line.split()
        fields[name] = _GAIN_FIELD.match(words[2]) if len(words) > 2 else None
    return fields


def _preprocessed(comments: list[str]) -> tuple[tuple[float, float] | None, bool]:
    """Band edges and synthetic flag of a `PREPROCESSED_COMMENT` (`ecg-tgdp preprocessed band_hz=0.5,40 synthetic`)."""
    for comment in comments:
        if comment.strip().startswith(PREPROCESSED_COMMENT):
            words = comment.split()
            band = next((word.split("=", 1)[1] for word in words if word.startswith("band_hz=")), None)
            edges = tuple(float(edge) for edge in band.split(",")) if band else None
            return edges, "synthetic" in words
    return None, False


def _check_signal_files(record_path: Path, header: wfdb.Record) -> None:
    """Each signal file must hold at least the bytes its header promises (wfdb fails obscurely otherwise)."""
    needed: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for file_name, fmt, per_frame, offset in zip(
        header.file_name, header.fmt, header.samps_per_frame or [1] * header.n_sig, header.byte_offset or [None] * header.n_sig
    ):
        if fmt not in BYTES_PER_SAMPLE or file_name == "~":
            continue  # compressed formats (508, ...) have no fixed size; "~" is a layout segment without samples
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


def read_leads(record_path: Path, leads: list[str], header: RecordHeader) -> np.ndarray:
    """Read the named leads (case-insensitive) as float64 [leads, samples] in mV; a missing lead is a RecordError."""
    names = header.resolve_leads(record_path, leads)
    scale = np.array([_to_mv(header.units.get(name, "mV"), record_path) for name in names])[:, None]
    record = wfdb.rdrecord(str(record_path), channel_names=names)
    if record.p_signal is None or record.sig_name is None:
        raise RecordError(f"{record_path}: lead {', '.join(leads)} not present in any segment")
    by_name = {name: i for i, name in enumerate(record.sig_name)}
    return record.p_signal.T[[by_name[name] for name in names]] * scale


def _to_mv(unit: str, record_path: Path) -> float:
    key = unicodedata.normalize("NFKC", unit).strip().lower()
    if key not in _UNIT_TO_MV:
        raise RecordError(f"{record_path}: signal unit {unit!r} is not a voltage")
    return _UNIT_TO_MV[key]


def read_annotations(record_path: Path, extension: str, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Beat samples [n] on the record's `fs_hz` clock and their symbols [n]; RecordError if missing or malformed.

    An annotation file written at its own rate (sqrs, gqrs at 250 or 500 Hz beside a 125 Hz record) stores
    that rate; its samples are moved onto the record's clock (wfdb reports the record's rate when it stores none).
    """
    annotation_file = record_path.with_suffix(f".{extension}")
    if not annotation_file.is_file():
        raise RecordError(f"{annotation_file}: annotation file not found")
    try:
        annotation = wfdb.rdann(str(record_path), extension)
    except Exception as error:  # noqa: BLE001 (wfdb raises many types for corrupt annotation files)
        raise RecordError(f"{annotation_file}: annotations do not parse ({error})") from None
    samples = np.asarray(annotation.sample, dtype=np.int64)
    own_fs = float(annotation.fs) if annotation.fs else fs_hz
    if own_fs <= 0:
        raise RecordError(f"{annotation_file}: annotation rate {annotation.fs} Hz is not positive")
    if abs(own_fs - fs_hz) > 1e-6 * fs_hz:
        samples = np.rint(samples * (fs_hz / own_fs)).astype(np.int64)
    return samples, np.asarray(annotation.symbol, dtype=object)
