"""Simulated hospitals written as PhysioNet WFDB databases, with beat classes placed by construction.

Each beat is a sum of Gaussian kernels (P, Q, R, S, T), the morphology model of ECGSYN
(McSharry et al. 2003, IEEE TBME 50(3):289-294). Kernels are dipole components with a 3-D
direction projected onto lead vectors, as in Sameni et al. 2007 (EURASIP J. Adv. Signal
Process., "Multichannel ECG and noise modeling"), so leads share timing but differ in shape.
Beat timing follows standard rhythm physiology: premature atrial beats reset the sinus node
(non-compensatory pause), premature ventricular beats do not (full compensatory pause).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from ecg_tgdp.data.atomic import staged_directory
from ecg_tgdp.data.simulation_spec import CohortShift, SimulationSpec

WFDB_SYMBOL = {"N": "N", "S": "A", "V": "V", "F": "F"}  # AAMI class -> MIT-BIH beat code

# Kernel slots; every beat uses a subset: N = P+QRST, S = Pa+QRST, V = Vm+Vs+Vt, F = P + a blend.
_SLOTS = ("P", "Pa", "Q", "R", "S", "T", "Vm", "Vs", "Vt")
_K = {name: k for k, name in enumerate(_SLOTS)}
_QRS_SLOTS = [_K[s] for s in ("Q", "R", "S", "Vm", "Vs")]
_SINUS_SLOTS = [_K[s] for s in ("Q", "R", "S", "T")]
_V_SLOTS = [_K[s] for s in ("Vm", "Vs", "Vt")]
_T_SLOTS = [_K["T"], _K["Vt"]]
_CLASS_MASK = {
    "N": np.isin(_SLOTS, ("P", "Q", "R", "S", "T")),
    "S": np.isin(_SLOTS, ("Pa", "Q", "R", "S", "T")),
    "V": np.isin(_SLOTS, ("Vm", "Vs", "Vt")),
    "F": np.isin(_SLOTS, ("P", "Q", "R", "S", "T", "Vm", "Vs", "Vt")),
}
# Coupling interval of each ectopic class as a fraction of the current sinus RR.
_PREMATURITY = {"S": (0.6, 0.8), "V": (0.55, 0.75), "F": (0.92, 1.0)}

# Lead directions in a body frame: x = patient's left, y = feet, z = anterior. Frontal leads
# follow the hexaxial reference system, precordial leads their usual horizontal-plane angles.
_FRONTAL_DEG = {"I": 0, "II": 60, "III": 120, "AVR": -150, "AVL": -30, "AVF": 90,
                "MLI": 0, "MLII": 60, "MLIII": 120}
_PRECORDIAL_DEG = {"V1": 115, "V2": 94, "V3": 76, "V4": 60, "V5": 30, "V6": 0}

_ADC_GAIN = 1000.0  # adu/mV: 1 uV steps keep even low noise levels intact in 16-bit storage
_MAX_MV = 32.0  # stays inside the 16-bit range at that gain (-32768 is the WFDB NaN code)
_BEAT_SUPPORT_S = (0.35, 0.7)  # kernels are negligible outside this window around the R peak
_BEAT_CHUNK = 512  # beats rendered at once; bounds memory for long records


def _unit(frontal_deg: float, z: float = 0.0) -> np.ndarray:
    """Unit vector at a frontal-plane angle (0 deg = left, 90 deg = feet), tilted by z towards anterior."""
    angle = np.deg2rad(frontal_deg)
    vector = np.array([np.cos(angle), np.sin(angle), z])
    return vector / np.linalg.norm(vector)


def _lead_direction(name: str) -> np.ndarray:
    """Lead vector for a lead name; an unknown name gets a fixed pseudo-random direction of its own."""
    key = name.upper()
    if key in _FRONTAL_DEG:
        return _unit(_FRONTAL_DEG[key])
    if key in _PRECORDIAL_DEG:
        angle = np.deg2rad(_PRECORDIAL_DEG[key])
        return np.array([np.cos(angle), 0.0, np.sin(angle)])
    vector = np.random.default_rng(zlib.crc32(name.encode())).standard_normal(3)
    return vector / np.linalg.norm(vector)


@dataclass(frozen=True)
class _Morphology:
    """One patient's kernels: signed dipole strength (mV), centre (s from R; T at RR = 1 s), width (s), direction."""

    amplitude: np.ndarray  # (K,)
    centre: np.ndarray  # (K,)
    width: np.ndarray  # (K,)
    direction: np.ndarray  # (K, 3)


