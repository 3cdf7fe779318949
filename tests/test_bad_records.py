"""Records that used to read silently wrong or with a traceback: annotation rates, beats off their QRS, units,
amplitudes, rates, multi-segment records, short records, lead names, isoelectric stretches, inf in arrays."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb

from ecg_tgdp.data.arrays import read_array_windows
from ecg_tgdp.data.labels import AAMI_SYMBOL_TO_CLASS
from ecg_tgdp.data.preprocess import invalid_samples
from ecg_tgdp.data.ptbxl import read_ptbxl_windows
from ecg_tgdp.data.records import RecordError
from ecg_tgdp.data.wfdb_beats import read_beat_windows
from tests.conftest import spiky_ecg

FS = 125.0
GEOMETRY = {"fs_hz": FS, "window_s": 0.8, "band_hz": (0.5, 40.0), "symbol_to_class": AAMI_SYMBOL_TO_CLASS,
            "classes": ["N", "S", "V"]}
BEATS = [int(FS * (k + 0.5)) for k in range(40)]  # one beat a second, at k + 0.5 s


def _record(folder, name="r1", units="mV", scale=1.0, beats=BEATS, seconds=40, gain=200.0):
    """A spiky 125 Hz record written with `units` and its samples multiplied by `scale`."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=FS, units=[units], sig_name=["MLII"], p_signal=spiky_ecg(FS, seconds, beats) * scale,
                fmt=["16"], adc_gain=[gain], baseline=[0], write_dir=str(folder))
    wfdb.wrann(name, "atr", sample=np.asarray(beats), symbol=["N"] * len(beats), write_dir=str(folder))
    return folder / name


def read(path, leads=("MLII",), **overrides):
    return read_beat_windows(path, list(leads), **{**GEOMETRY, **overrides})


def test_an_annotation_file_at_its_own_rate_lands_on_the_beats(tmp_path):
    path = _record(tmp_path)
    # gqrs-style annotator written at 250 Hz beside the 125 Hz record: twice the sample numbers, and its rate
    wfdb.wrann("r1", "qrs", sample=np.asarray(BEATS) * 2, symbol=["N"] * len(BEATS), fs=250, write_dir=str(tmp_path))
    result = read(path, annotator="qrs")
    assert len(result.labels) == 40 and np.array_equal(result.sample_index, BEATS)
    assert result.columns["on_r_peak"].all() and not result.warnings
    assert np.all(np.abs(result.windows[:, 0].argmax(axis=1) - 50) <= 1)


def test_beats_off_their_qrs_keep_their_windows_with_a_warning_naming_the_record(tmp_path):
    path = _record(tmp_path)
    # an annotation of another rate without its rate stored: every beat half a second off its spike
    wfdb.wrann("r1", "atr", sample=np.asarray(BEATS) * 2, symbol=["N"] * len(BEATS), write_dir=str(tmp_path))
    result = read(path)
    share = result.columns["on_r_peak"].mean()
    assert len(result.labels) == 20 and share < 0.5  # the beats annotated past 20 s fall off the 40 s record
    (warning,) = result.warnings
    assert str(path) in warning and f"only {share:.0%} of 20 annotated beats" in warning and "r1.atr" in warning


@pytest.mark.parametrize("units", ["µV", "μV", "uV", "microvolt"])
def test_microvolt_units_are_read_as_microvolts(tmp_path, units):
    reference = read(_record(tmp_path / "mv")).windows
    in_microvolts = read(_record(tmp_path / "uv", units=units, scale=1000.0, gain=0.2)).windows
    np.testing.assert_allclose(in_microvolts, reference, atol=0.01)


def test_implausible_amplitudes_are_a_record_error(tmp_path):
    path = _record(tmp_path, scale=15_000_000.0, gain=0.001)  # "mV" that are not
    with pytest.raises(RecordError, match=r"r1.*lead MLII has a typical amplitude of .* mV, outside the physiological"):
        read(path)


def test_a_non_positive_header_rate_is_an_error(tmp_path):
    path = _record(tmp_path)
    header = path.with_suffix(".hea")
    header.write_text(header.read_text().replace("r1 1 125", "r1 1 -125", 1))
    with pytest.raises(RecordError, match=r"r1\.hea: sampling rate -125 Hz is not positive"):
        read(path)


def test_multi_segment_records_are_read(tmp_path):
    for k, segment in enumerate(("seg_1", "seg_2")):
        wfdb.wrsamp(segment, fs=FS, units=["mV"], sig_name=["MLII"], p_signal=spiky_ecg(FS, 20, BEATS[:20], seed=k),
                    fmt=["16"], adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))
    (tmp_path / "multi.hea").write_text("multi/2 1 125 5000\nseg_1 2500\nseg_2 2500\n")
    wfdb.wrann("multi", "atr", sample=np.asarray(BEATS), symbol=["N"] * 40, write_dir=str(tmp_path))
    result = read(tmp_path / "multi")
    assert len(result.labels) == 40 and result.columns["on_r_peak"].all()


