"""Pictures of a vision model: reconstructions, latent traversals and prior samples, as uint8 HWC grids."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from vision.images import to_tensor, to_uint8_hwc
from vision.models.base import VAEBase
from vision.runtime import atomic_write_bytes


def grid(images: np.ndarray, rows: int, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into ``rows`` rows (N divisible by rows) with a grey border; RGB out."""
    n, h, w, c = images.shape
    if n % rows:
        raise ValueError(f"images: {n} images do not fill {rows} rows")
    if c == 1:
        images = np.repeat(images, 3, axis=3)
    cols = n // rows
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 128, dtype=np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y:y + h, x:x + w] = im
    return out


@torch.no_grad()
def reconstruction_grid(model: VAEBase, frames: np.ndarray) -> np.ndarray:
    """Two rows: input frames (uint8 NHWC) above their mean reconstructions."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    x = to_tensor(frames, dev)
    rec = to_uint8_hwc(model.reconstruct(x))
    model.train(was)
    return grid(np.concatenate([frames, rec]), rows=2)


@torch.no_grad()
def traversal_grid(
    model: VAEBase,
    frame: np.ndarray,
    order: np.ndarray | None = None,
    num_latents: int | None = None,
    steps: int = 9,
    limit: float = 2.5,
    ranges: np.ndarray | None = None,
) -> np.ndarray:
    """One row per latent (in ``order``, e.g. by decreasing KL): decode μ(frame) with that latent swept over
    [-limit, limit] — or over row r's own ``ranges[r]`` = (low, high) — while the others stay fixed."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    mu, _ = model.encode(to_tensor(frame, dev))
    d = mu.shape[1]
    order = np.arange(d) if order is None else np.asarray(order)
    if num_latents is not None:
        order = order[:num_latents]
    if ranges is not None and len(ranges) != len(order):
        raise ValueError(f"ranges: one (low, high) per traversed latent, got {len(ranges)} for {len(order)}")
    z = mu.repeat(len(order) * steps, 1)
    for r, j in enumerate(order):
        low, high = (-limit, limit) if ranges is None else (float(ranges[r][0]), float(ranges[r][1]))
        z[r * steps:(r + 1) * steps, int(j)] = torch.linspace(low, high, steps, device=dev)
    images = to_uint8_hwc(model.render(z))
    model.train(was)
    return grid(images, rows=len(order))


@torch.no_grad()
def sample_grid(model: VAEBase, n: int = 32, rows: int = 4, seed: int = 0) -> np.ndarray:
    """``n`` images rendered from codes drawn from the model's prior: N(0, I) for the VAE family, the generator's
    code distribution for models that define ``sample_code`` (InfoGAN). The caller's random state is untouched."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = model.sample_code(n, "cpu")[0] if hasattr(model, "sample_code") else torch.randn(n, model.latent_dim)
    images = to_uint8_hwc(model.render(z.to(dev)))
    model.train(was)
    return grid(images, rows=rows)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Atomically write an RGB uint8 image as PNG."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 and image.shape[2] == 3 else image
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"image: could not encode {tuple(image.shape)} as PNG")
    return atomic_write_bytes(path, buf.tobytes())
