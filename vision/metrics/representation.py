"""Encode an evaluation set once; every metric draws its samples from the cache.

A representation is any function ``encode(images uint8 (N, H, W, C)) -> (mu (N, D), logvar (N, D) or None)``
returning numpy arrays (:data:`EncodeFn`); :func:`encoder_from_model` makes one from a :class:`VAEBase`,
:mod:`vision.metrics.baselines` makes them for raw pixels, PCA, ICA and untrained encoders.

:class:`RepresentationCache` holds two independent i.i.d. pools drawn from the ground-truth data — ``train``
(``num_points`` images, 10,000 by default, as disentanglement_lib's ``num_train``) and ``test`` (half as many, its
``num_test``/``num_eval``) — each encoded once, in batches, under ``torch.no_grad``.

Metrics that need batches with one factor held fixed (BetaVAE, FactorVAE) do not render and encode new images for
every batch: disentanglement_lib's way costs 15,000 × 128 ≈ 1.9 M encoder passes for BetaVAE alone. They draw the
batch members from a pool instead, grouped by the fixed factor's value. A pool is an i.i.d. sample of the data
distribution, so the members of one group are an i.i.d. sample of the data conditioned on that factor's value —
the distribution the original procedure samples from when factors are independent, and the right conditional when
they are not. What changes is that codes are reused across batches (10,000 pool codes serve 15,000 batches of 64);
each batch is still a fresh random subset, so batch statistics keep their distribution, and their sampling noise
falls as the pool grows. Training batches are drawn from the ``train`` pool and evaluation batches from the
``test`` pool, so a classifier is never scored on the codes it was fitted on.

Factors that take a single value in the train pool (dSprites' ``color``, a factor a domain pins) carry no
information: they are dropped here, once, for every metric, and their names recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from vision.data.ground_truth import GroundTruthData, check_factors
from vision.images import to_tensor

EncodeFn = Callable[[np.ndarray], "tuple[np.ndarray, Optional[np.ndarray]]"]
"""``encode(images uint8 (N, H, W, C)) -> (mu (N, D), logvar (N, D) or None)``, numpy in, numpy out."""

# Bound on the size of gathered (rows, batch, latents) blocks so 4,096-dimensional pixel codes fit in memory.
_GATHER_ELEMENTS = 1 << 23


def encoder_from_model(model: torch.nn.Module, batch_size: int = 512) -> EncodeFn:
    """An :data:`EncodeFn` for a :class:`vision.models.base.VAEBase` (posterior means and log-variances).

    Runs on the model's device, in eval mode and without gradients; images go through :func:`vision.images.to_tensor`.
    Deterministic models (AE, DAE) have no posterior: their log-variance is returned as None.
    """
    stochastic = bool(getattr(model, "stochastic", True))
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")

    def encode(images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        was_training = model.training
        model.eval()
        mus, logvars = [], []
        try:
            with torch.no_grad():
                for i in range(0, len(images), batch_size):
                    mu, logvar = model.encode(to_tensor(images[i:i + batch_size], device))
                    mus.append(mu.float().cpu().numpy())
                    logvars.append(logvar.float().cpu().numpy())
        finally:
            model.train(was_training)
        return np.concatenate(mus), (np.concatenate(logvars) if stochastic else None)

    return encode


@dataclass(frozen=True)
class CodeSet:
    """One encoded pool: posterior means, log-variances (None for deterministic representations) and factors."""

    mu: np.ndarray  # (n, D)
    logvar: np.ndarray | None  # (n, D) or None
    factors: np.ndarray  # (n, K) int64, active factors only
    _groups: dict[int, tuple[np.ndarray, ...]] = field(
        default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    def groups(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pool indices grouped by factor ``k``'s value: (order, starts, counts, rank, dense).

        ``dense[i]`` is point ``i``'s value as a dense index ``g``; ``order`` lists pool indices sorted by it, so
        the group of ``g`` is ``order[starts[g]: starts[g] + counts[g]]``; ``rank[i]`` is ``i``'s position there.
        """
        if k not in self._groups:
            values, dense = np.unique(self.factors[:, k], return_inverse=True)
            dense = dense.reshape(-1).astype(np.int64)
            order = np.argsort(dense, kind="stable")
            counts = np.bincount(dense, minlength=len(values))
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order)) - starts[dense[order]]
            self._groups[k] = (order, starts, counts, rank, dense)
        return self._groups[k]


