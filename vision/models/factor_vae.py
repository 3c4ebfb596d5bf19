"""FactorVAE (Kim & Mnih 2018): VAE + γ·TC, the TC estimated by a discriminator (density-ratio trick)."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vision.models.base import LossOutput, ModelConfig, VAEBase, adam, backward_step, weights_frozen


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Shuffle each latent dimension independently across the batch: samples of ∏_j q(z_j) from samples of q(z)."""
    b, d = z.shape
    idx = torch.argsort(torch.rand(b, d, device=z.device), dim=0)
    return torch.gather(z, 0, idx)


class Discriminator(nn.Module):
    """MLP z -> 2 logits (class 0: a sample of q(z); class 1: a sample of ∏_j q(z_j))."""

    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6) -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ValueError(f"model.disc_layers/disc_hidden: must be >= 1, got {layers}, {hidden}")
        mods: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        mods.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FactorVAE(VAEBase):
    """recon + KL + factor_gamma·TC, TC ≈ E_q(z)[D(z)_0 − D(z)_1] (log D/(1 − D) with a 2-way softmax).

    Each :meth:`train_step` updates the VAE on the whole batch, then the discriminator (its own Adam, lr
    ``disc_lr``, betas 0.5/0.9) on *detached* codes: the first half of the batch as samples of q(z) and the
    dimension-wise permuted second half as samples of ∏_j q(z_j). The discriminator step therefore never sends a
    gradient into the encoder, and nothing the VAE step still needs is modified in place.
    """

    family: ClassVar[str] = "factor_vae"

    def __init__(self, cfg: ModelConfig, input_shape: Sequence[int], dataset_size: int = 0) -> None:
        super().__init__(cfg, input_shape, dataset_size)
        self.discriminator = Discriminator(cfg.latent_dim, cfg.disc_hidden, cfg.disc_layers)

    def regularizer(self, mu, logvar, z, kl, step):  # type: ignore[override]
        logits = self.discriminator(z).float()
        tc = (logits[:, 0] - logits[:, 1]).mean()
        kl_total = kl.float().sum(1).mean()
        return kl_total + self.cfg.factor_gamma * tc, {"tc": tc}

    def aux_prefixes(self) -> tuple[str, ...]:
        return ("discriminator.",)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        opts = super().configure_optimizers(lr)
        opts["disc"] = adam(list(self.discriminator.parameters()), self.cfg.disc_lr, betas=(0.5, 0.9))
        return opts

    def discriminator_loss(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the discriminator on detached codes ``z`` (B >= 2), and its accuracy.

        The first half of the batch are samples of q(z) (label 0); the permuted second half are samples of
        ∏_j q(z_j) (label 1).
        """
        half = z.shape[0] // 2
        if half < 1:
            raise ValueError(f"batch_size: factor_vae needs at least 2 samples per batch, got {z.shape[0]}")
        z = z.detach()
        real, fake = z[:half], permute_dims(z[half : 2 * half])
        logits = self.discriminator(torch.cat([real, fake])).float()
        labels = torch.arange(2 * half, device=z.device).ge(half).long()
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        return loss, acc.detach()

    def train_step(
        self,
        x: torch.Tensor,
        step: int,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: "torch.amp.GradScaler | None" = None,
        autocast: bool = False,
    ) -> LossOutput:
        if x.shape[0] < 2:
            raise ValueError(f"batch_size: factor_vae needs at least 2 samples per batch, got {x.shape[0]}")
        main, disc = optimizers["main"], optimizers["disc"]
        # 1. VAE step (the discriminator acts as a fixed function of z).
        # (the discriminator gets no weight gradients here: the VAE step only needs its gradient into z)
        with weights_frozen(list(self.discriminator.parameters())), \
                torch.autocast(device_type=x.device.type, enabled=autocast):
            out = self.loss(x, step)
        backward_step(out.loss, main, scaler, update_scaler=False)
        # 2. Discriminator step on the same (detached) codes.
        assert out.z is not None
        with torch.autocast(device_type=x.device.type, enabled=autocast):
            d_loss, d_acc = self.discriminator_loss(out.z)
        backward_step(d_loss, disc, scaler)
        out.terms["disc_loss"] = d_loss.detach()
        out.terms["disc_acc"] = d_acc
        return out
