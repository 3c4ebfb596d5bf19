"""Domain invariance: how far each latent moves when only the visual domain of a scene changes.

Only an environment that renders from factors makes this measurable: the same scenes (identical state
factors) are rendered in the source domain and in a target domain, both are encoded, and each latent's movement
is compared with how much it varies across scenes::

    invariance_j = clip(1 − E[(z_j(target) − z_j(source))²] / (2 · Var_j), 0, 1)

where ``Var_j`` is the variance of latent j over the pooled codes of both renderings. ``2·Var_j`` is the expected
squared distance between the codes of two *unrelated* scenes, so a latent that ignores the domain scores 1, one
that moves as much as a jump to a random other scene scores 0, and one that copies the domain (constant within
a domain, different across) scores 0 too (its ratio is 2). Constant latents carry nothing and are scored 1 with
weight 0 in the summary.

The summary weights latents by how much they tell about the chosen state factors (positions): a policy reads
those, so their invariance is what transfer needs. Beside it, ``probe_r2`` says how much of those factors the
code holds at all (held-out R² of a linear probe on the source codes): invariance means something only at equal
information, since a code that ignores the image is perfectly invariant.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vision.metrics.utils import discretize, entropy, make_result, mutual_info_matrix

CONSTANT_STD = 1e-6


def latent_invariance(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-latent invariance (D,) of codes of the same scenes in two domains, each (N, D)."""
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2:
        raise ValueError(f"codes: source and target must both be (N, D) for the same scenes, got {source.shape} and {target.shape}")
    pooled_var = np.concatenate([source, target]).var(0)
    move = ((target - source) ** 2).mean(0)
    constant = pooled_var < CONSTANT_STD ** 2
    score = 1.0 - move / (2.0 * np.where(constant, 1.0, pooled_var))
    return np.where(constant, 1.0, np.clip(score, 0.0, 1.0))


def informativeness(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Per-latent weight (D,): the largest normalised mutual information I(z_j; v_k)/H(v_k) over the factor
    columns of ``factors`` (N, K), latents discretised into ``num_bins`` equal-width bins (the MIG convention)."""
    factors = np.asarray(factors)
    h = entropy(factors)
    keep = h > 0
    if not keep.any():
        return np.zeros(np.asarray(codes).shape[1])
    mi = mutual_info_matrix(discretize(np.asarray(codes), num_bins), factors[:, keep])  # (D, K')
    return (mi / h[keep]).max(1)


def probe_r2(codes: np.ndarray, factors: np.ndarray) -> float:
    """How much of ``factors`` (N, K) a linear read-out of ``codes`` (N, D) recovers: the mean over the factor
    columns of the held-out R² of a ridge probe fitted on the first half of the rows and scored on the second."""
    from sklearn.linear_model import Ridge

    x = np.asarray(codes, dtype=np.float64)
    y = np.asarray(factors, dtype=np.float64)
    half = len(x) // 2
    mu, sd = x[:half].mean(0), x[:half].std(0)
    x = (x - mu) / np.where(sd > CONSTANT_STD, sd, 1.0)
    # reshaped: for a single factor column sklearn returns (n,), which would broadcast against (n, 1)
    pred = Ridge(alpha=1e-3).fit(x[:half], y[:half]).predict(x[half:]).reshape(y[half:].shape)
    resid = ((y[half:] - pred) ** 2).sum(0)
    total = ((y[half:] - y[half:].mean(0)) ** 2).sum(0)
    keep = total > 0
    return float(np.mean(1.0 - resid[keep] / total[keep])) if keep.any() else float("nan")


def compute_domain_invariance(source: np.ndarray, targets: dict[str, np.ndarray], factors: np.ndarray,
                              factor_names: Sequence[str], weight_factors: Sequence[str]) -> dict[str, Any]:
    """Domain invariance of codes of the same scenes in the source and in each target domain.

    ``source`` (N, D) and each ``targets[name]`` (N, D) encode the scenes whose factor indices are ``factors``
    (N, K, named by ``factor_names``); latents are weighted by their information about ``weight_factors``
    (e.g. the positions). Scores per target: ``weighted`` (the summary), ``mean`` (every non-constant latent) and
    ``per_latent``; the headline ``domain_invariance`` is the mean of ``weighted`` over the targets.
    """
    missing = [f for f in weight_factors if f not in factor_names]
    if missing:
        raise ValueError(f"weight_factors: {missing[0]!r} is not a factor; factors are {', '.join(factor_names)}")
    if not targets:
        raise ValueError("targets: at least one target domain is needed")
    cols = [list(factor_names).index(f) for f in weight_factors]
    weights = informativeness(source, np.asarray(factors)[:, cols])
    active = np.concatenate([source, *targets.values()]).std(0) >= CONSTANT_STD
    per_target: dict[str, dict[str, Any]] = {}
    for name, codes in targets.items():
        inv = latent_invariance(source, codes)
        w = weights * active
        per_target[name] = {
            "weighted": float((w * inv).sum() / w.sum()) if w.sum() > 0 else float("nan"),
            "mean": float(inv[active].mean()) if active.any() else float("nan"),
            "per_latent": inv.tolist(),
        }
    weighted = np.array([t["weighted"] for t in per_target.values()])
    # NaN when no latent carries position (a blank code): nothing to be invariant with
    headline = float(weighted[np.isfinite(weighted)].mean()) if np.isfinite(weighted).any() else float("nan")
    # Invariance is only worth having beside information: a code that ignores everything is perfectly invariant.
    r2 = probe_r2(source, np.asarray(factors)[:, cols])
    return make_result(
        "domain_invariance", "pooled_variance",
        {"weight_factors": list(weight_factors), "num_scenes": int(len(source)), "targets": list(targets)},
        {"domain_invariance": headline, "probe_r2": r2}, {"per_target": per_target, "weights": weights.tolist()},
    )
