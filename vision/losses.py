"""Likelihoods and divergences shared by the VAE family. All per-sample losses are summed over dimensions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def reconstruction_loss(x: torch.Tensor, logits: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Negative log-likelihood per sample, shape (N,).

    ``bernoulli``: binary cross-entropy with logits (targets in [0, 1]).
    ``gaussian``: squared error between sigmoid(logits) and x (fixed unit variance, constants dropped),
    the disentanglement_lib ``l2`` convention.

    Computed in float32 whatever the autocast dtype (a sum over thousands of pixels).
    """
    logits, x = logits.float(), x.float()
    if likelihood == "bernoulli":
        per = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":
        per = (torch.sigmoid(logits) - x).pow(2)
    else:
        raise ValueError(f"model.likelihood: unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")
    return per.flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample and latent, shape (N, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_kl_between(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor,
                        logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, e^logvar_q) ‖ N(mu_p, e^logvar_p)) per sample and latent, (N, D): the first argument is the
    distribution the expectation is taken under."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar)); broadcasts (used for the pairwise TC estimators)."""
    norm = torch.log(torch.tensor(2.0 * torch.pi, dtype=z.dtype, device=z.device))
    inv_var = torch.exp(-logvar)
    return -0.5 * (norm + logvar + (z - mu).pow(2) * inv_var)


# ----- aggregate-posterior estimators (β-TCVAE, Chen et al. 2018) ------------------------------------------
TC_ESTIMATORS = ("mws", "mss")


def mss_log_weight_matrix(
    batch_size: int, dataset_size: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Log importance weights of minibatch-stratified sampling, shape (B, B); row i estimates q(z_i).

    With M = B − 1 and N = ``dataset_size``, row i weighs the posteriors of the batch as

    * ``w[i, i] = 1/N`` — the posterior z_i was drawn from is one of N mixture components;
    * ``w[i, (i+1) mod B] = (N − M)/(N·M)`` — one other sample stands in for the rest of the data set;
    * every other entry ``1/M``;

    so each row sums to 1 (Chen et al. 2018, appendix). The weight of z_i's own posterior sits on the diagonal:
    the widely copied version writes 1/N into column 0 of every row instead.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size: minibatch-stratified sampling needs at least 2 samples, got {batch_size}")
    if dataset_size < batch_size:
        raise ValueError(f"dataset_size: must be >= the batch size for minibatch-stratified sampling, got {dataset_size} < {batch_size}")
    n, m = float(dataset_size), float(batch_size - 1)
    w = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    w[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    w[rows, rows] = 1.0 / n
    return w.log().to(device=device, dtype=dtype)


def log_qz(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int, estimator: str = "mss"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minibatch estimates of log q(z_i) and log ∏_j q(z_ij) under the aggregate posterior, each (B,).

    ``z``, ``mu``, ``logvar`` are (B, D): samples and the posteriors of the same batch; N = ``dataset_size`` is the
    size of the training set. ``estimator``:

    * ``"mws"`` — minibatch-weighted sampling, log q(z_i) ≈ logsumexp_j log q(z_i | n_j) − log(N·B): the paper's
      stochastic lower bound. The constant does not change gradients, but without it the logged TC is lower by
      (D − 1)·log(N·B) (and goes negative). Being a bound on each log-density, it reads TC high on a factorised
      posterior: exactly (D − 1)·log N when every posterior equals the prior.
    * ``"mss"`` — minibatch-stratified sampling with the weights of :func:`mss_log_weight_matrix`; consistent, and
      ≈ 0 TC on a factorised aggregate posterior.

    Computed in float32 whatever the autocast state (the pairwise densities underflow in half precision).
    """
    if estimator not in TC_ESTIMATORS:
        raise ValueError(f"model.tc_estimator: unknown {estimator!r}; choose from {TC_ESTIMATORS}")
    if dataset_size < 1:
        raise ValueError(f"dataset_size: the aggregate-posterior estimators need the training-set size, got {dataset_size}")
    batch = z.shape[0]
    with torch.autocast(device_type=z.device.type, enabled=False):
        z, mu, logvar = z.float(), mu.float(), logvar.float()
        # pairwise[i, j, d] = log q(z_id | n_j)
        pairwise = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
        if estimator == "mws":
            const = math.log(dataset_size * batch)
            joint = torch.logsumexp(pairwise.sum(2), dim=1) - const
            marginals = (torch.logsumexp(pairwise, dim=1) - const).sum(1)
        else:
            logw = mss_log_weight_matrix(batch, dataset_size, device=z.device)
            joint = torch.logsumexp(pairwise.sum(2) + logw, dim=1)
            marginals = torch.logsumexp(pairwise + logw.unsqueeze(2), dim=1).sum(1)
    return joint, marginals


def total_correlation(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int, estimator: str = "mss"
) -> torch.Tensor:
    """Batch estimate of TC = KL(q(z) ‖ ∏_j q(z_j)) (see :func:`log_qz` for the estimators)."""
    joint, marginals = log_qz(z, mu, logvar, dataset_size, estimator)
    return (joint - marginals).mean()


def kl_decomposition(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int, estimator: str = "mss"
) -> dict[str, torch.Tensor]:
    """Chen et al.'s split of the average KL into index-code MI, total correlation and dimension-wise KL.

    Returns scalars ``mi`` = E[log q(z|x) − log q(z)], ``tc`` = E[log q(z) − log ∏_j q(z_j)] and
    ``dwkl`` = E[log ∏_j q(z_j) − log p(z)], all evaluated at the samples ``z``; they sum to the Monte-Carlo KL
    E[log q(z|x) − log p(z)] whatever the estimator.
    """
    joint, marginals = log_qz(z, mu, logvar, dataset_size, estimator)
    with torch.autocast(device_type=z.device.type, enabled=False):
        zf = z.float()
        log_qzx = gaussian_log_density(zf, mu.float(), logvar.float()).sum(1)
        log_pz = gaussian_log_density(zf, torch.zeros_like(zf), torch.zeros_like(zf)).sum(1)
    return {
        "mi": (log_qzx - joint).mean(),
        "tc": (joint - marginals).mean(),
        "dwkl": (marginals - log_pz).mean(),
    }
