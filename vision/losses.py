"""Likelihoods and divergences shared by the VAE family. All per-sample losses are summed over dimensions."""
from __future__ import annotations

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def reconstruction_loss(x: torch.Tensor, logits: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Negative log-likelihood per sample, shape (N,).

    ``bernoulli``: binary cross-entropy with logits (targets in [0, 1]).
    ``gaussian``: squared error between sigmoid(logits) and x (fixed unit variance, constants dropped),
    the disentanglement_lib ``l2`` convention.
    """
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


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar)); broadcasts (used for the pairwise TC estimators)."""
    norm = torch.log(torch.tensor(2.0 * torch.pi, dtype=z.dtype, device=z.device))
    inv_var = torch.exp(-logvar)
    return -0.5 * (norm + logvar + (z - mu).pow(2) * inv_var)
