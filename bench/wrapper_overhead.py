"""Frozen-encoder wrapper overhead: env steps/s of N envs (Pickup by default), raw vs through VecDisentangledObservation.

    OMP_NUM_THREADS=1 python bench/wrapper_overhead.py [--envs 8] [--seconds 5] [--device cpu] [--threads 1]
    OMP_NUM_THREADS=1 python bench/wrapper_overhead.py --env-id CarRacing-v3     # any pixel env, resized to 64x64

Both loops step the same ``DummyVecEnv`` of ``darla/Pickup-v0`` (source domain) with the same random actions; the
wrapped loop adds one batched conv64 β-VAE forward pass per vec step (all N frames together, plus any terminal
frames). Rounds alternate raw/wrapped so machine load affects both alike; the best round of each is reported.

To separate the wrapper's own cost from the network's, the bare encoder forward on a batch of N frames is timed
too: ``wrapper own cost = wrapped − raw − encoder`` per vec step. Target: wrapped ≤ 30% slower than raw.

Then the reduced-precision encoder, ``FrozenEncoder(amp=True)`` (on AVX512-BF16/AMX CPUs the fused oneDNN bf16
body), against fp32 eager (``FrozenEncoder()``, the reference) and against plain bf16 autocast around the same
model's ``encode``: whole encoder calls on batches of 1, N and 64 env frames, the three interleaved round by round,
CPU time of this single-threaded process (``time.process_time``) so other processes' load matters little; the best
round of each. Target: amp ≥ 1.8× fp32 on N frames. Its latents are compared with fp32's on a few hundred env
frames, as the largest absolute difference and as the largest difference in units of each latent's spread (sd over
those frames), and the env loop is run once more through the amp encoder.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

import envs  # noqa: F401  (registers darla/*)
from vision.checkpoint import load
from vision.images import to_tensor
from vision.models import build_model
from vision.models.base import ModelConfig
from vision.runtime import atomic_write_json, resolve_device
from vision.wrappers import FrozenEncoder, VecDisentangledObservation

TARGET_SLOWDOWN = 0.30
TARGET_AMP_SPEEDUP = 1.8


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


def interleaved_call_ms(calls: dict[str, Callable[[np.ndarray], object]], frames: np.ndarray, rounds: int = 15,
                        reps: int = 0) -> dict[str, float]:
    """CPU milliseconds per call of each of ``calls`` on ``frames``: rounds interleave the calls, best round kept."""
    reps = reps or max(4, 160 // len(frames))
    for f in calls.values():  # warm-up (oneDNN builds its kernels on first use of a shape)
        for _ in range(3):
            f(frames)
    best = {k: float("inf") for k in calls}
    for _ in range(rounds):
        for k, f in calls.items():
            start = time.process_time()
            for _ in range(reps):
                f(frames)
            best[k] = min(best[k], (time.process_time() - start) / reps * 1e3)
    return best


def autocast_call(encoder: FrozenEncoder, dtype: torch.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """The eager-autocast reference: the same conversion and model, ``encode`` under ``torch.autocast``."""
    def call(frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(encoder.device.type, dtype=dtype):
            mu, _ = encoder.model.encode(to_tensor(frames, encoder.device, memory_format=torch.channels_last))
        return encoder.model.standardize(mu.float()).cpu().numpy()
    return call


def collect_frames(venv: VecEnv, actions: np.ndarray, n: int) -> np.ndarray:
    """About ``n`` frames of a random rollout of ``venv`` (uint8 NHWC)."""
    frames = [np.asarray(venv.reset())]
    for a in actions:
        if sum(len(f) for f in frames) >= n:
            break
        frames.append(np.asarray(venv.step(a)[0]))
    return np.concatenate(frames)[:n]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="darla/Pickup-v0")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="per round and loop")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--vision", default="", help="a trained checkpoint or stage-1 run for the env's frames (default: an "
                   "untrained conv64 β-VAE, whose latents barely vary, so its latent-sd figure means little)")
    p.add_argument("--out", default="", help="optional JSON file for the results")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    torch.manual_seed(0)
    if a.vision:
        model = load(a.vision, device)
    else:  # the weights do not change the cost
        model = build_model(ModelConfig(family="beta_vae", latent_dim=a.latent_dim), (3, 64, 64))
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
    # Reduced-precision encoder (FrozenEncoder(amp=True)) against fp32 eager and eager autocast.
    amp = FrozenEncoder(model, device=device, amp=True)
    if amp.amp_dtype is not None:
        frames = collect_frames(raw, actions, 256)
        ref, low = encoder(frames), amp(frames)
        diff = np.abs(ref - low)
        rel = float((diff / np.maximum(ref.std(axis=0), 1e-12)).max())
        calls = {"fp32": encoder, "autocast": autocast_call(encoder, amp.amp_dtype), "amp": amp}
        speed = {}
        print(f"  encoder calls, CPU ms (fp32 eager = FrozenEncoder(); amp = FrozenEncoder(amp=True): {amp.backend}; "
              f"autocast = {amp.amp_dtype} autocast around encode):")
        for n in sorted({1, a.envs, 64}):
            ms = interleaved_call_ms(calls, frames[:n], rounds=a.rounds * 5)
            speed[n] = {k: round(v, 3) for k, v in ms.items()} | {
                "amp_speedup": round(ms["fp32"] / ms["amp"], 2), "autocast_speedup": round(ms["fp32"] / ms["autocast"], 2)}
            print(f"    {n:3d} frames: fp32 {ms['fp32']:7.3f}  autocast {ms['autocast']:7.3f} "
                  f"({ms['fp32'] / ms['autocast']:.2f}x)  amp {ms['amp']:7.3f} ({ms['fp32'] / ms['amp']:.2f}x)")
        amp_wrapped = VecDisentangledObservation(make_vec_env(a.env_id, n_envs=a.envs, seed=0, env_kwargs=kwargs), amp)
        amp_rates = []
        for _ in range(a.rounds):  # raw again beside it, so the comparison is side by side
            raw_rates.append(vec_steps_per_second(raw, actions, a.seconds))
            amp_rates.append(vec_steps_per_second(amp_wrapped, actions, a.seconds))
        amp_wrapped.close()
        raw_now = max(raw_rates[-a.rounds:])
        amp_slowdown = 1 - max(amp_rates) / raw_now
        speedup = speed[a.envs]["amp_speedup"]
        result["amp"] = {"backend": amp.backend, "dtype": str(amp.amp_dtype), "cpu_ms_per_call": speed,
                         "speedup": speedup, "target_speedup": TARGET_AMP_SPEEDUP, "latent_frames": len(frames),
                         "max_abs_latent_diff": float(diff.max()), "max_latent_diff_in_sd": rel,
                         "wrapped_steps_per_s": round(max(amp_rates), 1), "raw_steps_per_s": round(raw_now, 1),
                         "slowdown": round(amp_slowdown, 3)}
        print(f"  amp on {a.envs} frames: {speedup:.2f}x fp32 "
              f"({'meets' if speedup >= TARGET_AMP_SPEEDUP else 'misses'} the >= {TARGET_AMP_SPEEDUP}x target); "
              f"latents on {len(frames)} env frames: largest difference {diff.max():.2e} ({rel:.2e} latent sd)")
        print(f"  wrapped with amp {max(amp_rates):9.1f} env steps/s vs raw {raw_now:9.1f}: "
              f"{100 * amp_slowdown:.1f}% slower than raw")
    else:
        print(f"  no fast reduced precision on {device}: FrozenEncoder(amp=True) stays fp32")
    if a.out:
        atomic_write_json(Path(a.out), result)
    raw.close(), wrapped.close()
    return result


if __name__ == "__main__":
    main()
