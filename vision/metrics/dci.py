"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams 2018), disentanglement_lib's ``dci``.

One predictor per factor maps the codes to the factor; its feature importances fill the importance matrix R
(codes × factors). With P_ik = R_ik / Σ_k R_ik and H_K the entropy in base K (number of factors):

* disentanglement = Σ_i ρ_i (1 − H_K(P_i·)), ρ_i = Σ_k R_ik / Σ R  — each code should matter for one factor;
* completeness   = Σ_k ρ̃_k (1 − H_D(R_·k / Σ_i R_ik)), ρ̃_k = Σ_i R_ik / Σ R  — each factor captured by one code;
* informativeness = the predictors' accuracy (classification backends, as disentanglement_lib; the paper used
  regression error), on the train pool and on the test pool.

The scores move with the predictor, so the backend is the result's variant:

* ``sklearn_gbt`` — the reference: ``GradientBoostingClassifier()`` with sklearn's defaults (100 trees of depth 3,
  learning rate 0.1, minimum leaf size 1), impurity importances. ~6 CPU minutes on 10,000 dSprites codes.
* ``lightgbm`` (default) — the same algorithm run by LightGBM's tree learner (:func:`_fit_lightgbm`): squared-error
  splits on the negative gradient, sklearn's Newton leaf values, every distinct code value its own bin — with half
  the boosting stages at twice the learning rate (50 stages × 0.2, :data:`LIGHTGBM_PARAMS`). On 10,000 dSprites
  codes it reproduces the reference's D and C to within 0.005 at 1/15 of its CPU time, on synthetic codes and on a
  trained β-VAE's, and within 0.008 at 1/14 on 2,000 codes (``bench/dci_backends.py``; docs/stage1.md, "Metric
  suite speed"). 25 stages × 0.4 moved C by 0.014: too few.
* ``lightgbm_gbt100`` — the reference's own schedule (100 stages × 0.1) on LightGBM: D and C within 0.012 of
  the reference at about 1/7 of its CPU time. The binning, not the schedule, is what exactness needs: 4,096 or
  fewer bins per latent move D by 0.04 on codes whose factors are barely predictable (boosting then isolates
  single points, which binning cannot).
* ``lightgbm_bins255`` — the default schedule with 255 histogram bins per latent: fastest, but D and C move by a
  few hundredths on such codes. Use it for quick looks, not for numbers to compare.
* ``random_forest`` — ``RandomForestClassifier()`` with sklearn's defaults, impurity importances.
* ``lasso`` — the paper's choice: ``Lasso`` regression of each standardised factor index on standardised codes,
  importances |w|; informativeness there is 1 − NRMSE (1: exact, 0: no better than the mean).

Each predictor's importances are scaled to sum to 1 (sklearn's already do), so every factor weighs the same in ρ.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from vision.metrics.representation import RepresentationCache
from vision.metrics.utils import make_result, standardize, timer

NAME = "dci"
BACKENDS = ("lightgbm", "sklearn_gbt", "random_forest", "lasso")
FAST_BINS = 255  # max_bin of the lightgbm_bins255 variant
_EPS = 1e-11  # added to every importance before normalising, as disentanglement_lib does

# Tree shape and boosting schedule of GradientBoostingClassifier()'s defaults (the lightgbm_gbt100 variant).
GBT_PARAMS: dict[str, Any] = {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3}
# The default lightgbm schedule: the same trees, half as many stages at twice the step. The early, large-gain trees
# set the importances; validated against sklearn with GBT_PARAMS: |ΔD|, |ΔC| <= 0.005 on 10,000 codes, 0.008 on 2,000.
LIGHTGBM_PARAMS: dict[str, Any] = {"n_estimators": 50, "learning_rate": 0.2, "max_depth": 3}
LASSO_ALPHA = 0.02


