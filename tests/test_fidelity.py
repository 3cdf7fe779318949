"""Fidelity statistics: distances against closed forms, clinical measurements of constructed beats, the discriminator."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from ecg_tgdp.evaluation.classifier_inputs import WindowGeometry, classifier_inputs
from ecg_tgdp.evaluation.clinical import MEASUREMENTS, compare_measurements, measure_beats
from ecg_tgdp.evaluation.discriminator import discriminator_auroc
from ecg_tgdp.evaluation.distances import (
    frechet_distance,
    median_bandwidth,
    mmd_rbf,
    prdc,
    welch_psd_distance,
)
from ecg_tgdp.evaluation.fidelity import (
    ENCODER_METRICS,
    METRICS,
    encoder_features,
    fidelity_per_class,
    rhythm_distance,
    train_encoder,
)
from ecg_tgdp.models.classifier import ClassifierTraining, predict

FS = 128.0
T = 128  # 1 s windows, beat at sample 64
GEOMETRY = WindowGeometry(FS, T, 64, (0.0,), (0.5,))


def prepare(windows: np.ndarray):
    return classifier_inputs(windows, GEOMETRY)


def hann(t: np.ndarray, start: float, stop: float, amplitude: float) -> np.ndarray:
    """A raised-cosine wave of `amplitude` that is exactly zero outside [start, stop] (seconds)."""
    inside = (t >= start) & (t <= stop)
    out = np.zeros_like(t)
    out[inside] = amplitude * 0.5 * (1 - np.cos(2 * np.pi * (t[inside] - start) / (stop - start)))
    return out


def beat(qrs_s: float = 0.1, r_mv: float = 1.2, t_wave: tuple[float, float, float] | None = (0.15, 0.35, 0.3),
         previous_at: int | None = None) -> np.ndarray:
    """A 1 s, 128 Hz window [T] with a Q-R-S complex of width `qrs_s` centred on sample 64 (and a T wave).

    The complex is a small Q, the R and a small S, raised cosines that tile [−qrs_s/2, qrs_s/2];
    `previous_at` puts the same complex (without T) that many samples before the centre.
    """
    t = (np.arange(T) - T // 2) / FS
    half, side = qrs_s / 2, 0.2 * qrs_s
    def complex_at(shift: float) -> np.ndarray:
        s = t - shift
        return hann(s, -half, -half + side, -0.1) + hann(s, -half + side, half - side, r_mv) + hann(s, half - side, half, -0.2)
    x = complex_at(0.0) + hann(t, -0.2, -0.12, 0.1)  # with a P wave
    if t_wave is not None:
        x += hann(t, *t_wave)
    if previous_at is not None:
        x += complex_at(-previous_at / FS)
    return x


def beats(n: int, rng: np.random.Generator, noise_mv: float = 0.02, **shape) -> np.ndarray:
    """n noisy copies [n, 1, T] of `beat(**shape)` with ±10% amplitude jitter."""
    x = beat(**shape)[None] * (1 + 0.1 * rng.standard_normal((n, 1))) + noise_mv * rng.standard_normal((n, T))
    return x[:, None, :].astype(np.float32)


# --- MMD ---------------------------------------------------------------------------------

def test_mmd_matches_hand_computed_unbiased_estimate():
    x, y = np.array([[0.0], [1.0]]), np.array([[3.0], [4.0]])
    k = lambda d: np.exp(-(d**2) / 2)  # bandwidth 1
    expected = 2 * k(1) - 2 * (k(3) + k(4) + k(2) + k(3)) / 4
    assert mmd_rbf(x, y, bandwidth=1.0) == pytest.approx(expected, rel=1e-12)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_mean_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 2, 16))
    y = rng.standard_normal((300, 2, 16))
    assert abs(mmd_rbf(x, x)) < 1e-2  # unbiased: −2(1 − mean k)/n, not exactly 0
    shifts = [mmd_rbf(x, y + shift) for shift in (0.0, 0.5, 1.0)]
    assert abs(shifts[0]) < 5e-3
    assert shifts[0] < shifts[1] < shifts[2]
    # population value for N(0, I) vs N(Δ, I) in d dimensions with kernel width σ:
    # 2 (σ²/(σ² + 2))^(d/2) (1 − exp(−‖Δ‖² / (2 (σ² + 2))))
    d, sigma = 32, median_bandwidth(np.concatenate([x, y + 1.0]).reshape(600, -1))
    expected = 2 * (sigma**2 / (sigma**2 + 2)) ** (d / 2) * (1 - np.exp(-d / (2 * (sigma**2 + 2))))
    assert shifts[2] == pytest.approx(expected, abs=0.01)
    assert shifts[2] == pytest.approx(0.2439, abs=1e-4)  # golden, seed 0


def test_mmd_subsampling_is_seeded():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((500, 8)), rng.standard_normal((500, 8)) + 0.3
    assert mmd_rbf(x, y, max_points=100, seed=3) == mmd_rbf(x, y, max_points=100, seed=3)
    assert mmd_rbf(x, y, max_points=100, seed=3) != mmd_rbf(x, y, max_points=100, seed=4)


# --- Fréchet ------------------------------------------------------------------------------

def closed_form_frechet(mu1, cov1, mu2, cov2) -> float:
    """‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Σ √λ(Σ1 Σ2), the eigenvalues of Σ1 Σ2 being real and ≥ 0."""
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(cov1 @ cov2).real, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * root_trace)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, -1.0])
    cov1 = np.diag([1.0, 2.0, 3.0])
    a = rng.standard_normal((3, 3))
    cov2 = a @ a.T + 0.5 * np.eye(3)
    f1 = rng.multivariate_normal(mu1, cov1, size=40_000)
    f2 = rng.multivariate_normal(mu2, cov2, size=40_000)
    measured = frechet_distance(f1, f2)
    # exact on the sample statistics, close to the population value for 40k samples
    sample = closed_form_frechet(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert measured == pytest.approx(sample, rel=1e-9)
    assert measured == pytest.approx(closed_form_frechet(mu1, cov1, mu2, cov2), rel=0.03)
    # sanity of the reference itself: for commuting covariances it is ‖Δμ‖² + Σ (√a − √b)²
    assert closed_form_frechet(mu1, cov1, mu2, np.diag([4.0, 2.0, 0.25])) == pytest.approx(
        2 + (1 - 2) ** 2 + 0 + (np.sqrt(3) - 0.5) ** 2)


def test_frechet_distance_is_zero_for_one_set_and_finite_for_singular_covariances():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((200, 4))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
    singular = np.column_stack([f[:, :2], np.zeros(200), f[:, 0]])  # rank 2 of 4
    value = frechet_distance(singular, singular + 0.1)
    assert np.isfinite(value) and value == pytest.approx(4 * 0.01, abs=1e-3)
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(f, f[:, :3])


# --- PRDC ---------------------------------------------------------------------------------

def test_prdc_of_identical_sets_is_one():
    real = np.random.default_rng(0).standard_normal((400, 8))
    scores = prdc(real, real.copy(), k=5)
    # each real ball holds its own centre and k − 1 neighbours strictly inside: density = nk / (nk)
    assert scores == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})


def test_prdc_of_a_far_set_is_zero():
    real = np.random.default_rng(0).standard_normal((400, 8))
    assert prdc(real, real + 100.0, k=5) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_of_a_collapsed_set_has_precision_without_recall_or_coverage():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((1000, 2))
    collapsed = 0.1 * rng.standard_normal((1000, 2))  # every fake near the real mode
    scores = prdc(real, collapsed, k=5)
    assert scores["precision"] > 0.95
    assert scores["recall"] < 0.1 and scores["coverage"] < 0.2
    # density counts real balls per fake point: ≈ 1 where fakes sit among real points, however few of them
    assert scores["density"] == pytest.approx(1.0, abs=0.3)


# --- Welch PSD ----------------------------------------------------------------------------

def sines(freq_hz: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(T) / FS
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    return (np.sin(2 * np.pi * freq_hz * t + phase) + 0.05 * rng.standard_normal((n, T)))[:, None, :]


def test_psd_distance_is_small_for_one_rhythm_and_large_for_another():
    rng = np.random.default_rng(0)
    a, b, other = sines(5.0, 100, rng), sines(5.0, 100, rng), sines(12.0, 100, rng)
    assert welch_psd_distance(a, a, FS) == 0.0
    same, different = welch_psd_distance(a, b, FS), welch_psd_distance(a, other, FS)
    assert same < 0.05
    assert 1.5 < different <= 2.0  # disjoint unit-area spectra are 2 apart
    assert welch_psd_distance(a, 3.0 * b, FS) == pytest.approx(same)  # shape, not power


# --- clinical measurements ---------------------------------------------------------------

@pytest.mark.parametrize("qrs_s", [0.08, 0.10, 0.14])
def test_clinical_measurements_of_a_constructed_beat(qrs_s):
    m = {name: values[0] for name, values in measure_beats(beat(qrs_s)[None, None], FS).items()}
    assert m["r_amplitude_mv"] == pytest.approx(1.2, abs=1e-9)  # the R apex lies on the centre sample
    assert m["qrs_ms"] == pytest.approx(1000 * qrs_s, abs=15)  # two samples at 128 Hz
    # tangent at the steepest point of a raised-cosine T wave [a, a + D] meets 0 at a + (3/4 + 1/(2π)) D
    tangent_end = 0.15 + (0.75 + 0.5 / np.pi) * 0.2
    assert m["qt_ms"] == pytest.approx(1000 * (tangent_end + qrs_s / 2), abs=20)
    assert np.isnan(m["rr_prev_ms"])  # no earlier beat in the window


def test_rr_context_and_missing_t_wave():
    m = measure_beats(np.stack([beat(previous_at=45), beat(t_wave=None)])[:, None], FS)
    assert m["rr_prev_ms"][0] == pytest.approx(45 / FS * 1000)
    assert np.isnan(m["rr_prev_ms"][1]) and np.isnan(m["qt_ms"][1])
    assert np.isfinite(m["qrs_ms"]).all()


def test_clinical_measurements_never_fail_on_odd_windows():
    rng = np.random.default_rng(0)
    odd = np.stack([
        np.zeros(T), np.ones(T), rng.standard_normal(T), np.r_[np.zeros(64), np.ones(64)],
        np.linspace(-1, 1, T), beat()[::-1].copy(), 1e-6 * rng.standard_normal(T), -beat(),
        np.r_[np.nan, beat()[1:]],
    ])[:, None, :]
    m = measure_beats(odd, FS)
    assert set(m) == set(MEASUREMENTS)
    for values in m.values():
        assert values.shape == (len(odd),)
        assert np.all(np.isnan(values) | np.isfinite(values))
    assert np.isnan(m["qrs_ms"][0]) and m["r_amplitude_mv"][0] == 0.0  # flat: nothing to delineate
    assert np.isnan([values[-1] for values in m.values()]).all()  # a NaN sample voids the window


def test_clinical_measurements_agree_with_neurokit2_on_a_full_simulated_record():
    """neurokit2's DWT delineation works on full records, not 1 s windows: compare window medians with it."""
    nk = pytest.importorskip("neurokit2")
    fs_sim = 512
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ecg = nk.ecg_simulate(duration=30, sampling_rate=fs_sim, heart_rate=75, noise=0.0, method="ecgsyn", random_state=2)
        _, info = nk.ecg_peaks(ecg, sampling_rate=fs_sim)
        peaks = np.asarray(info["ECG_R_Peaks"])
        _, waves = nk.ecg_delineate(ecg, rpeaks=peaks, sampling_rate=fs_sim, method="dwt")
    onsets, offsets, t_ends = (np.asarray(waves[key], dtype=float) for key in ("ECG_R_Onsets", "ECG_R_Offsets", "ECG_T_Offsets"))
    low = nk.signal_resample(ecg, sampling_rate=fs_sim, desired_sampling_rate=int(FS))
    centres = [round(p * FS / fs_sim) for p in peaks]
    centres = [c - 2 + int(np.argmax(low[c - 2 : c + 3])) for c in centres if 66 <= c <= len(low) - 66]
    m = measure_beats(np.stack([low[c - 64 : c + 64] for c in centres])[:, None], FS)
    assert np.isfinite(m["qrs_ms"]).mean() > 0.9 and np.isfinite(m["qt_ms"]).mean() > 0.9
    nk_qrs = np.nanmedian(offsets - onsets) / fs_sim * 1000
    nk_qt = np.nanmedian(t_ends - onsets) / fs_sim * 1000
    assert np.nanmedian(m["qrs_ms"]) == pytest.approx(nk_qrs, abs=15)
    assert np.nanmedian(m["qt_ms"]) == pytest.approx(nk_qt, abs=40)  # the tangent method ends T early