def _draw_morphology(rng: np.random.Generator) -> _Morphology:
    """Per-patient kernels around ECGSYN-like lead-II values (R ~1 mV, P ~0.15, T ~0.3) with random electrical axis."""
    u = rng.uniform
    axis = u(20.0, 80.0)  # QRS axis within the normal range, so lead II keeps a dominant R
    v_sign = rng.choice([-1.0, 1.0])
    v_amp = u(1.5, 2.4)
    amplitude = np.array([
        0.16 * u(0.7, 1.3), 0.13 * u(0.7, 1.3), -0.10 * u(0.5, 1.5), 1.1 * u(0.7, 1.4), -0.25 * u(0.5, 1.5),
        0.32 * u(0.6, 1.3), v_sign * v_amp, -v_sign * v_amp * u(0.15, 0.35), -v_sign * v_amp * u(0.25, 0.45),
    ])
    centre = np.array([
        -u(0.15, 0.19), -u(0.12, 0.15), -0.028 * u(0.9, 1.1), 0.0, 0.028 * u(0.9, 1.1),
        u(0.26, 0.30), 0.0, rng.choice([-1.0, 1.0]) * u(0.035, 0.05), u(0.30, 0.36),
    ])
    width = np.array([
        u(0.018, 0.026), u(0.016, 0.024), u(0.007, 0.011), u(0.009, 0.013), u(0.008, 0.012),
        u(0.04, 0.055), u(0.028, 0.036), u(0.018, 0.026), u(0.06, 0.08),
    ])
    # A unifocal PVC: one direction per patient, tilted at most 45 deg off lead II so it stays large there.
    lead_ii = _lead_direction("II")
    off_axis = np.cross(lead_ii, rng.standard_normal(3))
    tilt = np.deg2rad(u(0.0, 45.0))
    v_dir = np.cos(tilt) * lead_ii + np.sin(tilt) * off_axis / np.linalg.norm(off_axis)
    direction = np.stack([
        _unit(u(40.0, 75.0)),  # sinus P: high right atrium towards lower left
        _unit(u(-120.0, -60.0)),  # low-atrial ectopic P conducts upwards, inverted in II
        _unit(axis, -0.25), _unit(axis, -0.25), _unit(axis + u(10.0, 50.0), -0.5),
        _unit(axis + u(-25.0, 25.0), 0.3),  # T roughly concordant with QRS
        v_dir, v_dir, v_dir,  # same direction with opposite sign: discordant T in every lead
    ])
    return _Morphology(amplitude, centre, width, direction)


def _apply_shift(morph: _Morphology, m: float) -> _Morphology:
    """Shift morphology continuously: wider QRS, smaller P, longer PR/QT, T vector rotated away from the QRS."""
    amplitude, centre, width = morph.amplitude.copy(), morph.centre.copy(), morph.width.copy()
    widen = 1.0 + 0.35 * m
    width[_QRS_SLOTS] *= widen
    centre[_QRS_SLOTS] *= widen
    amplitude[[_K["P"], _K["Pa"]]] *= 1.0 - 0.5 * m
    centre[[_K["P"], _K["Pa"]]] *= 1.0 + 0.25 * m
    centre[_T_SLOTS] *= 1.0 + 0.15 * m
    amplitude[_K["T"]] *= 1.0 + 0.5 * m
    # Rotating the T vector widens the QRS-T angle as in repolarisation abnormalities: lead II T goes flat, then inverts.
    angle = np.deg2rad(120.0 * m)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    direction = morph.direction.copy()
    direction[_K["T"]] = rotation @ direction[_K["T"]]
    return _Morphology(amplitude, centre, width, direction)


