"""DCI backends against the reference: LightGBM (and other settings) vs sklearn's GradientBoostingClassifier.

    OMP_NUM_THREADS=1 python bench/dci_backends.py [--codes synthetic|untrained|run] [--run RUN_DIR]
        [--num-points 10000] [--configs lightgbm,lightgbm:max_bin=255] [--out results.json]

The same codes go through every backend: the train/test pools of procedural dSprites (``--num-points`` train,
half as many test), encoded by

* ``synthetic`` (default) — a fixed β-VAE-like code of the factors: one latent per factor through a monotone
  (or, for orientation, periodic) map plus noise, one leaky latent, four noise latents, a mild rotation. Part
  of its factors are barely predictable from it, the regime where GBT importances are most sensitive;
* ``untrained`` — an untrained conv64 encoder (entangled codes, D near 0);
* ``run`` — the model of ``--run`` (a stage-1 run directory or checkpoint).

sklearn is timed first, then each ``--configs`` entry (``backend[:key=value;...]``; by default the ``lightgbm``
variant, ``lightgbm_gbt100`` = sklearn's 100 × 0.1 schedule, and 255 bins); CPU seconds (``time.process_time``,
single-threaded) are compared, so machine load from other processes matters little. Targets for the default
``lightgbm`` variant: |ΔD|, |ΔC| ≤ 0.01 and ≥ 10× less CPU time than sklearn.
sklearn takes ~6 CPU minutes on 10,000 codes of dSprites' five factors; ``--num-points 2000`` gives a short run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from vision.data.dsprites import DSprites
from vision.metrics.dci import LIGHTGBM_PARAMS, completeness, disentanglement, importance_matrix, lightgbm_variant
from vision.metrics.representation import RepresentationCache, encoder_from_model, pool_factors
from vision.runtime import atomic_write_json, git_sha, versions


def synthetic_codes(factors: np.ndarray, sizes: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A β-VAE-like code of dSprites' (shape, scale, orientation, posX, posY) factor indices: (n, 10)."""
    rng = np.random.default_rng(seed)
    u = (factors + 0.5) / np.asarray(sizes)
    z = np.zeros((len(factors), 10))
    z[:, 0] = rng.normal(size=sizes[0])[factors[:, 0]] * 1.5  # categorical shape: one mean per class
    z[:, 1] = np.tanh(3 * (u[:, 1] - 0.5)) * 2
    z[:, 2] = np.cos(2 * np.pi * u[:, 2]) * 0.7  # orientation: periodic and weak, as VAEs tend to encode it
    z[:, 3] = (u[:, 3] - 0.5) * 4
    z[:, 4] = np.sign(u[:, 4] - 0.5) * np.abs(2 * (u[:, 4] - 0.5)) ** 0.7 * 2
    z[:, 5] = 0.5 * (u[:, 4] - 0.5) + 0.5 * (u[:, 3] - 0.5)  # a latent leaking two factors
    z += 0.25 * rng.normal(size=z.shape)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    return z @ (0.85 * np.eye(10) + 0.15 * q)


def make_cache(codes: str, num_points: int, seed: int, run: str | None) -> RepresentationCache:
    data = DSprites()
    if codes == "synthetic":
        f = pool_factors(data, num_points, num_points // 2, seed)[:, 1:]  # color is constant
        z = synthetic_codes(f, data.factor_sizes[1:], seed)
        n = num_points
        return RepresentationCache.from_arrays(z[:n], f[:n], z[n:], f[n:], data.factor_sizes[1:], data.factor_names[1:])
    import torch

    if codes == "run":
        if not run:
            raise SystemExit("--codes run needs --run RUN_DIR")
        import vision

        model = vision.load(run, "cpu")
    else:
        from vision.models import ModelConfig, build_model

        torch.manual_seed(seed)
        model = build_model(ModelConfig(family="vae", latent_dim=10), (1, 64, 64))
    return RepresentationCache.build(data, encoder_from_model(model), num_points, seed=seed, progress=False)


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """``backend[:key=value;key=value]`` -> (backend, options); values parsed as int, float or string."""
    backend, _, rest = text.partition(":")
    opts: dict[str, Any] = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                opts[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            opts[key] = value
    return backend, opts


def run_backend(cache: RepresentationCache, backend: str, opts: dict[str, Any], seed: int) -> dict[str, Any]:
    cpu, wall = time.process_time(), time.perf_counter()
    imp, train, test = importance_matrix(cache.train.mu, cache.train.factors, cache.test.mu, cache.test.factors,
                                         backend, seed, progress=True, **opts)
    return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
            "disentanglement": disentanglement(imp)[0], "completeness": completeness(imp)[0],
            "informativeness_test": float(test.mean()), "importance_matrix": imp.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", choices=("synthetic", "untrained", "run"), default="synthetic")
    parser.add_argument("--run", default=None, help="run directory or checkpoint for --codes run")
    parser.add_argument("--num-points", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default="lightgbm,lightgbm:n_estimators=100;learning_rate=0.1,lightgbm:max_bin=255",
                        help="comma-separated backend[:key=value;...] entries to compare with sklearn_gbt")
    parser.add_argument("--out", default=None, help="write all numbers to this JSON file")
    args = parser.parse_args()

    cache = make_cache(args.codes, args.num_points, args.seed, args.run)
    print(f"codes: {args.codes}, {len(cache.train)} train / {len(cache.test)} test, {cache.num_latents} latents, "
          f"factors {list(cache.factor_names)} (sizes {list(cache.factor_sizes)})")
    ref = run_backend(cache, "sklearn_gbt", {}, args.seed)
    rows = [("sklearn_gbt (reference)", ref)]
    for text in filter(None, args.configs.split(",")):
        backend, opts = parse_config(text)
        name = f"{text} ({lightgbm_variant({**LIGHTGBM_PARAMS, **opts})})" if backend == "lightgbm" else text
        rows.append((name, run_backend(cache, backend, opts, args.seed)))

    print(f"\n{'backend (variant)':44s} {'CPU s':>8s} {'ratio':>7s} {'D':>7s} {'C':>7s} {'I':>7s} {'|ΔD|':>7s} {'|ΔC|':>7s}")
    for name, r in rows:
        r["cpu_ratio"] = ref["cpu_s"] / r["cpu_s"]
        r["abs_dD"] = abs(r["disentanglement"] - ref["disentanglement"])
        r["abs_dC"] = abs(r["completeness"] - ref["completeness"])
        print(f"{name:44s} {r['cpu_s']:8.1f} {r['cpu_ratio']:6.1f}× {r['disentanglement']:7.4f} {r['completeness']:7.4f} "
              f"{r['informativeness_test']:7.4f} {r['abs_dD']:7.4f} {r['abs_dC']:7.4f}")
    print("targets for the default lightgbm variant: ratio ≥ 10×, |ΔD| ≤ 0.01, |ΔC| ≤ 0.01")
    if args.out:
        atomic_write_json(Path(args.out), {"codes": args.codes, "num_points": args.num_points, "seed": args.seed,
                                           "git": git_sha(), "versions": versions(), "results": dict(rows)})


if __name__ == "__main__":
    main()
