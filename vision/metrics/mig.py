"""Mutual Information Gap (Chen et al. 2018). Two estimators; their values are not comparable, so each is named.

``hist20`` (default; disentanglement_lib's ``mig``): posterior means discretised into 20 equal-width bins per latent,
factors taken as their integer indices, plug-in mutual information (``sklearn.metrics.mutual_info_score``'s
quantity, see :func:`vision.metrics.utils.mutual_info_matrix`), gap normalised by the factor's entropy H(v_k).

``sampling`` (the β-TCVAE paper's estimator): I(z_j; v_k) = H(z_j) − H(z_j | v_k), each entropy estimated by
sampling from the posteriors, with the evaluation pool standing in for the data set::

    H(z_j) ≈ −1/S Σ_s log( 1/N Σ_n q(z_j^(s) | x_n) ),   z^(s) ~ q(z | x_(s)),  x_(s) drawn from the pool,

and H(z_j | v_k) = Σ_v p(v) H(z_j | v_k = v), the same estimate restricted to pool points with v_k = v.
The paper drops dSprites' shape factor from the average: pass ``exclude_factors=("shape",)`` to do the same.

MIG = mean over factors of (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k), the top two latents by mutual information.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from vision.metrics.representation import RepresentationCache
from vision.metrics.utils import NUM_BINS, discretize, entropy, make_result, mutual_info_matrix, timer

NAME = "mig"
VARIANTS = ("hist20", "sampling")


def mig_from_mi(mi: np.ndarray, factor_entropy: np.ndarray) -> tuple[float, np.ndarray]:
    """MIG and the per-factor normalised gaps from a mutual-information matrix (latents, factors)."""
    mi = np.asarray(mi, dtype=np.float64)
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if top.shape[0] > 1 else np.zeros(top.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(factor_entropy > 0, (top[0] - second) / factor_entropy, np.nan)
    return float(np.nanmean(gaps)) if np.isfinite(gaps).any() else float("nan"), gaps


def histogram_mi(codes: np.ndarray, factors: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Plug-in mutual information (latents, factors) between histogram-discretised codes and factor indices."""
    return mutual_info_matrix(discretize(codes, num_bins), factors)


def _log_mean_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """log (1/N Σ_n N(z_sj; mu_nj, exp(logvar_nj))) for every sample and latent: z (S, D), mu/logvar (N, D) -> (S, D).

    One latent at a time, in blocks of ``chunk`` samples, with in-place float32 arithmetic: the (S, N) work per
    latent is the whole cost of the estimator.
    """
    n = mu.shape[0]
    neg_half_inv_var = -0.5 * torch.exp(-logvar)
    log_norm = -0.5 * (math.log(2 * math.pi) + logvar)
    out = torch.empty_like(z)
    for j in range(z.shape[1]):
        m, w, c = mu[:, j], neg_half_inv_var[:, j], log_norm[:, j]
        c_max = c.max()
        c = c - c_max
        for i in range(0, z.shape[0], chunk):
            t = z[i:i + chunk, j, None] - m
            t.square_().mul_(w).add_(c)
            peak = t.amax(dim=1, keepdim=True)
            out[i:i + chunk, j] = t.sub_(peak).exp_().sum(dim=1).log_() + peak[:, 0] + c_max
    return out - math.log(n)


def _entropy_estimate(mu: np.ndarray, logvar: np.ndarray, num_samples: int, gen: torch.Generator) -> np.ndarray:
    """Sampling estimate of H(z_j) (nats) for every latent, the pool (mu, logvar) being the data set."""
    m = torch.as_tensor(np.asarray(mu, dtype=np.float32))
    lv = torch.as_tensor(np.asarray(logvar, dtype=np.float32))
    s = min(num_samples, m.shape[0])
    pick = torch.randperm(m.shape[0], generator=gen)[:s]
    z = m[pick] + torch.randn(m[pick].shape, generator=gen) * torch.exp(0.5 * lv[pick])
    return (-_log_mean_density(z, m, lv).double().mean(dim=0)).numpy()


def sampling_mi(mu: np.ndarray, logvar: np.ndarray, factors: np.ndarray, num_samples: int = 10_000,
                seed: int = 0, progress: bool = False) -> np.ndarray:
    """Sampling estimate of I(z_j; v_k) (latents, factors) from the posteriors N(mu, exp(logvar))."""
    from vision.runtime import progress_bar

    gen = torch.Generator().manual_seed(seed)
    n = mu.shape[0]
    marginal = _entropy_estimate(mu, logvar, num_samples, gen)
    mi = np.zeros((mu.shape[1], factors.shape[1]))
    for k in progress_bar(range(factors.shape[1]), desc="mig:sampling", unit="factor", disable=not progress, leave=False):
        cond = np.zeros(mu.shape[1])
        for v in np.unique(factors[:, k]):
            sel = factors[:, k] == v
            cond += sel.sum() / n * _entropy_estimate(mu[sel], logvar[sel], num_samples, gen)
        mi[:, k] = marginal - cond
    return np.maximum(mi, 0.0)


def compute_mig(cache: RepresentationCache, seed: int = 0, progress: bool = False, *, variant: str = "hist20",
                num_bins: int = NUM_BINS, num_samples: int = 10_000,
                exclude_factors: Sequence[str] = ()) -> dict[str, Any]:
    """MIG on the train pool with the chosen estimator (``hist20`` or ``sampling``)."""
    if variant not in VARIANTS:
        raise ValueError(f"mig variant: unknown {variant!r}; choose from {VARIANTS}")
    unknown = [f for f in exclude_factors if f not in cache.factor_names]
    if unknown:
        raise ValueError(f"exclude_factors: {unknown[0]!r} is not one of {cache.factor_names}")
    keep = [k for k, name in enumerate(cache.factor_names) if name not in exclude_factors]
    factors = cache.train.factors[:, keep]
    names = [cache.factor_names[k] for k in keep]
    params: dict[str, Any] = {"exclude_factors": list(exclude_factors), "seed": seed, **cache.provenance()}
    with timer() as t:
        if variant == "hist20":
            params.update(num_bins=num_bins, discretizer="histogram equal-width", mi="plug-in (sklearn mutual_info_score)",
                          normalizer="H(v_k) plug-in")
            mi = histogram_mi(cache.train.mu, factors, num_bins)
        else:
            if cache.train.logvar is None:
                raise ValueError("mig:sampling needs posterior log-variances; this representation is deterministic")
            params.update(num_samples=num_samples, normalizer="H(v_k) plug-in")
            mi = sampling_mi(cache.train.mu, cache.train.logvar, factors, num_samples, seed, progress)
        h = entropy(factors)
        score, gaps = mig_from_mi(mi, h)
    details = {"factor_names": names, "per_factor": gaps, "mutual_information": mi, "factor_entropy": h}
    return make_result(NAME, variant, params, {"mig": score}, details, seconds=t[0])
