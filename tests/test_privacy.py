"""Privacy statistics: distance to the closest training window and the memorization share."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn import config_context

from ecg_tgdp.evaluation.privacy import closest_distances, memorization

T = 128


def windows(n: int, rng: np.random.Generator) -> np.ndarray:
    """n beat-like windows [n, 2, T]: a Gaussian spike of random height and position over noise."""
    t = np.arange(T)
    centre = 64 + rng.integers(-4, 5, (n, 1, 1))
    height = 1 + 0.2 * rng.standard_normal((n, 1, 1))
    return (height * np.exp(-0.5 * ((t - centre) / 3.0) ** 2) + 0.05 * rng.standard_normal((n, 2, T))).astype(np.float32)


def test_closest_distances_on_a_hand_made_case():
    queries = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 9.0]])[:, None, :]
    reference = np.array([[0.0, 0.0], [6.0, 8.0]])[:, None, :]
    np.testing.assert_allclose(closest_distances(queries, reference), [0.0, 5.0, 1.0], atol=1e-12)


def test_closest_distances_in_small_chunks_match_the_full_matrix():
    rng = np.random.default_rng(0)
    queries, reference = windows(300, rng), windows(700, rng)
    expected = cdist(queries.reshape(300, -1).astype(np.float64), reference.reshape(700, -1).astype(np.float64)).min(1)
    with config_context(working_memory=1):  # 1 MiB: many row chunks
        chunked = closest_distances(queries, reference)
    np.testing.assert_allclose(chunked, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="256 values"):
        closest_distances(queries, reference[:, :1])


def test_memorization_flags_planted_copies_and_spares_an_independent_set():
    rng = np.random.default_rng(0)
    train, heldout = windows(600, rng), windows(300, rng)

    independent = memorization(windows(300, rng), train, heldout, percentile=5.0)
    assert independent["memorized_share"] <= 0.05 + 0.05  # ≈ the percentile, up to sampling noise
    assert independent["dcr_synthetic_median"] == pytest.approx(independent["dcr_heldout_median"], rel=0.05)
    assert independent["dcr_synthetic_median"] == pytest.approx(1.0689, abs=1e-3)  # golden, seed 0: ≈ 0.05·√(2·256) of two noise draws

    planted = windows(300, rng)
    copies = rng.choice(600, 60, replace=False)
    planted[:60] = train[copies]  # 20% exact copies
    flagged = memorization(planted, train, heldout, percentile=5.0)
    assert 0.2 <= flagged["memorized_share"] <= 0.2 + 0.1
    assert flagged["dcr_threshold"] == independent["dcr_threshold"]  # set by held-out real windows only
    assert closest_distances(planted[:60], train).max() < 1e-5


def test_memorization_threshold_follows_the_percentile():
    rng = np.random.default_rng(1)
    train, heldout, synthetic = windows(400, rng), windows(200, rng), windows(200, rng)
    low, high = (memorization(synthetic, train, heldout, percentile=q) for q in (5.0, 50.0))
    assert low["dcr_threshold"] < high["dcr_threshold"] < low["dcr_heldout_median"] * 1.01
    assert low["memorized_share"] < high["memorized_share"]
    assert high["memorized_share"] == pytest.approx(0.5, abs=0.15)
    with pytest.raises(ValueError, match="percentile"):
        memorization(synthetic, train, heldout, percentile=101.0)
