"""Environment throughput: steps per second at 64 × 64 in one process, random actions.

    OMP_NUM_THREADS=1 python bench/env_throughput.py [--seconds 3] [--envs darla/Pickup-v0,...]

Each darla environment is stepped through ``gym.make`` (TimeLimit, order enforcing and the passive checker
included: what users run). Gymnasium's CarRacing-v3 is measured in the same run, before and after, as the
reference: its anchor on these machines is 190 steps/s, so ``load = measured / 190`` scales the other anchors
(MiniWorld 760, MiniGrid 1,900, Procgen 14,800) to this run's machine load, and each environment is printed
against them and against its target. CarRacing needs Box2D (``gymnasium[box2d]``): without it the reference is
skipped (anchors unscaled, load 1.0; ``--no-reference`` skips it on purpose), and only a CarRacing id named in
``--envs`` is an error.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import gymnasium as gym

import envs  # noqa: F401  (registers the darla/* ids)
from envs.core import atomic_write_bytes

ANCHORS = {"MiniWorld": 760.0, "MiniGrid": 1900.0, "Procgen": 14800.0}
REFERENCE_ID, REFERENCE_ANCHOR = "CarRacing-v3", 190.0
TARGETS = {"darla/Sprites-v0": 10_000.0, "darla/Pickup-v0": 3_000.0, "darla/Reach-v0": 10_000.0,
           "darla/ReachDiscrete-v0": 10_000.0}


def steps_per_second(env_id: str, seconds: float, seed: int = 0, **kwargs) -> float:
    """Random-action steps per second of ``env_id`` over about ``seconds`` (resets included, warm-up excluded)."""
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(512)]
    env.reset(seed=seed)
    for a in actions[:32]:  # warm-up: first-call checks and caches
        if any(env.step(a)[2:4]):
            env.reset()
    steps, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def has_box2d() -> bool:
    """Whether CarRacing can be built (Box2D importable); checked without importing gymnasium's box2d package."""
    return importlib.util.find_spec("Box2D") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per environment")
    parser.add_argument("--envs", default=",".join(TARGETS), help="comma-separated environment ids")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--no-reference", action="store_true", help=f"skip the {REFERENCE_ID} reference (load 1.0)")
    args = parser.parse_args(argv)
    env_ids = [e for e in args.envs.split(",") if e]
    car_ids = [e for e in env_ids if "CarRacing" in e]
    if car_ids and not has_box2d():
        print(f"error: --envs: {car_ids[0]} needs Box2D (pip install 'gymnasium[box2d]')", file=sys.stderr)
        return 2

    # The reference is measured before and after the environments (machine load drifts); its mean sets the scale.
    # Only CarRacing needs Box2D, so the other environments are measured without it, unscaled.
    measure_reference = not args.no_reference and has_box2d()
    before = steps_per_second(REFERENCE_ID, max(args.seconds, 3.0)) if measure_reference else None
    results = {env_id: steps_per_second(env_id, args.seconds) for env_id in env_ids}
    after = steps_per_second(REFERENCE_ID, max(args.seconds, 3.0)) if measure_reference else None
    if before is not None and after is not None:
        reference: float | None = (before + after) / 2
        load = reference / REFERENCE_ANCHOR
        print(f"reference {REFERENCE_ID} (96x96): {before:,.0f} / {after:,.0f} steps/s before / after = {load:.2f} x "
              f"its anchor ({REFERENCE_ANCHOR:.0f}); anchors below are scaled by {load:.2f}")
    else:
        reference, load = None, 1.0
        why = "--no-reference" if args.no_reference else "Box2D is not installed"
        print(f"reference {REFERENCE_ID} skipped ({why}): anchors below are unscaled (load 1.00)")
    scaled = {name: value * load for name, value in ANCHORS.items()}
    print(f"{'environment':<24}{'steps/s':>10}{'target':>9}  " + "".join(f"{'x ' + n:>13}" for n in ANCHORS))
    for env_id, rate in results.items():
        target = TARGETS.get(env_id)
        # Targets hold for an unloaded machine: compare against them at this run's load.
        verdict = "" if target is None else ("  ok" if rate >= target * min(load, 1.0) else "  BELOW")
        print(f"{env_id:<24}{rate:>10,.0f}{'' if target is None else f'{target:>9,.0f}':>9}  "
              + "".join(f"{rate / v:>13.2f}" for v in scaled.values()) + verdict)
        results[env_id] = {"steps_per_s": rate, "target": target,
                           **{f"ratio_{n}": rate / v for n, v in scaled.items()}}
    if args.json:
        payload = {"reference": {"env": REFERENCE_ID, "steps_per_s": reference, "load": load}, "envs": results}
        atomic_write_bytes(Path(args.json), json.dumps(payload, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
