"""Dump stage-1 runs' reconstruction, KL and capacity curves (tensorboard) into one JSON.

    python docs/studies/dsprites_recipe/annealed_gamma/scalars.py --out OUT.json NAME=RUN [NAME=RUN ...]
"""
from __future__ import annotations

import argparse

from darla.report import tensorboard_scalars
from vision.runtime import atomic_write_json

TAGS = ("loss/recon", "loss/kl", "loss/C")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = {}
    for spec in args.runs:
        name, run = spec.split("=", 1)
        scalars = tensorboard_scalars(run)
        out[name] = {"run": run, **{t: [[step, round(v, 3)] for step, v in sorted(scalars[t].items())]
                                    for t in TAGS if t in scalars}}
        rec = out[name]["loss/recon"]
        print(f"{name:>12}: last step {rec[-1][0]}, recon {rec[-1][1]:.1f}, KL {out[name]['loss/kl'][-1][1]:.2f}")
    atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()
