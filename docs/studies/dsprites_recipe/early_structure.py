"""What a dSprites β-VAE run looks like after its first ~1,000 steps, and which unsupervised score tells the runs
that will disentangle from those that will not.

    python docs/studies/dsprites_recipe/early_structure.py RUN [RUN ...] --out docs/studies/dsprites_recipe/early_1k.json

For each stage-1 run (its final checkpoint), on the same 5,000 dSprites points (metric seed 0):
* supervised (for judging only): MIG and the per-factor normalised MI gaps of posX, posY and scale;
* unsupervised (candidates for choosing a run without labels): latents with mean KL > 0.5 nats, the reconstruction
  term and the β-objective on 5,000 fresh images, and UDR (Lasso) among the runs given.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import vision
from vision.checkpoint import resolve_checkpoint
from vision.data.dsprites import DSprites
from vision.metrics import encoder_from_model
from vision.metrics.mig import histogram_mi, mig_from_mi
from vision.metrics.representation import encode_images, mean_kl, pool_factors
from vision.metrics.udr import compute_udr
from vision.metrics.utils import entropy
from vision.runtime import atomic_write_json
from vision.train import heldout_terms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = DSprites()
    factors = pool_factors(ds, 5000, 0, seed=0)
    h = entropy(factors)
    fresh = ds.render(ds.sample_factors(5000, np.random.default_rng(123)))
    rows, reps, kls = [], [], []
    for run in args.runs:
        model = vision.load(resolve_checkpoint(run), "cpu")
        mu, logvar = encode_images(ds, encoder_from_model(model), factors, progress=False)[:2]
        kl = mean_kl(mu, logvar)
        with np.errstate(invalid="ignore", divide="ignore"):
            mig, gaps = mig_from_mi(histogram_mi(mu, factors), h)
        gap = dict(zip(ds.factor_names, gaps))
        terms = heldout_terms(model, fresh, 10**9)
        beta = float(model.cfg.beta)
        reps.append(mu[:1000])
        kls.append(kl)
        rows.append({"run": Path(run).name, "mig": float(mig), "gap_posX": float(gap["posX"]),
                     "gap_posY": float(gap["posY"]), "gap_scale": float(gap["scale"]),
                     "latents_kl_gt_0.5": int((kl > 0.5).sum()), "recon": terms["recon"], "kl": terms["kl"],
                     "beta_objective": terms["recon"] + beta * terms["kl"],
                     "kl_per_latent": sorted((float(k) for k in kl), reverse=True)})
    udr = compute_udr(reps, kls, correlation="lasso")
    for i, r in enumerate(rows):
        r["udr_lasso"] = float(udr["scores"][f"model_{i}"])
    print(f"{'run':>12} {'MIG':>6} {'posX':>5} {'posY':>5} {'scale':>5} KL>.5 {'recon':>7} {'β-obj':>7} {'UDR':>6}")
    for r in rows:
        print(f"{r['run']:>12} {r['mig']:6.3f} {r['gap_posX']:5.2f} {r['gap_posY']:5.2f} {r['gap_scale']:5.2f} "
              f"{r['latents_kl_gt_0.5']:>5} {r['recon']:7.2f} {r['beta_objective']:7.2f} {r['udr_lasso']:6.3f}")
    atomic_write_json(args.out, rows)


if __name__ == "__main__":
    main()
