"""Stage-1 data from environments: frames (and their ground-truth factors) collected under a coverage protocol.

Coverage protocols (what the vision module may see; the policy of stage 2 only ever sees the source domain):

- ``"source"``: source-domain factor values only.
- ``"source+target-factors"``: every factor value of the source and of one target domain (per-factor union):
  the vision module has seen the target values, the policy never has (the "OOD1" setting).
- ``"randomised"``: every value of every factor (domain ``"all"``).
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from envs.core import FactorEnv

COVERAGES = ("source", "source+target-factors", "randomised")
POLICIES = ("random", "explore")


@dataclass
class CollectedFrames:
    """Frames uint8 (N, 64, 64, 3) with factor indices int64 (N, K) (K = 0 for environments without factors)."""

    frames: np.ndarray
    factors: np.ndarray
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    env_id: str = ""
    coverage: str = ""
    domain: str = ""
    policy: str = ""

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def coverage_domain(coverage: str, target: str = "target") -> str:
    """The domain string a coverage protocol collects from (``target`` names the target domain to cover)."""
    if coverage == "source":
        return "source"
    if coverage == "source+target-factors":
        return f"source+{target}"
    if coverage == "randomised":
        return "all"
    raise ValueError(f"coverage: unknown {coverage!r}; use one of {', '.join(COVERAGES)}")


def collect_frames(env_id: str, n: int, coverage: str = "source", policy: str = "random", seed: int = 0,
                   env_kwargs: dict | None = None, progress: bool = True, target: str = "target",
                   epsilon: float = 0.3) -> CollectedFrames:
    """Collect ``n`` observations (reset and step frames of whole episodes) from ``env_id``.

    Args:
        env_id: a registered id (``import envs`` registers darla's).
        n: number of frames.
        coverage: one of :data:`COVERAGES`.
        policy: ``"random"`` (uniform actions) or ``"explore"`` (the environment's scripted policy with an
            ``epsilon`` share of random actions: it crosses rooms and visits objects a random walk rarely reaches).
        seed: seeds the first reset and the action sampling; the same seed gives the same frames.
        env_kwargs: extra keyword arguments for ``gym.make`` (``domain`` is set by ``coverage``).
        progress: show a progress bar.
        target: the target domain ``"source+target-factors"`` covers.
        epsilon: share of random actions under ``"explore"``.
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if policy not in POLICIES:
        raise ValueError(f"policy: unknown {policy!r}; use one of {', '.join(POLICIES)}")
    kwargs = dict(env_kwargs or {})
    if "domain" in kwargs:
        raise ValueError("env_kwargs: 'domain' is set by coverage; leave it out")
    domain = coverage_domain(coverage, target)
    env = gym.make(env_id, domain=domain, **kwargs)
    base = env.unwrapped
    names = base.factor_space.names if isinstance(base, FactorEnv) else ()
    sizes = base.factor_space.sizes if isinstance(base, FactorEnv) else ()
    scripted = None
    if policy == "explore":
        if not hasattr(base, "scripted_policy"):
            raise ValueError(f"policy: 'explore' needs a scripted policy and {env_id!r} has none; use 'random'")
        scripted = base.scripted_policy()
    rng = np.random.default_rng(seed)
    env.action_space.seed(int(rng.integers(2**31)))

    frames = np.empty((n, *env.observation_space.shape), dtype=np.uint8)
    factors = np.empty((n, len(names)), dtype=np.int64)

    def record(i: int, obs: np.ndarray, info: dict) -> None:
        frames[i] = obs
        if names:
            factors[i] = [info["factors"][name] for name in names]

    with tqdm(total=n, desc=f"collect {env_id} [{coverage}]", disable=not progress, unit="frame") as bar:
        obs, info = env.reset(seed=seed)
        done = False
        for i in range(n):
            record(i, obs, info)  # an episode's frames: its reset frame, then one per step (the last included)
            bar.update(1)
            if i == n - 1:
                break
            if done:
                obs, info = env.reset()
                done = False
                continue
            if scripted is not None and rng.random() >= epsilon:
                action = scripted(obs, info)
            else:
                action = env.action_space.sample()
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
    env.close()
    return CollectedFrames(frames, factors, tuple(names), tuple(sizes), env_id, coverage, domain, policy)
