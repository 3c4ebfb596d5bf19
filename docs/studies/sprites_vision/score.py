"""DARLA's vision on darla/Sprites-v0 (or another env with --env): does it separate where things are from what colour they are?

    python docs/studies/sprites_vision/score.py --env-kwargs '{grid: 4}' --out docs/studies/sprites_vision/scores.json \
        NAME=RUN [NAME=RUN ...]
    python docs/studies/sprites_vision/score.py --env darla/Pickup-v0 --out OUT NAME=RUN ... pixels=pca:64

For each stage-1 run (or ``pca:K``, the top K principal components of 5,000 source frames: what a linear read-out
of the pixels holds), against the env's own factors followed by its view factors (``envs.scene_data(view=True)``,
every domain's values): MIG and DCI disentanglement (LightGBM backend); then domain invariance between the source
and the target rendering of the same 2,000 scenes, weighted by the latents' information about the positions,
with the linear-probe R² of the positions from the source codes beside it (``darla.metrics.env_domain_invariance``).
"Positions" are the env's view factors (where things are, as a frame shows them: the state factors on Sprites,
bearings and distances from the agent on first-person Pickup); "position accuracy" is the mean of the DCI
predictors' held-out accuracy on them.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import yaml

import vision
from darla.metrics import env_domain_invariance
from envs import scene_data
from vision.metrics import encoder_from_model, evaluate
from vision.metrics.baselines import pca
from vision.runtime import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    ap.add_argument("--env", default="darla/Sprites-v0")
    ap.add_argument("--env-kwargs", default="{}")
    ap.add_argument("--num-points", type=int, default=5000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    kwargs = yaml.safe_load(args.env_kwargs) or {}
    data = scene_data(args.env, domain="all", view=True, **kwargs)
    rows = []
    for spec in args.runs:
        name, run = spec.split("=", 1)
        t0 = time.perf_counter()
        if run.startswith("pca:"):
            encode, family = pca(scene_data(args.env, domain="source", **kwargs), int(run[4:])), "pca"
        else:
            model = vision.load(run, "cpu")
            encode, family = encoder_from_model(model), model.family
        suite = evaluate(data, encode, names=["mig", "dci"], num_points=args.num_points, seed=0, progress=False)
        # the DCI predictors' held-out accuracy per factor: how well a non-linear read-out finds each one
        kept = suite["dci"]["details"]["factor_names"]  # constant factors are dropped
        acc = dict(zip(kept, suite["dci"]["details"]["informativeness_test_per_factor"]))
        inv = env_domain_invariance(encode, args.env, seed=0, env_kwargs=kwargs)
        positions = inv["params"]["weight_factors"]  # the env's view factors
        rows.append({"name": name, "run": run, "family": family,
                     "mig": suite["mig"]["scores"]["mig"],
                     "dci_disentanglement": suite["dci"]["scores"]["disentanglement"],
                     "domain_invariance": inv["scores"]["domain_invariance"],
                     "probe_r2": inv["scores"]["probe_r2"],
                     "position_accuracy": float(sum(acc[n] for n in positions) / len(positions)),
                     "accuracy": {n: float(v) for n, v in acc.items()},
                     "seconds": round(time.perf_counter() - t0, 1)})
        r = rows[-1]
        print(f"{name:>14} MIG {r['mig']:.3f}  DCI-D {r['dci_disentanglement']:.3f}  invariance "
              f"{r['domain_invariance']:.3f}  position probe R² {r['probe_r2']:.3f}  "
              f"position accuracy {r['position_accuracy']:.3f}  ({r['seconds']} s)", flush=True)
    atomic_write_json(args.out, {"env": args.env, "env_kwargs": kwargs, "num_points": args.num_points, "rows": rows})
    print(json.dumps({r["name"]: round(r["domain_invariance"], 3) for r in rows}))


if __name__ == "__main__":
    main()
