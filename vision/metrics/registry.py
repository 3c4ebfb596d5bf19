"""The metric registry and :func:`evaluate`, the one entry point that scores a representation.

A metric is requested by name (its default variant) or ``name:variant`` — ``"mig:sampling"``, ``"dci:sklearn_gbt"``.
``"all"`` means :data:`ALL`: every single-model metric at its default variant, plus the sampling MIG when the
representation has posteriors. UDR compares several models and lives apart (:mod:`vision.metrics.udr`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from vision.data.ground_truth import GroundTruthData
from vision.metrics import beta_vae, dci, factor_vae, irs, mig, modularity_explicitness, sap, unsupervised
from vision.metrics.representation import EncodeFn, RepresentationCache


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: how to compute it, its variants and which score is its headline."""

    name: str
    compute: Callable[..., dict[str, Any]]  # compute(cache, seed, progress, **kwargs) -> result
    primary: str  # the headline score in the result's "scores"
    variants: Mapping[str, Mapping[str, Any]]  # variant name -> keyword arguments selecting it
    default_variant: str
    description: str
    needs_posterior: Sequence[str] = field(default_factory=tuple)  # variants that need log-variances


METRICS: dict[str, MetricSpec] = {
    s.name: s for s in (
        MetricSpec("beta_vae", beta_vae.compute_beta_vae, "eval_accuracy", {"logistic": {}}, "logistic",
                   "BetaVAE metric (Higgins et al. 2017): fixed-factor classifier accuracy"),
        MetricSpec("factor_vae", factor_vae.compute_factor_vae, "eval_accuracy", {"majority_vote": {}}, "majority_vote",
                   "FactorVAE metric (Kim & Mnih 2018): majority-vote accuracy"),
        MetricSpec("mig", mig.compute_mig, "mig", {v: {"variant": v} for v in mig.VARIANTS}, "hist20",
                   "Mutual Information Gap (Chen et al. 2018)", needs_posterior=("sampling",)),
        MetricSpec("dci", dci.compute_dci, "disentanglement",
                   {**{b: {"backend": b} for b in dci.BACKENDS},
                    "lightgbm_gbt100": {"backend": "lightgbm", "n_estimators": dci.GBT_PARAMS["n_estimators"],
                                        "learning_rate": dci.GBT_PARAMS["learning_rate"]},
                    f"lightgbm_bins{dci.FAST_BINS}": {"backend": "lightgbm", "max_bin": dci.FAST_BINS}}, "lightgbm",
                   "DCI disentanglement / completeness / informativeness (Eastwood & Williams 2018)"),
        MetricSpec("sap", sap.compute_sap, "sap",
                   {"discrete": {"continuous_factors": False}, "continuous": {"continuous_factors": True}}, "discrete",
                   "Separated Attribute Predictability (Kumar et al. 2018)"),
        MetricSpec("modularity_explicitness", modularity_explicitness.compute_modularity_explicitness, "modularity",
                   {"hist20": {}}, "hist20", "Modularity and explicitness (Ridgeway & Mozer 2018)"),
        MetricSpec("irs", irs.compute_irs, "irs", {"hist20": {}}, "hist20",
                   "Interventional Robustness Score (Suter et al. 2019)"),
        MetricSpec("unsupervised", unsupervised.compute_unsupervised, "gaussian_total_correlation", {"hist20": {}},
                   "hist20", "Gaussian total correlation, Wasserstein correlation, mean pairwise MI of the means"),
    )
}

ALL: tuple[str, ...] = ("beta_vae", "factor_vae", "mig", "mig:sampling", "dci", "sap", "modularity_explicitness",
                        "irs", "unsupervised")
"""What ``names="all"`` runs (``mig:sampling`` only for representations with posteriors)."""


def parse_name(spec: str) -> tuple[MetricSpec, str]:
    """``"name"`` or ``"name:variant"`` -> (metric, variant); a clear error for unknown names."""
    name, _, variant = spec.partition(":")
    if name not in METRICS:
        raise ValueError(f"metrics: unknown metric {name!r}; choose from {sorted(METRICS)} or 'all'")
    m = METRICS[name]
    variant = variant or m.default_variant
    if variant not in m.variants:
        raise ValueError(f"metrics: {name!r} has no variant {variant!r}; choose from {sorted(m.variants)}")
    return m, variant


def result_key(m: MetricSpec, variant: str) -> str:
    """Key of a result in :func:`evaluate`'s dict: the metric's name, with ``:variant`` unless it is the default."""
    return m.name if variant == m.default_variant else f"{m.name}:{variant}"


def resolve_names(names: str | Sequence[str], has_posterior: bool = True) -> list[tuple[MetricSpec, str]]:
    """Requested metric names -> (metric, variant) pairs, in order, without duplicates."""
    if isinstance(names, str):
        names = [names]
    out: list[tuple[MetricSpec, str]] = []
    for spec in names:
        if spec == "all":
            picked = [parse_name(s) for s in ALL]
            picked = [(m, v) for m, v in picked if has_posterior or v not in m.needs_posterior]
        else:
            m, v = parse_name(spec)
            if v in m.needs_posterior and not has_posterior:
                raise ValueError(f"metrics: {m.name}:{v} needs posterior log-variances; this representation has none")
            picked = [(m, v)]
        out += [p for p in picked if p not in out]
    if not out:
        raise ValueError("metrics: no metric requested")
    return out


def evaluate(data: GroundTruthData, encode: EncodeFn, names: str | Sequence[str] = "all", num_points: int = 10_000,
             seed: int = 0, progress: bool = True, *, num_test: int | None = None,
             params: Mapping[str, Mapping[str, Any]] | None = None,
             cache: RepresentationCache | None = None) -> dict[str, dict[str, Any]]:
    """Score the representation ``encode`` on ground-truth ``data`` with the requested metrics.

    The evaluation pools (``num_points`` train + ``num_test`` test, default half as many) are encoded once and
    shared by every metric (pass ``cache`` to reuse one). ``params`` overrides a metric's parameters by result key,
    e.g. ``{"beta_vae": {"num_train": 2000}}``. Returns ``{result key: result}``, each result recording the
    metric's name, variant, parameters and scores (see :func:`vision.metrics.utils.make_result`).
    """
    from vision.runtime import progress_bar

    if cache is None:
        cache = RepresentationCache.build(data, encode, num_points, num_test, seed, progress=progress)
    todo = resolve_names(names, cache.has_posterior)
    params = dict(params or {})
    unknown = [k for k in params if k not in {result_key(m, v) for m, v in todo} and k not in METRICS]
    if unknown:
        raise ValueError(f"params: {unknown[0]!r} is not one of the requested metrics")
    results: dict[str, dict[str, Any]] = {}
    bar = progress_bar(todo, desc="metrics", unit="metric", disable=not progress)
    for m, v in bar:
        key = result_key(m, v)
        bar.set_postfix_str(key)
        kwargs = {**m.variants[v], **params.get(m.name, {}), **params.get(key, {})}
        results[key] = m.compute(cache, seed, progress, **kwargs)
    return results


def summary_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A plain-text table: one row per result with its variant and every score."""
    rows = [("metric", "variant", "scores", "seconds")]
    for key, r in results.items():
        scores = ", ".join(f"{k}={v:.4g}" for k, v in r.get("scores", {}).items())
        rows.append((key, str(r.get("variant", "")), scores, f"{r.get('seconds', float('nan')):.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