def test_compare_measurements():
    rng = np.random.default_rng(0)
    narrow = beats(60, rng, qrs_s=0.08)
    wide = beats(60, rng, qrs_s=0.12)
    same = compare_measurements(narrow, narrow, FS)
    assert np.isnan(same.pop("rr_prev_ms"))  # no earlier beat visible in any window
    assert same == {"r_amplitude_mv": 0.0, "qrs_ms": 0.0, "qt_ms": 0.0}
    shifted = compare_measurements(narrow, wide, FS)
    assert shifted["qrs_ms"] == pytest.approx(40, abs=12)
    assert shifted["r_amplitude_mv"] < 0.1


# --- discriminator --------------------------------------------------------------------------

def test_discriminator_auroc_is_chance_for_one_distribution_and_high_for_another():
    rng = np.random.default_rng(0)
    real = beats(300, rng)
    assert discriminator_auroc(real, beats(300, rng), seed=0) == pytest.approx(0.5, abs=0.1)
    assert discriminator_auroc(real, beats(300, rng, qrs_s=0.12), seed=0) > 0.9
    assert discriminator_auroc(real, beats(300, rng, noise_mv=0.04), seed=0) > 0.9  # spectrum, not shape
    with pytest.raises(ValueError, match="5-fold"):
        discriminator_auroc(real[:3], real, seed=0)


