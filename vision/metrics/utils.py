"""Helpers shared by the metrics: histogram discretisation, discrete mutual information, result records.

Conventions follow disentanglement_lib: codes are discretised per dimension into equal-width histogram bins over
their observed range; mutual information is the plug-in estimate from the contingency table in nats (the quantity
``sklearn.metrics.mutual_info_score`` returns), computed here for every (code, factor) pair at once.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np
from scipy import sparse

NUM_BINS = 20
_BLOCK = 1 << 22  # elements per block of the vectorised helpers (keeps 4,096-d pixel codes in memory)


def discretize(x: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Equal-width histogram bin index of every entry, per column: (n, d) float -> (n, d) int64 in [0, num_bins).

    The bins span each column's observed [min, max] with ``np.histogram``'s edges, a value on an edge going to the
    bin on its right (``np.digitize``, as disentanglement_lib does); a constant column lands in bin 0.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"codes: expected a 2-D array (n, d), got shape {tuple(x.shape)}")
    if num_bins < 1:
        raise ValueError(f"num_bins: must be >= 1, got {num_bins}")
    out = np.empty(x.shape, dtype=np.int64)
    step = max(1, _BLOCK // max(1, x.shape[0]))
    for j0 in range(0, x.shape[1], step):
        xs = x[:, j0:j0 + step].astype(np.float64)
        lo, hi = xs.min(axis=0), xs.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        idx = np.clip(((xs - lo) / span * num_bins).astype(np.int64), 0, num_bins - 1)
        # Exact comparison with the edges np.histogram would use (linspace), as the division can round across one.
        edges = lo + span * (np.arange(num_bins + 1)[:, None] / num_bins)
        edges[-1] = hi
        cols = np.arange(xs.shape[1])
        idx -= xs < edges[idx, cols]
        idx += (idx < num_bins - 1) & (xs >= edges[np.minimum(idx + 1, num_bins), cols])
        out[:, j0:j0 + step] = np.where(hi > lo, idx, 0)
    return out


def _one_hot(labels: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Discrete columns (n, d) -> sparse one-hot (n, Σ m_j) and column offsets (m_j = column max + 1)."""
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        labels = np.stack([np.unique(c, return_inverse=True)[1].reshape(-1) for c in labels.T], axis=1)
    n, d = labels.shape
    sizes = labels.max(axis=0) + 1 if n else np.zeros(d, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    indices = (labels + offsets[:-1]).astype(np.int32 if offsets[-1] < 2**31 else np.int64).ravel()
    indptr = np.arange(0, n * d + 1, d, dtype=indices.dtype)
    return sparse.csr_matrix((np.ones(n * d, dtype=np.float32), indices, indptr), shape=(n, int(offsets[-1]))), offsets


def mutual_info_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in mutual information (nats) between every column of ``a`` (n, da) and of ``b`` (n, db) -> (da, db).

    Both arrays hold discrete labels (integers). Entry (i, j) equals
    ``sklearn.metrics.mutual_info_score(a[:, i], b[:, j])``; contingency tables come from sparse one-hot products.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"labels: expected (n, da) and (n, db) arrays, got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.shape[0]
    hb, ob = _one_hot(b)
    hbt = hb.T.tocsr()
    pb = np.asarray(hb.sum(axis=0), dtype=np.float64).ravel() / n
    out = np.zeros((a.shape[1], b.shape[1]))
    # Blocks of a's columns bound the one-hot and the dense joint table.
    step = max(1, min(_BLOCK // max(1, n), _BLOCK // max(1, int(ob[-1]) * (int(a.max()) + 1 if a.size else 1))))
    for i0 in range(0, a.shape[1], step):
        ha, oa = _one_hot(a[:, i0:i0 + step])
        joint = (hbt @ ha).T.toarray().astype(np.float64) / n  # (labels of this block of a, labels of b)
        pa = joint.sum(axis=1) / max(1, b.shape[1])  # each a-label's mass, counted once per column of b
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(joint > 0, joint * np.log(joint / np.outer(pa, pb)), 0.0)
        rows = np.add.reduceat(terms, oa[:-1], axis=0)
        out[i0:i0 + step] = np.add.reduceat(rows, ob[:-1], axis=1)
    return np.maximum(out, 0.0)


def entropy(labels: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of every column of a discrete label array (n, d) -> (d,)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels: expected a 2-D array (n, d), got shape {tuple(labels.shape)}")
    out = np.zeros(labels.shape[1])
    for j in range(labels.shape[1]):
        p = np.unique(labels[:, j], return_counts=True)[1] / labels.shape[0]
        out[j] = float(-np.sum(p * np.log(p)))
    return out


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Centre and scale by the training set's mean and std (a zero std is left at 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(x - mean) / std for x in (train, *others)]


def make_result(metric: str, variant: str, params: Mapping[str, Any], scores: Mapping[str, float],
                details: Mapping[str, Any] | None = None, seconds: float | None = None) -> dict[str, Any]:
    """The record every metric returns: name, variant and full parameters beside the scores.

    Scores are plain floats (NaN where undefined); ``details`` holds per-factor / per-latent arrays as lists.
    """
    if not metric or not variant:
        raise ValueError("metric result: both a metric name and a variant name are required")
    out: dict[str, Any] = {
        "metric": metric,
        "variant": variant,
        "params": {k: _plain(v) for k, v in params.items()},
        "scores": {k: float(v) for k, v in scores.items()},
    }
    if details:
        out["details"] = {k: _plain(v) for k, v in details.items()}
    if seconds is not None:
        out["seconds"] = round(float(seconds), 3)
    return out


def _plain(v: Any) -> Any:
    """numpy values -> JSON-ready Python values (recursively)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


@contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` leaves the elapsed wall seconds in ``t[0]``."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start
