"""Distance to the closest training record (DCR) and a memorization share (README: The evaluation protocol, privacy).

DCR is the usual check of synthetic data since table-GAN (Park et al. 2018, PVLDB
11:1071; also Zhao et al. 2021, CTAB-GAN): a generator that copies training
windows puts synthetic windows nearer the training set than unseen real windows are.
All three sets must be on one scale (all in mV, or all normalized with the same
statistics); distances are Euclidean over flattened windows [N, leads·T].
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import pairwise_distances_argmin_min


def closest_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance [N] from each query window [N, ...] to its nearest reference window [M, ...].

    scikit-learn computes the distance matrix in row chunks bounded by its
    `working_memory` setting, so M × N never has to fit in memory at once.
    """
    if len(queries) == 0 or len(reference) == 0:
        raise ValueError(f"closest distances need windows on both sides, got {len(queries)} queries and {len(reference)} references")
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    r = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"closest distances: query windows of {q.shape[1]} values, reference windows of {r.shape[1]}")
    _, distances = pairwise_distances_argmin_min(q, r)
    return distances


def memorization(
    synthetic: np.ndarray, train: np.ndarray, heldout_real: np.ndarray, *, percentile: float = 5.0
) -> dict[str, float]:
    """DCR to the training windows of synthetic and of held-out real windows, and the memorized share.

    memorized_share is the share of synthetic windows whose DCR is below the `percentile`-th
    percentile of the held-out real DCRs: windows closer to a training window than all but
    `percentile`% of unseen real windows are. the protocol's "closer than any held-out real one"
    is the 0th percentile, which one unusually close held-out window would set; a low
    percentile is robust to that and gives ≈ percentile / 100 for a generator that does not
    copy. A planted exact copy (DCR ≈ 0: ~1e-7 after the dot-product form of the distance)
    is counted whenever the threshold is above that.
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"memorization percentile must be in [0, 100], got {percentile}")
    synthetic_dcr = closest_distances(synthetic, train)
    heldout_dcr = closest_distances(heldout_real, train)
    threshold = float(np.percentile(heldout_dcr, percentile))
    return {
        "dcr_synthetic_median": float(np.median(synthetic_dcr)),
        "dcr_heldout_median": float(np.median(heldout_dcr)),
        "dcr_threshold": threshold,
        "memorized_share": float(np.mean(synthetic_dcr < threshold)),
    }
