"""DIP-VAE I and II (Kumar et al. 2018): VAE + moment matching of the aggregate posterior to N(0, I)."""
from __future__ import annotations

from typing import ClassVar

import torch

from vision.models.base import VAEBase


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Population covariance of the rows of ``x`` (N, D) -> (D, D): E[xxᵀ] − E[x]E[x]ᵀ."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / x.shape[0]


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lambda_od·Σ_{i≠j} cov_ij² + lambda_d·Σ_i (cov_ii − 1)², Σ off-diagonal², Σ (diagonal − 1)²)."""
    diag = torch.diagonal(cov)
    off = (cov - torch.diag(diag)).pow(2).sum()
    on = (diag - 1.0).pow(2).sum()
    return lambda_od * off + lambda_d * on, off, on


class DIPVAE(VAEBase):
    """recon + KL + DIP penalty on a covariance of the aggregate posterior (β fixed to 1, as in the paper).

    ``dip_type="i"`` penalises Cov[μ(x)]; ``"ii"`` penalises Cov_q[z] = E[diag σ²(x)] + Cov[μ(x)].
    The weights are used as configured; the usual convention (Kumar et al.; disentanglement_lib) is
    lambda_d = 10·lambda_od for DIP-VAE-I and lambda_d = lambda_od for DIP-VAE-II.
    """

    family: ClassVar[str] = "dip_vae"

    def regularizer(self, mu, logvar, z, kl, step):  # type: ignore[override]
        with torch.autocast(device_type=mu.device.type, enabled=False):
            mu32 = mu.float()
            cov = covariance(mu32)
            if self.cfg.dip_type == "ii":
                cov = cov + torch.diag(logvar.float().exp().mean(0))
            dip, off, on = dip_penalty(cov, self.cfg.lambda_od, self.cfg.lambda_d)
        kl_total = kl.float().sum(1).mean()
        return kl_total + dip, {"dip": dip, "dip_offdiag": off, "dip_diag": on}
