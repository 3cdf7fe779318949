"""Two-sample distances between real and synthetic windows or their features (README: The evaluation protocol, fidelity).

MMD with an RBF kernel (Gretton et al. 2012), Fréchet distance between Gaussian fits
(Heusel et al. 2017), precision/recall/density/coverage (Naeem et al. 2020) and a Welch
power-spectrum distance. Windows are [N, leads, T]; features are [N, D].
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg, signal
from scipy.spatial.distance import pdist
from sklearn.metrics import pairwise_distances
from sklearn.metrics.pairwise import rbf_kernel


def subsample(x: np.ndarray, max_points: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most `max_points` rows of x, drawn without replacement (all rows, in order, if fewer)."""
    if max_points is None or len(x) <= max_points:
        return np.asarray(x)
    return np.asarray(x[np.sort(rng.choice(len(x), max_points, replace=False))])


def median_bandwidth(pooled: np.ndarray) -> float:
    """Median pairwise Euclidean distance of pooled rows [N, D] (Gretton et al. 2012, §8), duplicates' zeros left out."""
    distances = pdist(pooled)
    positive = distances[distances > 0]
    if len(positive) == 0:
        raise ValueError(f"median bandwidth: all {len(pooled)} pooled points are identical")
    return float(np.median(positive))


def mmd_rbf(
    x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, *, max_points: int = 1000, seed: int = 0
) -> float:
    """Unbiased squared MMD (Gretton et al. 2012, JMLR 13:723, Lemma 6) with an RBF kernel.

    x [N, ...], y [M, ...] are flattened per row; k(a, b) = exp(−‖a − b‖² / (2 σ²)) with
    σ = `bandwidth`, or the median pairwise distance of the pooled (subsampled) rows when
    None. Each side is subsampled to at most `max_points` rows. The estimator is unbiased,
    so it is ≈ 0 (and may be slightly negative) when x and y share a distribution.
    """
    rng = np.random.default_rng(seed)
    x = subsample(np.asarray(x, dtype=np.float64).reshape(len(x), -1), max_points, rng)
    y = subsample(np.asarray(y, dtype=np.float64).reshape(len(y), -1), max_points, rng)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"MMD needs at least 2 rows per side, got {len(x)} and {len(y)}")
    sigma = median_bandwidth(np.concatenate([x, y])) if bandwidth is None else float(bandwidth)
    gamma = 1.0 / (2.0 * sigma**2)
    k_xx, k_yy, k_xy = rbf_kernel(x, x, gamma=gamma), rbf_kernel(y, y, gamma=gamma), rbf_kernel(x, y, gamma=gamma)
    n, m = len(x), len(y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½) between Gaussians fit to features [N, D] (Heusel et al. 2017, FID).

    As in the reference implementation (bioinf-jku/TTUR, pytorch-fid), `eps` is added to
    both diagonals when the product is singular, and a numerically imaginary square root
    is reduced to its real part; a large imaginary part is an error. With fewer rows than
    features the covariances are singular and the value is only indicative; scipy's
    LinAlgWarning about it is not repeated for every class and method of a report.
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"Fréchet distance needs two [N ≥ 2, D] feature sets of equal D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            offset = eps * np.eye(len(cov_a))
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary part {np.abs(covmean.imag).max():.3g} in sqrtm(Σa Σb)")
        covmean = covmean.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def prdc(
    real_features: np.ndarray, fake_features: np.ndarray, k: int = 5, *, max_points: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features [M, D] against real [N, D] (Naeem et al. 2020, ICML).

    Each point's ball has the radius of its k-th nearest neighbour within its own set;
    precision = share of fake points inside some real ball, recall = share of real points
    inside some fake ball, density = mean number of real balls holding a fake point / k,
    coverage = share of real balls holding a fake point (eqs. 1-4 of the paper).
    """
    rng = np.random.default_rng(seed)
    real = subsample(np.asarray(real_features, dtype=np.float64), max_points, rng)
    fake = subsample(np.asarray(fake_features, dtype=np.float64), max_points, rng)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"PRDC with k={k} needs more than k points per side, got {len(real)} real and {len(fake)} fake")
    # one distance routine for radii and cross distances, as in the reference code
    # (clovaai/generative-evaluation-prdc), so that rounding never moves a point across a ball's edge
    real_radii = _kth_neighbour_distance(real, k)
    fake_radii = _kth_neighbour_distance(fake, k)
    distances = pairwise_distances(real, fake)  # [N, M]
    inside_real = distances < real_radii[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((distances < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((distances.min(axis=1) < real_radii).mean()),
    }


def _kth_neighbour_distance(points: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point [N, D] to its k-th nearest other point of the same set."""
    distances = pairwise_distances(points)
    return np.partition(distances, k, axis=1)[:, k]  # column 0 is the point itself


def mean_psd(windows: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies [F] (Hz) and the per-lead Welch PSD averaged over windows [leads, F], each lead scaled to unit area."""
    windows = np.asarray(windows, dtype=np.float64)
    length = windows.shape[-1]
    freqs, psd = signal.welch(windows, fs=fs_hz, nperseg=min(length, round(2 * fs_hz)), axis=-1)
    mean = psd.mean(axis=0)  # [leads, F]
    area = mean.sum(axis=-1, keepdims=True) * (freqs[1] - freqs[0])
    if not (area > 0).all():
        raise ValueError(f"Welch PSD: a lead has zero power over all {len(windows)} windows")
    return freqs, mean / area


def welch_psd_distance(real: np.ndarray, fake: np.ndarray, fs_hz: float) -> float:
    """L1 distance ∫|p − q| df between unit-area mean Welch spectra, averaged over leads; in [0, 2].

    Windows [N, leads, T] are split into Hann segments of min(T, 2 s) (Welch 1967); unit
    area makes the distance compare spectral shape, not power (amplitude is MMD's job).
    """
    freqs, p = mean_psd(real, fs_hz)
    _, q = mean_psd(fake, fs_hz)
    if p.shape != q.shape:
        raise ValueError(f"Welch PSD distance: real spectra {p.shape} and fake spectra {q.shape} differ (leads or T)")
    return float((np.abs(p - q).sum(axis=-1) * (freqs[1] - freqs[0])).mean())