def test_a_record_too_short_for_the_filter_names_the_file(tmp_path):
    path = _record(tmp_path, beats=[5], seconds=0.1)
    with pytest.raises(RecordError, match=r"r1: 12 samples \(0\.096 s\) are too short for the band-pass"):
        read(path)


def test_lead_names_ignore_case_and_may_not_repeat(tmp_path):
    path = _record(tmp_path)
    np.testing.assert_array_equal(read(path, leads=("mlii",)).windows, read(path).windows)
    with pytest.raises(RecordError, match="lead MLII, mlii asked for more than once|lead mlii, MLII asked"):
        read(path, leads=("MLII", "mlii"))


def test_isoelectric_stretches_are_kept_saturation_and_lead_off_are_not():
    fs = 100.0
    x = np.sin(2 * np.pi * 1.2 * np.arange(1000) / fs)[None].repeat(3, axis=0) * [[1.0], [0.5], [0.8]]
    x[1, 100:132] = 0.01  # 0.32 s exactly constant near the baseline (PTB-XL 00042 V5)
    x[2, 400:430] = x[2].max()  # 0.3 s stuck at the lead's maximum: saturation
    x[0, 700:820] = 0.3  # 1.2 s stuck mid-range: lead-off
    bad = invalid_samples(x, fs)
    assert not bad[100:132].any() and bad[400:430].all() and bad[700:820].all()
    assert bad.sum() == 30 + 120


def test_twelve_lead_crops_keep_their_isoelectric_stretches(tmp_path):
    t = np.arange(1000) / 100.0
    signal = 0.5 * np.sin(2 * np.pi * 1.2 * t)[:, None].repeat(12, axis=1)
    signal[300:330, 4] = 0.0  # an exactly flat 0.3 s stretch in one lead, at the baseline
    leads = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    wfdb.wrsamp("r12", fs=100, units=["mV"] * 12, sig_name=leads, p_signal=signal, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    crops = read_ptbxl_windows(tmp_path / "r12", leads, label="NORM", patient="1", fs_hz=100, window_s=2.5,
                               band_hz=(0.5, 40.0))
    assert len(crops.labels) == 4 and not crops.dropped


def test_inf_in_an_npz_is_dropped_like_nan(tmp_path):
    rng = np.random.default_rng(0)
    windows = np.sin(np.arange(100) / 5)[None, None] + 0.01 * rng.standard_normal((4, 1, 100))
    windows[1, 0, 7] = np.inf
    windows[2, 0, 9] = -np.inf
    path = tmp_path / "inf.npz"
    np.savez(path, windows=windows, labels=np.array(list("NSVN")), patients=np.array(["a"] * 4), fs_hz=100.0)
    (part,) = read_array_windows(path, fs_in_hz=None, fs_hz=100, window_s=1.0, band_hz=(0.5, 40.0))
    assert part.sample_index.tolist() == [0, 3] and part.dropped == {"nan_or_flat": 2}
    assert np.isfinite(part.windows).all()


@pytest.mark.parametrize("fs_hz", [0.0, -128.0])
def test_an_npz_with_a_non_positive_rate_names_the_file(tmp_path, fs_hz):
    path = tmp_path / "rate.npz"
    np.savez(path, windows=np.ones((2, 1, 128)), labels=np.array(["N", "V"]), fs_hz=fs_hz)
    with pytest.raises(RecordError, match=rf"rate\.npz: sampling rate {fs_hz:g} Hz is not positive"):
        read_array_windows(path, fs_in_hz=None, fs_hz=128, window_s=1.0, band_hz=(0.5, 40.0))


def test_a_twelve_lead_record_with_adc_gain_0_warns_naming_record_and_lead(tmp_path):
    leads = ["I", "II", "V1"]
    signal = 0.5 * np.sin(2 * np.pi * 1.2 * np.arange(1000) / 100.0)[:, None].repeat(3, axis=1)
    wfdb.wrsamp("g0", fs=100, units=["mV"] * 3, sig_name=leads, p_signal=signal, fmt=["16"] * 3,
                adc_gain=[1000.0] * 3, baseline=[0] * 3, write_dir=str(tmp_path))
    header = tmp_path / "g0.hea"
    lines = header.read_text().splitlines()
    lines[2] = lines[2].replace("1000.0(0)/mV", "0(0)/mV")  # lead II: uncalibrated
    header.write_text("\n".join(lines) + "\n")
    crops = read_ptbxl_windows(tmp_path / "g0", ["ii", "I"], label="NORM", patient="1", fs_hz=100, window_s=2.5,
                               band_hz=(0.5, 40.0))
    assert len(crops.labels) == 4
    (warning,) = crops.warnings
    assert warning.startswith(f"{tmp_path / 'g0'}: lead II has ADC gain 0 (uncalibrated) in its header")
