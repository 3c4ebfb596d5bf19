"""The VAE family. ``MODEL_FAMILIES`` maps a config's ``model.family`` to its class."""
from __future__ import annotations

from typing import Sequence

from vision.models.base import LossOutput, ModelConfig, VAEBase
from vision.models.annealed_vae import AnnealedVAE
from vision.models.beta_tcvae import BetaTCVAE
from vision.models.beta_vae import AE, VAE, BetaVAE
from vision.models.beta_vae_dae import BetaVAE_DAE
from vision.models.dae import DAE
from vision.models.dc_ign import DCIGN
from vision.models.dip_vae import DIPVAE
from vision.models.factor_vae import FactorVAE
from vision.models.infogan import InfoGAN

MODEL_FAMILIES: dict[str, type[VAEBase]] = {
    cls.family: cls
    for cls in (AE, VAE, BetaVAE, AnnealedVAE, FactorVAE, BetaTCVAE, DIPVAE, DAE, BetaVAE_DAE, DCIGN, InfoGAN)
}


def build_model(cfg: ModelConfig, input_shape: Sequence[int], dataset_size: int = 0, *, pretrained: bool = True) -> VAEBase:
    """Instantiate ``cfg.family`` for inputs of ``input_shape`` = (C, H, W).

    ``pretrained`` lets models that embed a frozen pre-trained network (β-VAE_DAE) load it from its own
    checkpoint; a checkpoint restore passes ``False`` because the weights come with the state dict.
    """
    try:
        cls = MODEL_FAMILIES[cfg.family]
    except KeyError:
        raise ValueError(f"model.family: unknown family {cfg.family!r}; choose from {sorted(MODEL_FAMILIES)}") from None
    return cls.build(cfg, input_shape, dataset_size, pretrained=pretrained) if hasattr(cls, "build") else cls(cfg, input_shape, dataset_size)


__all__ = [
    "MODEL_FAMILIES", "build_model", "ModelConfig", "VAEBase", "LossOutput", "AE", "VAE", "BetaVAE",
    "AnnealedVAE", "FactorVAE", "BetaTCVAE", "DIPVAE", "DAE", "BetaVAE_DAE", "DCIGN", "InfoGAN",
]
