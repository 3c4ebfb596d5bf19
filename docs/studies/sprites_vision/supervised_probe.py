"""How fast can the conv64 encoder find the sprites when it is told where they are? A supervised reference.

    python docs/studies/sprites_vision/supervised_probe.py --frames PIPELINE_DIR/frames.npz [--steps 1500]

Trains the vision modules' own conv64 encoder body (``vision.nets.make_encoder``, fresh weights) with a
cross-entropy head per position factor (agent_x, agent_y, goal_x, goal_y) on the stage-1 frames, at the
stage-1 settings (batch 64, Adam 1e-3, bf16 autocast, one thread), and prints the held-out accuracy of each
factor (the last 2,000 frames) every 250 steps. Chance is 1 / board side. Beside the unsupervised modules'
accuracies (``score.py``'s ``position_accuracy``), this says whether the architecture or the objective is what
keeps the positions out of the codes.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from vision.nets import make_encoder

HELD_OUT = 2000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", required=True, help="a stage-1 frames.npz with factors (darla.pipeline writes one)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = np.load(args.frames)
    names = [str(n) for n in data["factor_names"]]
    cols = [i for i, n in enumerate(names) if not n.endswith("colour")]
    sizes = [int(data["factor_sizes"][i]) for i in cols]
    x_all = torch.from_numpy(data["frames"]).permute(0, 3, 1, 2).contiguous()
    y_all = torch.from_numpy(data["factors"][:, cols]).long()
    train_n = len(x_all) - HELD_OUT
    encoder = make_encoder("conv64", tuple(x_all.shape[1:]), sum(sizes))
    opt = torch.optim.Adam(encoder.parameters(), 1e-3)
    edges = np.cumsum([0, *sizes])
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, train_n, (64,))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = encoder(x_all[idx].float() / 255).float()
        loss = sum(nn.functional.cross_entropy(out[:, a:b], y_all[idx, k]) for k, (a, b) in enumerate(zip(edges, edges[1:])))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                out = encoder(x_all[train_n:].float() / 255)
            acc = {names[c]: float((out[:, a:b].argmax(1) == y_all[train_n:, k]).float().mean())
                   for k, (c, a, b) in enumerate(zip(cols, edges, edges[1:]))}
            print(f"step {step}: loss {loss.item():.3f}; held-out accuracy "
                  + ", ".join(f"{n} {v:.3f}" for n, v in acc.items()) + f" ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