def _beat_schedule(rng: np.random.Generator, spec: SimulationSpec, t_end: float) -> tuple[np.ndarray, list[str], float]:
    """R-peak times (s), AAMI classes and resting heart rate of one patient's rhythm up to t_end."""
    heart_rate = rng.uniform(*spec.heart_rate_bpm)
    rr0 = 60.0 / heart_rate
    rsa, drift = rng.uniform(0.015, 0.04), rng.uniform(0.0, 0.02)  # respiratory and Mayer-wave modulation depths
    f_resp, f_drift = rng.uniform(0.2, 0.33), rng.uniform(0.07, 0.12)
    phase = rng.uniform(0.0, 2.0 * np.pi, 2)
    # Each draw yields N, or an ectopic beat plus the sinus beat after it; these draw
    # probabilities make class c a share rate_c of all beats.
    total = sum(rate for _, rate in spec.ectopic_rates)
    classes = ["N"] + [name for name, _ in spec.ectopic_rates]
    cumulative = np.cumsum([(1.0 - 2.0 * total) / (1.0 - total)] + [rate / (1.0 - total) for _, rate in spec.ectopic_rates])

    def sinus_rr(t: float) -> float:
        modulation = rsa * np.sin(2 * np.pi * f_resp * t + phase[0]) + drift * np.sin(2 * np.pi * f_drift * t + phase[1])
        return rr0 * (1.0 + modulation + 0.01 * rng.standard_normal())

    t = -rng.uniform(0.0, rr0)  # the record starts mid-cycle
    times, labels = [t], ["N"]
    while t < t_end:
        rr = sinus_rr(t)
        label = classes[min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(classes) - 1)]
        if label != "N":
            ectopic = t + rng.uniform(*_PREMATURITY[label]) * rr
            times.append(ectopic)
            labels.append(label)
            # S resets the sinus node; V and F leave it on schedule (compensatory pause).
            rr = ectopic - t + rr if label == "S" else 2.0 * rr
        t += rr
        times.append(t)
        labels.append("N")
    return np.array(times), labels, heart_rate


