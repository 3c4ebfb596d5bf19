"""β-VAE (Higgins et al. 2017), the plain VAE (β = 1) and a deterministic autoencoder."""
from __future__ import annotations

from typing import ClassVar

import torch

from vision.models.base import VAEBase


class AE(VAEBase):
    """Deterministic autoencoder: reconstruction only."""

    family: ClassVar[str] = "ae"
    stochastic: ClassVar[bool] = False


class BetaVAE(VAEBase):
    """recon + β·KL(q(z|x) ‖ N(0, I)).

    With ``beta_norm=True`` the configured ``beta`` is the seeds' normalised β_norm = β·M/N (M latents, N input
    dimensions), and the KL weight actually applied is β_norm·N/M.
    """

    family: ClassVar[str] = "beta_vae"

    @property
    def kl_weight(self) -> float:
        if self.cfg.beta_norm:
            n_inputs = 1
            for s in self.input_shape:
                n_inputs *= s
            return self.cfg.beta * n_inputs / self.latent_dim
        return self.cfg.beta

    def regularizer(self, mu, logvar, z, kl, step):  # type: ignore[override]
        return self.kl_weight * kl.sum(1).mean(), {"beta": torch.tensor(self.kl_weight)}


class VAE(BetaVAE):
    """The plain VAE: β fixed to 1 whatever the config says."""

    family: ClassVar[str] = "vae"

    @property
    def kl_weight(self) -> float:
        return 1.0
