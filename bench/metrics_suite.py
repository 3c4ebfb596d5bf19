"""The whole metric suite on 10,000 codes of procedural dSprites: CPU time of each step and in total.

    OMP_NUM_THREADS=1 python bench/metrics_suite.py [--run RUN_DIR] [--num-points 10000] [--metrics all]

The encoder is an untrained conv64 VAE (10 latents; weights do not change the cost) or the model of ``--run``.
Steps: rendering and encoding the two pools once (the representation cache), then each metric on the cache.
CPU seconds come from ``time.process_time`` (torch and LightGBM held to one thread), so other processes on the
machine affect them little; wall seconds are printed beside. Target: the ``all`` suite in ≤ 40 CPU seconds.
Each row names the metric's variant (DCI's backend and schedule are in its result's ``params``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vision.data.dsprites import DSprites
from vision.metrics import RepresentationCache, encoder_from_model, evaluate, resolve_names
from vision.metrics.registry import result_key
from vision.runtime import atomic_write_json, git_sha, versions

TARGET_CPU_S = 40.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="stage-1 run directory or checkpoint (default: untrained conv64 VAE)")
    parser.add_argument("--num-points", type=int, default=10_000)
    parser.add_argument("--metrics", nargs="+", default=["all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the timings and scores to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = DSprites()
    if args.run:
        import vision

        model = vision.load(args.run, "cpu")
    else:
        from vision.models import ModelConfig, build_model

        torch.manual_seed(args.seed)
        model = build_model(ModelConfig(family="vae", latent_dim=10), (1, 64, 64))
    encode = encoder_from_model(model)

    rows = []
    cpu, wall = time.process_time(), time.perf_counter()
    cache = RepresentationCache.build(data, encode, args.num_points, seed=args.seed, progress=False)
    rows.append(("cache (render + encode)", time.process_time() - cpu, time.perf_counter() - wall, ""))
    results = {}
    for m, v in resolve_names(args.metrics, cache.has_posterior):
        key = result_key(m, v)
        cpu, wall = time.process_time(), time.perf_counter()
        results.update(evaluate(data, encode, [key], seed=args.seed, progress=False, cache=cache))
        scores = ", ".join(f"{k}={x:.3g}" for k, x in results[key]["scores"].items())
        rows.append((f"{key} [{results[key]['variant']}]", time.process_time() - cpu, time.perf_counter() - wall, scores))

    total_cpu = sum(r[1] for r in rows)
    total_wall = sum(r[2] for r in rows)
    print(f"metric suite on {len(cache.train)} + {len(cache.test)} dSprites codes "
          f"({'run ' + args.run if args.run else 'untrained conv64 VAE'})")
    print(f"{'step (variant)':36s} {'CPU s':>7s} {'wall s':>7s}  scores")
    for name, c, w, s in rows:
        print(f"{name:36s} {c:7.1f} {w:7.1f}  {s}")
    print(f"{'total':36s} {total_cpu:7.1f} {total_wall:7.1f}  target ≤ {TARGET_CPU_S:.0f} CPU s: "
          f"{'met' if total_cpu <= TARGET_CPU_S else 'missed'}")
    if args.out:
        atomic_write_json(Path(args.out), {"num_points": args.num_points, "git": git_sha(), "versions": versions(),
                                           "steps": [{"step": n, "cpu_s": c, "wall_s": w} for n, c, w, _ in rows],
                                           "total_cpu_s": total_cpu, "results": results})


if __name__ == "__main__":
    main()
