"""Contact sheet: a grid of frames per domain, so a person sees a domain shift.

    python -m envs.preview darla/Pickup-v0 --domains source,target,target_light --out sheet.png

Each domain gets a labelled block; row r is episode ``seed + r`` played by the scripted policy (with some random
actions) and shows a frame every ``--every`` steps. Every domain replays the same seeds and actions, so blocks
show the same states in different appearances.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

import envs
from envs.core import atomic_write_bytes

_LABEL_HEIGHT = 22
_GAP = 4


def domain_frames(env_id: str, domain: str, rows: int, cols: int, every: int, seed: int,
                  epsilon: float = 0.3) -> np.ndarray:
    """(rows, cols, H, W, 3) frames: row r is episode ``seed + r``, a frame every ``every`` steps."""
    env = gym.make(env_id, domain=domain)
    base = env.unwrapped
    policy = base.scripted_policy() if hasattr(base, "scripted_policy") else None
    grid = np.zeros((rows, cols, *env.observation_space.shape), dtype=np.uint8)
    for r in range(rows):
        rng = np.random.default_rng(seed + r)
        env.action_space.seed(seed + r)
        obs, info = env.reset(seed=seed + r)
        for c in range(cols):
            grid[r, c] = obs
            for _ in range(every):
                explore = policy is None or rng.random() < epsilon
                action = env.action_space.sample() if explore else policy(obs, info)
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    obs, info = env.reset()
    env.close()
    return grid


def contact_sheet(env_id: str, domains: Sequence[str], rows: int = 3, cols: int = 8, every: int = 6,
                  seed: int = 0, scale: int = 2) -> np.ndarray:
    """An RGB uint8 image: for each domain a label strip and a (rows × cols) grid of frames scaled by ``scale``."""
    blocks = []
    for domain in domains:
        grid = domain_frames(env_id, domain, rows, cols, every, seed)
        h, w = grid.shape[2] * scale, grid.shape[3] * scale
        block = np.full((_LABEL_HEIGHT + rows * (h + _GAP), cols * (w + _GAP) - _GAP, 3), 255, np.uint8)
        cv2.putText(block, f"{env_id}  domain={domain}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for r in range(rows):
            for c in range(cols):
                y, x = _LABEL_HEIGHT + r * (h + _GAP), c * (w + _GAP)
                block[y:y + h, x:x + w] = cv2.resize(grid[r, c], (w, h), interpolation=cv2.INTER_NEAREST)
        blocks.append(block)
    return np.concatenate(blocks, axis=0)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m envs.preview", description=__doc__.split("\n")[0])
    parser.add_argument("env_id", help="a registered id, e.g. darla/Pickup-v0")
    parser.add_argument("--domains", default=None, help="comma-separated domains (default: all named ones)")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--rows", type=int, default=3, help="episodes per domain")
    parser.add_argument("--cols", type=int, default=8, help="frames per episode")
    parser.add_argument("--every", type=int, default=6, help="steps between frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=2, help="pixel scale of each frame")
    args = parser.parse_args(argv)
    domains = args.domains.split(",") if args.domains else envs.domains(args.env_id)
    sheet = contact_sheet(args.env_id, domains, args.rows, args.cols, args.every, args.seed, args.scale)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"out: could not encode {args.out} as PNG")
    path = atomic_write_bytes(args.out, png.tobytes())
    print(f"wrote {path} ({sheet.shape[1]}x{sheet.shape[0]}, domains: {', '.join(domains)})")
    return path


if __name__ == "__main__":
    main()
