"""Procedural dSprites (Matthey et al. 2017), rendered deterministically with OpenCV: no download.

Factors, as in the original: color (1), shape (3: square, ellipse, heart), scale (6, linearly 0.5–1),
orientation (40, evenly over [0, 2π) — the original's grid repeats 0 at 2π; ours does not), posX (32), posY
(32): 737,280 binary 64×64 images. Shapes are drawn with 1/16-pixel sub-pixel precision.
"""
from __future__ import annotations

import cv2
import numpy as np

from vision.data.ground_truth import check_factors, uniform_factors

SHAPES = ("square", "ellipse", "heart")
_SUBPIXEL_BITS = 4
_SIZE = 64
_BASE_HALF = 10.0  # half-size in pixels of a scale-1 sprite
_MARGIN = 14.5  # centre range keeps every rotated sprite inside the frame


def _outline(shape: str, n: int = 64) -> np.ndarray:
    """Unit outline (max |coordinate| ≈ 1) of a shape as (n, 2) points, y down."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.8
    if shape == "ellipse":
        return np.stack([np.cos(t), 0.5 * np.sin(t)], axis=1)
    if shape == "heart":
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        pts = np.stack([x, -y], axis=1)
        pts -= pts.mean(0)
        return pts / np.abs(pts).max()
    raise ValueError(f"shape: unknown {shape!r}")


class DSprites:
    """Procedural dSprites implementing :class:`vision.data.ground_truth.GroundTruthData`."""

    factor_names = ("color", "shape", "scale", "orientation", "posX", "posY")
    factor_sizes = (1, 3, 6, 40, 32, 32)
    observation_shape = (_SIZE, _SIZE, 1)

    def __init__(self) -> None:
        self._outlines = [_outline(s) for s in SHAPES]
        self.scales = np.linspace(0.5, 1.0, 6)
        self.orientations = np.arange(40) * (2 * np.pi / 40)
        self.positions = np.linspace(_MARGIN, _SIZE - 1 - _MARGIN, 32)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform over the full factor grid (the original dataset is the full product)."""
        return uniform_factors(self.factor_sizes, n, rng)

    def index_to_factors(self, index: np.ndarray) -> np.ndarray:
        """Flat indices (row-major over the factor grid, like the original file) -> factor indices (n, K)."""
        return np.stack(np.unravel_index(np.asarray(index), self.factor_sizes), axis=1).astype(np.int64)

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices (n, K) -> flat row-major indices."""
        f = check_factors(factors, self.factor_sizes)
        return np.ravel_multi_index(tuple(f.T), self.factor_sizes).astype(np.int64)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """Binary uint8 images (n, 64, 64, 1) with values {0, 255}."""
        f = check_factors(factors, self.factor_sizes)
        out = np.zeros((len(f), _SIZE, _SIZE, 1), dtype=np.uint8)
        scale_px = float(1 << _SUBPIXEL_BITS)
        for i, (_, shape, scale, orient, px, py) in enumerate(f):
            theta = self.orientations[orient]
            c, s = np.cos(theta), np.sin(theta)
            pts = self._outlines[shape] @ np.array([[c, s], [-s, c]]) * (_BASE_HALF * self.scales[scale])
            pts = pts + np.array([self.positions[px], self.positions[py]])
            poly = np.round(pts * scale_px).astype(np.int32)
            cv2.fillPoly(out[i, :, :, 0], [poly], 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
        return out