class RepresentationCache:
    """Train and test pools of codes with their ground-truth factors; see the module docstring."""

    def __init__(self, train: CodeSet, test: CodeSet, factor_names: Sequence[str], factor_sizes: Sequence[int],
                 info: dict[str, Any] | None = None) -> None:
        if train.factors.shape[1] != len(factor_names) or len(factor_names) != len(factor_sizes):
            raise ValueError("cache: factor_names, factor_sizes and the factor columns must have the same length")
        if train.mu.shape[1] != test.mu.shape[1]:
            raise ValueError(f"cache: train codes have {train.mu.shape[1]} dims, test codes {test.mu.shape[1]}")
        if len(factor_names) == 0:
            raise ValueError("cache: no factor takes more than one value in the evaluation pool")
        self.train = train
        self.test = test
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.info = dict(info or {})

    # ----- construction ------------------------------------------------------------------------------------
    @classmethod
    def build(cls, data: GroundTruthData, encode: EncodeFn, num_points: int = 10_000, num_test: int | None = None,
              seed: int = 0, batch_size: int = 1_000, progress: bool = True) -> "RepresentationCache":
        """Sample ``num_points`` + ``num_test`` (default ``num_points // 2``) images from ``data``, encode them once."""
        if num_points < 2:
            raise ValueError(f"num_points: need at least 2 evaluation points, got {num_points}")
        num_test = max(2, num_points // 2) if num_test is None else int(num_test)
        if num_test < 2:
            raise ValueError(f"num_test: need at least 2 test points, got {num_test}")
        sizes = tuple(int(s) for s in data.factor_sizes)
        factors = pool_factors(data, num_points, num_test, seed)
        mu, logvar = encode_images(data, encode, factors, batch_size, progress)
        n = num_points
        keep = [k for k in range(len(sizes)) if len(np.unique(factors[:n, k])) > 1]
        names = tuple(data.factor_names)
        info = {
            "data": type(data).__name__,
            "num_points": n,
            "num_test": num_test,
            "pool_seed": seed,
            "factors": [names[k] for k in keep],
            "dropped_factors": [names[k] for k in range(len(sizes)) if k not in keep],
        }
        train = CodeSet(mu[:n], None if logvar is None else logvar[:n], factors[:n][:, keep])
        test = CodeSet(mu[n:], None if logvar is None else logvar[n:], factors[n:][:, keep])
        return cls(train, test, [names[k] for k in keep], [sizes[k] for k in keep], info)

    @classmethod
    def from_arrays(cls, mu: np.ndarray, factors: np.ndarray, test_mu: np.ndarray, test_factors: np.ndarray,
                    factor_sizes: Sequence[int] | None = None, factor_names: Sequence[str] | None = None,
                    logvar: np.ndarray | None = None, test_logvar: np.ndarray | None = None,
                    info: dict[str, Any] | None = None) -> "RepresentationCache":
        """A cache from codes already computed (tests, codes saved elsewhere). Constant factors are dropped."""
        mu, test_mu = _codes(mu, "mu"), _codes(test_mu, "test_mu")
        factors, test_factors = np.asarray(factors), np.asarray(test_factors)
        if factors.ndim != 2 or len(factors) != len(mu):
            raise ValueError(f"factors: expected shape ({len(mu)}, K), got {tuple(factors.shape)}")
        if test_factors.ndim != 2 or len(test_factors) != len(test_mu):
            raise ValueError(f"test_factors: expected shape ({len(test_mu)}, K), got {tuple(test_factors.shape)}")
        k_all = factors.shape[1]
        sizes = tuple(int(s) for s in factor_sizes) if factor_sizes is not None else tuple(
            int(max(factors[:, k].max(), test_factors[:, k].max())) + 1 for k in range(k_all))
        names = tuple(factor_names) if factor_names is not None else tuple(f"factor{k}" for k in range(k_all))
        factors = check_factors(factors, sizes, "factors")
        test_factors = check_factors(test_factors, sizes, "test_factors")
        keep = [k for k in range(k_all) if len(np.unique(factors[:, k])) > 1]
        base = {"data": "arrays", "num_points": len(mu), "num_test": len(test_mu), "pool_seed": None,
                "factors": [names[k] for k in keep], "dropped_factors": [names[k] for k in range(k_all) if k not in keep]}
        base.update(info or {})
        return cls(CodeSet(mu, None if logvar is None else _codes(logvar, "logvar"), factors[:, keep]),
                   CodeSet(test_mu, None if test_logvar is None else _codes(test_logvar, "test_logvar"),
                           test_factors[:, keep]),
                   [names[k] for k in keep], [sizes[k] for k in keep], base)

    # ----- properties --------------------------------------------------------------------------------------
    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    @property
    def num_latents(self) -> int:
        return int(self.train.mu.shape[1])

    @property
    def has_posterior(self) -> bool:
        """Whether the representation gave log-variances (needed by the sampling MIG and KL-based scores)."""
        return self.train.logvar is not None

    def split(self, name: str) -> CodeSet:
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        raise ValueError(f"split: expected 'train' or 'test', got {name!r}")

    def kl_per_latent(self, split: str = "train") -> np.ndarray:
        """Mean KL(q(z_j|x) || N(0, 1)) of each latent over a pool (D,); requires a posterior."""
        s = self.split(split)
        if s.logvar is None:
            raise ValueError("representation: per-latent KL needs log-variances; this encoder returned none")
        return mean_kl(s.mu, s.logvar)

    def provenance(self) -> dict[str, Any]:
        """What every metric result records about the evaluation set."""
        return dict(self.info)

    # ----- fixed-factor sampling ---------------------------------------------------------------------------
    def fixed_factor_batches(self, factor_index: np.ndarray, batch_size: int, rng: np.random.Generator,
                             split: str = "train") -> tuple[np.ndarray, int]:
        """For every requested factor ``k``: ``batch_size`` distinct pool points sharing one value of ``k``.

        The value is that of a uniformly drawn pool point (so values come with their data frequency); members are
        drawn without replacement from the group, with replacement only when the group is smaller than the batch.
        Returns pool indices (m, batch_size) and how many batches needed replacement.
        """
        s = self.split(split)
        factor_index = np.asarray(factor_index, dtype=np.int64)
        out = np.empty((len(factor_index), batch_size), dtype=np.int64)
        small = 0
        for k in np.unique(factor_index):
            rows = np.flatnonzero(factor_index == k)
            order, starts, counts, _, dense = s.groups(int(k))
            group = dense[rng.integers(0, len(s), size=len(rows))]
            for g in np.unique(group):
                r = rows[group == g]
                c = int(counts[g])
                if c < batch_size:
                    pos = rng.integers(0, c, size=(len(r), batch_size))
                    small += len(r)
                else:
                    pos = _distinct(rng, len(r), c, batch_size)
                out[r] = order[starts[g] + pos]
        return out, small

    def fixed_factor_pairs(self, factor_index: np.ndarray, batch_size: int, rng: np.random.Generator,
                           split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """For every requested factor ``k``: ``batch_size`` pairs of pool points that share their value of ``k``.

        The first of each pair is uniform over the pool; the second uniform over the other members of its group
        (the point itself only when it is alone in its group). Returns pool indices, two arrays (m, batch_size).
        """
        s = self.split(split)
        factor_index = np.asarray(factor_index, dtype=np.int64)
        first = rng.integers(0, len(s), size=(len(factor_index), batch_size))
        second = np.empty_like(first)
        for k in np.unique(factor_index):
            rows = factor_index == k
            order, starts, counts, rank, dense = s.groups(int(k))
            a = first[rows]
            g = dense[a]
            c = counts[g]
            offset = 1 + np.floor(rng.random(a.shape) * np.maximum(c - 1, 1)).astype(np.int64)
            pos = np.where(c > 1, (rank[a] + offset) % c, 0)
            second[rows] = order[starts[g] + pos]
        return first, second


def pool_factors(data: GroundTruthData, num_points: int, num_test: int, seed: int = 0) -> np.ndarray:
    """The factors of the train then test pools that :meth:`RepresentationCache.build` draws for ``seed``.

    Exposed so a representation that is not an image encoder (the factors themselves) can be scored on the very
    same points through :meth:`RepresentationCache.from_arrays`.
    """
    sizes = tuple(int(s) for s in data.factor_sizes)
    return check_factors(data.sample_factors(num_points + num_test, np.random.default_rng(seed)), sizes,
                         "data.sample_factors")


def mean_kl(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean over points of KL(N(mu, exp(logvar)) || N(0, 1)) per latent: (n, D) -> (D,)."""
    mu, lv = np.asarray(mu, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
    return (0.5 * (mu ** 2 + np.exp(lv) - lv - 1.0)).mean(axis=0)


def encode_images(data: GroundTruthData, encode: EncodeFn, factors: np.ndarray, batch_size: int = 1_000,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Render ``factors`` and encode them in batches -> (mu, logvar or None), checked for shape and finiteness."""
    from vision.runtime import progress_bar

    mus: list[np.ndarray] = []
    logvars: list[np.ndarray] = []
    has_logvar: bool | None = None
    for i in progress_bar(range(0, len(factors), batch_size), desc="encode", unit="batch", disable=not progress, leave=False):
        images = data.render(factors[i:i + batch_size])
        mu, logvar = encode(images)
        mu = _codes(mu, "encode: mu", len(images))
        if has_logvar is None:
            has_logvar = logvar is not None
        if (logvar is not None) != has_logvar:
            raise ValueError("encode: returned log-variances for some batches and None for others")
        mus.append(mu)
        if logvar is not None:
            lv = _codes(logvar, "encode: logvar", len(images))
            if lv.shape != mu.shape:
                raise ValueError(f"encode: logvar shape {lv.shape} differs from mu shape {mu.shape}")
            logvars.append(lv)
    return np.concatenate(mus), (np.concatenate(logvars) if has_logvar else None)


def _codes(x: Any, where: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or (n is not None and a.shape[0] != n):
        want = f"({n}, D)" if n is not None else "(n, D)"
        raise ValueError(f"{where}: expected shape {want}, got {tuple(a.shape)}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{where}: contains NaN or inf")
    return a


def _distinct(rng: np.random.Generator, rows: int, population: int, size: int) -> np.ndarray:
    """``rows`` independent draws of ``size`` distinct integers from [0, population), as (rows, size)."""
    out = np.empty((rows, size), dtype=np.int64)
    step = max(1, _GATHER_ELEMENTS // max(population, 1))
    for i in range(0, rows, step):
        n = min(step, rows - i)
        if population <= _GATHER_ELEMENTS:
            keys = rng.random((n, population))
            out[i:i + n] = np.argpartition(keys, size - 1, axis=1)[:, :size]
        else:  # large groups: per-row choice avoids an (n, population) key matrix
            for r in range(n):
                out[i + r] = rng.choice(population, size=size, replace=False)
    return out


def gather_rows(codes: np.ndarray, index: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (slice, codes[index[slice]]) blocks of (rows, batch, D), sized to bound memory for wide codes."""
    rows_per_block = max(1, _GATHER_ELEMENTS // max(1, index.shape[1] * codes.shape[1]))
    for i in range(0, index.shape[0], rows_per_block):
        sl = slice(i, min(i + rows_per_block, index.shape[0]))
        yield sl, codes[index[sl]]
