"""Gymnasium registration of darla's environments, and look-ups by environment id.

``import envs`` registers every id below; ``gym.make("darla/Pickup-v0", domain="target")`` then builds one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from envs.core import DomainSpec, FactorEnv, SceneData, ViewSceneData

#: id -> (entry point, registered kwargs). Episode lengths come from each class's ``EPISODE_STEPS``.
_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "darla/Sprites-v0": ("envs.sprites:SpritesEnv", {}),
    "darla/Pickup-v0": ("envs.pickup:PickupEnv", {}),
    "darla/Reach-v0": ("envs.reacher:ReachEnv", {}),
    "darla/ReachDiscrete-v0": ("envs.reacher:ReachEnv", {"discrete": True}),
    "darla/CarRacing-v0": ("envs.car_racing:CarRacingDomains", {}),
}
ENV_IDS: tuple[str, ...] = tuple(_SPECS)


def register_envs() -> None:
    """Register every darla environment with Gymnasium (idempotent)."""
    for env_id, (entry_point, kwargs) in _SPECS.items():
        if env_id not in gym.registry:
            steps = load_env_creator(entry_point).EPISODE_STEPS
            gym.register(env_id, entry_point=entry_point, kwargs=kwargs, max_episode_steps=steps)


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    try:
        return gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"env_id: {env_id!r} is not registered ({e}); darla's ids are {', '.join(ENV_IDS)}") from None


def env_class(env_id: str) -> type:
    """The class a registered id builds (no instance is made)."""
    entry = _spec(env_id).entry_point
    return load_env_creator(entry) if isinstance(entry, str) else entry


def domains(env_id: str) -> list[str]:
    """Named domains of an environment: ``"source"`` first, then its target domains (``"all"`` is implicit)."""
    table = getattr(env_class(env_id), "DOMAINS", None)
    if not table:
        raise ValueError(f"env_id: {env_id!r} defines no domains")
    return list(table)


def make_factor_env(env_id: str, domain: DomainSpec = "source", **env_kwargs: Any) -> FactorEnv:
    """The unwrapped :class:`FactorEnv` behind ``env_id`` (a clear error for environments without factors)."""
    cls = env_class(env_id)
    # Checked on the class first: building an env without factors may need optional packages (CarRacing: Box2D).
    if isinstance(cls, type) and not issubclass(cls, FactorEnv):
        raise ValueError(f"env_id: {env_id!r} has no ground-truth factors")
    env = gym.make(env_id, domain=domain, **env_kwargs).unwrapped
    if not isinstance(env, FactorEnv):
        raise ValueError(f"env_id: {env_id!r} has no ground-truth factors")
    return env


def scene_data(env_id: str, domain: DomainSpec = "all", view: bool = False, **env_kwargs: Any) -> SceneData:
    """The environment's scene as ground-truth data (the ``GroundTruthData`` protocol) over ``domain``; with
    ``view``, its factors followed by its view factors (:class:`envs.core.ViewSceneData`)."""
    return (ViewSceneData if view else SceneData)(make_factor_env(env_id, **env_kwargs), domain)


def scripted_policy(env_id: str, **env_kwargs: Any) -> Callable[[Any, dict], Any]:
    """The environment's non-learned reference policy, ``policy(obs, info) -> action``; it reads ``info`` only.

    Pass the ``env_kwargs`` the evaluated environment was made with (e.g. ``n_joints``) so both agree.
    """
    env = gym.make(env_id, **env_kwargs).unwrapped
    make = getattr(env, "scripted_policy", None)
    if make is None:
        raise ValueError(f"env_id: {env_id!r} has no scripted policy")
    return make()
