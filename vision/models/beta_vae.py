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

    With ``beta_steps > 0`` β moves linearly from ``beta_start`` to ``beta`` over the first ``beta_steps``
    optimisation steps and stays at ``beta`` afterwards: a warm-up from a low β, or an annealing from a high one
    (Burgess et al.'s idea of opening latents one budget at a time, with the β-VAE's own objective). On dSprites
    neither made the recipe work for every seed (docs/stage1.md, recipe study).
    """

    family: ClassVar[str] = "beta_vae"

    def _normalise(self, beta: float) -> float:
        if self.cfg.beta_norm:
            n_inputs = 1
            for s in self.input_shape:
                n_inputs *= s
            return beta * n_inputs / self.latent_dim
        return beta

    @property
    def kl_weight(self) -> float:
        """The KL weight once any schedule has ended."""
        return self._normalise(self.cfg.beta)

    def kl_weight_at(self, step: int) -> float:
        """The KL weight applied at optimisation step ``step``."""
        if self.cfg.beta_steps <= 0:
            return self.kl_weight
        frac = min(max(step, 0) / self.cfg.beta_steps, 1.0)
        return self._normalise(self.cfg.beta_start + (self.cfg.beta - self.cfg.beta_start) * frac)

    def regularizer(self, mu, logvar, z, kl, step):  # type: ignore[override]
        w = self.kl_weight_at(step)
        return w * kl.sum(1).mean(), {"beta": torch.tensor(w)}


class VAE(BetaVAE):
    """The plain VAE: β fixed to 1 whatever the config says."""

    family: ClassVar[str] = "vae"

    @property
    def kl_weight(self) -> float:
        return 1.0

    def kl_weight_at(self, step: int) -> float:
        return 1.0
