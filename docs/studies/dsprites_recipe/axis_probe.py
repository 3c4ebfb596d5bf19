"""Are a dSprites run's position latents along x and y, or along the diagonals? Labels only judge, never select.

    python docs/studies/dsprites_recipe/axis_probe.py RUN [RUN ...] --out docs/studies/dsprites_recipe/broadcast/axis_probe.json

For each stage-1 run (its final checkpoint), on 5,000 dSprites points (pool seed 7):
* supervised: MIG, the MI gaps of posX, posY and scale, and which factor each active latent (mean KL > 0.5) tells most;
* unsupervised: the excess kurtosis of the two largest latents (a uniform factor on its own latent: −1.2; two
  uniforms mixed at 45°: −0.6), the rotation of that pair that makes it most non-Gaussian (ICA's angle: 0° or 90°
  when aligned, 45° when diagonal), and ``rotation_gain`` over all active latents (the restart score).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.stats
import torch

import vision
from vision.checkpoint import resolve_checkpoint
from vision.data.dsprites import DSprites
from vision.metrics import encoder_from_model
from vision.metrics.mig import histogram_mi, mig_from_mi
from vision.metrics.representation import encode_images, mean_kl, pool_factors
from vision.metrics.unsupervised import rotated_kurtosis, rotation_gain
from vision.metrics.utils import entropy
from vision.runtime import atomic_write_json
from vision.train import RESTART_ACTIVE_KL


def ica_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Degrees (0..90) of the rotation of the standardised pair (a, b) with the largest summed |excess kurtosis|."""
    theta, k = rotated_kurtosis(a, b)
    return float(np.degrees(theta[int(np.argmax(k))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = DSprites()
    factors = pool_factors(ds, 5000, 0, seed=7)
    h = entropy(factors)
    rows = []
    for run in args.runs:
        model = vision.load(resolve_checkpoint(run), "cpu")
        mu, logvar = encode_images(ds, encoder_from_model(model), factors, progress=False)[:2]
        kl = mean_kl(mu, logvar)
        mi = histogram_mi(mu, factors)
        with np.errstate(invalid="ignore", divide="ignore"):
            mig, gaps = mig_from_mi(mi, h)
            nmi = np.nan_to_num(mi / h[None, :])
        gap = dict(zip(ds.factor_names, gaps))
        order = [int(i) for i in np.argsort(-kl) if kl[i] > RESTART_ACTIVE_KL]
        top = order[:2]
        rows.append({
            "run": Path(run).name, "mig": float(mig),
            "gap": {f: round(float(gap[f]), 3) for f in ("posX", "posY", "scale", "shape")},
            "active": [{"latent": i, "kl": round(float(kl[i]), 2), "factor": ds.factor_names[int(np.argmax(nmi[i]))],
                        "nmi": round(float(nmi[i].max()), 3)} for i in order],
            "kurtosis_top2": [round(float(scipy.stats.kurtosis(mu[:, i])), 2) for i in top],
            "ica_angle_top2": ica_angle(mu[:, top[0]], mu[:, top[1]]) if len(top) == 2 else None,
            "rotation_gain": rotation_gain(mu[:, order].astype(np.float64)),
        })
        print(json.dumps(rows[-1]))
    atomic_write_json(Path(args.out), {"pool_seed": 7, "num_points": 5000, "rows": rows})


if __name__ == "__main__":
    main()
