"""FactorVAE metric (Kim & Mnih 2018), disentanglement_lib's ``factor_vae_metric`` convention.

Each latent is scaled by its global standard deviation (from ``num_variance_estimate`` pool codes); latents whose
global std is below ``prune_threshold`` are dropped (collapsed to the prior). A vote: fix a factor ``k`` over a batch
of ``batch_size`` inputs; the latent with the smallest normalised variance in that batch votes for ``k``. The
majority-vote classifier maps each latent to the factor it voted for most often on ``num_train`` votes; the score is
its accuracy on ``num_eval`` fresh votes. Any number of latents works, including more latents than factors (several
latents can then map to one factor) and fewer (some factors are then never predicted).

Unlike disentanglement_lib, a vote records the latent's own index rather than its position among the active
latents; the accuracies are the same, the vote matrix in ``details`` is easier to read.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vision.metrics.representation import RepresentationCache, gather_rows
from vision.metrics.utils import make_result, timer

NAME = "factor_vae"


def batch_argmin_variance(codes: np.ndarray, batches: np.ndarray, global_var: np.ndarray, active: np.ndarray) -> np.ndarray:
    """For each batch (row of pool indices): the active latent with the smallest variance / global variance."""
    active_idx = np.flatnonzero(active)
    out = np.empty(batches.shape[0], dtype=np.int64)
    sub = codes[:, active_idx]
    for sl, z in gather_rows(sub, batches):
        local = z.astype(np.float64).var(axis=1, ddof=1)
        out[sl] = active_idx[np.argmin(local / global_var[active_idx], axis=1)]
    return out


def votes(cache: RepresentationCache, num: int, batch_size: int, rng: np.random.Generator, split: str,
          global_var: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, int]:
    """Vote matrix (num_factors, num_latents) from ``num`` fixed-factor batches of ``split``'s pool."""
    labels = rng.integers(0, cache.num_factors, size=num)
    batches, small = cache.fixed_factor_batches(labels, batch_size, rng, split)
    winners = batch_argmin_variance(cache.split(split).mu, batches, global_var, active)
    v = np.zeros((cache.num_factors, cache.num_latents), dtype=np.int64)
    np.add.at(v, (labels, winners), 1)
    return v, small


def compute_factor_vae(cache: RepresentationCache, seed: int = 0, progress: bool = False, *, batch_size: int = 64,
                       num_train: int = 10_000, num_eval: int = 5_000, num_variance_estimate: int = 10_000,
                       prune_threshold: float = 0.05) -> dict[str, Any]:
    """FactorVAE score: eval accuracy of the majority-vote classifier (train accuracy reported too)."""
    rng = np.random.default_rng(seed)
    params = {"batch_size": batch_size, "num_train": num_train, "num_eval": num_eval,
              "num_variance_estimate": num_variance_estimate, "prune_threshold": prune_threshold, "seed": seed,
              **cache.provenance()}
    with timer() as t:
        train = cache.train.mu
        pick = rng.choice(len(train), size=min(num_variance_estimate, len(train)), replace=False)
        global_var = train[pick].astype(np.float64).var(axis=0, ddof=1)
        active = np.sqrt(global_var) >= prune_threshold
        details: dict[str, Any] = {"num_active_dims": int(active.sum())}
        if not active.any():  # every latent collapsed: no vote can be cast (disentanglement_lib scores 0)
            scores = {"train_accuracy": 0.0, "eval_accuracy": 0.0}
        else:
            train_votes, small_train = votes(cache, num_train, batch_size, rng, "train", global_var, active)
            eval_votes, small_eval = votes(cache, num_eval, batch_size, rng, "test", global_var, active)
            classifier = np.argmax(train_votes, axis=0)  # latent -> factor
            cols = np.arange(cache.num_latents)
            scores = {"train_accuracy": train_votes[classifier, cols].sum() / train_votes.sum(),
                      "eval_accuracy": eval_votes[classifier, cols].sum() / eval_votes.sum()}
            details.update(train_votes=train_votes, latent_to_factor=np.where(active, classifier, -1),
                           batches_sampled_with_replacement=small_train + small_eval)
    return make_result(NAME, "majority_vote", params, scores, details, seconds=t[0])
