"""Denoising autoencoder (DARLA's feature network J): occlusion-masked input, clean reconstruction."""
from __future__ import annotations

from typing import ClassVar

import torch

from vision.models.base import VAEBase

DAE_LAYERS = ("bottleneck", "conv1", "conv2", "conv3", "conv4", "fc", "recon")


def occlusion_masks(
    shape: tuple[int, int, int], num_masks: int, mask_min: float, mask_max: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Boolean (N, 1, H, W) masks, True inside ``num_masks`` random axis-aligned rectangles per image.

    Each rectangle's height and width are independent fractions of the image side drawn uniformly from
    [mask_min, mask_max]; its position is uniform over the placements that keep it inside the image.
    """
    n, h, w = shape
    sides = torch.tensor([h, w], device=device, dtype=torch.float32)
    frac = mask_min + (mask_max - mask_min) * torch.rand(n, num_masks, 2, device=device)
    size = (frac * sides).round().clamp(min=1).long()  # (N, K, 2) rectangle height, width
    start = (torch.rand(n, num_masks, 2, device=device) * (sides.long() - size + 1)).floor().long()
    rows = torch.arange(h, device=device).view(1, 1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, 1, w)
    top, left = start[..., 0, None, None], start[..., 1, None, None]
    inside = (rows >= top) & (rows < top + size[..., 0, None, None]) & (cols >= left) & (cols < left + size[..., 1, None, None])
    return inside.any(1, keepdim=True)


class DAE(VAEBase):
    """Deterministic autoencoder trained to reconstruct the clean image from an occluded copy.

    In training mode :meth:`corrupt` zeroes ``num_masks`` random rectangles per image (all channels); in eval mode
    the input passes unchanged. The bottleneck has ``latent_dim`` units. :meth:`features` exposes the network's
    activations as the feature map J(x) of β-VAE_DAE.
    """

    family: ClassVar[str] = "dae"
    stochastic: ClassVar[bool] = False

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.dim() != 4:
            raise ValueError(f"x: occlusion masks need image batches (N, C, H, W), got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        mask = occlusion_masks((n, h, w), self.cfg.num_masks, self.cfg.mask_min, self.cfg.mask_max, x.device)
        return x.masked_fill(mask, 0.0)

    def features(self, x: torch.Tensor, layer: str = "bottleneck") -> torch.Tensor:
        """J(x) at ``layer`` for clean inputs x (N, C, H, W) in [0, 1]; differentiable with respect to x.

        ``bottleneck``: the code (N, latent_dim); ``conv1``..``conv4``, ``fc``: encoder activations after the
        ReLU (conv64 only); ``recon``: sigmoid of the reconstruction of x.
        """
        if layer == "bottleneck":
            return self.encode(x)[0]
        if layer == "recon":
            return torch.sigmoid(self.decode(self.encode(x)[0]))
        if layer in DAE_LAYERS:
            if not hasattr(self.encoder, "features"):
                raise ValueError(f"model.dae_layer: {layer!r} needs the conv64 architecture; use 'bottleneck' or 'recon'")
            return self.encoder.features(x, layer)
        raise ValueError(f"model.dae_layer: unknown layer {layer!r}; choose from {DAE_LAYERS}")
