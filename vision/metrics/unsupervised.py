"""Unsupervised scores of a representation (disentanglement_lib's ``unsupervised_metrics``): no factors needed.

* ``gaussian_total_correlation``: KL between N(0, Σ) and N(0, diag Σ), Σ = cov(μ) over the train pool,
  = ½ (Σ_j log Σ_jj − log det Σ) nats; 0 for uncorrelated means.
* ``gaussian_wasserstein_correlation``: squared 2-Wasserstein distance between the same two Gaussians,
  2 tr Σ − 2 tr (Σ diag Σ)^{1/2}; ``..._norm`` divides it by tr Σ.
* ``mutual_info_score``: mean plug-in mutual information (nats) over ordered pairs of distinct latents,
  each discretised into 20 equal-width bins.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

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


def compute_unsupervised(cache: RepresentationCache, seed: int = 0, progress: bool = False, *,
                         num_bins: int = NUM_BINS) -> dict[str, Any]:
    """The three unsupervised scores on the train pool's posterior means."""
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
        }
    return make_result(NAME, "hist20", params, scores, seconds=t[0])
