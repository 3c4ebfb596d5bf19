"""Network bodies shared by the VAE family.

``Conv64Encoder``/``Conv64Decoder`` are the standard disentanglement architecture (Higgins et al. 2017;
Burgess et al. 2018; disentanglement_lib): four 4×4 stride-2 convolutions with 32-32-64-64 channels, a
256-unit dense layer, and linear heads. ``BroadcastDecoder`` is a spatial-broadcast decoder (Watters et al. 2019)
for the same 64×64 images. ``MLPEncoder``/``MLPDecoder`` serve small vector inputs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

CONV_CHANNELS = (32, 32, 64, 64)


class Conv64Encoder(nn.Module):
    """(N, C, 64, 64) -> (N, out_dim). Conv layers are named ``conv1``..``conv4`` so a layer can be chosen by name."""

    def __init__(self, in_channels: int, out_dim: int, hidden: int = 256, image_size: int = 64) -> None:
        super().__init__()
        if image_size != 64:
            raise ValueError(f"image_size: conv64 networks take 64x64 inputs, got {image_size}")
        layers: list[tuple[str, nn.Module]] = []
        c = in_channels
        for i, oc in enumerate(CONV_CHANNELS, start=1):
            layers += [(f"conv{i}", nn.Conv2d(c, oc, 4, 2, 1)), (f"relu{i}", nn.ReLU(inplace=True))]
            c = oc
        self.convs = nn.Sequential(OrderedDict(layers))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, hidden), nn.ReLU(inplace=True))
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(self.convs(x)))

    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Activation after conv layer ``layer`` (``conv1``..``conv4``, post-ReLU), ``fc`` or ``head``."""
        names = [f"conv{i}" for i in range(1, len(CONV_CHANNELS) + 1)]
        if layer in names:
            stop = 2 * (names.index(layer) + 1)
            return self.convs[:stop](x)
        if layer == "fc":
            return self.fc(self.convs(x))
        if layer == "head":
            return self.forward(x)
        raise ValueError(f"layer: unknown encoder layer {layer!r}; choose from {names + ['fc', 'head']}")


class Conv64Decoder(nn.Module):
    """(N, latent_dim) -> (N, C, 64, 64) pre-activation outputs (logits for Bernoulli, means for Gaussian)."""

    def __init__(self, latent_dim: int, out_channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 64 * 4 * 4), nn.ReLU(inplace=True)
        )
        chans = list(reversed(CONV_CHANNELS)) + [out_channels]  # 64, 64, 32, 32, C
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1))
            if i < 3:
                layers.append(nn.ReLU(inplace=True))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconvs(self.fc(z).view(-1, 64, 4, 4))


class BroadcastDecoder(nn.Module):
    """(N, latent_dim) -> (N, C, 64, 64): the code is tiled over a ``grid``×``grid`` map beside x/y coordinate channels.

    A spatial-broadcast decoder (Watters et al. 2019): every cell sees the whole code and where it is, so moving an
    object is a shift in what the coordinates are compared against, not a re-synthesis of a dense feature map. This
    prior is what lets a latent carry x alone or y alone. Watters broadcast at full resolution (``grid=64``); the
    default 16×16 map stays within the conv64 decoder's cost on a CPU: three 3×3 convolutions on the map, then
    4×4 stride-2 transposed convolutions up to 64×64 (two from 16, one from 32, none from 64, where a last 3×3
    convolution gives the output channels).
    """

    GRIDS = (16, 32, 64)

    def __init__(self, latent_dim: int, out_channels: int, grid: int = 16, channels: int = 32) -> None:
        super().__init__()
        if grid not in self.GRIDS:
            raise ValueError(f"model.decoder_grid: must be one of {self.GRIDS}, got {grid}")
        self.grid = grid
        lin = torch.linspace(-1.0, 1.0, grid)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)  # (1, 2, g, g)
        layers: list[nn.Module] = [nn.Conv2d(latent_dim + 2, channels, 3, 1, 1), nn.ReLU(inplace=True),
                                   nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=True),
                                   nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=True)]
        ups = {16: 2, 32: 1, 64: 0}[grid]
        for _ in range(ups - 1):
            layers += [nn.ConvTranspose2d(channels, channels, 4, 2, 1), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(channels, out_channels, 4, 2, 1) if ups else
                      nn.Conv2d(channels, out_channels, 3, 1, 1))
        self.convs = nn.Sequential(*layers)  # grid 16: the layout (and state-dict keys) of earlier checkpoints

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        tiled = z[:, :, None, None].expand(n, z.shape[1], self.grid, self.grid)
        coords = self.coords.to(z.dtype).expand(n, -1, -1, -1)
        return self.convs(torch.cat([tiled, coords], dim=1))


class MLPEncoder(nn.Module):
    """(N, *input_shape) -> (N, out_dim) through ReLU hidden layers."""

    def __init__(self, input_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        dims = [input_dim, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """(N, latent_dim) -> (N, *output_shape)."""

    def __init__(self, latent_dim: int, output_shape: Sequence[int], hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        out_dim = int(torch.tensor(self.output_shape).prod())
        dims = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.output_shape)


def make_encoder(arch: str, input_shape: Sequence[int], out_dim: int, hidden: int = 256) -> nn.Module:
    """Encoder body for ``arch`` ("conv64" or "mlp") over inputs of ``input_shape`` = (C, H, W) or (D,)."""
    if arch == "conv64":
        if len(input_shape) != 3:
            raise ValueError(f"input_shape: conv64 needs (C, H, W), got {tuple(input_shape)}")
        return Conv64Encoder(input_shape[0], out_dim, hidden, image_size=input_shape[1])
    if arch == "mlp":
        return MLPEncoder(int(torch.tensor(list(input_shape)).prod()), out_dim, (hidden, hidden))
    raise ValueError(f"model.arch: unknown architecture {arch!r}; choose 'conv64' or 'mlp'")


DECODERS = ("deconv", "broadcast")


def make_decoder(arch: str, latent_dim: int, output_shape: Sequence[int], hidden: int = 256,
                 decoder: str = "deconv", decoder_channels: int = 32, decoder_grid: int = 16) -> nn.Module:
    """Decoder body matching :func:`make_encoder`; for conv64, ``decoder`` picks "deconv" or "broadcast"
    (``decoder_channels`` wide, broadcast over a ``decoder_grid`` map)."""
    if decoder not in DECODERS:
        raise ValueError(f"model.decoder: unknown {decoder!r}; choose from {DECODERS}")
    if arch == "conv64":
        if decoder == "broadcast":
            return BroadcastDecoder(latent_dim, output_shape[0], grid=decoder_grid, channels=decoder_channels)
        return Conv64Decoder(latent_dim, output_shape[0], hidden)
    if decoder != "deconv":
        raise ValueError(f"model.decoder: {decoder!r} needs model.arch=conv64, got {arch!r}")
    if arch == "mlp":
        return MLPDecoder(latent_dim, output_shape, (hidden, hidden))
    raise ValueError(f"model.arch: unknown architecture {arch!r}; choose 'conv64' or 'mlp'")
