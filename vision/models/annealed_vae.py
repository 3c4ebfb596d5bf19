"""AnnealedVAE (Burgess et al. 2018): β-VAE with a controlled capacity increase."""
from __future__ import annotations

from typing import ClassVar

import torch

from vision.models.base import VAEBase


class AnnealedVAE(VAEBase):
    """recon + capacity_weight·|KL − C|, with the target KL ``C`` rising linearly from c_min to c_max.

    C grows over the first ``c_steps`` optimisation steps and then stays at c_max, so latents are switched on one
    information budget at a time (Burgess et al. use capacity_weight = 1000 and C_max = 25 nats on dSprites).
    """

    family: ClassVar[str] = "annealed_vae"

    def capacity(self, step: int) -> float:
        """Target KL (nats) at optimisation step ``step``: c_min at 0, c_max from ``c_steps`` on."""
        frac = min(max(step, 0) / self.cfg.c_steps, 1.0)
        return self.cfg.c_min + (self.cfg.c_max - self.cfg.c_min) * frac

    def regularizer(self, mu, logvar, z, kl, step):  # type: ignore[override]
        c = self.capacity(step)
        kl_total = kl.float().sum(1).mean()
        return self.cfg.capacity_weight * (kl_total - c).abs(), {"C": torch.tensor(c)}
