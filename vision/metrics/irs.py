"""Interventional Robustness Score (Suter et al. 2019), disentanglement_lib's ``irs`` convention.

Factors are discretised into 20 equal-width bins; latents with zero variance are dropped. For factor ``k`` and each of
its values, the ``diff_quantile`` quantile of |z − E[z | v_k]| over the points with that value measures how much the
latent still moves when ``k`` is held fixed; averaged over values and divided by the latent's largest deviation
from its mean, it gives the latent's sensitivity to the other factors. IRS_i = 1 − min_k (that ratio); the score is
the average of IRS_i weighted by each latent's largest deviation.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vision.metrics.representation import RepresentationCache
from vision.metrics.utils import NUM_BINS, discretize, make_result, timer

NAME = "irs"


def irs_scores(factors: np.ndarray, latents: np.ndarray, diff_quantile: float = 0.99) -> dict[str, Any]:
    """IRS of discrete ``factors`` (n, K) and ``latents`` (n, L): average score, per-latent scores, IRS matrix."""
    latents = np.asarray(latents, dtype=np.float64)
    max_dev = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum = np.zeros((latents.shape[1], factors.shape[1]))
    for k in range(factors.shape[1]):
        values = np.unique(factors[:, k])
        for v in values:
            z = latents[factors[:, k] == v]
            cum[:, k] += np.quantile(np.abs(z - z.mean(axis=0)), diff_quantile, axis=0)
        cum[:, k] /= len(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix = 1.0 - cum / max_dev[:, None]
    per_latent = matrix.max(axis=1)
    avg = float(np.average(per_latent, weights=max_dev)) if max_dev.sum() > 0 else float(np.mean(per_latent))
    return {"avg_score": avg, "per_latent": per_latent, "matrix": matrix, "parents": matrix.argmax(axis=1)}


def compute_irs(cache: RepresentationCache, seed: int = 0, progress: bool = False, *, diff_quantile: float = 0.99,
                num_bins: int = NUM_BINS) -> dict[str, Any]:
    """IRS on the train pool."""
    params = {"diff_quantile": diff_quantile, "num_bins": num_bins, "factor_discretizer": "histogram equal-width",
              "seed": seed, **cache.provenance()}
    with timer() as t:
        mu = cache.train.mu.astype(np.float64)
        active = mu.var(axis=0) > 0
        details: dict[str, Any] = {"num_active_dims": int(active.sum())}
        if not active.any():
            score = 0.0
        else:
            res = irs_scores(discretize(cache.train.factors, num_bins), mu[:, active], diff_quantile)
            score = res["avg_score"]
            details.update(per_latent=res["per_latent"], parents=res["parents"])
    return make_result(NAME, "hist20", params, {"irs": score}, details, seconds=t[0])
