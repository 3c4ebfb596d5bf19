"""darla's domain-shift environments: worlds where only what the agent sees changes between domains.

``import envs`` registers ``darla/Sprites-v0``, ``darla/Pickup-v0``, ``darla/Reach-v0``,
``darla/ReachDiscrete-v0`` and ``darla/CarRacing-v0`` with Gymnasium::

    import gymnasium as gym
    import envs

    env = gym.make("darla/Pickup-v0", domain="target")
    obs, info = env.reset(seed=0)
    info["factors"]  # {"wall_colour": 5, ..., "heading": 12, ...}: ground-truth factor indices

Observations are (64, 64, 3) uint8. Domains share actions, dynamics and rewards; they differ only in appearance.
"""
import gymnasium as gym
import numpy as np

from envs.collect import COVERAGES, CollectedFrames, collect_frames, coverage_domain
from envs.core import (
    COLOURS, Domain, DomainSpec, Factor, FactorEnv, FactorSpace, ScenePairs, SceneData, ViewSceneData, resolve_domain, same_scenes,
)
from envs.evaluate import episode_returns, reference_table
from envs.registry import ENV_IDS, domains, env_class, make_factor_env, register_envs, scene_data, scripted_policy

register_envs()


def factor_vector(env: gym.Env, info: dict) -> np.ndarray:
    """``info["factors"]`` of a (possibly wrapped) darla environment as an int64 vector in factor order."""
    return env.unwrapped.factor_vector(info["factors"])


__all__ = [
    "COLOURS", "COVERAGES", "ENV_IDS", "CollectedFrames", "Domain", "DomainSpec", "Factor", "FactorEnv",
    "FactorSpace", "ScenePairs", "SceneData", "collect_frames", "coverage_domain", "domains", "env_class", "episode_returns", "factor_vector",
    "make_factor_env", "reference_table", "register_envs", "resolve_domain", "scene_data", "same_scenes", "scripted_policy",
    "ViewSceneData",
]
