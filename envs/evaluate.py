"""Policy returns per domain: any policy, the scripted (non-learned) reference, or uniform-random actions.

Episode ``i`` uses seed ``seed + i`` in every domain, so domains are compared on the same layouts
(``python -m envs.reference ENV_ID`` prints the reference table).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from envs.registry import domains as env_domains
from envs.registry import scripted_policy


def episode_returns(env_id: str, policy: Callable[[Any, dict], Any] | str, domain: str = "source",
                    episodes: int = 10, seed: int = 0, env_kwargs: dict | None = None) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes; ``policy`` is a callable ``(obs, info) -> action``,
    ``"scripted"`` or ``"random"``."""
    kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, domain=domain, **kwargs)
    act: Callable[[Any, dict], Any]
    if policy == "scripted":
        act = scripted_policy(env_id, **kwargs)
    elif policy == "random":
        env.action_space.seed(seed)

        def act(obs: Any, info: dict) -> Any:
            return env.action_space.sample()
    elif callable(policy):
        act = policy
    else:
        raise ValueError(f"policy: expected a callable, 'scripted' or 'random', got {policy!r}")
    returns = np.zeros(episodes)
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs, info))
            returns[i] += reward
            done = terminated or truncated
    env.close()
    return returns


def reference_table(env_id: str, domains: Sequence[str] | None = None, episodes: int = 10, seed: int = 0,
                    env_kwargs: dict | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """{domain: {"scripted": (mean, sd), "random": (mean, sd)}} over ``domains`` (default: every named one)."""
    table = {}
    for domain in domains or env_domains(env_id):
        table[domain] = {}
        for policy in ("scripted", "random"):
            r = episode_returns(env_id, policy, domain, episodes, seed, env_kwargs)
            table[domain][policy] = (float(r.mean()), float(r.std()))
    return table
