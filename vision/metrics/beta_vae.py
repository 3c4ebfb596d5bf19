"""BetaVAE metric (Higgins et al. 2017), disentanglement_lib's ``beta_vae_sklearn`` convention.

A training point: pick a factor ``k`` uniformly; draw ``batch_size`` pairs of inputs that share the value of ``k``
(everything else random); the feature is the mean absolute difference of the two codes, per latent; the label is
``k``. A logistic regression (sklearn defaults) is fitted on ``num_train`` points; the score is its accuracy on
``num_eval`` fresh points. Pairs come from the representation cache's pools (see
:mod:`vision.metrics.representation`): training points from the train pool, evaluation points from the test pool.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from vision.metrics.representation import RepresentationCache, gather_rows
from vision.metrics.utils import make_result, timer

NAME = "beta_vae"


def pair_features(codes: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Mean over the batch of |z(first) − z(second)| per latent: (m, batch) index pairs -> (m, D)."""
    out = np.empty((first.shape[0], codes.shape[1]))
    for sl, a in gather_rows(codes, first):
        b = codes[second[sl]]
        out[sl] = np.abs(a.astype(np.float64) - b).mean(axis=1)
    return out


def sample_points(cache: RepresentationCache, num: int, batch_size: int, rng: np.random.Generator,
                  split: str) -> tuple[np.ndarray, np.ndarray]:
    """``num`` (feature, fixed-factor label) points drawn from ``split``'s pool."""
    labels = rng.integers(0, cache.num_factors, size=num)
    first, second = cache.fixed_factor_pairs(labels, batch_size, rng, split)
    return pair_features(cache.split(split).mu, first, second), labels


def compute_beta_vae(cache: RepresentationCache, seed: int = 0, progress: bool = False, *, batch_size: int = 64,
                     num_train: int = 10_000, num_eval: int = 5_000, max_iter: int = 100) -> dict[str, Any]:
    """BetaVAE score: eval accuracy of the fixed-factor classifier (train accuracy reported too)."""
    rng = np.random.default_rng(seed)
    with timer() as t:
        x_train, y_train = sample_points(cache, num_train, batch_size, rng, "train")
        x_eval, y_eval = sample_points(cache, num_eval, batch_size, rng, "test")
        model = LogisticRegression(max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # dlib's defaults; the cap is recorded in params
            model.fit(x_train, y_train)
        train_acc = float(np.mean(model.predict(x_train) == y_train))
        eval_acc = float(np.mean(model.predict(x_eval) == y_eval))
    params = {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval,
              "classifier": "sklearn.LogisticRegression", "max_iter": max_iter, "seed": seed, **cache.provenance()}
    return make_result(NAME, "logistic", params, {"train_accuracy": train_acc, "eval_accuracy": eval_acc},
                       seconds=t[0])
