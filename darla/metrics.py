"""Score a trained vision module with the disentanglement metric suite.

``python -m darla.metrics --run RUN_DIR [--data dsprites] [--metrics all] [--num-points N]``

Loads the model in ``RUN_DIR`` (``vision.load``), encodes the evaluation pools of the ground-truth data once, runs
the requested metrics (``all``, names such as ``mig`` ``dci``, or ``name:variant`` such as ``dci:sklearn_gbt``),
prints a table, merges the results into ``RUN_DIR/metrics.json`` (same format as stage 1 writes: ``{key: result}``)
and logs every score to TensorBoard under ``RUN_DIR/tb`` as ``metrics/<key>/<score>``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from vision.data.dsprites import DSprites
from vision.data.ground_truth import GroundTruthData

DATA_SOURCES: dict[str, Callable[[], GroundTruthData]] = {"dsprites": DSprites}
"""``--data`` name -> factory of the ground-truth data the metrics score against."""

METRICS_NAME = "metrics.json"


def ground_truth(name: str) -> GroundTruthData:
    """The registered ground-truth data source ``name``."""
    try:
        return DATA_SOURCES[name]()
    except KeyError:
        raise ValueError(f"--data: unknown data source {name!r}; choose from {sorted(DATA_SOURCES)}") from None


def score_run(run: str | Path, data: str = "dsprites", metrics: list[str] | None = None, num_points: int = 10_000,
              seed: int = 0, device: str = "auto", progress: bool = True) -> tuple[dict[str, Any], Path]:
    """Evaluate the model of ``run`` and record the results in the run directory.

    Returns the new results and the ``metrics.json`` they were merged into (results of other metrics already in
    the file are kept; a metric scored again replaces its entry).
    """
    import vision
    from vision.checkpoint import read_checkpoint, resolve_checkpoint
    from vision.metrics import encoder_from_model, evaluate, resolve_names
    from vision.runtime import atomic_write_json

    run_dir = Path(run)
    ckpt = resolve_checkpoint(run_dir)
    run_dir = ckpt.parent
    names = metrics or ["all"]
    resolve_names(names)  # fail on a bad name before loading anything
    source = ground_truth(data)
    model = vision.load(ckpt, device)
    h, w, c = source.observation_shape
    if tuple(model.input_shape) != (c, h, w):
        raise ValueError(f"--data: {data} renders images of shape (C, H, W) = {(c, h, w)}, "
                         f"but the model in {ckpt} takes {tuple(model.input_shape)}")
    results = evaluate(source, encoder_from_model(model), names, num_points=num_points, seed=seed, progress=progress)
    for r in results.values():
        r["params"]["checkpoint"] = str(ckpt)
    path = run_dir / METRICS_NAME
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    merged.update(results)
    atomic_write_json(path, merged)
    step = int(read_checkpoint(ckpt).get("step", 0))
    log_tensorboard(run_dir / "tb", results, step)
    return results, path


def score_domain_invariance(run: str | Path, env_id: str, seed: int = 0, device: str = "auto"
                            ) -> tuple[dict[str, Any], Path]:
    """:func:`env_domain_invariance` of the model in ``run``, merged into its ``metrics.json`` and tensorboard."""
    import vision
    from vision.checkpoint import read_checkpoint, resolve_checkpoint
    from vision.runtime import atomic_write_json

    ckpt = resolve_checkpoint(Path(run))
    model = vision.load(ckpt, device)
    # The env as the vision module saw it: a run trained on this env id's frames lends its env kwargs (board size…).
    payload = read_checkpoint(ckpt)
    data = payload.get("extra", {}).get("config", {}).get("data", {})
    kwargs = dict(data.get("env_kwargs") or {}) if data.get("env_id") == env_id else {}
    results = {"domain_invariance": env_domain_invariance(model, env_id, seed=seed, env_kwargs=kwargs)}
    results["domain_invariance"]["params"]["env_kwargs"] = kwargs
    results["domain_invariance"]["params"]["checkpoint"] = str(ckpt)
    path = ckpt.parent / METRICS_NAME
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    merged.update(results)
    atomic_write_json(path, merged)
    log_tensorboard(ckpt.parent / "tb", results, int(payload.get("step", 0)))
    return results, path


def env_domain_invariance(model: Any, env_id: str, num_scenes: int = 2_000, seed: int = 0,
                          weight_factors: list[str] | None = None, env_kwargs: dict[str, Any] | None = None,
                          ) -> dict[str, Any]:
    """Domain invariance of ``model``'s posterior means on ``env_id``: the same scenes rendered in the source and
    in every other named domain of the env (:mod:`vision.metrics.domain_invariance`). ``model`` is a vision
    model or an ``EncodeFn`` (images -> (codes, log-variances or None)), e.g. for a representation that is not
    a trained model.

    Scenes are drawn from the source domain; a target rendering keeps every state factor and redraws the visual
    factors from the target's values. Latents are weighted by their information about ``weight_factors``, any of
    the env's factors or view factors (default: the view factors, where things are as a frame shows them:
    :meth:`envs.core.FactorEnv.view_factors`).
    """
    import numpy as np
    import torch

    from envs import make_factor_env, same_scenes
    from vision.metrics import encoder_from_model
    from vision.metrics.domain_invariance import compute_domain_invariance

    env = make_factor_env(env_id, "source", **(env_kwargs or {}))
    pairs = same_scenes(env, num_scenes, np.random.default_rng(seed))
    encode = encoder_from_model(model) if isinstance(model, torch.nn.Module) else model
    codes = {name: encode(frames)[0] for name, frames in pairs.frames.items()}
    source = codes.pop("source")
    result = compute_domain_invariance(source, codes, pairs.factors, pairs.factor_names,
                                       weight_factors or list(pairs.view_names))
    result["params"].update(env_id=env_id, seed=seed)
    return result


def log_tensorboard(log_dir: Path, results: dict[str, Any], step: int) -> None:
    """Every score of ``results`` (metric key -> result) as ``metrics/<key>/<score>`` scalars at ``step``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    try:
        for key, r in results.items():
            for score, value in r["scores"].items():
                writer.add_scalar(f"metrics/{key}/{score}", value, step)
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    from vision.metrics import summary_table

    parser = argparse.ArgumentParser(prog="python -m darla.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="stage-1 run directory (or checkpoint .pt)")
    parser.add_argument("--data", default="dsprites", help=f"ground-truth data: {', '.join(sorted(DATA_SOURCES))}")
    parser.add_argument("--metrics", nargs="+", default=["all"], help="'all', metric names or name:variant")
    parser.add_argument("--num-points", type=int, default=10_000, help="train pool size (test pool: half)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--domain-invariance", metavar="ENV_ID", default="",
                        help="instead of the suite: domain invariance on an env that renders from factors")
    args = parser.parse_args(argv)
    try:
        if args.domain_invariance:
            results, path = score_domain_invariance(args.run, args.domain_invariance, args.seed, args.device)
        else:
            results, path = score_run(args.run, args.data, args.metrics, args.num_points, args.seed, args.device,
                                      progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_table(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
