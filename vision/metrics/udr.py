"""Unsupervised Disentanglement Ranking (Duan et al. 2020): agreement between models trained with the same
hyper-parameters and different seeds. No ground truth is used; the data only supply common inputs.

Each model's posterior means on the same inputs are standardised and its inactive latents (mean KL to the prior
below ``kl_threshold`` = 0.01) zeroed. For a pair of models (a, b) a similarity matrix R (latents of a × latents of b)
comes from Lasso regression of b's codes on a's (|weights|, α = 0.1, disentanglement_lib's ``udr_sklearn``) or from
absolute Spearman correlations. With r_b = max_a R(a, b), r_a = max_b R(a, b), d_a and d_b the active counts and
I_KL the activity indicators, the pair scores (the paper's formula)::

    UDR_ab = 1 / (d_a + d_b) · [ Σ_b r_b² · I_KL(b) / Σ_a R(a, b)  +  Σ_a r_a² · I_KL(a) / Σ_b R(a, b) ]

and a model's UDR is the median of its scores against ``num_pairs`` other models (all others by default).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vision.data.ground_truth import GroundTruthData
from vision.metrics.representation import EncodeFn, encode_images, mean_kl
from vision.metrics.utils import make_result, standardize, timer

NAME = "udr"
VARIANTS = ("lasso", "spearman")


def similarity_matrix(a: np.ndarray, b: np.ndarray, correlation: str = "lasso", alpha: float = 0.1,
                      seed: int = 0) -> np.ndarray:
    """|similarity| between every latent of ``a`` (n, da) and of ``b`` (n, db): (da, db); NaN-free."""
    if correlation == "lasso":
        from sklearn.linear_model import Lasso

        r = np.abs(Lasso(alpha=alpha, random_state=seed).fit(a, b).coef_).T.reshape(a.shape[1], b.shape[1])
    elif correlation == "spearman":
        from scipy.stats import rankdata

        ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
        ra, rb = ra - ra.mean(axis=0), rb - rb.mean(axis=0)
        na, nb = np.linalg.norm(ra, axis=0), np.linalg.norm(rb, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(ra.T @ rb) / np.outer(na, nb)
    else:
        raise ValueError(f"udr correlation: unknown {correlation!r}; choose from {VARIANTS}")
    return np.nan_to_num(r, nan=0.0)


def pair_score(r: np.ndarray, active_a: np.ndarray, active_b: np.ndarray) -> float:
    """UDR_ab from a similarity matrix (da, db) and the two models' active-latent masks (the formula above)."""
    r = np.where(active_a[:, None] & active_b[None, :], r, 0.0)
    d = int(active_a.sum() + active_b.sum())
    if d == 0:
        return 0.0
    col_sum, row_sum = r.sum(axis=0), r.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = np.where(active_b & (col_sum > 0), r.max(axis=0) ** 2 / col_sum, 0.0)
        rows = np.where(active_a & (row_sum > 0), r.max(axis=1) ** 2 / row_sum, 0.0)
    return float((cols.sum() + rows.sum()) / d)


def compute_udr(representations: Sequence[np.ndarray], kl_per_latent: Sequence[np.ndarray], *,
                correlation: str = "lasso", lasso_alpha: float = 0.1, kl_threshold: float = 0.01,
                num_pairs: int | None = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """UDR of each model from its posterior means on common inputs and its mean KL per latent.

    ``representations[m]`` is (n, D_m) — the same n inputs for every model, in the same order;
    ``kl_per_latent[m]`` is (D_m,). Scores: ``model_<m>`` for each model.
    """
    from vision.runtime import progress_bar

    if correlation not in VARIANTS:
        raise ValueError(f"udr correlation: unknown {correlation!r}; choose from {VARIANTS}")
    m = len(representations)
    if m < 2 or len(kl_per_latent) != m:
        raise ValueError(f"representations: need >= 2 models with one KL vector each, got {m} and {len(kl_per_latent)}")
    n = representations[0].shape[0]
    for i, (rep, kl) in enumerate(zip(representations, kl_per_latent)):
        if rep.ndim != 2 or rep.shape[0] != n:
            raise ValueError(f"representations[{i}]: expected shape ({n}, D), got {tuple(rep.shape)}")
        if np.shape(kl) != (rep.shape[1],):
            raise ValueError(f"kl_per_latent[{i}]: expected shape ({rep.shape[1]},), got {np.shape(kl)}")
    p = m - 1 if num_pairs is None else int(num_pairs)
    if not 1 <= p <= m - 1:
        raise ValueError(f"num_pairs: must be in [1, {m - 1}], got {p}")
    rng = np.random.default_rng(seed)
    params = {"correlation": correlation, "kl_threshold": kl_threshold, "num_pairs": p, "num_points": n,
              "num_models": m, "seed": seed, **({"lasso_alpha": lasso_alpha} if correlation == "lasso" else {})}
    with timer() as t:
        active = [np.asarray(kl) > kl_threshold for kl in kl_per_latent]
        reps = [standardize(r.astype(np.float64))[0] * a for r, a in zip(representations, active)]
        partners = [rng.choice([j for j in range(m) if j != i], size=p, replace=False) for i in range(m)]
        pairs = sorted({(int(j), i) for i in range(m) for j in partners[i]})
        pairwise = np.full((m, m), np.nan)
        for j, i in progress_bar(pairs, desc=f"udr:{correlation}", unit="pair", disable=not progress, leave=False):
            r = similarity_matrix(reps[j], reps[i], correlation, lasso_alpha, seed)
            pairwise[j, i] = pair_score(r, active[j], active[i])
        model_scores = [float(np.median([pairwise[j, i] for j in partners[i]])) for i in range(m)]
    details = {"pairwise": pairwise, "active_latents": [int(a.sum()) for a in active]}
    return make_result(NAME, correlation, params, {f"model_{i}": s for i, s in enumerate(model_scores)}, details,
                       seconds=t[0])


def udr_from_encoders(data: GroundTruthData, encoders: Sequence[EncodeFn], num_points: int = 1_000, seed: int = 0,
                      correlation: str = "lasso", progress: bool = True, **kwargs: Any) -> dict[str, Any]:
    """UDR of several models (same hyper-parameters, different seeds) on ``num_points`` common inputs from ``data``.

    Every encoder must return log-variances (the activity mask needs each latent's KL).
    """
    factors = data.sample_factors(num_points, np.random.default_rng(seed))
    reps, kls = [], []
    for i, encode in enumerate(encoders):
        mu, logvar = encode_images(data, encode, factors, progress=False)
        if logvar is None:
            raise ValueError(f"encoders[{i}]: UDR needs log-variances (per-latent KL); this encoder returned none")
        reps.append(mu)
        kls.append(mean_kl(mu, logvar))
    result = compute_udr(reps, kls, correlation=correlation, seed=seed, progress=progress, **kwargs)
    result["params"]["data"] = type(data).__name__
    return result
