"""Baseline representations scored through the same metric code: raw pixels, PCA, ICA, an untrained encoder.

Each is an :data:`~vision.metrics.representation.EncodeFn`. PCA and ICA are fitted (sklearn) on ``num_fit`` images
sampled from the data with their own seed; raw pixels, PCA and ICA are deterministic (no log-variances).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from vision.data.ground_truth import GroundTruthData, sample_observations
from vision.metrics.representation import EncodeFn, encoder_from_model


def _flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def raw_pixels() -> EncodeFn:
    """Pixels in [0, 1], flattened: (N, H·W·C) codes."""

    def encode(images: np.ndarray) -> tuple[np.ndarray, None]:
        return _flat(images), None

    return encode


def pca(data: GroundTruthData, n_components: int = 10, num_fit: int = 5_000, seed: int = 0) -> EncodeFn:
    """Projection on the top ``n_components`` principal components of ``num_fit`` sampled images."""
    from sklearn.decomposition import PCA

    images, _ = sample_observations(data, num_fit, np.random.default_rng(seed))
    model = PCA(n_components=n_components, random_state=seed).fit(_flat(images))

    def encode(x: np.ndarray) -> tuple[np.ndarray, None]:
        return model.transform(_flat(x)).astype(np.float32), None

    return encode


def ica(data: GroundTruthData, n_components: int = 10, num_fit: int = 5_000, seed: int = 0,
        max_iter: int = 400) -> EncodeFn:
    """FastICA sources (``n_components``) fitted on ``num_fit`` sampled images, after PCA whitening to as many.

    Whitening is done by PCA first because FastICA's own whitening of 4,096 mostly constant binary pixels yields
    NaN sources (sklearn 1.9).
    """
    import warnings

    from sklearn.decomposition import PCA, FastICA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline

    images, _ = sample_observations(data, num_fit, np.random.default_rng(seed))
    model = make_pipeline(PCA(n_components=n_components, whiten=True, random_state=seed),
                          FastICA(whiten=False, max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_flat(images))

    def encode(x: np.ndarray) -> tuple[np.ndarray, None]:
        return model.transform(_flat(x)).astype(np.float32), None

    return encode


def untrained_encoder(data: GroundTruthData, latent_dim: int = 10, family: str = "vae", arch: str = "conv64",
                      seed: int = 0, device: str = "auto") -> EncodeFn:
    """The encoder of a freshly initialised model (``build_model`` with seed ``seed``): means and log-variances."""
    import torch

    from vision.models import ModelConfig, build_model
    from vision.runtime import resolve_device

    h, w, c = data.observation_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(family=family, arch=arch, latent_dim=latent_dim), (c, h, w))
    return encoder_from_model(model.to(resolve_device(device)).eval())


BASELINES: dict[str, Callable[..., EncodeFn]] = {
    "raw_pixels": lambda data, seed=0: raw_pixels(),
    "pca": lambda data, seed=0: pca(data, seed=seed),
    "ica": lambda data, seed=0: ica(data, seed=seed),
    "untrained": lambda data, seed=0: untrained_encoder(data, seed=seed),
}
"""Baseline name -> ``factory(data, seed) -> EncodeFn`` with the default settings."""
