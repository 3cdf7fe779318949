"""Beat windows from WFDB records, and one clear message for each kind of bad record."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from ecg_tgdp.data.labels import AAMI_SYMBOL_TO_CLASS
from ecg_tgdp.data.records import NoWindowsError, RecordError
from ecg_tgdp.data.wfdb_beats import read_beat_windows
from tests.conftest import spiky_ecg, write_record

GEOMETRY = {"fs_hz": 125.0, "window_s": 0.8, "band_hz": (0.5, 40.0), "symbol_to_class": AAMI_SYMBOL_TO_CLASS, "classes": ["N", "S", "V"]}


def read(path, leads=("MLII",), **overrides):
    return read_beat_windows(path, list(leads), **{**GEOMETRY, **overrides})


def test_windows_are_centred_on_beats_and_resampled(tiny_record):
    path, beats, _symbols = tiny_record
    result = read(path)
    # the first beat (0.5 s) fits a 0.8 s window; every beat does
    assert result.windows.shape == (20, 1, 100)
    assert result.windows.dtype == np.float32
    assert list(result.labels[[5, 9]]) == ["V", "S"]
    assert np.array_equal(result.sample_index, beats)
    # the spike sits at the window's centre after band-pass and 250 → 125 Hz resampling
    assert np.all(np.abs(result.windows[:, 0].argmax(axis=1) - 50) <= 1)
    assert result.columns["rr_prev_s"][1] == pytest.approx(1.0)


def test_beats_past_the_record_edge_are_dropped_and_counted(tmp_path):
    fs = 250.0
    beats = [10, 500, 1000, 4990]  # first and last window run past the 20 s record's edges
    path = write_record(tmp_path, "edge", spiky_ecg(fs, 20, beats), fs, beats, ["N"] * 4)
    result = read(path)
    assert len(result.labels) == 2
    assert result.dropped["edge"] == 2


def test_unknown_symbols_are_skipped_with_a_named_warning(tmp_path):
    fs = 250.0
    beats = [500, 1000, 1500]
    path = write_record(tmp_path, "unk", spiky_ecg(fs, 10, beats), fs, beats, ["N", "?", "N"])
    result = read(path)
    assert result.dropped["unknown_symbol"] == 1
    assert len(result.warnings) == 1 and "unk" in result.warnings[0] and "'?'" in result.warnings[0]


def test_classes_outside_the_list_are_counted_not_silently_lost(tiny_record):
    path, _, _ = tiny_record
    result = read(path, classes=["N"])
    assert len(result.labels) == 18 and result.dropped["class_not_selected"] == 2


def test_nan_and_flat_stretches_drop_the_windows_they_touch(tmp_path):
    fs = 250.0
    beats = [int(fs * (k + 0.5)) for k in range(20)]
    x = spiky_ecg(fs, 20, beats)
    x[int(3.2 * fs) : int(3.8 * fs)] = np.nan  # touches the beats at 3.5 s (and windows reaching it)
    x[int(10 * fs) : int(12 * fs)] = 0.7  # 2 s lead-off: a flat line
    path = write_record(tmp_path, "bad", x, fs, beats, ["N"] * 20)
    result = read(path)
    assert result.dropped["nan_or_flat"] == 3  # the beats at 3.5, 10.5 and 11.5 s
    assert not np.isnan(result.windows).any()
    kept_s = result.sample_index / fs
    assert not np.any((kept_s > 3.0) & (kept_s < 4.0))
    assert not np.any((kept_s > 10.0) & (kept_s < 12.0))
    assert np.any(kept_s > 15)  # the filter's NaN handling does not spoil the rest of the record


def test_requested_lead_absent_names_record_and_lead(tiny_record):
    path, _, _ = tiny_record
    with pytest.raises(RecordError, match=r"r1.*lead V1 absent.*MLII"):
        read(path, leads=("V1",))


def test_lead_chosen_by_name_not_position(tmp_path):
    fs = 250.0
    beats = [500, 1000, 1500]
    x = np.concatenate([spiky_ecg(fs, 10, beats) * 0.1, spiky_ecg(fs, 10, beats)], axis=1)
    path = write_record(tmp_path, "two", x, fs, beats, ["N"] * 3, leads=("V5", "MLII"))
    mlii = read(path, leads=("MLII",)).windows
    both = read(path, leads=("MLII", "V5")).windows
    assert np.allclose(both[:, 0], mlii[:, 0])
    assert mlii[:, 0].max() > 5 * both[:, 1].max()


def test_missing_annotation_file(tiny_record):
    path, _, _ = tiny_record
    path.with_suffix(".atr").unlink()
    with pytest.raises(RecordError, match=r"r1\.atr: annotation file not found"):
        read(path)


def test_header_that_does_not_parse(tiny_record):
    path, _, _ = tiny_record
    path.with_suffix(".hea").write_text("this is not a header\n")
    with pytest.raises(RecordError, match=r"r1\.hea: header does not parse"):
        read(path)


def test_signal_file_shorter_than_its_header(tiny_record):
    path, _, _ = tiny_record
    dat = path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(RecordError, match=r"r1\.dat: 1000 bytes, shorter than the 10000"):
        read(path)


def test_missing_signal_file(tiny_record):
    path, _, _ = tiny_record
    shutil.move(path.with_suffix(".dat"), path.with_suffix(".bak"))
    with pytest.raises(RecordError, match=r"r1\.dat: signal file .* not found"):
        read(path)


def test_beats_annotated_twice_at_one_sample_are_read_once_and_counted(tmp_path):
    fs = 250.0
    beats = [int(fs * (k + 0.5)) for k in range(20)]
    path = write_record(tmp_path, "twice", spiky_ecg(fs, 20, beats), fs, sorted(beats * 2), ["N", "N"] * 20)
    result = read(path)
    assert np.array_equal(result.sample_index, beats) and result.dropped == {"duplicate_annotation": 20}
    assert (result.columns["rr_prev_s"][1:] > 0.9).all()  # no RR of 0 from a beat's twin
    (warning,) = result.warnings
    assert warning == (f"{path}.atr: 20 beat annotations repeat an earlier one at the same sample; "
                       "dropped (duplicate_annotation)")


@pytest.mark.parametrize(("symbols", "contents"), [
    (["+", "~", "|"], "it holds only non-beat annotations: '+'×1, '|'×1, '~'×1"),
    (["F", "Q", "F"], "its beats: 'F'×2, 'Q'×1"),
])
def test_a_record_without_a_beat_of_the_chosen_classes_is_a_no_windows_error(tmp_path, symbols, contents):
    fs = 250.0
    beats = [500, 1000, 1500]
    path = write_record(tmp_path, "nobeat", spiky_ecg(fs, 10, beats), fs, beats, symbols)
    with pytest.raises(NoWindowsError) as raised:
        read(path)
    assert str(raised.value) == f"{path}.atr: no beat annotations of the chosen classes N, S, V ({contents})"


def test_a_record_whose_every_beat_is_dropped_is_a_no_windows_error_that_keeps_the_counts(tmp_path):
    fs = 250.0
    beats = [10, 4990]  # both windows run past the record's edges
    path = write_record(tmp_path, "edges", spiky_ecg(fs, 20, beats), fs, beats, ["N", "V"])
    with pytest.raises(NoWindowsError, match=r"edges: no beat window remains of its 2 beats of the chosen classes "
                                             r"\(edge 2\)$") as raised:
        read(path)
    assert raised.value.dropped == {"edge": 2}


def test_a_lead_with_adc_gain_0_is_read_with_a_warning_naming_record_and_lead(tiny_record):
    path, beats, _ = tiny_record
    header = path.with_suffix(".hea")
    header.write_text(header.read_text().replace(" 200.0(0)/mV", " 0(0)/mV", 1))
    result = read(path)
    assert len(result.labels) == 20
    (warning,) = result.warnings
    assert warning.startswith(f"{path}: lead MLII has ADC gain 0 (uncalibrated)")
    assert "amplitudes may be wrong" in warning
