"""Learning speed: PPO on frozen latents vs PPO CnnPolicy on pixels, env steps per second of training on CPU.

    OMP_NUM_THREADS=1 python bench/latent_vs_pixels.py [--steps 4096] [--device cpu] [--set agent.hparams.n_epochs=10]

Both agents train with the PPO hyper-parameters of ``configs/pickup/darla.yaml`` and ``configs/pickup/baseline.yaml``
on ``darla/Pickup-v0`` (source domain, the configs' number of envs): the DARLA agent through the batched frozen
encoder (a conv64 β-VAE, untrained: weights do not change the cost) with an MLP policy, the BASELINE agent end to
end on pixels with SB3's NatureCNN. Each is timed over ``--steps`` env steps after one warm-up rollout; the runs
alternate so machine load affects both alike. ``--set`` overrides apply to both configs (the ratio grows with
the number of PPO epochs: only the pixel agent back-propagates through a CNN). Target: latents ≥ 4× faster.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from agents.variants import build_agent, get_variant, random_vision, wrap_observations
from darla.config import Stage2Config, load_config
from darla.stage2 import import_env_modules, make_pixel_vec_env
from vision.models.base import ModelConfig
from vision.runtime import atomic_write_json, resolve_device
from vision.wrappers import FrozenEncoder

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 4.0


def train_rate(cfg: Stage2Config, steps: int, device: torch.device) -> float:
    """Env steps per second of ``model.learn`` for the config's variant (after a one-rollout warm-up)."""
    variant = get_variant(cfg.agent.variant)
    venv = make_pixel_vec_env(cfg.env, cfg.env.train_domain, cfg.env.n_envs, cfg.train.seed)
    encoder = None
    if variant.placement == "wrapper":
        model = random_vision((64, 64, 3), seed=0, model_config=ModelConfig(family="beta_vae", latent_dim=10))
        encoder = FrozenEncoder(model, device=device)
    venv = wrap_observations(venv, variant, encoder=encoder, augment=cfg.agent.augment, seed=0)
    agent = build_agent(cfg.agent, venv, seed=0, device=device)
    rollout = int(cfg.agent.hparams.get("n_steps", 2048)) * cfg.env.n_envs
    agent.learn(rollout)  # warm-up: first allocations, oneDNN kernel selection
    start, before = time.perf_counter(), agent.num_timesteps
    agent.learn(max(steps, rollout), reset_num_timesteps=False)
    rate = (agent.num_timesteps - before) / (time.perf_counter() - start)
    venv.close()
    return rate


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4096, help="timed env steps per agent and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--latent-config", default=str(ROOT / "configs/pickup/darla.yaml"))
    p.add_argument("--pixel-config", default=str(ROOT / "configs/pickup/baseline.yaml"))
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides applied to both configs")
    p.add_argument("--out", default="", help="optional JSON file for the results")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    latent_cfg = load_config(Stage2Config, a.latent_config, a.set)
    pixel_cfg = load_config(Stage2Config, a.pixel_config, a.set)
    import_env_modules(latent_cfg.env)
    rates: dict[str, list[float]] = {"latent": [], "pixels": []}
    for _ in range(a.rounds):
        rates["latent"].append(train_rate(latent_cfg, a.steps, device))
        rates["pixels"].append(train_rate(pixel_cfg, a.steps, device))
    latent, pixels = max(rates["latent"]), max(rates["pixels"])
    ratio = latent / pixels
    result = {"device": str(device), "torch_threads": torch.get_num_threads(), "steps": a.steps,
              "latent_steps_per_s": round(latent, 1), "pixel_steps_per_s": round(pixels, 1), "ratio": round(ratio, 2),
              "target_ratio": TARGET_RATIO, "rounds": {k: [round(r, 1) for r in v] for k, v in rates.items()},
              "hparams": {"latent": dict(latent_cfg.agent.hparams), "pixels": dict(pixel_cfg.agent.hparams)}}
    print(f"PPO training on {latent_cfg.env.id}, {latent_cfg.env.n_envs} envs, {device} ({torch.get_num_threads()} torch threads)")
    print(f"  latents (frozen encoder + MLP): {latent:8.1f} env steps/s")
    print(f"  pixels  (CnnPolicy)           : {pixels:8.1f} env steps/s")
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"  latents are {ratio:.2f}x faster ({verdict} the >= {TARGET_RATIO:.0f}x target)")
    if a.out:
        atomic_write_json(Path(a.out), result)
    return result


if __name__ == "__main__":
    main()
