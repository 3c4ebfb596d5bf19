"""Unsupervised scores of a representation (disentanglement_lib's ``unsupervised_metrics``): no factors needed.

* ``gaussian_total_correlation``: KL between N(0, Σ) and N(0, diag Σ), Σ = cov(μ) over the train pool,
  = ½ (Σ_j log Σ_jj − log det Σ) nats; 0 for uncorrelated means.
* ``gaussian_wasserstein_correlation``: squared 2-Wasserstein distance between the same two Gaussians,
  2 tr Σ − 2 tr (Σ diag Σ)^{1/2}; ``..._norm`` divides it by tr Σ.
* ``mutual_info_score``: mean plug-in mutual information (nats) over ordered pairs of distinct latents,
  each discretised into 20 equal-width bins.
* ``rotation_gain``: ICA's view of axis alignment — over pairs of latents whose means vary (sd > 0.05), the
  largest increase of |excess kurtosis| (summed over the pair) that some rotation of the pair would bring; 0 when
  every pair already lies along its most non-Gaussian (independent) directions. Two independent uniform factors
  encoded at 45° score ≈ 1.2 (each latent a triangular-ish mixture, kurtosis −0.6, instead of −1.2 twice).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.stats

from vision.metrics.representation import RepresentationCache
from vision.metrics.utils import NUM_BINS, discretize, make_result, mutual_info_matrix, timer

NAME = "unsupervised"


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation (nats) of a zero-mean Gaussian with covariance ``cov``."""
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")  # singular: some latent is a linear function of others
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(0, cov) and N(0, diag cov)."""
    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
    return float(2 * np.trace(cov) - 2 * np.real(np.trace(root)))


def mean_pairwise_mi(codes: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Mean plug-in mutual information between distinct histogram-discretised latents (0 for one latent)."""
    d = codes.shape[1]
    if d < 2:
        return 0.0
    binned = discretize(codes, num_bins)
    mi = mutual_info_matrix(binned, binned)
    np.fill_diagonal(mi, 0.0)
    return float(mi.sum() / (d * d - d))


ROTATION_ANGLES = 91  # 0°..90° in 1° steps: rotating a pair by 90° only swaps and negates its axes
ACTIVE_SD = 0.05  # a latent whose posterior mean varies less than this is collapsed (FactorVAE's prune threshold)


def rotated_kurtosis(a: np.ndarray, b: np.ndarray, num_angles: int = ROTATION_ANGLES) -> tuple[np.ndarray, np.ndarray]:
    """(angles in radians over [0, π/2], summed |excess kurtosis| of the standardised pair (a, b) rotated by each)."""
    z = np.stack([(a - a.mean()) / a.std(), (b - b.mean()) / b.std()])
    theta = np.linspace(0.0, np.pi / 2, num_angles)
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    u, v = c * z[0] + s * z[1], -s * z[0] + c * z[1]  # (angles, n)
    return theta, np.abs(scipy.stats.kurtosis(u, axis=1)) + np.abs(scipy.stats.kurtosis(v, axis=1))


def rotation_gain(codes: np.ndarray, num_angles: int = ROTATION_ANGLES) -> float:
    """Largest gain in summed |excess kurtosis| any pair of columns of ``codes`` (n, d) gets from its best rotation.

    Each column is standardised first. 0 for fewer than two columns. Independent non-Gaussian factors each on its
    own latent score ≈ 0; the same factors encoded along rotated axes score up to the kurtosis the mixing destroyed.
    """
    best = 0.0
    for i in range(codes.shape[1]):
        for j in range(i + 1, codes.shape[1]):
            k = rotated_kurtosis(codes[:, i], codes[:, j], num_angles)[1]
            best = max(best, float(k.max() - k[0]))
    return best


def compute_unsupervised(cache: RepresentationCache, seed: int = 0, progress: bool = False, *,
                         num_bins: int = NUM_BINS) -> dict[str, Any]:
    """The unsupervised scores on the train pool's posterior means."""
    params = {"num_bins": num_bins, "seed": seed, **cache.provenance()}
    with timer() as t:
        mu = cache.train.mu.astype(np.float64)
        cov = np.atleast_2d(np.cov(mu, rowvar=False))
        wc = gaussian_wasserstein_correlation(cov)
        scores = {
            "gaussian_total_correlation": gaussian_total_correlation(cov),
            "gaussian_wasserstein_correlation": wc,
            "gaussian_wasserstein_correlation_norm": wc / np.trace(cov) if np.trace(cov) > 0 else float("nan"),
            "mutual_info_score": mean_pairwise_mi(mu, num_bins),
            "rotation_gain": rotation_gain(mu[:, mu.std(axis=0) > ACTIVE_SD]),
        }
    return make_result(NAME, "hist20", params, scores, seconds=t[0])
