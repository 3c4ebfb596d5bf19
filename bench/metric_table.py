"""The seeds' 2D-shapes table, rebuilt: BetaVAE, FactorVAE, MIG and DCI scores of baselines and trained VAEs.

    OMP_NUM_THREADS=1 python bench/metric_table.py --vae RUN_VAE --beta-vae RUN_BETA_VAE \\
        [--num-points 10000] [--out docs/metrics_dsprites.md]
    OMP_NUM_THREADS=1 python bench/metric_table.py --quick --out /tmp/metrics_quick.md    # a short proof run

Rows: the ground-truth factors themselves, raw pixels, PCA (10), ICA (10), an untrained conv64 VAE, a VAE
(β = 1) and a β-VAE (β = 4) — the last two from stage-1 run directories (``python -m darla.stage1``). Every row is
scored by the same code on the same procedural-dSprites points (``vision.metrics.evaluate`` with one shared pool
of factors), beside the BetaVAE-metric numbers of Higgins et al. (2017) quoted in the seeds.

``--quick`` replaces the two runs with tiny conv64 models trained here for ``--quick-steps`` Adam steps and uses
1,000 points and smaller metric samples: it proves the pipeline, not the numbers. The full table takes tens of
CPU minutes, most of it DCI and the BetaVAE classifier on 4,096 raw-pixel dimensions.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vision.data.dsprites import DSprites
from vision.metrics import baselines, evaluate
from vision.metrics.representation import EncodeFn, RepresentationCache, encoder_from_model, pool_factors
from vision.runtime import atomic_write_json, atomic_write_text, git_sha

METRICS = ["beta_vae", "factor_vae", "mig", "dci"]
# Higgins et al. (2017), BetaVAE metric on 2D shapes (dSprites), as quoted in the seeds (percent).
SEED_BETA_VAE = {"ground truth": 100.0, "raw pixels": 45.75, "PCA (10)": 84.9, "ICA (10)": 42.03,
                 "VAE untrained": 44.14, "VAE (β=1)": 61.58, "β-VAE (β=4)": 99.23}


def tiny_trained_model(data: DSprites, beta: float, steps: int, seed: int) -> torch.nn.Module:
    """A conv64 β-VAE trained for a few Adam steps here (the --quick stand-in for a stage-1 run)."""
    from vision.images import to_tensor
    from vision.models import ModelConfig, build_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(ModelConfig(family="beta_vae", beta=beta, latent_dim=10), (1, 64, 64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        x = to_tensor(data.render(data.sample_factors(32, rng)))
        loss = model.loss(x, step).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def load_run(path: str) -> tuple[torch.nn.Module, str]:
    import vision
    from vision.checkpoint import read_checkpoint

    payload = read_checkpoint(path)
    cfg, model = payload["model_config"], vision.load(path, "auto")
    beta = getattr(model, "kl_weight", cfg["beta"])  # the KL weight actually applied (the plain VAE's is 1)
    return model, f"{cfg['family']}, β={beta}, {cfg['latent_dim']} latents, {payload['step']} steps"


def score(data: DSprites, encode: EncodeFn | None, num_points: int, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    """The four metrics of one representation (``encode=None``: the ground-truth factors) on the shared pools."""
    if encode is None:
        f = pool_factors(data, num_points, num_points // 2, seed)
        cache = RepresentationCache.from_arrays(f[:num_points].astype(np.float64), f[:num_points],
                                                f[num_points:].astype(np.float64), f[num_points:], data.factor_sizes,
                                                data.factor_names)
        return evaluate(data, None, METRICS, seed=seed, progress=False, cache=cache, params=params)
    return evaluate(data, encode, METRICS, num_points=num_points, seed=seed, progress=False, params=params)


def markdown(rows: list[dict[str, Any]], command: str, num_points: int, seed: int, quick: bool) -> str:
    lines = [
        "# Disentanglement metrics on procedural dSprites",
        "",
        f"Made by `{command}` (git {git_sha()}, {datetime.now(timezone.utc):%Y-%m-%d}); "
        f"{num_points:,} train + {num_points // 2:,} test points, seed {seed}."
        + (" **Quick run: tiny models, small samples — not the reference numbers.**" if quick else ""),
        "",
        "| representation | BetaVAE (%) | seed BetaVAE (%) | FactorVAE (%) | MIG | DCI disentanglement | CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["results"]
        lines.append(f"| {r['name']} | {100 * s['beta_vae']['scores']['eval_accuracy']:.2f} | "
                     f"{SEED_BETA_VAE[r['name']]:.2f} | {100 * s['factor_vae']['scores']['eval_accuracy']:.2f} | "
                     f"{s['mig']['scores']['mig']:.3f} | {s['dci']['scores']['disentanglement']:.3f} | {r['cpu_s']:.0f} |")
    first = rows[0]["results"]
    lines += [
        "",
        "Representations: " + "; ".join(f"{r['name']}: {r['detail']}" for r in rows) + ".",
        "",
        "Metric variants (each result's full parameters are in the JSON written beside this file): "
        f"BetaVAE `{first['beta_vae']['variant']}` (batch 64, logistic regression, eval accuracy), "
        f"FactorVAE `{first['factor_vae']['variant']}` (batch 64, prune std < 0.05, eval accuracy), "
        f"MIG `{first['mig']['variant']}` (20-bin histogram, normalised by H(v_k)), "
        f"DCI `{first['dci']['variant']}` (sklearn's GradientBoostingClassifier algorithm on LightGBM's tree learner). "
        f"Scored factors: {', '.join(first['mig']['params']['factors'])} "
        f"(constant: {', '.join(first['mig']['params']['dropped_factors']) or 'none'}).",
        "",
        "The seed column is Higgins et al. (2017), Table 1 (BetaVAE metric on the original dSprites file); ours are on",
        "the procedural re-rendering (`vision.data.dsprites`), with fixed-factor batches drawn from the encoded pools",
        "(`vision.metrics.representation`), so agreement is expected in ordering and rough size, not to the digit.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", help="stage-1 run directory of the VAE (β = 1)")
    parser.add_argument("--beta-vae", help="stage-1 run directory of the β-VAE (β = 4)")
    parser.add_argument("--quick", action="store_true", help="tiny in-process models and small samples")
    parser.add_argument("--quick-steps", type=int, default=50)
    parser.add_argument("--num-points", type=int, default=None, help="default 10,000 (1,000 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/metrics_dsprites.md")
    args = parser.parse_args(argv)
    if not args.quick and not (args.vae and args.beta_vae):
        parser.error("--vae and --beta-vae are required (or --quick)")
    torch.set_num_threads(1)
    num_points = args.num_points or (1_000 if args.quick else 10_000)
    params = {"beta_vae": {"num_train": 1_000, "num_eval": 500}, "factor_vae": {"num_train": 1_000, "num_eval": 500}} \
        if args.quick else {}
    data = DSprites()

    if args.quick:
        vae = tiny_trained_model(data, 1.0, args.quick_steps, args.seed), f"{args.quick_steps} Adam steps here, β=1"
        beta_vae = tiny_trained_model(data, 4.0, args.quick_steps, args.seed), f"{args.quick_steps} Adam steps here, β=4"
    else:
        (vae_model, vae_cfg), (beta_model, beta_cfg) = load_run(args.vae), load_run(args.beta_vae)
        vae, beta_vae = (vae_model, f"{args.vae} ({vae_cfg})"), (beta_model, f"{args.beta_vae} ({beta_cfg})")
    reps: list[tuple[str, Any, str]] = [
        ("ground truth", lambda: None, "the factor indices"),
        ("raw pixels", baselines.raw_pixels, "4,096 pixels in [0, 1]"),
        ("PCA (10)", lambda: baselines.pca(data, 10, seed=args.seed), "sklearn PCA on 5,000 images"),
        ("ICA (10)", lambda: baselines.ica(data, 10, seed=args.seed), "sklearn FastICA after PCA whitening, on 5,000 images"),
        ("VAE untrained", lambda: baselines.untrained_encoder(data, 10, "vae", seed=args.seed), "conv64, random init"),
        ("VAE (β=1)", lambda: encoder_from_model(vae[0]), vae[1]),
        ("β-VAE (β=4)", lambda: encoder_from_model(beta_vae[0]), beta_vae[1]),
    ]
    rows = []
    for name, make, detail in reps:
        cpu, wall = time.process_time(), time.perf_counter()
        results = score(data, make(), num_points, args.seed, params)
        rows.append({"name": name, "detail": detail, "results": results, "cpu_s": time.process_time() - cpu,
                     "wall_s": time.perf_counter() - wall})
        s = results
        print(f"{name:14s} BetaVAE {100 * s['beta_vae']['scores']['eval_accuracy']:6.2f}  "
              f"FactorVAE {100 * s['factor_vae']['scores']['eval_accuracy']:6.2f}  MIG {s['mig']['scores']['mig']:.3f}  "
              f"DCI D {s['dci']['scores']['disentanglement']:.3f}  ({rows[-1]['cpu_s']:.0f} CPU s)", flush=True)

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    atomic_write_text(out, markdown(rows, command, num_points, args.seed, args.quick))
    atomic_write_json(out.with_suffix(".json"), {"command": command, "num_points": num_points, "seed": args.seed,
                                                 "git": git_sha(), "rows": rows})
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