def _base_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy in ``base`` of each column of non-negative weights ``p`` (normalised per column, +1e-11 each)."""
    p = np.asarray(p, dtype=np.float64) + _EPS
    p = p / p.sum(axis=0, keepdims=True)
    if base < 2:
        return np.zeros(p.shape[1])
    return -(p * np.log(p)).sum(axis=0) / np.log(base)


def disentanglement(importance: np.ndarray) -> tuple[float, np.ndarray]:
    """Importance-weighted mean over codes of 1 − H_K(code's importance over factors); and the per-code values."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    per_code = 1.0 - _base_entropy(r.T, r.shape[1])
    w = r.sum(axis=1) / r.sum() if r.sum() > 0 else np.full(r.shape[0], 1.0 / r.shape[0])
    return float(np.sum(per_code * w)), per_code


def completeness(importance: np.ndarray) -> tuple[float, np.ndarray]:
    """Importance-weighted mean over factors of 1 − H_D(factor's importance over codes); and the per-factor values."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    per_factor = 1.0 - _base_entropy(r, r.shape[0])
    w = r.sum(axis=0) / r.sum() if r.sum() > 0 else np.full(r.shape[1], 1.0 / r.shape[1])
    return float(np.sum(per_factor * w)), per_factor


# ----- backends: (x_train, y_train, x_test, y_test, seed, **opts) -> (importances (D,), train score, test score) -----
Fit = Callable[..., tuple[np.ndarray, float, float]]


def _fit_sklearn_gbt(x, y, xt, yt, seed, **opts):
    from sklearn.ensemble import GradientBoostingClassifier

    m = GradientBoostingClassifier(random_state=seed, **opts).fit(x, y)
    return m.feature_importances_, float(np.mean(m.predict(x) == y)), float(np.mean(m.predict(xt) == yt))


def _fit_random_forest(x, y, xt, yt, seed, **opts):
    from sklearn.ensemble import RandomForestClassifier

    m = RandomForestClassifier(random_state=seed, n_jobs=1, **opts).fit(x, y)
    return m.feature_importances_, float(np.mean(m.predict(x) == y)), float(np.mean(m.predict(xt) == yt))


def _softmax(r: np.ndarray) -> np.ndarray:
    e = np.exp(r - r.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fit_lightgbm(x, y, xt, yt, seed, n_estimators: int = LIGHTGBM_PARAMS["n_estimators"],
                  learning_rate: float = LIGHTGBM_PARAMS["learning_rate"], max_depth: int = 3,
                  max_bin: int | None = None, num_threads: int = 1):
    """sklearn's gradient boosting (multinomial / binomial deviance) with LightGBM's tree learner.

    Same algorithm as ``GradientBoostingClassifier``: each stage fits one depth-``max_depth`` regression tree per
    class to the negative gradient by squared-error gain (a custom objective with unit hessians), then sets each
    leaf to sklearn's Newton step Σ(y − p) / Σ p(1 − p) (× (K − 1)/K for K > 2 classes). Gain importances are then
    sums of squared-error reductions, sklearn's impurity importances up to a constant. ``max_bin=None`` gives every
    distinct value its own bin, so candidate thresholds are sklearn's; fewer bins are faster but move the
    importances (see bench/dci_backends.py).
    """
    import lightgbm as lgb

    classes, yi = np.unique(y, return_inverse=True)
    yi = yi.reshape(-1)
    k, n = len(classes), len(yi)
    if k < 2:  # a factor constant on the train pool: nothing to learn
        return np.zeros(x.shape[1]), 1.0, float(np.mean(yt == classes[0]))
    if np.all(x.min(axis=0) == x.max(axis=0)):  # every code constant (a collapsed model): the prior's majority class
        major = classes[np.argmax(np.bincount(yi, minlength=k))]
        return np.zeros(x.shape[1]), float(np.mean(y == major)), float(np.mean(yt == major))
    binary = k == 2
    trees = 1 if binary else k
    prior = np.bincount(yi, minlength=k) / n
    init = np.log(prior[1:] / prior[:1]) if binary else np.log(prior)
    onehot = np.eye(k)[yi][:, 1:] if binary else np.eye(k)[yi]
    if max_bin is None:
        max_bin = max(2, max(len(np.unique(col)) for col in x.T))
    params = {"objective": "none", "num_class": trees, "max_depth": max_depth, "num_leaves": 2 ** max_depth,
              "learning_rate": 1.0, "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 0.0, "lambda_l2": 0.0,
              "min_gain_to_split": 0.0, "max_bin": int(max_bin), "min_data_in_bin": 1, "feature_pre_filter": False,
              "boost_from_average": False, "num_threads": num_threads, "seed": seed, "deterministic": True,
              "verbose": -1}
    booster = lgb.Booster(params, lgb.Dataset(x, label=yi.astype(np.float64), params=params))
    leaves_per_tree = 2 ** max_depth
    raw = np.tile(init, (n, 1))
    unit = np.ones(n * trees)
    values = []
    for it in range(n_estimators):
        p = 1.0 / (1.0 + np.exp(-raw)) if binary else _softmax(raw)
        grad = p - onehot
        flat_grad = np.ascontiguousarray(grad.T).ravel()  # LightGBM wants class-major order
        booster.update(fobj=lambda preds, data: (flat_grad, unit))
        if booster.num_trees() < (it + 1) * trees:
            # No split lowers the loss (e.g. codes that are constant): LightGBM adds no tree; sklearn's would be
            # a single leaf whose Newton step is ~0 after the prior, so boosting has ended either way.
            break
        leaf = booster.predict(x, start_iteration=it, num_iteration=1, pred_leaf=True).reshape(n, trees)
        slot = (leaf + np.arange(trees) * leaves_per_tree).ravel()
        num = np.bincount(slot, weights=-grad.ravel(), minlength=trees * leaves_per_tree)
        den = np.bincount(slot, weights=(p * (1 - p)).ravel(), minlength=trees * leaves_per_tree)
        if not binary:
            num *= (k - 1) / k
        step = learning_rate * np.divide(num, den, out=np.zeros_like(num), where=np.abs(den) > 1e-150)
        raw += step[slot].reshape(n, trees)
        values.append(step.reshape(trees, leaves_per_tree))

    stages = len(values)

    def predict_raw(data: np.ndarray) -> np.ndarray:
        out = np.tile(init, (len(data), 1))
        if not stages:
            return out
        table = np.stack(values)  # (stages, trees, leaves)
        rows = max(1, (1 << 22) // max(1, stages * trees))
        for i in range(0, len(data), rows):
            leaf_t = booster.predict(data[i:i + rows], pred_leaf=True).reshape(-1, stages, trees)
            out[i:i + rows] += table[np.arange(stages)[None, :, None], np.arange(trees)[None, None, :],
                                     leaf_t].sum(axis=1)
        return out

    def labels(r: np.ndarray) -> np.ndarray:
        return classes[(r[:, 0] > 0).astype(int)] if binary else classes[r.argmax(axis=1)]

    importance = booster.feature_importance(importance_type="gain")
    return importance, float(np.mean(labels(raw) == y)), float(np.mean(labels(predict_raw(xt)) == yt))


def _fit_lasso(x, y, xt, yt, seed, alpha: float = LASSO_ALPHA, **opts):
    from sklearn.linear_model import Lasso

    xs, xts = standardize(x.astype(np.float64), xt.astype(np.float64))
    y = y.astype(np.float64)
    mean, std = y.mean(), y.std() if y.std() > 0 else 1.0
    m = Lasso(alpha=alpha, random_state=seed, **opts).fit(xs, (y - mean) / std)

    def one_minus_nrmse(xx, yy):
        pred = m.predict(xx) * std + mean
        return 1.0 - float(np.sqrt(np.mean((pred - yy) ** 2)) / std)

    return np.abs(m.coef_), one_minus_nrmse(xs, y), one_minus_nrmse(xts, yt.astype(np.float64))


_FITS: dict[str, Fit] = {"sklearn_gbt": _fit_sklearn_gbt, "lightgbm": _fit_lightgbm,
                         "random_forest": _fit_random_forest, "lasso": _fit_lasso}


def importance_matrix(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                      backend: str = "lightgbm", seed: int = 0, progress: bool = False,
                      **opts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Importance matrix (codes, factors) and per-factor train/test informativeness for one backend."""
    from vision.runtime import progress_bar

    if backend not in _FITS:
        raise ValueError(f"dci backend: unknown {backend!r}; choose from {BACKENDS}")
    fit = _FITS[backend]
    k = y_train.shape[1]
    imp = np.zeros((x_train.shape[1], k))
    train, test = np.zeros(k), np.zeros(k)
    for j in progress_bar(range(k), desc=f"dci:{backend}", unit="factor", disable=not progress, leave=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            w, train[j], test[j] = fit(x_train, y_train[:, j], x_test, y_test[:, j], seed, **opts)
        w = np.abs(np.asarray(w, dtype=np.float64))
        imp[:, j] = w / w.sum() if w.sum() > 0 else w  # each predictor's importances sum to 1, as sklearn's do
    return imp, train, test


def lightgbm_variant(settings: dict[str, Any]) -> str:
    """The variant name of LightGBM settings: ``lightgbm`` for :data:`LIGHTGBM_PARAMS` with exact bins,
    ``lightgbm_gbt100`` for sklearn's schedule, ``lightgbm_t{stages}_lr{rate}`` otherwise; ``_d{depth}`` for trees
    deeper or shallower than 3, ``_bins{n}`` when binned."""
    stages, rate = int(settings["n_estimators"]), float(settings["learning_rate"])
    if (stages, rate) == (LIGHTGBM_PARAMS["n_estimators"], LIGHTGBM_PARAMS["learning_rate"]):
        name = "lightgbm"
    elif (stages, rate) == (GBT_PARAMS["n_estimators"], GBT_PARAMS["learning_rate"]):
        name = "lightgbm_gbt100"
    else:
        name = f"lightgbm_t{stages}_lr{rate:g}"
    depth, bins = int(settings.get("max_depth", 3)), settings.get("max_bin")
    name += "" if depth == 3 else f"_d{depth}"
    return name if bins in (None, "exact") else f"{name}_bins{int(bins)}"


def compute_dci(cache: RepresentationCache, seed: int = 0, progress: bool = False, *, backend: str = "lightgbm",
                **backend_opts: Any) -> dict[str, Any]:
    """DCI on the train pool (fitted) and test pool (informativeness), with the named backend."""
    if backend not in _FITS:
        raise ValueError(f"dci backend: unknown {backend!r}; choose from {BACKENDS}")
    settings: dict[str, Any]
    variant = backend
    if backend == "lightgbm":
        settings = {**LIGHTGBM_PARAMS, "max_bin": "exact", "num_threads": 1, "split_gain": "squared error (unit hessian)",
                    "leaf_values": "sklearn Newton step", **backend_opts}
        variant = lightgbm_variant(settings)
    elif backend == "lasso":
        settings = {"alpha": LASSO_ALPHA, "informativeness": "1 - NRMSE", **backend_opts}
    else:
        settings = {"estimator": "sklearn defaults", **backend_opts}
    params = {"backend": backend, "backend_params": settings, "seed": seed,
              "informativeness": "1 - NRMSE" if backend == "lasso" else "accuracy", **cache.provenance()}
    with timer() as t:
        imp, train, test = importance_matrix(cache.train.mu, cache.train.factors, cache.test.mu, cache.test.factors,
                                             backend, seed, progress, **backend_opts)
        d, per_code = disentanglement(imp)
        c, per_factor = completeness(imp)
    scores = {"disentanglement": d, "completeness": c, "informativeness_train": float(train.mean()),
              "informativeness_test": float(test.mean())}
    details = {"factor_names": cache.factor_names, "importance_matrix": imp, "disentanglement_per_code": per_code,
               "completeness_per_factor": per_factor, "informativeness_test_per_factor": test}
    return make_result(NAME, variant, params, scores, details, seconds=t[0])
