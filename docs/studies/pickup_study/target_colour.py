"""How much of each reconstruction target is the domain's colour? Pixels against the DAE features DARLA reconstructs.

    python docs/studies/pickup_study/target_colour.py --dae runs/pickup_study/stage1/dae --layers conv2 bottleneck \
        --out docs/studies/pickup_study/target_colour.json

A model that reconstructs a target T must encode whatever T carries. For the same scenes rendered in the source and
in a target domain (``envs.same_scenes``: every state factor kept, the visual factors redrawn), this measures, for
T = the pixels and T = the frozen DAE at each layer:

- ``colour_share``: mean ‖T(source) − T(target)‖² of the same scene over mean ‖T(scene i) − T(scene j)‖² of two
  different source scenes; the part of the target's scene-to-scene variation that a change of colours alone makes
  (0 if T ignores colour; about 1 if colour matters as much as everything else together);
- ``invariance``: domain invariance of the target's top 64 principal components (fitted on the source frames),
  weighted by their information about the view factors (``compute_domain_invariance`` on the same scenes, as
  ``darla.metrics.env_domain_invariance`` scores the codes); pixels' PCA is the stage-1 table's ``pixels`` row.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import vision
from envs import make_factor_env, same_scenes
from vision.images import to_tensor
from vision.metrics.baselines import raw_pixels
from vision.metrics.domain_invariance import compute_domain_invariance
from vision.runtime import atomic_write_json


def _target_fn(dae: torch.nn.Module | None, layer: str):
    """images (N, H, W, C) uint8 -> (N, D) float32: the target T, flattened."""
    def target(images: np.ndarray) -> np.ndarray:
        if dae is None:
            return raw_pixels()(images)[0]
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 256):
                out.append(dae.features(to_tensor(images[i:i + 256], "cpu"), layer).float().flatten(1).numpy())
        return np.concatenate(out)
    return target


def _colour_share(target, frames: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, float]:
    src = target(frames["source"])
    perm = rng.permutation(len(src))
    between = float(((src - src[perm]) ** 2).sum(1).mean())
    return {name: float(((src - target(f)) ** 2).sum(1).mean()) / between
            for name, f in frames.items() if name != "source"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="darla/Pickup-v0")
    ap.add_argument("--dae", required=True, help="the DAE's stage-1 run")
    ap.add_argument("--layers", nargs="+", default=["conv2"])
    ap.add_argument("--num-scenes", type=int, default=2000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sklearn.decomposition import PCA

    dae = vision.load(args.dae, "cpu").eval()
    env = make_factor_env(args.env, "source")
    pairs = same_scenes(env, args.num_scenes, np.random.default_rng(0))  # env_domain_invariance's scenes (seed 0)
    fit = same_scenes(env, 5000, np.random.default_rng(1)).frames["source"]  # PCA's frames, apart from the scored ones
    rows = []
    for layer in ["pixels", *args.layers]:
        t0 = time.perf_counter()
        target = _target_fn(None if layer == "pixels" else dae, layer)
        share = _colour_share(target, pairs.frames, np.random.default_rng(2))
        pca = PCA(n_components=64, svd_solver="randomized", random_state=0).fit(target(fit))
        codes = {name: pca.transform(target(f)).astype(np.float32) for name, f in pairs.frames.items()}
        source = codes.pop("source")
        inv = compute_domain_invariance(source, codes, pairs.factors, pairs.factor_names, list(pairs.view_names))
        rows.append({"target": layer, "dims": int(pca.n_features_in_), "colour_share": share,
                     "invariance_pca64": inv["scores"]["domain_invariance"], "probe_r2_pca64": inv["scores"]["probe_r2"],
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{layer:>10} ({rows[-1]['dims']} dims) colour share "
              + " ".join(f"{k} {v:.3f}" for k, v in share.items())
              + f"  invariance (PCA 64) {rows[-1]['invariance_pca64']:.3f}  R² {rows[-1]['probe_r2_pca64']:.3f}"
              + f"  ({rows[-1]['seconds']} s)", flush=True)
    atomic_write_json(args.out, {"env": args.env, "dae": args.dae, "num_scenes": args.num_scenes, "rows": rows})


if __name__ == "__main__":
    main()
