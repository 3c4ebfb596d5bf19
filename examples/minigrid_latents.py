"""darla's frozen vision on somebody else's pixel environment: MiniGrid, seen as RGB images.

    pip install minigrid
    python examples/minigrid_latents.py --out runs/minigrid

The three steps a user takes with their own environment:

1. collect frames of it with a random policy and train a β-VAE on them (stage 1, ``data.source=frames``);
2. wrap the environment in the trained encoder — the two lines marked below;
3. train any stable-baselines3 agent on the latents, then compare it with a random policy.

The environment is ``MiniGrid-Empty-Random-6x6-v0`` fully observed as an RGB image (``RGBImgObsWrapper``): the
agent starts at a random cell facing a random way, so a policy must see where it is to reach the goal.
MiniGrid's reward is ``1 − 0.9 · steps / max_steps`` on reaching the goal, 0 otherwise.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from tqdm import tqdm

from agents.callbacks import TqdmProgress
from darla import stage1
from darla.config import Stage1Config, apply_overrides
from vision.data.frames import FrameStore
from vision.images import resize_frames
from vision.runtime import atomic_write_json
from vision.wrappers import DisentangledObservation

ENV_ID = "MiniGrid-Empty-Random-6x6-v0"


def make_pixel_env() -> gym.Env:
    """The user's env: MiniGrid's full grid rendered as a uint8 RGB image (48 × 48 × 3 at 8 px per tile)."""
    from minigrid.wrappers import ImgObsWrapper, RGBImgObsWrapper

    return ImgObsWrapper(RGBImgObsWrapper(gym.make(ENV_ID), tile_size=8))


def collect(n: int, seed: int) -> np.ndarray:
    """``n`` frames from random-policy episodes, resized to the 64 × 64 input of the conv64 vision models."""
    env = make_pixel_env()
    env.action_space.seed(seed)
    frames, (obs, _) = [], env.reset(seed=seed)
    for _ in tqdm(range(n), desc=f"collect {ENV_ID}", unit="frame"):
        frames.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return resize_frames(np.stack(frames), (64, 64))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/minigrid")
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--vision-steps", type=int, default=3000)
    p.add_argument("--ppo-steps", type=int, default=100_000)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = Path(a.out)
    start = time.perf_counter()

    # 1. Learn to see: frames of the user's env -> a β-VAE checkpoint.
    frames_path = out / "frames.npz"
    if not frames_path.exists():
        FrameStore(collect(a.frames, a.seed)).save(frames_path)
    cfg = apply_overrides(Stage1Config(), [
        f"run.dir={out / 'beta_vae'}", "data.source=frames", f"data.path={frames_path}",
        "model.family=beta_vae", "model.latent_dim=10", "model.beta=1.0",
        f"train.steps={a.vision_steps}", "train.lr=0.001", "train.image_every=1000", "train.ckpt_every=1000",
    ])
    stage1.run(cfg)
    vision_s = time.perf_counter() - start

    # 2. The two lines: any pixel env + a trained checkpoint -> an env whose observations are latent means.
    def make_latent_env() -> gym.Env:
        return DisentangledObservation(make_pixel_env(), out / "beta_vae")

    # 3. Learn to act on the latents with a stock SB3 agent.
    venv = make_vec_env(make_latent_env, n_envs=8, seed=a.seed)
    agent = PPO("MlpPolicy", venv, n_steps=128, batch_size=256, learning_rate=1e-3, gamma=0.95, ent_coef=0.01,
                seed=a.seed, verbose=0, tensorboard_log=str(out / "tb"))
    agent.learn(a.ppo_steps, callback=TqdmProgress(a.ppo_steps, desc="PPO on latents"))
    agent.save(out / "ppo_latents.zip")
    ppo_s = time.perf_counter() - start - vision_s

    eval_env = Monitor(make_latent_env())
    trained, trained_sd = evaluate_policy(agent, eval_env, n_eval_episodes=a.episodes, deterministic=True)
    returns = []
    rng_env = make_pixel_env()
    rng_env.action_space.seed(a.seed + 1)
    for i in range(a.episodes):
        rng_env.reset(seed=10_000 + i)
        total, done = 0.0, False
        while not done:
            _, r, terminated, truncated, _ = rng_env.step(rng_env.action_space.sample())
            total, done = total + float(r), terminated or truncated
        returns.append(total)
    result = {
        "env_id": ENV_ID, "frames": a.frames, "vision_steps": a.vision_steps, "ppo_steps": a.ppo_steps,
        "episodes": a.episodes, "ppo_on_latents": [round(trained, 3), round(trained_sd, 3)],
        "random_policy": [round(float(np.mean(returns)), 3), round(float(np.std(returns)), 3)],
        "minutes": {"vision": round(vision_s / 60, 1), "ppo": round(ppo_s / 60, 1)},
    }
    atomic_write_json(out / "result.json", result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
