"""Tests for data.simulate: WFDB round trip, determinism, rhythm and morphology by construction, cohort shift."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg_tgdp.data import simulate
from ecg_tgdp.data.simulate import CohortShift, SimulationSpec, simulate_database

FS = 360.0
CLEAN = CohortShift(noise_mv=0.0, baseline_wander_mv=0.0)
SMALL = SimulationSpec(n_patients=3, duration_s=60.0, fs_hz=FS)
# Slow rates and frequent ectopy: many V beats whose P window is not covered by the previous T wave.
CLEAN_SLOW = SimulationSpec(
    n_patients=4, duration_s=120.0, fs_hz=FS, heart_rate_bpm=(30.0, 40.0),
    ectopic_rates=(("S", 0.1), ("V", 0.15), ("F", 0.05)), shift=CLEAN,
)


def _read(folder: Path, name: str) -> tuple[wfdb.Record, np.ndarray, np.ndarray]:
    record = wfdb.rdrecord(str(folder / name))
    annotation = wfdb.rdann(str(folder / name), "atr")
    return record, annotation.sample, np.array(annotation.symbol)


def _window(signal: np.ndarray, centre: int, start_s: float, stop_s: float) -> np.ndarray:
    return signal[centre + round(start_s * FS): centre + round(stop_s * FS)]


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("small") / "db"
    return folder, simulate_database(folder, SMALL, seed=11)


@pytest.fixture(scope="module")
def long_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("long") / "db"
    return folder, simulate_database(folder, SimulationSpec(n_patients=4, duration_s=600.0, fs_hz=FS), seed=5)


@pytest.fixture(scope="module")
def clean_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("clean") / "db"
    return folder, simulate_database(folder, CLEAN_SLOW, seed=3)


def _beats(db: tuple[Path, list[str]], symbol: str, margin_s: float = 0.5):
    """(signal of lead 0, R sample) of every beat with this symbol away from the record edges."""
    folder, names = db
    for name in names:
        record, samples, symbols = _read(folder, name)
        margin = int(margin_s * FS)
        for sample, sym in zip(samples, symbols):
            if sym == symbol and margin <= sample < record.sig_len - margin:
                yield record.p_signal[:, 0], sample


def test_records_read_back_like_physionet(small_db):
    folder, names = small_db
    assert names == ["sim000", "sim001", "sim002"]
    assert (folder / "RECORDS").read_text().splitlines() == names
    for name in names:
        record, samples, symbols = _read(folder, name)
        assert record.fs == FS and record.sig_name == ["MLII"] and record.units == ["mV"]
        assert record.sig_len == 60 * 360 and record.p_signal.shape == (60 * 360, 1)
        assert set(symbols) <= {"N", "A", "V", "F"} and "N" in symbols
        assert np.all(np.diff(samples) > 0) and samples[0] >= 0 and samples[-1] < record.sig_len
        assert f"patient_id: {name}" in record.comments
        assert any(c.startswith("age: ") for c in record.comments) and any(c.startswith("sex: ") for c in record.comments)
        r_amplitude = np.median(record.p_signal[samples[symbols == "N"], 0])
        assert 0.4 < r_amplitude < 2.5  # lead II R wave in mV


def test_same_seed_same_bytes_other_seed_other_signal(small_db, tmp_path):
    folder, names = small_db
    simulate_database(tmp_path / "again", SMALL, seed=11)
    assert _files(tmp_path / "again") == _files(folder)
    simulate_database(tmp_path / "other", SMALL, seed=12)
    first, _, _ = _read(folder, names[0])
    other, _, _ = _read(tmp_path / "other", names[0])
    assert np.abs(first.p_signal - other.p_signal).max() > 0.1


def test_realised_class_shares_match_rates(long_db):
    folder, names = long_db
    symbols = np.concatenate([_read(folder, name)[2] for name in names])
    assert len(symbols) > 2000
    for symbol, rate in (("A", 0.06), ("V", 0.08), ("F", 0.015)):
        share = np.mean(symbols == symbol)
        assert abs(share - rate) < max(0.25 * rate, 0.01), (symbol, share, rate)


def test_ectopic_beats_are_premature_and_v_has_compensatory_pause(long_db):
    folder, names = long_db
    n_v = 0
    for name in names:
        _, samples, symbols = _read(folder, name)
        rr = np.diff(samples)
        sinus_rr = np.median(rr[(symbols[:-1] == "N") & (symbols[1:] == "N")])
        for i in range(1, len(samples) - 1):
            before, after = rr[i - 1], rr[i]
            if symbols[i] in ("A", "V"):
                assert before < 0.85 * sinus_rr, (name, i, symbols[i])
            if symbols[i] == "V":
                assert abs((before + after) / (2 * sinus_rr) - 1) < 0.1, (name, i)
                n_v += 1
            if symbols[i] == "A":  # sinus reset: the pause is not compensatory
                assert before + after < 1.9 * sinus_rr, (name, i)
    assert n_v > 100


def _qrs_width_s(signal: np.ndarray, sample: int) -> float:
    """Time the signal spends above 30 % of its peak |deviation| within 150 ms of the R peak."""
    segment = np.abs(_window(signal, sample, -0.15, 0.15))
    return np.count_nonzero(segment >= 0.3 * segment.max()) / FS


def test_v_beats_are_wide(clean_db):
    width_n = np.median([_qrs_width_s(sig, s) for sig, s in _beats(clean_db, "N")])
    width_v = [_qrs_width_s(sig, s) for sig, s in _beats(clean_db, "V")]
    assert len(width_v) > 20
    assert np.median(width_v) >= 1.5 * width_n
    assert min(width_v) > width_n and width_n < 0.06


def test_p_wave_before_n_absent_before_v(clean_db):
    p_n = [_window(sig, s, -0.25, -0.12).max() for sig, s in _beats(clean_db, "N")]
    p_v = [np.abs(_window(sig, s, -0.25, -0.12)).max() for sig, s in _beats(clean_db, "V")]
    assert min(p_n) > 0.05
    assert max(p_v) < 0.03


def test_v_beats_have_discordant_t_wave(clean_db):
    for sig, s in _beats(clean_db, "V", margin_s=0.6):
        qrs, st_t = sig[s], _window(sig, s, 0.15, 0.45)
        t_wave = st_t[np.argmax(np.abs(st_t))]
        assert np.sign(t_wave) == -np.sign(qrs) and abs(t_wave) > 0.1 * abs(qrs)


def test_shift_changes_signal_not_ground_truth(small_db, tmp_path):
    folder, names = small_db
    shifted = replace(SMALL, shift=CohortShift(morphology=1.0))
    simulate_database(tmp_path / "shifted", shifted, seed=11)
    for name in names:
        reference, samples, symbols = _read(folder, name)
        altered, samples_shifted, symbols_shifted = _read(tmp_path / "shifted", name)
        np.testing.assert_array_equal(samples_shifted, samples)
        np.testing.assert_array_equal(symbols_shifted, symbols)
        assert np.abs(altered.p_signal - reference.p_signal).max() > 0.1


def test_morphology_shift_widens_qrs(clean_db, tmp_path):
    shifted = replace(CLEAN_SLOW, n_patients=2, shift=replace(CLEAN, morphology=1.0))
    simulate_database(tmp_path / "shifted", shifted, seed=3)
    db_shifted = (tmp_path / "shifted", ["sim000", "sim001"])
    db_reference = (clean_db[0], ["sim000", "sim001"])
    width = [np.median([_qrs_width_s(sig, s) for sig, s in _beats(db, "N")]) for db in (db_reference, db_shifted)]
    assert width[1] > 1.2 * width[0]


def test_gain_scales_signal_and_noise_has_its_std(tmp_path):
    spec = replace(SMALL, n_patients=1, shift=CLEAN)
    simulate_database(tmp_path / "g1", spec, seed=4)
    simulate_database(tmp_path / "g2", replace(spec, shift=replace(CLEAN, gain=2.0)), seed=4)
    simulate_database(tmp_path / "noisy", replace(spec, shift=replace(CLEAN, noise_mv=0.05)), seed=4)
    clean, noisy = _read(tmp_path / "g1", "sim000")[0].p_signal, _read(tmp_path / "noisy", "sim000")[0].p_signal
    doubled = _read(tmp_path / "g2", "sim000")[0].p_signal
    np.testing.assert_allclose(doubled, 2 * clean, atol=2e-3)
    assert np.abs(clean).max() > 0.5
    assert np.std(noisy - clean) == pytest.approx(0.05, rel=0.05)


def test_other_sampling_rate_and_leads(tmp_path):
    spec = replace(SMALL, n_patients=1, duration_s=30.5, fs_hz=128.0, lead_names=("MLII", "V1"), record_prefix="h2_")
    assert simulate_database(tmp_path / "db", spec, seed=1) == ["h2_000"]
    record, samples, _ = _read(tmp_path / "db", "h2_000")
    assert record.fs == 128 and record.sig_len == round(30.5 * 128) and record.sig_name == ["MLII", "V1"]
    assert samples[-1] < record.sig_len
    mlii, v1 = record.p_signal.T
    assert np.corrcoef(mlii, v1)[0, 1] < 0.9  # another projection, not a copy
    r_window = np.arange(-3, 4)
    assert np.all(np.abs(v1[samples[1:-1, None] + r_window]).max(axis=1) > 0.1)  # V1 has a QRS at every beat too


def test_existing_out_dir_is_replaced(tmp_path):
    out = tmp_path / "db"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    names = simulate_database(out, replace(SMALL, n_patients=2), seed=1)
    assert sorted(p.name for p in out.iterdir()) == sorted(["RECORDS"] + [f"{n}.{e}" for n in names for e in ("hea", "dat", "atr")])
    assert [p.name for p in tmp_path.iterdir()] == ["db"]  # no staging folder left behind


def test_failed_write_keeps_previous_database(tmp_path, monkeypatch):
    out = tmp_path / "db"
    simulate_database(out, replace(SMALL, n_patients=1), seed=1)
    before = _files(out)

    def broken_wrann(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(simulate.wfdb, "wrann", broken_wrann)
    with pytest.raises(OSError):
        simulate_database(out, replace(SMALL, n_patients=2), seed=2)
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


@pytest.mark.parametrize(
    "changes",
    [
        {"n_patients": 0},
        {"fs_hz": 0.0},
        {"duration_s": 1.0},
        {"ectopic_rates": (("S", 0.3), ("V", 0.3))},
        {"ectopic_rates": (("Q", 0.05),)},
        {"ectopic_rates": (("V", 0.05), ("V", 0.05))},
        {"ectopic_rates": (("V", -0.1),)},
        {"heart_rate_bpm": (90.0, 60.0)},
        {"lead_names": ()},
        {"lead_names": ("MLII", "MLII")},
        {"record_prefix": "a.b"},
    ],
)
def test_invalid_spec_raises(changes):
    with pytest.raises(ValueError):
        replace(SMALL, **changes)


@pytest.mark.parametrize("changes", [{"gain": 0.0}, {"noise_mv": -0.01}, {"morphology": -1.0}])
def test_invalid_shift_raises(changes):
    with pytest.raises(ValueError):
        CohortShift(**changes)


def test_negative_seed_raises(tmp_path):
    with pytest.raises(ValueError):
        simulate_database(tmp_path / "db", SMALL, seed=-1)
