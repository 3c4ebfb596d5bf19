"""Separated Attribute Predictability (Kumar et al. 2018), disentanglement_lib's ``sap_score`` convention.

Score matrix S (latents, factors): for discrete factors (the default, as in disentanglement_lib's benchmark), S[i, k]
is the test accuracy of a linear SVM (``LinearSVC(C=0.01, class_weight="balanced")``) that predicts factor ``k`` from
latent ``i`` alone, fitted on the train pool; for continuous factors, the squared correlation of latent and factor.
SAP = mean over factors of the gap between the two highest entries of the factor's column.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from vision.metrics.representation import RepresentationCache
from vision.metrics.utils import make_result, timer

NAME = "sap"


def top_two_gap(matrix: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over columns of (largest − second largest) entry, and the per-column gaps."""
    s = np.sort(np.asarray(matrix, dtype=np.float64), axis=0)[::-1]
    second = s[1] if s.shape[0] > 1 else np.zeros(s.shape[1])
    gaps = s[0] - second
    return float(gaps.mean()), gaps


def score_matrix_discrete(mu: np.ndarray, y: np.ndarray, mu_test: np.ndarray, y_test: np.ndarray, c: float = 0.01,
                          seed: int = 0, progress: bool = False) -> np.ndarray:
    """Test accuracy of a one-latent linear SVM for every (latent, factor) pair."""
    from vision.runtime import progress_bar

    out = np.zeros((mu.shape[1], y.shape[1]))
    for i in progress_bar(range(mu.shape[1]), desc="sap", unit="latent", disable=not progress, leave=False):
        xi, xi_test = mu[:, i:i + 1].astype(np.float64), mu_test[:, i:i + 1].astype(np.float64)
        for k in range(y.shape[1]):
            clf = LinearSVC(C=c, class_weight="balanced", random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(xi, y[:, k])
            out[i, k] = np.mean(clf.predict(xi_test) == y_test[:, k])
    return out


def score_matrix_continuous(mu: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation of every (latent, factor) pair (0 for a constant latent)."""
    mu = mu.astype(np.float64) - mu.mean(axis=0)
    y = y.astype(np.float64) - y.mean(axis=0)
    cov = mu.T @ y / (len(mu) - 1)
    var_mu = mu.var(axis=0, ddof=1)
    var_y = y.var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = cov ** 2 / np.outer(var_mu, var_y)
    return np.where(var_mu[:, None] > 1e-12, out, 0.0)


def compute_sap(cache: RepresentationCache, seed: int = 0, progress: bool = False, *, continuous_factors: bool = False,
                svm_c: float = 0.01) -> dict[str, Any]:
    """SAP score on the train pool (fitted) and test pool (scored)."""
    params: dict[str, Any] = {"continuous_factors": continuous_factors, "seed": seed, **cache.provenance()}
    with timer() as t:
        if continuous_factors:
            matrix = score_matrix_continuous(cache.train.mu, cache.train.factors)
        else:
            params.update(classifier="sklearn.LinearSVC", svm_c=svm_c, class_weight="balanced")
            matrix = score_matrix_discrete(cache.train.mu, cache.train.factors, cache.test.mu, cache.test.factors,
                                           svm_c, seed, progress)
        score, gaps = top_two_gap(matrix)
    return make_result(NAME, "continuous" if continuous_factors else "discrete", params, {"sap": score},
                       {"factor_names": cache.factor_names, "per_factor": gaps, "score_matrix": matrix}, seconds=t[0])