def _beat_kernels(
    morph: _Morphology, labels: list[str], rr_before: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-beat kernel weights and centres (B, K): class masks, fusion blends, QT rate adaptation."""
    weights = np.array([_CLASS_MASK[label] for label in labels], dtype=float)
    blend = rng.uniform(0.3, 0.7, len(labels))  # drawn for every beat so the stream does not depend on labels
    fusion = np.array([label == "F" for label in labels])
    weights[np.ix_(fusion, _SINUS_SLOTS)] *= (1.0 - blend[fusion])[:, None]
    weights[np.ix_(fusion, _V_SLOTS)] *= blend[fusion][:, None]
    weights *= 1.0 + 0.03 * rng.standard_normal((len(labels), 1))  # beat-to-beat amplitude jitter (respiration)
    centres = np.repeat(morph.centre[None, :], len(labels), axis=0)
    centres[:, _T_SLOTS] *= np.cbrt(np.clip(rr_before, 0.5, 1.5))[:, None]  # Fridericia: QT ~ RR^(1/3)
    return weights, centres


def _render(r_samples: np.ndarray, weights: np.ndarray, centres: np.ndarray, widths: np.ndarray,
            projection: np.ndarray, fs: float, n: int) -> np.ndarray:
    """Sum every beat's Gaussian kernels on a local grid around its R peak into an (n, L) signal."""
    offsets = np.arange(-int(np.ceil(_BEAT_SUPPORT_S[0] * fs)), int(np.ceil(_BEAT_SUPPORT_S[1] * fs)) + 1)
    t_local = offsets / fs
    signal = np.zeros((n, projection.shape[1]))
    for lo in range(0, len(r_samples), _BEAT_CHUNK):
        chunk = slice(lo, lo + _BEAT_CHUNK)
        z = (t_local[None, :, None] - centres[chunk, None, :]) / widths
        waves = (np.exp(-0.5 * z * z) * weights[chunk, None, :]) @ projection  # (B, S, L)
        index = r_samples[chunk, None] + offsets
        inside = (index >= 0) & (index < n)
        for lead in range(signal.shape[1]):
            signal[:, lead] += np.bincount(index[inside], weights=waves[..., lead][inside], minlength=n)
    return signal


def _recording_artifacts(rng: np.random.Generator, shift: CohortShift, fs: float, shape: tuple[int, int]) -> np.ndarray:
    """Baseline wander (three 0.05-0.5 Hz sinusoids per lead), 50 Hz mains and white noise, in mV."""
    n, n_leads = shape
    t = np.arange(n)[:, None] / fs
    freqs = rng.uniform(0.05, 0.5, (3, n_leads))
    phases = rng.uniform(0.0, 2.0 * np.pi, (4, n_leads))
    shares = rng.dirichlet(np.ones(3), n_leads).T  # components sum to 1, so the peak wander is at most its amplitude
    wander = sum(shares[j] * np.sin(2 * np.pi * freqs[j] * t + phases[j]) for j in range(3))
    mains = np.sin(2 * np.pi * 50.0 * t + phases[3])
    noise = rng.standard_normal(shape)
    return shift.baseline_wander_mv * wander + shift.powerline_mv * mains + shift.noise_mv * noise


def _simulate_patient(
    seed: np.random.SeedSequence, spec: SimulationSpec
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """One patient's signal (n, L) in mV, R-peak samples, WFDB beat symbols and header comments."""
    # Separate streams: timing/labels never depend on the shift, so shifted cohorts share ground truth.
    timing_rng, morph_rng, noise_rng = (np.random.default_rng(s) for s in seed.spawn(3))
    fs, n = spec.fs_hz, spec.n_samples
    times, labels, heart_rate = _beat_schedule(timing_rng, spec, n / fs)
    age, sex = int(morph_rng.integers(25, 90)), str(morph_rng.choice(["M", "F"]))
    morph = _apply_shift(_draw_morphology(morph_rng), spec.shift.morphology)
    rr_before = np.diff(times, prepend=times[0] - 60.0 / heart_rate)
    weights, centres = _beat_kernels(morph, labels, rr_before, morph_rng)
    leads = np.stack([_lead_direction(name) for name in spec.lead_names])
    projection = morph.amplitude[:, None] * (morph.direction @ leads.T)  # (K, L)
    r_samples = np.round(times * fs).astype(np.int64)
    ecg = _render(r_samples, weights, centres, morph.width, projection, fs, n)
    signal = spec.shift.gain * (ecg + _recording_artifacts(noise_rng, spec.shift, fs, ecg.shape))
    inside = (r_samples >= 0) & (r_samples < n)
    symbols = [WFDB_SYMBOL[label] for label, keep in zip(labels, inside) if keep]
    comments = [f"age: {age}", f"sex: {sex}", f"resting_heart_rate_bpm: {heart_rate:.1f}"]
    return np.clip(signal, -_MAX_MV, _MAX_MV), r_samples[inside], symbols, comments


def _write_database(directory: Path, spec: SimulationSpec, seed: int) -> list[str]:
    """Write every patient's record and the RECORDS index into directory."""
    names = [f"{spec.record_prefix}{i:03d}" for i in range(spec.n_patients)]
    n_leads = len(spec.lead_names)
    for name, patient_seed in zip(names, np.random.SeedSequence(seed).spawn(spec.n_patients)):
        signal, samples, symbols, comments = _simulate_patient(patient_seed, spec)
        comments = comments + [f"patient_id: {name}", f"source: ecg-tgdp data.simulate, seed {seed}"]
        wfdb.wrsamp(
            name, fs=spec.fs_hz, units=["mV"] * n_leads, sig_name=list(spec.lead_names), p_signal=signal,
            fmt=["16"] * n_leads, adc_gain=[_ADC_GAIN] * n_leads, baseline=[0] * n_leads,
            comments=comments, write_dir=str(directory),
        )
        wfdb.wrann(name, "atr", sample=samples, symbol=symbols, fs=spec.fs_hz, write_dir=str(directory))
    (directory / "RECORDS").write_text("".join(f"{name}\n" for name in names))
    return names


def simulate_database(out_dir: Path | str, spec: SimulationSpec, seed: int) -> list[str]:
    """Write one WFDB record per simulated patient into out_dir (plus a RECORDS file) and return the record names."""
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a directory; it would be replaced by the database")
    # Built beside out_dir and renamed in one step, so a half-written database never sits at out_dir.
    with staged_directory(out_dir) as staging:
        names = _write_database(staging, spec, int(seed))
    return names