def test_the_discriminator_reads_the_spectrum_within_the_pass_band_when_given_one():
    """Windows alike below the band edge but with a faint noise floor above it (a generator's residual noise where
    the real windows hold only filter tails) are told apart up to Nyquist, not within the band."""
    from scipy import signal

    rng = np.random.default_rng(1)
    lowpass = signal.butter(8, 40.0, btype="lowpass", fs=FS, output="sos")
    highpass = signal.butter(8, 50.0, btype="highpass", fs=FS, output="sos")
    real = signal.sosfiltfilt(lowpass, beats(300, rng), axis=-1)  # band-passed, as real windows are
    floor = signal.sosfiltfilt(highpass, 0.005 * rng.standard_normal(real.shape), axis=-1)  # power above 50 Hz only
    fake = signal.sosfiltfilt(lowpass, beats(300, rng), axis=-1) + floor
    assert discriminator_auroc(real, fake, seed=0) > 0.9
    assert discriminator_auroc(real, fake, seed=0, band=(FS, 40.0)) == pytest.approx(0.5, abs=0.1)


# --- per-class fidelity --------------------------------------------------------------------

CLASSES = ["N", "S", "V"]
SHAPES = {"N": {}, "S": {"previous_at": 50}, "V": {"qrs_s": 0.14, "r_mv": 2.0}}


