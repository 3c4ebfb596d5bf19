"""β-TCVAE (Chen et al. 2018): the KL split into index-code MI, total correlation and dimension-wise KL."""
from __future__ import annotations

from typing import ClassVar

from vision.losses import kl_decomposition
from vision.models.base import VAEBase


class BetaTCVAE(VAEBase):
    """recon + alpha·MI + beta·TC + gamma_kl·dimension-wise KL, each estimated on the minibatch.

    ``cfg.beta`` weighs the total correlation (the paper's β; α = γ = 1 in the paper). The aggregate posterior
    q(z) is estimated with ``cfg.tc_estimator`` ("mss" or "mws", see :func:`vision.losses.log_qz`), which needs
    the training-set size: build the model with ``dataset_size`` > 0.
    """

    family: ClassVar[str] = "beta_tcvae"

    def regularizer(self, mu, logvar, z, kl, step):  # type: ignore[override]
        if self.dataset_size < 1:
            raise ValueError(
                "dataset_size: beta_tcvae needs the training-set size for its q(z) estimator; "
                "build the model with dataset_size > 0"
            )
        parts = kl_decomposition(z, mu, logvar, self.dataset_size, self.cfg.tc_estimator)
        reg = self.cfg.alpha * parts["mi"] + self.cfg.beta * parts["tc"] + self.cfg.gamma_kl * parts["dwkl"]
        return reg, parts
