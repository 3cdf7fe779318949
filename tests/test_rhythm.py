"""Rhythm context from the signal alone: R peaks, RR around the anchor beat, templates, the classifier's inputs."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from ecg_tgdp.data import simulate
from ecg_tgdp.data.labels import AAMI_SYMBOL_TO_CLASS
from ecg_tgdp.data.rhythm import anchor_rr, beat_context, detect_r_peaks
from ecg_tgdp.data.wfdb_beats import read_beat_windows
from ecg_tgdp.evaluation.classifier_inputs import WindowGeometry, classifier_inputs
from tests.conftest import physionet_db

FS = 128.0


@pytest.fixture(scope="module")
def simulated_windows(tmp_path_factory):
    """4 s windows (beat at 2 s) of two simulated patients at 128 Hz, with their annotation RR intervals."""
    folder = tmp_path_factory.mktemp("sim") / "db"
    spec = simulate.SimulationSpec(n_patients=2, duration_s=120.0, fs_hz=FS, ectopic_rates=(("S", 0.1), ("V", 0.1)))
    names = simulate.simulate_database(folder, spec, seed=3)
    read = partial(read_beat_windows, leads=["MLII"], fs_hz=FS, window_s=4.0, band_hz=(0.5, 40.0),
                   symbol_to_class=AAMI_SYMBOL_TO_CLASS, classes=["N", "S", "V"])
    parts = [read(folder / name) for name in names]
    windows = np.concatenate([p.windows for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    rr = np.concatenate([np.column_stack([p.columns["rr_prev_s"], p.columns["rr_next_s"]]) for p in parts])
    return windows, labels, rr


def test_detected_rr_matches_the_annotations_of_simulated_records(simulated_windows):
    windows, _, annotated = simulated_windows
    context = beat_context(windows, FS, anchor=256)
    error = np.abs(context.rr_s[:, :2] - annotated)
    assert np.nanmedian(error) < 1 / FS  # mostly the same sample
    assert np.nanmean(error < 0.08) > 0.95  # within 80 ms, where the detector takes a V beat's S wave for its peak
    assert np.isfinite(context.rr_s).all(axis=1).mean() > 0.97  # both neighbours and the mean found
    assert (context.neighbours >= 2).mean() > 0.97


def test_simulated_s_beats_are_premature_and_v_beats_have_a_compensatory_pause(simulated_windows):
    windows, labels, _ = simulated_windows
    ratio = beat_context(windows, FS, anchor=256).log_rr_ratio()
    median = {label: np.nanmedian(ratio[labels == label]) for label in ("N", "S", "V")}
    assert abs(median["N"]) < 0.1  # a sinus beat comes on time: RR before ≈ RR after
    assert median["S"] < -0.2 and median["V"] < -0.4  # both early; V's pause is longer (not reset)
    assert median["V"] < median["S"]


def test_real_mitdb_s_beats_are_premature_in_their_window():
    """Record 220: isolated atrial premature beats (94 of them) in sinus rhythm."""
    folder = physionet_db("mitdb")
    part = read_beat_windows(folder / "220", ["MLII"], fs_hz=FS, window_s=4.0, band_hz=(0.5, 40.0),
                             symbol_to_class=AAMI_SYMBOL_TO_CLASS, classes=["N", "S"])
    ratio = beat_context(part.windows, FS, anchor=256).log_rr_ratio()
    assert np.nanmedian(ratio[part.labels == "S"]) < -0.2 < np.nanmedian(ratio[part.labels == "N"]) + 0.1
    annotated = np.log(part.columns["rr_prev_s"] / part.columns["rr_next_s"])
    assert np.nanmedian(np.abs(ratio - annotated)) < 0.02  # the detector agrees with the cardiologists' beats


def test_anchor_rr_uses_the_nearest_peak_or_inserts_a_missed_anchor():
    peaks = np.array([10, 138, 220, 350])  # 1.0 s, 0.64 s, 1.02 s apart at 128 Hz
    centre, before, after, mean = anchor_rr(peaks, 225, FS)
    assert centre == 220 and before == pytest.approx(82 / FS) and after == pytest.approx(130 / FS)
    assert mean == pytest.approx(340 / 3 / FS)
    centre, before, after, _ = anchor_rr(np.array([10, 400]), 200, FS)  # the detector missed the anchor beat
    assert centre == 200 and before == pytest.approx(190 / FS) and after == pytest.approx(200 / FS)
    centre, before, after, mean = anchor_rr(np.zeros(0, int), 64, FS)
    assert centre == 64 and np.isnan([before, after, mean]).all()


def test_no_peaks_on_a_flat_or_broken_lead():
    assert len(detect_r_peaks(np.zeros(512), FS)) == 0
    assert len(detect_r_peaks(np.full(512, np.nan), FS)) == 0


def test_template_of_identical_beats_is_the_beat(simulated_windows):
    windows, labels, _ = simulated_windows
    normal = windows[labels == "N"][:20]
    context = beat_context(normal, FS, anchor=256)
    assert context.beat.shape == context.template.shape == (20, 1, 83)  # 0.25 s before, 0.4 s after at 128 Hz
    difference = np.abs(context.beat - context.template).max(axis=-1)[:, 0]
    amplitude = np.abs(context.beat).max(axis=-1)[:, 0]
    assert np.median(difference / amplitude) < 0.25  # sinus beats of one patient look alike


def test_beat_context_refuses_an_anchor_without_room_for_its_segment():
    with pytest.raises(ValueError, match="leaves no room"):
        beat_context(np.zeros((2, 1, 512)), FS, anchor=10)


def test_classifier_inputs_of_beats_and_of_crops(simulated_windows):
    windows, _, _ = simulated_windows
    beats = WindowGeometry(FS, 512, 256, (0.0,), (0.5,))
    inputs = classifier_inputs(windows[:50], beats)
    assert inputs.signal.shape == (50, 3, 83) and inputs.features.shape == (50, 7)
    assert np.isfinite(inputs.signal).all() and np.isfinite(inputs.features).all()
    np.testing.assert_allclose(inputs.signal[:, 2], inputs.signal[:, 0] - inputs.signal[:, 1], atol=1e-6)
    gained = classifier_inputs(windows[:50] * 3.0, beats)  # a device with three times the gain
    np.testing.assert_allclose(gained.features, inputs.features, atol=1e-5)
    assert np.abs(gained.signal - inputs.signal).max() < 0.1  # the amplitude floor aside, gain cancels
    crops = classifier_inputs(windows[:5], WindowGeometry(FS, 512, None, (0.1,), (0.5,)))
    np.testing.assert_allclose(crops.signal, (windows[:5] - 0.1) / 0.5, rtol=1e-6)
    assert crops.features.shape == (5, 0)
