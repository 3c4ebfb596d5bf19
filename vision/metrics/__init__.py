"""The disentanglement metric suite: every standard metric, each named with its variant and parameters.

>>> from vision.data.dsprites import DSprites                                     # doctest: +SKIP
>>> from vision.metrics import encoder_from_model, evaluate                      # doctest: +SKIP
>>> results = evaluate(DSprites(), encoder_from_model(model), names="all")       # doctest: +SKIP
>>> results["dci"]["variant"], results["dci"]["scores"]["disentanglement"]       # doctest: +SKIP

One metric per module (``beta_vae``, ``factor_vae``, ``mig``, ``dci``, ``sap``, ``modularity_explicitness``, ``irs``,
``udr``, ``unsupervised``); ``representation`` encodes the evaluation set once for all of them; ``baselines`` gives
raw-pixel, PCA, ICA and untrained-encoder representations; ``registry`` holds :data:`METRICS` and :func:`evaluate`.
"""
from vision.metrics.baselines import BASELINES
from vision.metrics.registry import ALL, METRICS, MetricSpec, evaluate, parse_name, resolve_names, summary_table
from vision.metrics.representation import CodeSet, EncodeFn, RepresentationCache, encoder_from_model, mean_kl
from vision.metrics.udr import compute_udr, udr_from_encoders

__all__ = [
    "ALL", "BASELINES", "METRICS", "CodeSet", "EncodeFn", "MetricSpec", "RepresentationCache", "compute_udr",
    "encoder_from_model", "evaluate", "mean_kl", "parse_name", "resolve_names", "summary_table", "udr_from_encoders",
]