def cohort(per_class: dict[str, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    windows = np.concatenate([beats(n, rng, **SHAPES[name]) for name, n in per_class.items()])
    labels = np.concatenate([np.full(n, CLASSES.index(name)) for name, n in per_class.items()])
    return windows, labels


def test_fidelity_per_class_reports_every_class_and_metric():
    rng = np.random.default_rng(0)
    real, real_labels = cohort({"N": 40, "S": 30, "V": 30}, rng)
    fake, fake_labels = cohort({"N": 30, "S": 30, "V": 20}, rng)
    val, val_labels = cohort({"N": 10, "S": 10, "V": 10}, rng)
    settings = ClassifierTraining(epochs=2, batch_size=32, steps_per_epoch=4)
    encoder = train_encoder(prepare(real), real_labels, prepare(val), val_labels, seed=0, num_classes=3,
                            settings=settings)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert predict(encoder, prepare(val)).shape == (30, 3)

    scores = fidelity_per_class(real, real_labels, fake, fake_labels, CLASSES, FS, encoder, seed=0,
                                encoder_input=prepare)
    assert list(scores) == [*CLASSES, "all"]
    no_context = {"wasserstein_rr_prev_ms", "wasserstein_log_rr_ratio"}  # 1 s windows: no beat after the anchor
    for name, row in scores.items():
        assert list(row) == list(METRICS)
        finite = {metric: value for metric, value in row.items() if metric not in no_context}
        assert all(np.isfinite(value) for value in finite.values()), (name, row)
        assert np.isnan(row["wasserstein_log_rr_ratio"])  # no rhythm given
    assert np.isfinite(scores["S"]["wasserstein_rr_prev_ms"])  # only S windows show an earlier beat
    assert (scores["all"]["n_real"], scores["all"]["n_fake"]) == (100, 80)
    assert 0.3 < scores["N"]["discriminator_auroc"] < 0.7  # same generator for real and fake
    precomputed = fidelity_per_class(real, real_labels, fake, fake_labels, CLASSES, FS, encoder, seed=0,
                                     encoder_input=prepare, real_features=encoder_features(encoder, prepare(real)))
    np.testing.assert_equal(precomputed, scores)  # NaN where both are NaN


def test_fidelity_per_class_skips_small_classes_and_checks_labels():
    rng = np.random.default_rng(1)
    real, real_labels = cohort({"N": 20, "S": 20, "V": 20}, rng)
    fake, fake_labels = cohort({"N": 20, "S": 20, "V": 3}, rng)
    with pytest.warns(UserWarning, match="'V' has 20 real and 3 synthetic"):
        scores = fidelity_per_class(real, real_labels, fake, fake_labels, CLASSES, FS, encoder=None, seed=0)
    assert np.isnan([scores["V"][metric] for metric in METRICS[2:]]).all()
    assert scores["V"]["n_fake"] == 3
    assert np.isnan([scores["N"][metric] for metric in ENCODER_METRICS]).all()  # no encoder
    assert np.isfinite(scores["N"]["mmd"])
    with pytest.raises(ValueError, match="outside the 3 classes"):
        fidelity_per_class(real, real_labels + 1, fake, fake_labels, CLASSES, FS)
    with pytest.raises(ValueError, match="class indices"):
        fidelity_per_class(real, real_labels.astype(float), fake, fake_labels, CLASSES, FS)


def test_encoder_training_is_seeded():
    rng = np.random.default_rng(2)
    x, y = cohort({"N": 20, "S": 20, "V": 20}, rng)
    settings = ClassifierTraining(epochs=1, batch_size=16, steps_per_epoch=2)
    inputs = prepare(x)
    a = train_encoder(inputs, y, inputs, y, seed=5, num_classes=3, settings=settings)
    b = train_encoder(inputs, y, inputs, y, seed=5, num_classes=3, settings=settings)
    np.testing.assert_array_equal(encoder_features(a, inputs), encoder_features(b, inputs))


def test_rhythm_distance_sees_prematurity_lost():
    rng = np.random.default_rng(3)
    premature = rng.normal(-0.4, 0.05, 200)  # log(RR before / RR after) of premature beats
    assert rhythm_distance(premature, premature[::-1]) == 0.0
    assert rhythm_distance(premature, rng.normal(0.0, 0.05, 200)) == pytest.approx(0.4, abs=0.03)
    assert np.isnan(rhythm_distance(premature, np.array([np.nan, 0.1])))  # too few finite values
