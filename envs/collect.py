"""Stage-1 data from environments: frames (and their ground-truth factors) collected under a coverage protocol.

Coverage protocols (what the vision module may see; the policy of stage 2 only ever sees the source domain):

- ``"source"``: source-domain factor values only.
- ``"source+target-factors"``: every factor value of the source and of one target domain (per-factor union):
  the vision module has seen the target values, the policy never has (the "OOD1" setting).
- ``"held-out-combinations"``: every factor value of the source and of one target domain, but no frame whose
  visual values are all the target's (domain ``"source+target~target"``): the target's values are seen, the
  target's scenes never are, so transfer to it is zero-shot for the vision module too.
- ``"randomised"``: every value of every factor (domain ``"all"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from envs.core import FactorEnv
from envs.registry import ENV_IDS

COVERAGES = ("source", "source+target-factors", "held-out-combinations", "randomised")
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


def _is_rgb(space: gym.Space) -> bool:
    """An (H, W, 3) uint8 image space."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3


def coverage_domain(coverage: str, target: str = "target") -> str:
    """The domain string a coverage protocol collects from (``target`` names the target domain to cover)."""
    if coverage == "source":
        return "source"
    if coverage == "source+target-factors":
        return f"source+{target}"
    if coverage == "held-out-combinations":
        return f"source+{target}~{target}"
    if coverage == "randomised":
        return "all"
    raise ValueError(f"coverage: unknown {coverage!r}; use one of {', '.join(COVERAGES)}")


def collect_frames(env_id: str, n: int, coverage: str = "source", policy: str = "random", seed: int = 0,
                   env_kwargs: dict | None = None, progress: bool = True, target: str = "target",
                   epsilon: float = 0.3, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> CollectedFrames:
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
        transform: applied to each uint8 HWC frame as it is recorded (stage 1 resizes to its input size here).

    Any Gymnasium id works: darla's envs report factors and domains; another env has neither (``coverage`` must
    be ``"source"``), and its frames are its observations when they are RGB images, else ``env.render()`` with
    ``render_mode="rgb_array"`` (CartPole, MiniGrid, …).
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if policy not in POLICIES:
        raise ValueError(f"policy: unknown {policy!r}; use one of {', '.join(POLICIES)}")
    kwargs = dict(env_kwargs or {})
    if "domain" in kwargs:
        raise ValueError("env_kwargs: 'domain' is set by coverage; leave it out")
    if env_id in ENV_IDS:
        domain = coverage_domain(coverage, target)
        env = gym.make(env_id, domain=domain, **kwargs)
    elif coverage != "source":
        raise ValueError(f"coverage: {env_id!r} has no named domains (it is not a darla env); use 'source'")
    else:
        domain = ""
        env = gym.make(env_id, **kwargs)
    if not _is_rgb(env.observation_space):  # a state-vector or dict observation: record what the env draws
        env.close()
        env = gym.make(env_id, render_mode="rgb_array", **kwargs)
        pixels: Callable[[Any], np.ndarray] = lambda _obs: np.asarray(env.render(), dtype=np.uint8)  # noqa: E731
    else:
        pixels = np.asarray
    shape_frame = transform or (lambda f: f)
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

    frames: np.ndarray | None = None
    factors = np.empty((n, len(names)), dtype=np.int64)

    def record(i: int, obs: Any, info: dict) -> None:
        nonlocal frames
        frame = shape_frame(pixels(obs))
        if frames is None:  # sized by the first frame (after the transform)
            frames = np.empty((n, *frame.shape), dtype=np.uint8)
        frames[i] = frame
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
    assert frames is not None  # n >= 1: the reset frame was recorded
    return CollectedFrames(frames, factors, tuple(names), tuple(sizes), env_id, coverage, domain, policy)
