"""The ground-truth data protocol: anything that knows its generative factors and can render them.

Factors are integer indices (N, K) into each factor's value set of size ``factor_sizes[k]``; images are uint8
(N, H, W, C). The procedural dSprites and every darla environment scene implement this protocol, so the metric
suite runs on either.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class GroundTruthData(Protocol):
    """A renderer of images from discrete ground-truth factors."""

    @property
    def factor_names(self) -> tuple[str, ...]: ...

    @property
    def factor_sizes(self) -> tuple[int, ...]: ...

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of rendered images."""
        ...

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor index vectors (n, K), int64, drawn from the data distribution."""
        ...

    def render(self, factors: np.ndarray) -> np.ndarray:
        """Images (n, H, W, C) uint8 for factor indices (n, K)."""
        ...


def sample_observations(data: GroundTruthData, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (images, factors) pairs drawn from ``data``."""
    factors = data.sample_factors(n, rng)
    return data.render(factors), factors


def uniform_factors(factor_sizes: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """Factor indices drawn independently and uniformly from each factor's value set."""
    return np.stack([rng.integers(0, s, size=n) for s in factor_sizes], axis=1).astype(np.int64)


def check_factors(factors: np.ndarray, factor_sizes: tuple[int, ...], where: str = "factors") -> np.ndarray:
    """Validate an (n, K) integer factor array against ``factor_sizes``; returns it as int64."""
    f = np.asarray(factors)
    if f.ndim != 2 or f.shape[1] != len(factor_sizes):
        raise ValueError(f"{where}: expected shape (n, {len(factor_sizes)}), got {tuple(f.shape)}")
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"{where}: factor indices must be integers, got dtype {f.dtype}")
    bad = (f < 0) | (f >= np.asarray(factor_sizes))
    if bad.any():
        k = int(np.argwhere(bad)[0][1])
        raise ValueError(f"{where}: factor {k} has an index outside [0, {factor_sizes[k]})")
    return f.astype(np.int64, copy=False)
