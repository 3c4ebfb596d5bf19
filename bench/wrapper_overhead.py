"""Frozen-encoder wrapper overhead: env steps/s of N envs (Pickup by default), raw vs through VecDisentangledObservation.

    OMP_NUM_THREADS=1 python bench/wrapper_overhead.py [--envs 8] [--seconds 5] [--device cpu] [--threads 1]
    OMP_NUM_THREADS=1 python bench/wrapper_overhead.py --env-id CarRacing-v3     # any pixel env, resized to 64x64

Both loops step the same ``DummyVecEnv`` of ``darla/Pickup-v0`` (source domain) with the same random actions; the
wrapped loop adds one batched conv64 β-VAE forward pass per vec step (all N frames together, plus any terminal
frames). Rounds alternate raw/wrapped so machine load affects both alike; the best round of each is reported.

To separate the wrapper's own cost from the network's, the bare encoder forward on a batch of N frames is timed
too: ``wrapper own cost = wrapped − raw − encoder`` per vec step. Target: wrapped ≤ 30% slower than raw.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

import envs  # noqa: F401  (registers darla/*)
from vision.images import to_tensor
from vision.models import build_model
from vision.models.base import ModelConfig
from vision.runtime import atomic_write_json, resolve_device
from vision.wrappers import FrozenEncoder, VecDisentangledObservation

TARGET_SLOWDOWN = 0.30


def vec_steps_per_second(venv: VecEnv, actions: np.ndarray, seconds: float) -> float:
    """Env steps per second (sub-env steps, summed) stepping ``venv`` with ``actions`` for about ``seconds``."""
    venv.reset()
    for a in actions[:16]:  # warm-up
        venv.step(a)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in actions:
            venv.step(a)
        steps += len(actions) * venv.num_envs
    return steps / (time.perf_counter() - start)


def encoder_ms(encoder: FrozenEncoder, n: int, repeats: int = 200) -> float:
    """Milliseconds of one bare encoder forward on ``n`` frames (conversion included, no env, no wrapper)."""
    frames = np.random.default_rng(0).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        for _ in range(10):
            encoder.model.encode(to_tensor(frames, encoder.device))
        start = time.perf_counter()
        for _ in range(repeats):
            encoder.model.encode(to_tensor(frames, encoder.device))
        if encoder.device.type == "cuda":  # kernels run asynchronously: count the queued ones too
            torch.cuda.synchronize(encoder.device)
    return (time.perf_counter() - start) / repeats * 1e3


def call_ms(encoder: FrozenEncoder, frames: np.ndarray, repeats: int = 200) -> float:
    """Milliseconds per ``encoder(frames)`` call (the wrapper's whole path: conversion, forward, copy back to numpy,
    which also waits for a GPU's kernels)."""
    for _ in range(10):
        encoder(frames)
    start = time.perf_counter()
    for _ in range(repeats):
        encoder(frames)
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="darla/Pickup-v0")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="per round and loop")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--out", default="", help="optional JSON file for the results")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="beta_vae", latent_dim=a.latent_dim), (3, 64, 64))  # weights: irrelevant
    encoder = FrozenEncoder(model, device=device)
    kwargs = {"domain": "source"} if a.env_id.startswith("darla/") else {}
    raw = make_vec_env(a.env_id, n_envs=a.envs, seed=0, env_kwargs=kwargs)
    wrapped = VecDisentangledObservation(make_vec_env(a.env_id, n_envs=a.envs, seed=0, env_kwargs=kwargs), encoder)
    raw.action_space.seed(0)
    actions = np.stack([np.stack([raw.action_space.sample() for _ in range(a.envs)]) for _ in range(256)])
    raw_rates, wrapped_rates = [], []
    for _ in range(a.rounds):
        raw_rates.append(vec_steps_per_second(raw, actions, a.seconds))
        wrapped_rates.append(vec_steps_per_second(wrapped, actions, a.seconds))
    raw_sps, wrapped_sps = max(raw_rates), max(wrapped_rates)
    enc_ms = encoder_ms(encoder, a.envs)
    raw_ms, wrapped_ms = a.envs / raw_sps * 1e3, a.envs / wrapped_sps * 1e3  # per vec step
    slowdown = 1 - wrapped_sps / raw_sps
    result = {
        "env_id": a.env_id, "envs": a.envs, "device": str(device), "torch_threads": torch.get_num_threads(),
        "raw_steps_per_s": round(raw_sps, 1), "wrapped_steps_per_s": round(wrapped_sps, 1),
        "slowdown": round(slowdown, 3), "target_slowdown": TARGET_SLOWDOWN,
        "ms_per_vec_step": {"raw": round(raw_ms, 3), "wrapped": round(wrapped_ms, 3), "encoder_forward": round(enc_ms, 3),
                            "wrapper_own": round(wrapped_ms - raw_ms - enc_ms, 3)},
        "rounds": {"raw": [round(r, 1) for r in raw_rates], "wrapped": [round(r, 1) for r in wrapped_rates]},
    }
    print(f"{a.envs} x {a.env_id} on {device} ({torch.get_num_threads()} torch threads)")
    print(f"  raw      {raw_sps:9.1f} env steps/s   {raw_ms:7.3f} ms per vec step")
    print(f"  wrapped  {wrapped_sps:9.1f} env steps/s   {wrapped_ms:7.3f} ms per vec step")
    print(f"  bare encoder forward on {a.envs} frames: {enc_ms:.3f} ms; wrapper's own cost: {wrapped_ms - raw_ms - enc_ms:.3f} ms")
    verdict = "meets" if slowdown <= TARGET_SLOWDOWN else "misses"
    print(f"  wrapped is {100 * slowdown:.1f}% slower than raw ({verdict} the <= {100 * TARGET_SLOWDOWN:.0f}% target)")
    # Mixed-precision encoder (FrozenEncoder(amp=True)) against fp32 on the env's own frames, rounds alternating.
    amp = FrozenEncoder(model, device=device, amp=True)
    if amp.amp_dtype is not None:
        frames = np.asarray(raw.reset())
        fp32_ms = min(call_ms(encoder, frames) for _ in range(a.rounds))
        amp_ms = min(call_ms(amp, frames) for _ in range(a.rounds))
        diff = float(np.abs(encoder(frames) - amp(frames)).max())
        result["amp"] = {"dtype": str(amp.amp_dtype), "fp32_ms": round(fp32_ms, 3), "amp_ms": round(amp_ms, 3),
                         "speedup": round(fp32_ms / amp_ms, 2), "max_abs_latent_diff": diff}
        print(f"  encoder call on {a.envs} frames: fp32 {fp32_ms:.3f} ms, {amp.amp_dtype} autocast {amp_ms:.3f} ms "
              f"({fp32_ms / amp_ms:.2f}x); largest latent difference {diff:.2e}")
    else:
        print(f"  no fast mixed precision on {device}: FrozenEncoder(amp=True) stays fp32")
    if a.out:
        atomic_write_json(Path(a.out), result)
    raw.close(), wrapped.close()
    return result


if __name__ == "__main__":
    main()
