"""The one place where images change representation.

Images enter darla as uint8 arrays in Gymnasium's HWC convention (a single frame ``(H, W, C)`` or a batch
``(N, H, W, C)``). Networks consume float tensors ``(N, C, H, W)`` in [0, 1]. Every conversion goes through
:func:`to_tensor`, and every resize through :func:`resize_frames`.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 HWC frame(s) to ``size`` = (H, W) with area interpolation; no-op when already that size."""
    single = frames.ndim == 3
    batch = frames[None] if single else frames
    if batch.ndim != 4:
        raise ValueError(f"frames: expected (H, W, C) or (N, H, W, C), got shape {tuple(frames.shape)}")
    h, w = size
    if batch.shape[1:3] == (h, w):
        return frames
    out = np.empty((batch.shape[0], h, w, batch.shape[3]), dtype=batch.dtype)
    for i, f in enumerate(batch):
        r = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
        out[i] = r.reshape(h, w, batch.shape[3])
    return out[0] if single else out


def to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str | None = None,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 HWC frame(s) (numpy or torch) -> float32 NCHW tensor in [0, 1] on ``device``.

    The uint8 -> float conversion happens on the target device, so a batch crosses the bus as bytes.
    ``memory_format=torch.channels_last`` keeps the frames' own HWC layout (no transposing copy), which is what
    channels-last conv weights want.
    """
    t = torch.as_tensor(frames)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"frames: expected (H, W, C) or (N, H, W, C), got shape {tuple(t.shape)}")
    if device is not None:
        t = t.to(device, non_blocking=True)
    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)
    else:
        t = t.float()
    return t.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """float NCHW tensor in [0, 1] -> uint8 NHWC numpy array (for image logging and files)."""
    x = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def foreground_mask(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Soft foreground mask (N, 1, H, W) in [0, 1] of images ``x`` (N, C, H, W) in [0, 1].

    The background is each image's per-channel median colour (the colour most pixels share on a board with a few
    sprites); a pixel's mask value is its largest channel distance from that colour divided by ``threshold``,
    clipped to 1. Every object thus counts by its area alone, whatever its contrast with the background.
    """
    if x.dim() != 4:
        raise ValueError(f"x: the foreground mask needs image batches (N, C, H, W), got shape {tuple(x.shape)}")
    if threshold <= 0:
        raise ValueError(f"model.foreground_threshold: must be > 0, got {threshold}")
    x = x.float()
    background = x.flatten(2).median(dim=2).values[..., None, None]
    return ((x - background).abs().amax(1, keepdim=True) / threshold).clamp(max=1.0)
