"""Modularity and explicitness (Ridgeway & Mozer 2018), disentanglement_lib's ``modularity_explicitness`` convention.

Modularity: with m_ik the mutual information between latent ``i`` (20-bin histogram) and factor ``k``, latent ``i``
scores 1 − δ_i, δ_i = Σ_{k≠k*} m_ik² / (m_ik*² (K − 1)), k* its most informative factor; a latent that carries no
information scores 0. The score is the mean over latents.

Explicitness: per factor, a logistic regression (sklearn defaults) on standardised codes predicts the factor's value;
its one-vs-rest ROC-AUC, averaged over classes (macro), on the train and the test pool; the score is the mean over
factors. Classes absent from the evaluated pool are left out of the average (disentanglement_lib raises there).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from vision.metrics.representation import RepresentationCache
from vision.metrics.utils import NUM_BINS, discretize, make_result, mutual_info_matrix, standardize, timer

NAME = "modularity_explicitness"


def modularity(mi: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean modularity and per-latent modularity from a mutual-information matrix (latents, factors)."""
    sq = np.square(np.asarray(mi, dtype=np.float64))
    top = sq.max(axis=1)
    k = sq.shape[1]
    per = np.zeros(sq.shape[0])
    live = top > 0
    if k == 1:
        per[live] = 1.0
    else:
        per[live] = 1.0 - (sq[live].sum(axis=1) - top[live]) / (top[live] * (k - 1))
    return float(per.mean()), per


def ovr_auc(classes: np.ndarray, proba: np.ndarray, y: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC over the classes that are both present and absent somewhere in ``y``."""
    aucs = []
    for c, col in zip(classes, proba.T):
        pos = y == c
        if 0 < pos.sum() < len(y):
            aucs.append(roc_auc_score(pos, col))
    return float(np.mean(aucs)) if aucs else float("nan")


def explicitness(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 seed: int = 0, max_iter: int = 100) -> tuple[float, float]:
    """Train and test one-vs-rest ROC-AUC of a logistic regression predicting one factor."""
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    return (ovr_auc(clf.classes_, clf.predict_proba(x_train), y_train),
            ovr_auc(clf.classes_, clf.predict_proba(x_test), y_test))


def compute_modularity_explicitness(cache: RepresentationCache, seed: int = 0, progress: bool = False, *,
                                    num_bins: int = NUM_BINS, max_iter: int = 100) -> dict[str, Any]:
    """Modularity on the train pool; explicitness fitted on the train pool, reported on both pools."""
    from vision.runtime import progress_bar

    params = {"num_bins": num_bins, "classifier": "sklearn.LogisticRegression", "max_iter": max_iter,
              "auc": "one-vs-rest macro", "seed": seed, **cache.provenance()}
    with timer() as t:
        mi = mutual_info_matrix(discretize(cache.train.mu, num_bins), cache.train.factors)
        mod, per_latent = modularity(mi)
        x_train, x_test = standardize(cache.train.mu.astype(np.float64), cache.test.mu.astype(np.float64))
        expl = np.zeros((cache.num_factors, 2))
        for k in progress_bar(range(cache.num_factors), desc="explicitness", unit="factor", disable=not progress, leave=False):
            expl[k] = explicitness(x_train, cache.train.factors[:, k], x_test, cache.test.factors[:, k], seed, max_iter)
    scores = {"modularity": mod, "explicitness_train": float(np.mean(expl[:, 0])),
              "explicitness_test": float(np.mean(expl[:, 1]))}
    details = {"factor_names": cache.factor_names, "modularity_per_latent": per_latent,
               "explicitness_per_factor_test": expl[:, 1], "mutual_information": mi}
    return make_result(NAME, "hist20", params, scores, details, seconds=t[0])
